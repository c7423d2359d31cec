/**
 * One measured model operation in a fresh process (so peak RSS is the operation's own): prints a JSON line with
 * the phase times and the process's peak resident set size.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ModelHandle } from '../model/handle.ts';

const [op, path, cutArg] = process.argv.slice(2);
if (!op || !path) throw new Error('usage: model-task.ts <inspect|split> <file> [cut]');
const t0 = performance.now();
const m = await ModelHandle.fromFile(path);
const loadMs = performance.now() - t0;
let opMs = 0;
if (op === 'split') {
  const k = cutArg === undefined ? Math.floor(m.layers / 2) : Number(cutArg);
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-bench-'));
  const t1 = performance.now();
  await m.writePart(k, 'head', join(dir, 'head.onnx'));
  await m.writePart(k, 'tail', join(dir, 'tail.onnx'));
  opMs = performance.now() - t1;
  await rm(dir, { recursive: true, force: true });
}
process.stdout.write(
  `${JSON.stringify({ loadMs, opMs, totalMs: performance.now() - t0, maxRssBytes: process.resourceUsage().maxRSS * 1024, fileBytes: m.bytes.length, layers: m.layers })}\n`,
);

/**
 * `npm run bench -- model [--runs N] [--model NAME]`: time and peak RSS to inspect a model and to split it at a
 * middle cut (head and tail written to disk), each run in a fresh process. Targets (issue 3): split < 1 s, peak
 * RSS < 3x the model file, for Inception-v3.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { formatBytes, table } from '../cli/format.ts';
import { type ZooName, zooModelPath } from '../model/zoo/index.ts';
import { median } from '../planning/stats.ts';

const exec = promisify(execFile);
const TASK = fileURLToPath(new URL('./model-task.ts', import.meta.url));

interface Sample {
  loadMs: number;
  opMs: number;
  totalMs: number;
  maxRssBytes: number;
  fileBytes: number;
  layers: number;
}

async function measure(op: string, path: string): Promise<Sample> {
  const { stdout } = await exec(process.execPath, ['--import', 'tsx', TASK, op, path], {
    maxBuffer: 1 << 20,
  });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Sample;
}

/** Runs the benchmark. */
export async function run(args: string[]): Promise<void> {
  const runs = Number(args[args.indexOf('--runs') + 1] ?? 5) || 5;
  const name = (args.includes('--model') ? args[args.indexOf('--model') + 1] : 'inception-v3') as ZooName;
  const path = await zooModelPath(name);
  const rows: string[][] = [];
  let verdict = '';
  for (const op of ['inspect', 'split']) {
    const samples: Sample[] = [];
    for (let i = 0; i < runs; i++) samples.push(await measure(op, path));
    const file = samples[0]!.fileBytes;
    const rss = median(samples.map((s) => s.maxRssBytes));
    const opMs = median(samples.map((s) => s.opMs));
    rows.push([
      op,
      median(samples.map((s) => s.loadMs)).toFixed(0),
      op === 'split' ? opMs.toFixed(0) : '-',
      median(samples.map((s) => s.totalMs)).toFixed(0),
      formatBytes(rss),
      (rss / file).toFixed(2),
    ]);
    if (op === 'split') {
      verdict =
        `split of ${name} at cut ${Math.floor(samples[0]!.layers / 2)} of ${samples[0]!.layers}: ` +
        `load+analyse+split+write ${median(samples.map((s) => s.totalMs)).toFixed(0)} ms (target < 1000 ms: ` +
        `${median(samples.map((s) => s.totalMs)) < 1000 ? 'met' : 'MISSED'}), peak RSS ${(rss / file).toFixed(2)}x the ` +
        `${formatBytes(file)} file (target < 3x: ${rss / file < 3 ? 'met' : 'MISSED'})`;
    }
  }
  process.stdout.write(
    `model benchmark: ${name}, ${runs} runs per operation, each in a fresh process (medians)\n\n`,
  );
  process.stdout.write(
    table(
      ['operation', 'load+analyse ms', 'split+write ms', 'total ms', 'peak RSS', 'RSS / file'],
      rows,
      [1, 2, 3, 4, 5],
    ),
  );
  process.stdout.write(`\n${verdict}\n`);
}

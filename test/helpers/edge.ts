/**
 * Test helpers for the edge-head: a logger whose lines a test can read, PNG files, frame taps, and a small
 * broker-worker-planner-edge rig.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { type Logger, pino } from 'pino';
import { PNG } from 'pngjs';
import type { ModelHandle } from '../../model/handle.ts';
import { mulberry32 } from '../../model/random.ts';
import type { Plan } from '../../schemas/messages.ts';
import type { Frame } from '../../services/edge-head/frames.ts';

/** A logger that keeps its JSON lines (level warn and up unless told). */
export function captureLogger(level = 'warn'): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, lines };
}

/** A temporary directory, removed at teardown. */
export async function tempDir(t: ExecutionContext, prefix = 'edgecut-edge-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** PNG bytes of seeded random RGBA pixels. */
export function randomPng(width: number, height: number, seed: number): Buffer {
  const png = new PNG({ width, height });
  const rand = mulberry32(seed);
  for (let i = 0; i < png.data.length; i++) png.data[i] = i % 4 === 3 ? 255 : Math.floor(rand() * 256);
  return PNG.sync.write(png);
}

/** Writes random PNGs under the given names; returns their paths. */
export async function writePngs(dir: string, names: string[], width = 96, height = 80): Promise<string[]> {
  return Promise.all(
    names.map(async (name, i) => {
      const path = join(dir, name);
      await writeFile(path, randomPng(width, height, i + 1));
      return path;
    }),
  );
}

/** Passes frames through and keeps them. */
export async function* tap(frames: AsyncIterable<Frame>, seen: Frame[]): AsyncGenerator<Frame> {
  for await (const f of frames) {
    seen.push(f);
    yield f;
  }
}

/** A plan for cut `k` of `model`, as a planner would publish it: fixed, or with the predicted stage times `p`. */
export function planFor(model: ModelHandle, device: string, k: number, p: Plan['predicted'] = null): Plan {
  const cut = model.cuts[k]!;
  return {
    version: 1,
    device,
    modelId: model.id,
    seq: 1,
    cut: { index: k, after: cut.after, bytes: cut.bytes, tensors: cut.tensors.map((x) => x.name) },
    objective: p ? 'latency' : 'fixed',
    predicted: p,
    reason: 'test plan',
    inputs: {},
    issuedAt: Date.now(),
  };
}

export { waitFor } from './wait.ts';

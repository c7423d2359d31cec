/**
 * Test helper: checks that head then tail equals the whole model at a list of cuts of a model, with real
 * onnxruntime sessions created the way the services create them.
 */
import type { ExecutionContext } from 'ava';
import type { ModelHandle } from '../../model/handle.ts';
import { mulberry32 } from '../../model/random.ts';
import { createSession, runWire } from '../../model/runtime.ts';
import { tensorElements } from '../../schemas/codec.ts';
import { randomInputs } from '../../services/edge-head/frames.ts';

/** Largest difference relative to the largest magnitude of the expected output. */
function relativeDiff(expected: Float32Array, got: Float32Array): number {
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < expected.length; i++) {
    scale = Math.max(scale, Math.abs(expected[i]!));
    diff = Math.max(diff, Math.abs(expected[i]! - got[i]!));
  }
  return diff / (scale || 1);
}

/** Cuts spread evenly over 1..N-1: `singles` single-tensor ones and `multis` multi-tensor ones. */
export function spreadCuts(m: ModelHandle, singles: number, multis: number): number[] {
  const pick = (pool: number[], n: number) =>
    pool.length <= n
      ? pool
      : Array.from({ length: n }, (_, i) => pool[Math.round((i * (pool.length - 1)) / (n - 1))]!);
  const inner = m.cuts.filter((c) => c.index > 0 && c.index < m.layers);
  return [
    ...pick(
      inner.filter((c) => c.singleTensor).map((c) => c.index),
      singles,
    ),
    ...pick(
      inner.filter((c) => !c.singleTensor).map((c) => c.index),
      multis,
    ),
  ].sort((a, b) => a - b);
}

/** Asserts head+tail equals whole within `tolerance` (relative) at every listed cut. */
export async function checkCuts(
  t: ExecutionContext,
  m: ModelHandle,
  cuts: readonly number[],
  tolerance = 1e-5,
) {
  const inputs = randomInputs(m.inputs, mulberry32(11));
  const whole = await createSession(m.bytes);
  const expected = tensorElements((await runWire(whole, inputs))[0]!) as Float32Array;
  await whole.release();
  let worst = 0;
  for (const k of cuts) {
    const head = await createSession(m.part(k, 'head'));
    const mid = k === 0 ? inputs : await runWire(head, inputs);
    await head.release();
    const tail = await createSession(m.part(k, 'tail'));
    const got = tensorElements((await runWire(tail, mid))[0]!) as Float32Array;
    await tail.release();
    const d = relativeDiff(expected, got);
    worst = Math.max(worst, d);
    t.true(d <= tolerance, `cut ${k} (${m.cuts[k]!.after}) differs by ${d.toExponential(2)} relative`);
  }
  t.log(`${m.name}: ${cuts.length} cuts checked, worst relative difference ${worst.toExponential(2)}`);
}

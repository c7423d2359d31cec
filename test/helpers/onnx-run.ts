import { halfToFloat } from '../../model/half.ts';
// Test helpers for running whole/head/tail models in onnxruntime and comparing outputs.

import * as ort from 'onnxruntime-node';
import type { OnnxModel } from '../../model/onnx.ts';
import { writeModel } from '../../model/onnx.ts';

/** Output tensors by name. */
export type Outputs = Record<string, ort.Tensor>;

/** onnxruntime graph optimization level. */
export type OptLevel = 'disabled' | 'basic' | 'extended' | 'layout' | 'all';

/** A single-threaded session, so two runs of the same kernels accumulate in the same order. */
export async function session(
  model: OnnxModel | Uint8Array,
  level: OptLevel = 'all',
): Promise<ort.InferenceSession> {
  const bytes = model instanceof Uint8Array ? model : writeModel(model);
  return ort.InferenceSession.create(bytes, {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    graphOptimizationLevel: level,
  });
}

/** Runs a session on the feeds it declares (extra feeds are ignored, missing ones throw). */
export async function run(s: ort.InferenceSession, feeds: Outputs): Promise<Outputs> {
  const mine: Outputs = {};
  for (const name of s.inputNames) {
    const t = feeds[name];
    if (!t) throw new Error(`no feed for input ${name}`);
    mine[name] = t;
  }
  return (await s.run(mine)) as Outputs;
}

function numbers(t: ort.Tensor): number[] {
  if (t.type === 'float16') return Array.from(t.data as Uint16Array, halfToFloat);
  return Array.from(t.data as ArrayLike<number>, Number);
}

/** Largest absolute elementwise difference (Infinity if shapes or types differ). */
export function maxAbsDiff(a: ort.Tensor, b: ort.Tensor): number {
  if (a.type !== b.type || a.dims.join() !== b.dims.join()) return Number.POSITIVE_INFINITY;
  const x = numbers(a);
  const y = numbers(b);
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  return m;
}

/** True when two tensors have the same type, shape and bytes. */
export function bitIdentical(a: ort.Tensor, b: ort.Tensor): boolean {
  if (a.type !== b.type || a.dims.join() !== b.dims.join()) return false;
  const da = a.data as ArrayBufferView;
  const db = b.data as ArrayBufferView;
  return Buffer.from(da.buffer, da.byteOffset, da.byteLength).equals(
    Buffer.from(db.buffer, db.byteOffset, db.byteLength),
  );
}

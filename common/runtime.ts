/**
 * onnxruntime sessions and the conversion between wire tensors and runtime tensors. Conversions never copy tensor
 * data: a received request's bytes go to onnxruntime as a typed-array view over the MQTT payload.
 */
import * as ort from 'onnxruntime-node';
import { type DType, tensorElements, tensorFromTyped, type WireTensor } from '../schemas/codec.ts';
import { halvesToFloats } from './half.ts';

/** Session settings shared by every service, so whole, head and tail run under the same conditions. */
export interface RuntimeOptions {
  /** Intra-op threads; the same count on both sides keeps split results bit-identical to the whole model. */
  threads?: number;
  /** Graph optimisation level, default `all`. */
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
}

/** Loads a model into a CPU session. */
export async function createSession(
  model: Uint8Array,
  opts: RuntimeOptions = {},
): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(model, {
    executionProviders: ['cpu'],
    intraOpNumThreads: opts.threads ?? 1,
    interOpNumThreads: 1,
    graphOptimizationLevel: opts.optimization ?? 'all',
    executionMode: 'sequential',
    logSeverityLevel: 3,
  });
}

const ORT_TYPE: Record<DType, ort.Tensor.Type> = {
  float32: 'float32',
  float16: 'float16',
  int8: 'int8',
  uint8: 'uint8',
  int32: 'int32',
  int64: 'int64',
};

/** Wraps a wire tensor for onnxruntime without copying when its data is aligned. */
export function toOrt(t: WireTensor): ort.Tensor {
  return new ort.Tensor(ORT_TYPE[t.dtype], tensorElements(t) as never, t.shape);
}

/** Wraps a runtime output as a wire tensor (a view over the runtime's buffer). */
export function fromOrt(name: string, t: ort.Tensor): WireTensor {
  const dtype = (Object.keys(ORT_TYPE) as DType[]).find((d) => ORT_TYPE[d] === t.type);
  if (!dtype) throw new Error(`tensor ${name} has dtype ${t.type}, which the wire format does not carry`);
  return tensorFromTyped(name, dtype, [...t.dims], t.data as ArrayBufferView);
}

/** Runs a session on wire tensors and returns its outputs, in the session's output order, as wire tensors. */
export async function runWire(
  session: ort.InferenceSession,
  inputs: readonly WireTensor[],
): Promise<WireTensor[]> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const t of inputs) feeds[t.name] = toOrt(t);
  const out = await session.run(feeds);
  return session.outputNames.map((name) => fromOrt(name, out[name]!));
}

/** Largest absolute difference between two tensors' values (float16 compared as its raw bits' values). */
export function maxAbsDiff(a: WireTensor, b: WireTensor): number {
  if (a.dtype !== b.dtype || a.shape.join('x') !== b.shape.join('x')) return Number.POSITIVE_INFINITY;
  const x = a.dtype === 'float16' ? halvesToFloats(tensorElements(a) as Uint16Array) : tensorElements(a);
  const y = b.dtype === 'float16' ? halvesToFloats(tensorElements(b) as Uint16Array) : tensorElements(b);
  let max = 0;
  for (let i = 0; i < x.length; i++) {
    const d = Math.abs(Number(x[i]) - Number(y[i]));
    if (!(d <= max)) max = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d;
  }
  return max;
}

/**
 * onnxruntime sessions and the conversion between wire tensors and runtime tensors. Conversions never copy tensor
 * data: a received request's bytes go to onnxruntime as a typed-array view over the MQTT payload.
 */
import * as ort from 'onnxruntime-node';
import { type DType, tensorElements, tensorFromTyped, type WireTensor } from '../schemas/codec.ts';
import { DTYPE_BYTES } from '../schemas/verify.ts';
import { halvesToFloats } from './half.ts';

/** Session settings shared by every service, so whole, head and tail run under the same conditions. */
export interface RuntimeOptions {
  /** Intra-op threads; the same count on both sides keeps split results bit-identical to the whole model. */
  threads?: number;
  /** Turn onnxruntime's per-node profiler on, writing its trace to files starting with this path. */
  profileFilePrefix?: string;
  /** Graph optimisation level, default `all` (minus NCHWc, see `nchwc`). */
  optimization?: 'disabled' | 'basic' | 'extended' | 'layout' | 'all';
  /**
   * Let onnxruntime's NCHWc layout transformer run at levels `layout` and `all`. Default false: it makes the whole
   * model faster (squeezenet1.0-fp16 7.1 ms instead of 9.0) but head + tail then no longer match it bit for bit.
   */
  nchwc?: boolean;
  /**
   * Let onnxruntime's QDQS8ToU8Transformer (x86 only) rewrite int8 QuantizeLinear/DequantizeLinear pairs to uint8.
   * Default false: a pair split by a cut cannot be rewritten, so the QDQ groups at the cut run unfused and head + tail
   * no longer match the whole model bit for bit.
   */
  s8ToU8?: boolean;
  /**
   * The directory the model's external data (weight references, model/external.ts) are resolved in: a session loaded
   * from bytes has no directory of its own.
   */
  weightsDir?: string;
}

// Why these defaults (onnxruntime-node 1.30, CPU, measured by test/real-squeezenet.test.ts and the experiments
// recorded there): a split is only useful if head + tail give exactly the whole model's output, bit for bit, with
// the same runtime and thread count.
// - The NCHWc transformer (level `layout`/`all`) rewrites runs of Conv/Pool/Concat into a blocked layout, converting
//   back at the graph's inputs and outputs. A cut moves those boundaries, so some values are computed by other
//   kernels with another summation order: on the demo CNN 4 of 25 cuts differed from the whole model by ~1e-8
//   (in the dumped graphs of cut 15, the whole model's Concat and GlobalAveragePool ran on NCHWc data, the tail's
//   on NCHW). `session.disable_prepacking` did
//   not help; disabling only `NchwcTransformer` made all 25 cuts bit-identical, as did `extended` and `basic`.
// - Whole squeezenet1.0-fp16, 1 thread, median of 5x30 runs: all 7.1 ms, all minus NCHWc 9.0 ms, extended 9.6 ms,
//   basic 9.7 ms. `all` minus NCHWc beats `extended` on float16 models: in the optimised graphs (dumped with
//   optimizedModelFilePath) `all` has folded the 52 weight Casts onnxruntime inserts for float16 weights and fused
//   Conv+Relu, while at `extended` they still run on every inference. Float32 graphs, such as the halves of a
//   float16 model split with carry 'float32' (model/split.ts), get both at either level.
// - `disabled` is not exact for float16 models: without Dropout elimination onnxruntime keeps the last Concat and
//   the Dropout in float16, so the whole model rounds there and a float32-carried split does not.
// - Quantized (QDQ) models: onnxruntime fuses DequantizeLinear -> op -> QuantizeLinear into integer kernels (QLinearConv,
//   QLinearAdd, ...) from level `extended` on; model/qdq.ts keeps those groups whole across cuts (the quantized tensor
//   crosses). On x86 (not ARM, where onnxruntime fuses int8 kernels directly), QDQS8ToU8Transformer first rewrites each
//   int8 Q -> DQ pair to uint8, the fast x86 kernel type. A pair split by a cut keeps its int8 graph output/input, so
//   the groups next to the cut do not fuse and compute in float. On test/model-quant.test.ts's QDQ CNNs (32 channels,
//   32x32, 23 cuts): with int8 activations 6 cuts differed from the whole model (by one quantization step, 0.14 in
//   the output), with int8 after uint8 activations 8 cuts; with the transformer disabled, every cut is bit-identical
//   (uint8-only models: identical either way). The price is speed on int8-activation models, whose int8 groups then
//   run unfused on x86 too: whole QDQ CNN (64 channels, 56x56, 1 thread, median of 9x30 runs) 1.46 -> 2.22 ms, at 128
//   channels 4.58 -> 5.85 ms; uint8-activation and float models are unaffected (0.75 vs 0.70 ms, noise).
//   `session.qdqisint8allowed` = 1 (int8 kernels on x86) was exact too but slower still (5.18 ms).
// - Weight prepacking (onnxruntime copies each Gemm/MatMul/Conv weight into its kernel's layout when the session is
//   created) is off (`session.disable_prepacking`): it made AlexNet's session take 2.9 s to create instead of 1.6 s,
//   Inception-v3's 0.71 s instead of 0.36 s, for no gain per run at batch 1 (whole model, 1 thread, median of 10 runs
//   over 2 sessions: AlexNet 16.7 / 16.4 ms, Inception-v3 70.6 / 71.5 ms, SqueezeNet 1.0 12.9 / 12.7 ms, with / without).
//   A tail worker loads a large tail while a device waits for the plan that needs it. Outputs differ from a prepacked
//   session's in the last bits (other kernels' summation order), so every session edgecut creates has the same
//   setting: head + tail stay bit-identical to the whole model.
// To disable several optimizers, separate their names with ';': onnxruntime 1.30 disabled nothing when given
// "NchwcTransformer,Other" (',' is what its header comment documents).
function disabledOptimizers(opts: RuntimeOptions): string {
  const names = [
    ...(opts.nchwc ? [] : ['NchwcTransformer']),
    ...(opts.s8ToU8 ? [] : ['QDQS8ToU8Transformer']),
  ];
  return names.join(';');
}

/** onnxruntime's session options for `opts` (a plain object: a session thread gets the same ones). */
export function sessionOptions(opts: RuntimeOptions = {}): ort.InferenceSession.SessionOptions {
  const disabled = disabledOptimizers(opts);
  return {
    executionProviders: ['cpu'],
    intraOpNumThreads: opts.threads ?? 1,
    interOpNumThreads: 1,
    graphOptimizationLevel: opts.optimization ?? 'all',
    executionMode: 'sequential',
    logSeverityLevel: 3,
    ...(opts.profileFilePrefix ? { enableProfiling: true, profileFilePrefix: opts.profileFilePrefix } : {}),
    extra: {
      session: {
        disable_prepacking: '1',
        ...(opts.weightsDir !== undefined
          ? { model_external_initializers_file_folder_path: opts.weightsDir }
          : {}),
      },
      ...(disabled ? { optimization: { disable_specified_optimizers: disabled } } : {}),
    },
  };
}

/** Loads a model into a CPU session (defaults chosen so head + tail are bit-identical to the whole model). */
export async function createSession(
  model: Uint8Array,
  opts: RuntimeOptions = {},
): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(model, sessionOptions(opts));
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

/** Tensors of zeros shaped as `specs` (an unknown dimension taken as 1). */
export function zeroTensors(
  specs: ReadonlyArray<{ name: string; dtype: DType; shape: readonly number[] }>,
): WireTensor[] {
  return specs.map((spec) => {
    const shape = spec.shape.map((d) => (d < 0 ? 1 : d));
    const n = shape.reduce((a, b) => a * b, 1);
    return { name: spec.name, dtype: spec.dtype, shape, data: new Uint8Array(n * DTYPE_BYTES[spec.dtype]) };
  });
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

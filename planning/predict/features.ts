/**
 * Per-layer features and layer types of the latency predictors (paper section II-A). A layer's features are
 * static (cost.ts): FLOPs, the bytes of its non-initializer inputs and of its outputs, the bytes of the
 * initializers it reads, and the derived arithmetic intensity FLOPs / byte. The same four numbers are in every
 * profile layer, so profiles, sweep samples and unprofiled models all feed the same code.
 *
 * Layer types group ONNX ops that run the same kind of kernel, so a type has enough samples to fit and rare ops
 * borrow from common ones (see LAYER_TYPES for the choice and the data behind it).
 */
import { z } from 'zod';
import type { NodeCost } from '../../model/cost.ts';
import type { Profile } from '../../schemas/profile.ts';

/** The static features of one layer. */
export interface LayerFeatures {
  flops: number;
  inputBytes: number;
  outputBytes: number;
  paramBytes: number;
}

/** One training sample: a layer's op, its features and its measured latency (ms). */
export const LayerSampleSchema = z.object({
  op: z.string(),
  flops: z.number().min(0),
  inputBytes: z.number().min(0),
  outputBytes: z.number().min(0),
  paramBytes: z.number().min(0),
  ms: z.number().min(0),
  /** Where it was measured: `sweep`, or a model name (leave-one-out keys on it). */
  source: z.string().optional(),
});
/** One training sample. */
export type LayerSample = z.infer<typeof LayerSampleSchema>;

/**
 * ONNX op -> layer type. Grouping versus one type per op, leave-one-out (bench/predict.ts, two measurement sets):
 * worst whole-model error 6.7% / 5.3% grouped against 4.0% / 5.3% per op, worst per-layer MdAPE 19.9% / 29.3%
 * against 19.3% / 36.3%: sums are alike, but rare ops (AlexNet's one AveragePool, two Dropouts, one Flatten) borrow
 * samples from their group. The groups:
 * - `conv`: Conv, dense, grouped and depthwise. Depthwise convolutions run another MLAS kernel (2-12 GFLOP/s here
 *   against 40-100 for dense ones), but a type of their own did worse: when MobileNetV2 (the only zoo model with
 *   them) is held out, its depthwise layers are predicted from the sweep alone, which times big-map depthwise
 *   layers up to 1.6x slower than inside the network, and nothing calibrates them. Folded into `conv`, the tree's
 *   smoothing and the type's sum calibration pull them towards in-network convolution times: MobileNetV2's
 *   leave-one-out error was -0.5% / -1.3% on two independent measurements, against +13.8% / +8.8% as a type.
 * - `gemm`: Gemm and MatMul, the same MLAS SGEMM for the batch-1 shapes here.
 * - `pool`: MaxPool and AveragePool: one pass over each window, time ~ output x window.
 * - `global-pool`: GlobalAveragePool / GlobalMaxPool: one pass over the input.
 * - `batchnorm`: BatchNormalization (alone; two FLOPs per element plus per-channel parameters).
 * - `activation`: Relu, Clip, LeakyRelu, ...: one cheap pass over a tensor.
 * - `eltwise`: Add, Mul, Sum, Sub, Div: two or more inputs, one output.
 * - `concat`: Concat: a copy of all inputs.
 * - `softmax`: Softmax / LogSoftmax.
 * - `lrn`: LRN.
 * - `zero-cost`: Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout: no arithmetic, and onnxruntime aliases or
 *   copies the tensor, so their measured times are a few microseconds at most.
 * An op missing here is its own type when the training data has it; an op the training data lacks is predicted
 * by the global model (all samples, any type).
 */
export const LAYER_TYPES: Readonly<Record<string, string>> = {
  Conv: 'conv',
  Gemm: 'gemm',
  MatMul: 'gemm',
  MaxPool: 'pool',
  AveragePool: 'pool',
  GlobalAveragePool: 'global-pool',
  GlobalMaxPool: 'global-pool',
  BatchNormalization: 'batchnorm',
  Relu: 'activation',
  Clip: 'activation',
  LeakyRelu: 'activation',
  Add: 'eltwise',
  Mul: 'eltwise',
  Sum: 'eltwise',
  Sub: 'eltwise',
  Div: 'eltwise',
  Concat: 'concat',
  Softmax: 'softmax',
  LogSoftmax: 'softmax',
  LRN: 'lrn',
  Reshape: 'zero-cost',
  Flatten: 'zero-cost',
  Squeeze: 'zero-cost',
  Unsqueeze: 'zero-cost',
  Identity: 'zero-cost',
  Dropout: 'zero-cost',
};

/** The layer type of an op under a grouping (default LAYER_TYPES); the op itself when the grouping lacks it. */
export function layerType(op: string, groups: Readonly<Record<string, string>> = LAYER_TYPES): string {
  return groups[op] ?? op;
}

/** Training samples from a measured profile (source: the model's name by default). */
export function profileSamples(
  profile: Pick<Profile, 'layers' | 'model'>,
  source = profile.model.name,
): LayerSample[] {
  return profile.layers.map((l) => ({
    op: l.op,
    flops: l.flops,
    inputBytes: l.inputBytes,
    outputBytes: l.outputBytes,
    paramBytes: l.paramBytes,
    ms: l.ms,
    source,
  }));
}

/** The features of a node cost or a profile layer. */
export function featuresOf(x: LayerFeatures | NodeCost): LayerFeatures {
  return { flops: x.flops, inputBytes: x.inputBytes, outputBytes: x.outputBytes, paramBytes: x.paramBytes };
}

/** Names of the raw features, in vector order. */
export const FEATURE_NAMES = ['flops', 'inputBytes', 'outputBytes', 'paramBytes'] as const;
export type FeatureName = (typeof FEATURE_NAMES)[number];

/** The raw feature vector [flops, inputBytes, outputBytes, paramBytes]. */
export function featureVector(f: LayerFeatures): number[] {
  return [f.flops, f.inputBytes, f.outputBytes, f.paramBytes];
}

/** FLOPs per byte moved (inputs + outputs + parameters): arithmetic intensity; 0 for a layer that moves nothing. */
export function flopsPerByte(f: LayerFeatures): number {
  const bytes = f.inputBytes + f.outputBytes + f.paramBytes;
  return bytes > 0 ? f.flops / bytes : 0;
}

/** Names of the features the regression tree may split on: the raw ones plus the derived intensities. */
export const SPLIT_FEATURE_NAMES = [...FEATURE_NAMES, 'flopsPerByte', 'flopsPerOutputByte'] as const;

/** The split-feature vector (raw features, FLOPs per byte, FLOPs per output byte). */
export function splitVector(f: LayerFeatures): number[] {
  return [...featureVector(f), flopsPerByte(f), f.outputBytes > 0 ? f.flops / f.outputBytes : 0];
}

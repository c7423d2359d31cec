// Static cost of each node: multiply-accumulates, FLOPs, parameters, and the bytes it reads and writes. Pure:
// computed from the op type, attributes and the shapes graph.ts already knows, so a model is costed without
// running it. These are the features the latency predictors regress on (paper section II-A: Neurosurgeon uses
// FLOPs and input/output sizes per layer type; FastDeepIoT adds memory and parameters).
//
// Conventions: FLOPs = 2 x MACs for Conv/Gemm/MatMul (one multiply and one add), plus one per output for a
// bias; element-wise ops cost one FLOP per output element (BatchNormalization two: scale and shift); pooling
// costs one per window element; data movement (Concat, Reshape, Transpose, ...) costs none. Parameters are
// initializer elements, except the running mean and variance of BatchNormalization, which are statistics, not
// learned weights (torchvision counts them as buffers, so published parameter counts exclude them); their bytes
// still count in `paramBytes`, since a device must hold them. Operator arguments stored as initializers (Clip
// bounds, Reshape shapes) are not parameters either (params.ts).

import type { AnalyzedNode, GraphAnalysis } from './graph.ts';
import { attrInt, attrInts, dtypeByteSize } from './onnx.ts';
import { isArgumentInput } from './params.ts';

/** Static cost of one node. */
export interface NodeCost {
  macs: number;
  flops: number;
  /** Learned parameters read by the node (initializer elements, statistics and operator arguments excluded). */
  params: number;
  /** Bytes of every initializer the node reads. */
  paramBytes: number;
  /** Bytes of the node's non-initializer inputs. */
  inputBytes: number;
  /** Bytes of the node's outputs. */
  outputBytes: number;
  /** Output shapes (-1 where unknown). */
  outputShapes: number[][];
}

const ELEMENTWISE = new Set([
  'Relu',
  'LeakyRelu',
  'PRelu',
  'Elu',
  'Selu',
  'Sigmoid',
  'HardSigmoid',
  'HardSwish',
  'Tanh',
  'Clip',
  'Add',
  'Sub',
  'Mul',
  'Div',
  'Sum',
  'Max',
  'Min',
  'Mean',
  'Pow',
  'Sqrt',
  'Exp',
  'Log',
  'Abs',
  'Neg',
  'Erf',
  'Gelu',
  'Mish',
  'Softplus',
  'Reciprocal',
  'Floor',
  'Ceil',
  'Round',
  'Sign',
  'Where',
  'Equal',
  'Greater',
  'Less',
  'Not',
  'And',
  'Or',
  'QuantizeLinear',
  'DequantizeLinear',
  'DynamicQuantizeLinear',
  'QLinearAdd',
  'QLinearMul',
  'QLinearLeakyRelu',
  'QLinearSigmoid',
  'Cast',
]);

const count = (shape: readonly number[] | null | undefined): number =>
  shape ? shape.reduce((a, d) => a * Math.max(d, 1), 1) : 0;

/** Computes the static cost of one node of an analysed graph. */
export function nodeCost(a: GraphAnalysis, node: AnalyzedNode): NodeCost {
  const shapeOf = (name: string) => a.tensors.get(name)?.shape ?? null;
  const bytesOf = (name: string) => {
    const t = a.tensors.get(name);
    return t?.shape ? dtypeByteSize(t.elemType, count(t.shape)) : 0;
  };
  let params = 0;
  let paramBytes = 0;
  let inputBytes = 0;
  node.inputs.forEach((name, i) => {
    if (!name) return;
    if (a.initializers.has(name)) {
      paramBytes += bytesOf(name);
      if (!isArgumentInput(node.op, node.domain, i)) params += count(shapeOf(name));
    } else {
      inputBytes += bytesOf(name);
    }
  });
  const outputShapes = node.outputs.map((o) => shapeOf(o) ?? []);
  const outputBytes = node.outputs.reduce((s, o) => s + bytesOf(o), 0);
  const out = count(outputShapes[0]);
  const inShape = shapeOf(node.inputs[0] ?? '');
  const { macs, flops } = computeCost(node, out, inShape, shapeOf);
  return { macs, flops, params, paramBytes, inputBytes, outputBytes, outputShapes };
}

function computeCost(
  node: AnalyzedNode,
  out: number,
  inShape: number[] | null,
  shapeOf: (name: string) => number[] | null,
): { macs: number; flops: number } {
  const p = node.proto;
  const hasBias = (i: number) => Boolean(node.inputs[i]);
  switch (node.op) {
    case 'Conv':
    case 'ConvInteger':
    case 'QLinearConv': {
      // Weight is input 1 (Conv, ConvInteger) or 3 (QLinearConv): [Cout, Cin/group, kH, kW, ...].
      const w = shapeOf(node.inputs[node.op === 'QLinearConv' ? 3 : 1] ?? '');
      const perOut = w ? count(w.slice(1)) : 0;
      const macs = out * perOut;
      const bias = node.op === 'Conv' && hasBias(2) ? out : node.op === 'QLinearConv' && hasBias(8) ? out : 0;
      return { macs, flops: 2 * macs + bias };
    }
    case 'ConvTranspose': {
      // Weight [Cin, Cout/group, kH, kW]: each input element feeds Cout/group x kH x kW outputs.
      const w = shapeOf(node.inputs[1] ?? '');
      const macs = count(inShape) * (w ? count(w.slice(1)) : 0);
      return { macs, flops: 2 * macs + (hasBias(2) ? out : 0) };
    }
    case 'Gemm': {
      const aShape = inShape ?? [];
      const transA = attrInt(p, 'transA', 0);
      const k = (transA ? aShape[0] : aShape[aShape.length - 1]) ?? 0;
      const macs = out * Math.max(k, 0);
      return { macs, flops: 2 * macs + (hasBias(2) ? out : 0) };
    }
    case 'MatMul':
    case 'MatMulInteger':
    case 'QLinearMatMul': {
      const aShape = inShape ?? [];
      const k = aShape[aShape.length - 1] ?? 0;
      const macs = out * Math.max(k, 0);
      return { macs, flops: 2 * macs };
    }
    case 'MaxPool':
    case 'AveragePool':
    case 'LpPool':
    case 'QLinearAveragePool': {
      const kernel = attrInts(p, 'kernel_shape', []);
      return { macs: 0, flops: out * count(kernel) };
    }
    case 'GlobalAveragePool':
    case 'GlobalMaxPool':
    case 'QLinearGlobalAveragePool':
    case 'ReduceMean':
    case 'ReduceSum':
    case 'ReduceMax':
      return { macs: 0, flops: count(inShape) };
    case 'BatchNormalization':
    case 'InstanceNormalization':
    case 'LayerNormalization':
      return { macs: 0, flops: 2 * out };
    case 'Softmax':
    case 'LogSoftmax':
      // exp, running sum, divide.
      return { macs: 0, flops: 3 * out };
    case 'LRN': {
      const size = attrInt(p, 'size', 1);
      return { macs: 0, flops: out * (2 * size + 3) };
    }
    default:
      return { macs: 0, flops: ELEMENTWISE.has(node.op) ? out : 0 };
  }
}

/** Whole-model MACs and FLOPs (parameters: see `countParams` in params.ts). */
export function modelCost(costs: readonly NodeCost[]): { macs: number; flops: number } {
  return { macs: costs.reduce((s, c) => s + c.macs, 0), flops: costs.reduce((s, c) => s + c.flops, 0) };
}

/**
 * The single-layer models of the layer sweep: a configuration (configs.ts) built as an ONNX model, with as many
 * copies of its layer side by side as keep a copy's weights out of the cache between its runs, and the layer's
 * features as cost.ts computes them for a zoo model's nodes.
 */
import { GraphBuilder, type Value } from '../../model/builder.ts';
import { avgPool, batchNorm, clip } from '../../model/builder-ops.ts';
import { nodeCost } from '../../model/cost.ts';
import { analyzeGraph } from '../../model/graph.ts';
import { DataType, floatAttr, intAttr, type OnnxModel } from '../../model/onnx.ts';
import type { LayerSample } from '../../planning/predict/features.ts';
import { lastLevelCacheBytes } from '../node-timing.ts';
import type { SweepConfig } from './configs.ts';

/**
 * Builds the model of a configuration: `copies` instances of the layer side by side (`layer0`, `layer1`, ...),
 * all reading the same graph inputs, each with its own weights and its own graph output (seeded weights).
 */
export function buildSweepModel(c: SweepConfig, copies = 1, seed = 1): OnnxModel {
  const b = new GraphBuilder({ name: c.id.replace(/[^A-Za-z0-9_]/g, '_'), seed });
  const x = b.input('x', c.shape);
  const extra: Value[] = [];
  if (c.op === 'Add') extra.push(b.input('x2', c.shape));
  if (c.op === 'Concat') {
    const s = c.shape[2]!;
    extra.push(...c.channels!.slice(1).map((ch, i) => b.input(`x${i + 2}`, [1, ch, s, s])));
  }
  for (let k = 0; k < copies; k++) b.output(layer(b, c, x, extra, `layer${k}`));
  return b.build();
}

function layer(b: GraphBuilder, c: SweepConfig, x: Value, extra: Value[], name: string): Value {
  switch (c.op) {
    case 'Conv':
      return b.conv(x, c.out!, { kernel: c.kernel!, stride: c.stride!, pad: c.pad!, group: c.group!, name });
    case 'Gemm':
      return b.gemm(x, c.out!, name);
    case 'MatMul': {
      const w = b.weight(`${name}.weight`, [c.shape[1]!, c.out!], b.uniform(c.shape[1]! * c.out!, 0.05));
      return b.node('MatMul', [x.name, w], [[1, c.out!]], [], name)[0]!;
    }
    case 'MaxPool':
      return b.pool(x, { kernel: c.kernel!, stride: c.stride!, pad: c.pad!, name });
    case 'AveragePool':
      return avgPool(b, x, {
        kernel: c.kernel!,
        stride: c.stride!,
        pad: c.pad!,
        countIncludePad: true,
        name,
      });
    case 'GlobalAveragePool':
      return b.gap(x, name);
    case 'BatchNormalization':
      return batchNorm(b, x, { name });
    case 'Relu':
      return b.relu(x, name);
    case 'Clip':
      return clip(b, x, 0, 6, name);
    case 'Add':
      return b.add(x, extra[0]!, name);
    case 'Concat':
      return b.concat([x, ...extra], 1, name);
    case 'Softmax':
      return b.softmax(x, name);
    case 'LRN':
      return b.node(
        'LRN',
        [x.name],
        [x.shape],
        [intAttr('size', 5), floatAttr('alpha', 1e-4), floatAttr('beta', 0.75), floatAttr('bias', 2)],
        name,
      )[0]!;
    case 'Reshape': {
      const n = c.shape.slice(1).reduce((a, v) => a * v, 1);
      const shape = b.constant(`${name}.shape`, DataType.INT64, [2], BigInt64Array.of(1n, BigInt(n)));
      return b.node('Reshape', [x.name, shape], [[1, n]], [], name)[0]!;
    }
    case 'Flatten':
      return b.flatten(x, name);
    case 'Dropout':
      return b.dropout(x, name);
  }
}

/** Rough bytes of one copy's weights (float32), to choose the number of copies. */
function roughParamBytes(c: SweepConfig): number {
  switch (c.op) {
    case 'Conv': {
      const [kh, kw] = c.kernel!;
      return 4 * (c.out! * (c.shape[1]! / c.group!) * kh * kw + c.out!);
    }
    case 'Gemm':
    case 'MatMul':
      return 4 * (c.shape[1]! * c.out! + c.out!);
    case 'BatchNormalization':
      return 16 * c.shape[1]!;
    default:
      // Clip's bounds are shared initializers, not weights.
      return 0;
  }
}

/** The most copies of a layer a sweep model has. */
export const MAX_COPIES = 8;

/**
 * Copies of a configuration's layer in its sweep model. A layer with weights gets enough copies (2 to MAX_COPIES)
 * that their weights together exceed 1.5x the last-level cache, so, as in a network, a copy's weights have left the
 * cache by the time it runs again; re-running one copy alone keeps its weights cached (a batch-1 Gemm with 5 MB of
 * weights ran at 68 GB/s alone, 16 GB/s inside MobileNetV2). A layer without weights runs alone (1 copy): identical
 * weightless nodes on the same input would be merged by onnxruntime's common-subexpression elimination anyway.
 */
export function sweepCopies(c: SweepConfig, cacheBytes = lastLevelCacheBytes()): number {
  const params = roughParamBytes(c);
  if (params === 0) return 1;
  return Math.max(2, Math.min(MAX_COPIES, Math.ceil((1.5 * cacheBytes) / params)));
}

/** Op and static features of a configuration's layer, computed by cost.ts exactly as for a zoo model's nodes. */
export function sweepFeatures(
  model: OnnxModel,
): Pick<LayerSample, 'op' | 'flops' | 'inputBytes' | 'outputBytes' | 'paramBytes'> {
  const a = analyzeGraph(model, model.graph.name);
  const node = a.nodes[0]!;
  const c = nodeCost(a, node);
  return {
    op: node.op,
    flops: c.flops,
    inputBytes: c.inputBytes,
    outputBytes: c.outputBytes,
    paramBytes: c.paramBytes,
  };
}

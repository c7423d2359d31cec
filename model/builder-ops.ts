// Extra layer types for GraphBuilder (builder.ts), as free functions over its public API so the
// builder itself stays small: BatchNormalization with seeded near-identity statistics, Clip
// (ReLU6) with shared min/max initializers, and AveragePool with count_include_pad (the
// PyTorch default that exported models carry). Used by the model zoo (zoo/).

import type { GraphBuilder, Value, WindowOptions } from './builder.ts';
import { floatToHalf } from './half.ts';
import { DataType, floatAttr } from './onnx.ts';

// A non-parameter float initializer stored in the element type of the activations.
function floatConstant(b: GraphBuilder, name: string, dtype: number, dims: number[], data: Float32Array) {
  if (dtype === DataType.FLOAT16) return b.constant(name, dtype, dims, Uint16Array.from(data, floatToHalf));
  return b.constant(name, DataType.FLOAT, dims, data);
}

/** Options of {@link batchNorm}. */
export interface BatchNormOptions {
  /** Node/output name; weights are `<name>.weight`, `.bias`, `.running_mean`, `.running_var`. */
  name?: string;
  /** epsilon attribute (PyTorch default 1e-5; Inception-v3 uses 1e-3). */
  eps?: number;
  /**
   * Expected variance (second moment) of the input: the running variance is drawn around it, so
   * the layer really normalises (trained BNs do). 1 (the default) suits a Kaiming conv after ReLU.
   */
  inputVar?: number;
  /** Relative spread of the seeded noise on all four vectors (default 0.1). */
  noise?: number;
}

/**
 * BatchNormalization over channels (axis 1): scale ~1, bias ~0, running mean ~0 and running
 * variance ~inputVar, each with seeded uniform noise. Scale and bias are parameters (counted in
 * `b.parameters`); the running statistics are buffers (added with `constant`, not counted).
 */
export function batchNorm(b: GraphBuilder, x: Value, o: BatchNormOptions = {}): Value {
  const c = x.shape[1]!;
  const name = o.name ?? b.fresh('bn');
  const noise = o.noise ?? 0.1;
  const v = o.inputVar ?? 1;
  const scale = b.uniform(c, noise);
  for (let i = 0; i < c; i++) scale[i]! += 1;
  const s = b.weight(`${name}.weight`, [c], scale);
  const bias = b.weight(`${name}.bias`, [c], b.uniform(c, noise));
  const mean = floatConstant(b, `${name}.running_mean`, x.dtype, [c], b.uniform(c, noise * Math.sqrt(v)));
  const variance = b.uniform(c, noise);
  for (let i = 0; i < c; i++) variance[i] = v * (1 + variance[i]!);
  const vr = floatConstant(b, `${name}.running_var`, x.dtype, [c], variance);
  const attrs = [floatAttr('epsilon', o.eps ?? 1e-5), floatAttr('momentum', 0.9)];
  return b.node('BatchNormalization', [x.name, s, bias, mean, vr], [x.shape], attrs, name)[0]!;
}

// One pair of min/max initializers per builder, element type and range, shared by all Clips.
const clipBounds = new WeakMap<GraphBuilder, Map<string, [string, string]>>();

/** Clip(x, min, max) with the bounds as (shared, non-parameter) initializers, as in opset >= 11. */
export function clip(b: GraphBuilder, x: Value, min: number, max: number, name?: string): Value {
  let byKey = clipBounds.get(b);
  if (!byKey) {
    byKey = new Map();
    clipBounds.set(b, byKey);
  }
  const key = `${x.dtype}:${min}:${max}`;
  let bounds = byKey.get(key);
  if (!bounds) {
    const base = b.fresh(`clip_${min}_${max}`);
    bounds = [
      floatConstant(b, `${base}.min`, x.dtype, [], Float32Array.of(min)),
      floatConstant(b, `${base}.max`, x.dtype, [], Float32Array.of(max)),
    ];
    byKey.set(key, bounds);
  }
  return b.node('Clip', [x.name, ...bounds], [x.shape], [], name)[0]!;
}

/** ReLU6 as exported by PyTorch: Clip(x, 0, 6). */
export function relu6(b: GraphBuilder, x: Value, name?: string): Value {
  return clip(b, x, 0, 6, name);
}

/** AveragePool; `countIncludePad` (PyTorch's default) divides by the full window at the borders. */
export function avgPool(
  b: GraphBuilder,
  x: Value,
  o: WindowOptions & { ceil?: boolean; countIncludePad?: boolean },
): Value {
  return b.pool(x, { ...o, average: true });
}

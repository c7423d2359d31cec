// A small in-code ONNX graph builder: appends nodes, tracks every tensor's shape (so the
// model ships complete value_info), and draws weights from a seeded PRNG so the same seed
// always gives a byte-identical file. Meant for the demo CNN and for rebuilding classic
// architectures (SqueezeNet, AlexNet, ...) with exact parameter counts without downloads.

import { floatToHalf } from './half.ts';
import type { AttributeProto, NodeProto, OnnxModel, TensorProto, ValueInfoProto } from './onnx.ts';
import { DataType, floatAttr, intAttr, intsAttr, makeTensor, writeModel } from './onnx.ts';
import { mulberry32 } from './random.ts';

/** A tensor in the graph being built, with its static shape. */
export interface Value {
  name: string;
  dtype: number;
  shape: number[];
}

/** Model-level settings of a {@link GraphBuilder}. */
export interface BuilderOptions {
  /** Graph name. */
  name: string;
  /** Default-domain opset version (default 13). */
  opset?: number;
  /** IR version (default 7, the one that goes with opset 13). */
  irVersion?: number;
  /** PRNG seed of the weights (default 1). */
  seed?: number;
  /** Element type of weights and activations: FLOAT (default) or FLOAT16. */
  dtype?: number;
}

/** Kernel/stride/padding given as one number (square) or [height, width]. */
export type Pair = number | [number, number];

/** Options of convolution and pooling layers. */
export interface WindowOptions {
  kernel: Pair;
  stride?: Pair;
  pad?: Pair;
  /** Output tensor (and node) name. */
  name?: string;
}

const pair = (p: Pair | undefined, def: number): [number, number] =>
  p === undefined ? [def, def] : typeof p === 'number' ? [p, p] : p;

/** Window output size per ONNX Conv/Pool: floor (or ceil) of (in + pads - kernel) / stride + 1. */
export function windowOut(
  size: number,
  kernel: number,
  stride: number,
  padTotal: number,
  ceil = false,
): number {
  const span = size + padTotal - kernel;
  let out = (ceil ? Math.ceil(span / stride) : Math.floor(span / stride)) + 1;
  // With ceil_mode the last window must start inside the input (or its left padding).
  if (ceil && (out - 1) * stride >= size + padTotal / 2) out--;
  return out;
}

/** Builds an ONNX model node by node; every op method returns the Value it produced. */
export class GraphBuilder {
  private readonly opts: Required<BuilderOptions>;
  private readonly rand: () => number;
  private readonly nodes: NodeProto[] = [];
  private readonly inits: TensorProto[] = [];
  private readonly inputs: ValueInfoProto[] = [];
  private readonly outputs: Value[] = [];
  private readonly values = new Map<string, Value>();
  private readonly meta: { key: string; value: string }[] = [];
  private readonly counters = new Map<string, number>();
  private readonly taken = new Set<string>();
  /** Number of weight elements created so far (the model's parameter count). */
  parameters = 0;

  constructor(opts: BuilderOptions) {
    this.opts = { opset: 13, irVersion: 7, seed: 1, dtype: DataType.FLOAT, ...opts };
    this.rand = mulberry32(this.opts.seed);
  }

  /** A fresh unique name: `base` itself the first time, then base_2, base_3, ... */
  fresh(base: string): string {
    for (;;) {
      const n = (this.counters.get(base) ?? 0) + 1;
      this.counters.set(base, n);
      const name = n === 1 ? base : `${base}_${n}`;
      if (!this.taken.has(name)) return name;
    }
  }

  // Every tensor name must be unique in ONNX (SSA); catching a clash here beats an ORT error.
  private claim(name: string): string {
    if (this.taken.has(name)) throw new Error(`tensor name ${name} is used twice in ${this.opts.name}`);
    this.taken.add(name);
    return name;
  }

  /** Declares a graph input. */
  input(name: string, shape: number[], dtype = this.opts.dtype): Value {
    const v = { name: this.claim(name), dtype, shape };
    this.values.set(name, v);
    this.inputs.push(valueInfo(v));
    return v;
  }

  /** Marks values as graph outputs (in call order). */
  output(...vs: Value[]): void {
    this.outputs.push(...vs);
  }

  /** Adds a metadata_props entry. */
  metadata(key: string, value: string): void {
    this.meta.push({ key, value });
  }

  /** Adds an initializer from float data, stored in the builder's dtype; counts it as parameters. */
  weight(name: string, dims: number[], data: Float32Array): string {
    this.claim(name);
    this.parameters += data.length;
    if (this.opts.dtype === DataType.FLOAT16) {
      const h = new Uint16Array(data.length);
      for (let i = 0; i < data.length; i++) h[i] = floatToHalf(data[i]!);
      this.inits.push(makeTensor(name, DataType.FLOAT16, dims, h));
    } else this.inits.push(makeTensor(name, DataType.FLOAT, dims, data));
    return name;
  }

  /** Adds a non-parameter initializer (shapes, axes, ratios) of any dtype. */
  constant(
    name: string,
    dtype: number,
    dims: number[],
    data: Float32Array | BigInt64Array | Uint16Array,
  ): string {
    this.inits.push(makeTensor(this.claim(name), dtype, dims, data));
    return name;
  }

  /** `count` values uniform in [-bound, bound) from the builder's PRNG. */
  uniform(count: number, bound: number): Float32Array {
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = (this.rand() * 2 - 1) * bound;
    return out;
  }

  /** Appends a node named like its first output; `shapes` are its output shapes (one per output). */
  node(
    op: string,
    inputs: string[],
    shapes: number[][],
    attrs: AttributeProto[] = [],
    name?: string,
    dtype = this.opts.dtype,
  ): Value[] {
    const nodeName = name ?? this.fresh(op.toLowerCase());
    const outs = shapes.map((shape, i) => {
      const v = { name: this.claim(i === 0 ? nodeName : `${nodeName}_${i}`), dtype, shape };
      this.values.set(v.name, v);
      return v;
    });
    this.nodes.push({
      name: nodeName,
      op_type: op,
      input: inputs,
      output: outs.map((o) => o.name),
      attribute: attrs,
    });
    return outs;
  }

  /** Conv with Kaiming-uniform weights (bound sqrt(6 / fan_in)) and PyTorch-style bias. */
  conv(x: Value, outChannels: number, o: WindowOptions & { group?: number; bias?: boolean }): Value {
    const [kh, kw] = pair(o.kernel, 1);
    const [sh, sw] = pair(o.stride, 1);
    const [ph, pw] = pair(o.pad, 0);
    const group = o.group ?? 1;
    const [n, c, h, w] = x.shape as [number, number, number, number];
    const name = o.name ?? this.fresh('conv');
    const fanIn = (c / group) * kh * kw;
    const wName = this.weight(
      `${name}.weight`,
      [outChannels, c / group, kh, kw],
      this.uniform(outChannels * fanIn, Math.sqrt(6 / fanIn)),
    );
    const inputs = [x.name, wName];
    if (o.bias !== false)
      inputs.push(
        this.weight(`${name}.bias`, [outChannels], this.uniform(outChannels, 1 / Math.sqrt(fanIn))),
      );
    const attrs = [
      intsAttr('kernel_shape', [kh, kw]),
      intsAttr('strides', [sh, sw]),
      intsAttr('pads', [ph, pw, ph, pw]),
    ];
    if (group !== 1) attrs.push(intAttr('group', group));
    const shape = [n, outChannels, windowOut(h, kh, sh, 2 * ph), windowOut(w, kw, sw, 2 * pw)];
    return this.node('Conv', inputs, [shape], attrs, name)[0]!;
  }

  /** Elementwise Relu. */
  relu(x: Value, name?: string): Value {
    return this.node('Relu', [x.name], [x.shape], [], name)[0]!;
  }

  /**
   * MaxPool (or AveragePool) over a window; `ceil` selects ceil_mode as in Caffe-era nets; `countIncludePad`
   * (AveragePool, PyTorch's default) divides by the full window at the borders.
   */
  pool(x: Value, o: WindowOptions & { ceil?: boolean; average?: boolean; countIncludePad?: boolean }): Value {
    const [kh, kw] = pair(o.kernel, 1);
    const [sh, sw] = pair(o.stride, 1);
    const [ph, pw] = pair(o.pad, 0);
    const [n, c, h, w] = x.shape as [number, number, number, number];
    const attrs = [
      intsAttr('kernel_shape', [kh, kw]),
      intsAttr('strides', [sh, sw]),
      intsAttr('pads', [ph, pw, ph, pw]),
    ];
    if (o.ceil) attrs.push(intAttr('ceil_mode', 1));
    if (o.average && o.countIncludePad) attrs.push(intAttr('count_include_pad', 1));
    const shape = [n, c, windowOut(h, kh, sh, 2 * ph, o.ceil), windowOut(w, kw, sw, 2 * pw, o.ceil)];
    return this.node(o.average ? 'AveragePool' : 'MaxPool', [x.name], [shape], attrs, o.name)[0]!;
  }

  /** MaxPool shorthand. */
  maxpool(x: Value, o: WindowOptions & { ceil?: boolean }): Value {
    return this.pool(x, o);
  }

  /** Concat along `axis` (channels by default). */
  concat(xs: Value[], axis = 1, name?: string): Value {
    const shape = [...xs[0]!.shape];
    shape[axis] = xs.reduce((s, v) => s + v.shape[axis]!, 0);
    return this.node(
      'Concat',
      xs.map((v) => v.name),
      [shape],
      [intAttr('axis', axis)],
      name,
    )[0]!;
  }

  /** GlobalAveragePool: [N, C, H, W] -> [N, C, 1, 1]. */
  gap(x: Value, name?: string): Value {
    return this.node('GlobalAveragePool', [x.name], [[x.shape[0]!, x.shape[1]!, 1, 1]], [], name)[0]!;
  }

  /** Flatten at axis 1: [N, ...] -> [N, prod(...)]. */
  flatten(x: Value, name?: string): Value {
    const rest = x.shape.slice(1).reduce((a, b) => a * b, 1);
    return this.node('Flatten', [x.name], [[x.shape[0]!, rest]], [intAttr('axis', 1)], name)[0]!;
  }

  /** Fully connected layer as Gemm(transB = 1) with PyTorch Linear initialisation. */
  gemm(x: Value, outFeatures: number, name = this.fresh('fc')): Value {
    const inF = x.shape[1]!;
    const bound = 1 / Math.sqrt(inF);
    const w = this.weight(
      `${name}.weight`,
      [outFeatures, inF],
      this.uniform(outFeatures * inF, Math.sqrt(6 / inF)),
    );
    const b = this.weight(`${name}.bias`, [outFeatures], this.uniform(outFeatures, bound));
    const attrs = [floatAttr('alpha', 1), floatAttr('beta', 1), intAttr('transB', 1)];
    return this.node('Gemm', [x.name, w, b], [[x.shape[0]!, outFeatures]], attrs, name)[0]!;
  }

  /** Softmax over the last axis. */
  softmax(x: Value, name?: string): Value {
    return this.node('Softmax', [x.name], [x.shape], [intAttr('axis', -1)], name)[0]!;
  }

  /** Dropout (identity at inference; kept so exported-style graphs keep their node list). */
  dropout(x: Value, name?: string): Value {
    return this.node('Dropout', [x.name], [x.shape], [], name)[0]!;
  }

  /** Elementwise Add of two same-shape values (residual connections). */
  add(a: Value, b: Value, name?: string): Value {
    return this.node('Add', [a.name, b.name], [a.shape], [], name)[0]!;
  }

  /** The model: value_info for every intermediate, outputs in the order given to output(). */
  build(): OnnxModel {
    if (this.outputs.length === 0) throw new Error(`graph ${this.opts.name} has no outputs`);
    const boundary = new Set([...this.inputs.map((v) => v.name), ...this.outputs.map((v) => v.name)]);
    const intermediates = this.nodes.flatMap((n) => n.output).filter((t) => !boundary.has(t));
    return {
      ir_version: this.opts.irVersion,
      opset_import: [{ domain: '', version: this.opts.opset }],
      producer_name: 'edgecut',
      producer_version: '0.1.0',
      metadata_props: [...this.meta],
      graph: {
        name: this.opts.name,
        node: [...this.nodes],
        initializer: [...this.inits],
        input: [...this.inputs],
        output: this.outputs.map(valueInfo),
        value_info: intermediates.map((t) => valueInfo(this.values.get(t)!)),
      },
    };
  }

  /** The encoded model (deterministic for a given seed and call sequence). */
  toBytes(): Uint8Array {
    return writeModel(this.build());
  }
}

/** A ValueInfoProto for a fully known tensor. */
export function valueInfo(v: Value): ValueInfoProto {
  return {
    name: v.name,
    type: { tensor_type: { elem_type: v.dtype, shape: { dim: v.shape.map((d) => ({ dim_value: d })) } } },
  };
}

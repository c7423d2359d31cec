// Quantized test graphs, in the two forms exporters write (onnxruntime's quantization tool names them):
// - QDQ: a float graph with QuantizeLinear/DequantizeLinear pairs around each op, int8 weights (per-channel scales,
//   `axis` 0) and int32 biases behind DequantizeLinear; onnxruntime fuses DQ -> op -> Q into QLinear* kernels.
// - QOperator: QLinearConv, uint8 MaxPool, com.microsoft QLinearAdd / QLinearConcat on uint8 tensors.

import type { AttributeProto, NodeProto, OnnxModel, TensorProto, ValueInfoProto } from '../../model/onnx.ts';
import { DataType, intAttr, intsAttr, makeTensor } from '../../model/onnx.ts';
import { mulberry32 } from '../../model/random.ts';
import { node, vi } from './graphs.ts';

const { FLOAT, UINT8, INT8, INT32 } = DataType;

class Net {
  nodes: NodeProto[] = [];
  inits: TensorProto[] = [];
  info: ValueInfoProto[] = [];
  private readonly rand: () => number;
  constructor(seed: number) {
    this.rand = mulberry32(seed);
  }
  add(
    op: string,
    inputs: string[],
    out: string,
    shape: number[],
    dtype: number,
    attrs: AttributeProto[] = [],
    domain = '',
  ) {
    const n = node(op, inputs, [out], attrs, out);
    if (domain) n.domain = domain;
    this.nodes.push(n);
    this.info.push(vi(out, shape, dtype));
    return out;
  }
  f32(name: string, dims: number[], values: number[]) {
    this.inits.push(makeTensor(name, FLOAT, dims, Float32Array.from(values)));
    return name;
  }
  u8(name: string, value: number) {
    this.inits.push(makeTensor(name, UINT8, [], Uint8Array.of(value)));
    return name;
  }
  i8(name: string, dims: number[], values: number[]) {
    this.inits.push(makeTensor(name, INT8, dims, Int8Array.from(values)));
    return name;
  }
  /** Seeded int8 weights in [-127, 127] and per-channel scales; returns [weights, scales] names. */
  weights(name: string, dims: number[]): [string, string, number[]] {
    const n = dims.reduce((a, b) => a * b, 1);
    this.i8(
      `${name}.q`,
      dims,
      Array.from({ length: n }, () => Math.round(this.rand() * 254) - 127),
    );
    const scales = Array.from({ length: dims[0]! }, () => Math.fround(0.002 + 0.006 * this.rand()));
    this.f32(`${name}.s`, [dims[0]!], scales);
    return [`${name}.q`, `${name}.s`, scales];
  }
  /** Seeded int32 bias for scale inScale * wScale[c] (as the quantization tool writes it), with that scale for DQ. */
  bias(name: string, inScale: number, wScales: number[], withScale = true): [string, string] {
    const q = wScales.map(() => Math.round((this.rand() - 0.5) * 2000));
    this.inits.push(makeTensor(`${name}.q`, INT32, [q.length], Int32Array.from(q)));
    if (withScale)
      this.f32(
        `${name}.s`,
        [q.length],
        wScales.map((s) => Math.fround(inScale * s)),
      );
    return [`${name}.q`, `${name}.s`];
  }
}

const window = (k: number, pad: number) => [
  intsAttr('kernel_shape', [k, k]),
  intsAttr('pads', [pad, pad, pad, pad]),
  intsAttr('strides', [1, 1]),
];

/** Options of {@link qdqCnn}. */
export interface QdqOptions {
  opset: 13 | 21;
  /** Element type of the quantized activations: all uint8, all int8, or uint8 then int8 (after the second conv). */
  acts: 'u8' | 's8' | 'mixed';
  /** Weight DequantizeLinear nodes first in the file (as some exporters write them), else right before their Conv. */
  weightsFirst?: boolean;
  /** Channels of the convs (default 8) and input height/width (default 8). */
  channels?: number;
  size?: number;
}

/**
 * QDQ CNN, input x [1,3,S,S] float, output y [1,C,S/2,S/2] float: Q/DQ(x) -> Conv 3x3 -> Relu -> Q/DQ -> MaxPool ->
 * Q/DQ -> Conv 3x3 -> Q/DQ -> Add (residual, with the pooled map) -> Q/DQ -> Conv 1x1 -> y.
 */
export function qdqCnn(o: QdqOptions): OnnxModel {
  const g = new Net(o.opset);
  const [c, hw] = [o.channels ?? 8, o.size ?? 8];
  const h = hw / 2;
  const axis0 = [intAttr('axis', 0)];
  const sx = 2 / 255;
  const s1 = Math.fround(6 / 255);
  // Activation quantization: [scale, zero point if uint8, zero point if int8, int8?].
  const act = (name: string, s: number, zu: number, zs: number, signed: boolean) => {
    g.f32(`${name}.s`, [], [s]);
    if (signed) g.i8(`${name}.z`, [], [zs]);
    else g.u8(`${name}.z`, zu);
    return signed ? INT8 : UINT8;
  };
  const tx = act('x', sx, 128, 0, o.acts === 's8');
  const t1 = act('a1', s1, 0, -128, o.acts === 's8');
  const t2 = act('a2', 0.05, 125, -3, o.acts !== 'u8');
  const t3 = act('a3', 0.06, 133, 5, o.acts !== 'u8');
  // Weight DQs (and int32 bias DQs) of the three convs.
  const wdq: NodeProto[][] = [];
  const convW = (name: string, dims: number[], inScale: number) => {
    const [q, s, scales] = g.weights(name, dims);
    g.i8(`${name}.z`, [dims[0]!], new Array(dims[0]).fill(0));
    const [bq, bs] = g.bias(`${name}.b`, inScale, scales);
    const before = g.nodes.length;
    g.add('DequantizeLinear', [q, s, `${name}.z`], `${name}.w`, dims, FLOAT, axis0);
    g.add('DequantizeLinear', [bq, bs], `${name}.bias`, [dims[0]!], FLOAT, axis0);
    wdq.push(g.nodes.splice(before));
  };
  convW('conv1', [c, 3, 3, 3], sx);
  convW('conv2', [c, c, 3, 3], s1);
  convW('conv3', [c, c, 1, 1], 0.06);
  const weightNodes = (i: number) => {
    if (!o.weightsFirst) g.nodes.push(...wdq[i]!);
  };
  if (o.weightsFirst) g.nodes.push(...wdq.flat());
  const qdq = (x: string, a: string, shape: number[], qtype: number) => {
    const q = g.add('QuantizeLinear', [x, `${a}.s`, `${a}.z`], `${x}.q`, shape, qtype);
    return g.add('DequantizeLinear', [q, `${a}.s`, `${a}.z`], `${x}.dq`, shape, FLOAT);
  };
  const xd = qdq('x', 'x', [1, 3, hw, hw], tx);
  weightNodes(0);
  const c1 = g.add('Conv', [xd, 'conv1.w', 'conv1.bias'], 'c1', [1, c, hw, hw], FLOAT, window(3, 1));
  const r1 = g.add('Relu', [c1], 'r1', [1, c, hw, hw], FLOAT);
  const r1d = qdq(r1, 'a1', [1, c, hw, hw], t1);
  const pool = [intsAttr('kernel_shape', [2, 2]), intsAttr('strides', [2, 2])];
  const p = g.add('MaxPool', [r1d], 'p', [1, c, h, h], FLOAT, pool);
  const pd = qdq(p, 'a1', [1, c, h, h], t1);
  weightNodes(1);
  const c2 = g.add('Conv', [pd, 'conv2.w', 'conv2.bias'], 'c2', [1, c, h, h], FLOAT, window(3, 1));
  const c2d = qdq(c2, 'a2', [1, c, h, h], t2);
  const sum = g.add('Add', [c2d, pd], 'sum', [1, c, h, h], FLOAT);
  const sumd = qdq(sum, 'a3', [1, c, h, h], t3);
  weightNodes(2);
  g.add('Conv', [sumd, 'conv3.w', 'conv3.bias'], 'y', [1, c, h, h], FLOAT, window(1, 0));
  const y = g.info.pop()!;
  return {
    ir_version: o.opset === 21 ? 10 : 7,
    opset_import: [{ domain: '', version: o.opset }],
    producer_name: 'edgecut-test',
    metadata_props: [],
    graph: {
      name: `qdq_opset${o.opset}_${o.acts}`,
      node: g.nodes,
      input: [vi('x', [1, 3, hw, hw])],
      output: [y],
      initializer: g.inits,
      value_info: g.info,
    },
  };
}

/**
 * QOperator CNN (opset 13 + com.microsoft 1), input xf [1,3,S,S] float, output y [1,2C,S/2,S/2] float: QuantizeLinear ->
 * QLinearConv 3x3 -> QLinearConv 3x3 -> MaxPool (uint8) -> QLinearConv 1x1 -> QLinearAdd (with the pooled map) ->
 * QLinearConcat (with the pooled map) -> DequantizeLinear. Activations uint8, weights int8 with per-channel scales,
 * biases int32.
 */
export function qopCnn(c = 8, hw = 8): OnnxModel {
  const g = new Net(7);
  const h = hw / 2;
  const scales: [string, number, number][] = [
    ['x', 2 / 255, 128],
    ['c1', 0.03, 10],
    ['c2', 0.04, 20],
    ['c3', 0.05, 100],
    ['a', 0.07, 30],
    ['cat', 0.08, 40],
  ];
  for (const [name, s, z] of scales) {
    g.f32(`${name}.s`, [], [Math.fround(s)]);
    g.u8(`${name}.z`, z);
  }
  const qconv = (x: string, out: string, cin: number, k: number, shape: number[]) => {
    const [w, ws, wScales] = g.weights(`${out}.w`, [c, cin, k, k]);
    g.i8(`${out}.w.z`, [c], new Array(c).fill(0));
    const inScale = scales.find((s) => s[0] === x)![1];
    const [b] = g.bias(`${out}.b`, Math.fround(inScale), wScales, false);
    const ins = [x, `${x}.s`, `${x}.z`, w, ws, `${out}.w.z`, `${out}.s`, `${out}.z`, b];
    return g.add('QLinearConv', ins, out, shape, UINT8, window(k, (k - 1) / 2));
  };
  g.add('QuantizeLinear', ['xf', 'x.s', 'x.z'], 'x', [1, 3, hw, hw], UINT8);
  qconv('x', 'c1', 3, 3, [1, c, hw, hw]);
  qconv('c1', 'c2', c, 3, [1, c, hw, hw]);
  const pool = [intsAttr('kernel_shape', [2, 2]), intsAttr('strides', [2, 2])];
  g.add('MaxPool', ['c2'], 'p', [1, c, h, h], UINT8, pool);
  // MaxPool keeps its input's quantization parameters.
  g.f32('p.s', [], [0.04]);
  g.u8('p.z', 20);
  scales.push(['p', 0.04, 20]);
  qconv('p', 'c3', c, 1, [1, c, h, h]);
  const ms = 'com.microsoft';
  g.add(
    'QLinearAdd',
    ['c3', 'c3.s', 'c3.z', 'p', 'p.s', 'p.z', 'a.s', 'a.z'],
    'a',
    [1, c, h, h],
    UINT8,
    [],
    ms,
  );
  const catIns = ['cat.s', 'cat.z', 'a', 'a.s', 'a.z', 'p', 'p.s', 'p.z'];
  g.add('QLinearConcat', catIns, 'cat', [1, 2 * c, h, h], UINT8, [intAttr('axis', 1)], ms);
  g.add('DequantizeLinear', ['cat', 'cat.s', 'cat.z'], 'y', [1, 2 * c, h, h], FLOAT);
  const y = g.info.pop()!;
  return {
    ir_version: 7,
    opset_import: [
      { domain: '', version: 13 },
      { domain: ms, version: 1 },
    ],
    producer_name: 'edgecut-test',
    metadata_props: [],
    graph: {
      name: 'qop',
      node: g.nodes,
      input: [vi('xf', [1, 3, hw, hw])],
      output: [y],
      initializer: g.inits,
      value_info: g.info,
    },
  };
}

// A small CNN-like DAG written for one ai.onnx opset (7..21), using each operator in the form that opset defines
// (checked against onnx/docs/Changelog.md and onnxruntime's docs/OperatorKernels.md):
// - BatchNormalization: `spatial` attribute only in versions 7 (opsets 7-8), gone from 9; `training_mode` from 14.
// - MaxPool: optional int64 Indices output from 8; `ceil_mode` and `dilations` from 10.
// - Concat: negative axis from 11.     - Gemm: C (bias) optional from 11.
// - Constant: `value` tensor; `value_floats` (a 1-D tensor) from 12.
// - Dropout: `ratio` attribute (and a mask output, float until 9, bool from 10) before 12; from 12 `ratio` and
//   `training_mode` are optional inputs. (Dropout-7 removed `is_test`; 7 is the first opset here.)
// - Reshape: shape input (since 5); `allowzero` from 14.   - Flatten: axis 1 throughout.
// - Clip: `min`/`max` attributes before 11, optional inputs from 11.
// - Unsqueeze/Squeeze: `axes` attribute before 13, an int64 input from 13.
// - Softmax: coerced-to-2D semantics before 13 (axis 2 of [1,1,10] = the last one), per-axis from 13; negative
//   axis from 11.
// Initializers shared across positions: the bias of both branch convs (positions 5 and 6) and, from opset 13, the
// `axes` tensor of Unsqueeze and Squeeze (positions 18 and 20).

import type { AttributeProto, NodeProto, OnnxModel, TensorProto, ValueInfoProto } from '../../model/onnx.ts';
import {
  DataType,
  floatAttr,
  floatsAttr,
  intAttr,
  intsAttr,
  makeTensor,
  tensorAttr,
} from '../../model/onnx.ts';
import { node, vi, weight } from './graphs.ts';

/** The ir_version that goes with each ai.onnx opset (onnx/docs/Versioning.md). */
export const IR_FOR_OPSET: Record<number, number> = {
  7: 3,
  8: 3,
  9: 4,
  10: 5,
  11: 6,
  12: 7,
  13: 7,
  14: 7,
  15: 8,
  16: 8,
  17: 8,
  18: 8,
  19: 9,
  20: 9,
  21: 10,
};

const i64 = (name: string, dims: number[], values: number[]) =>
  makeTensor(name, DataType.INT64, dims, BigInt64Array.from(values, BigInt));
const f32 = (name: string, dims: number[], values: number[]) =>
  makeTensor(name, DataType.FLOAT, dims, Float32Array.from(values));

/** The CNN for opset `v`: input x [1,3,8,8], output y [1,10]; 20 nodes. */
export function opsetCnn(v: number): OnnxModel {
  const nodes: NodeProto[] = [];
  const inits: TensorProto[] = [];
  const info: ValueInfoProto[] = [];
  const add = (op: string, inputs: string[], out: string, shape: number[], attrs: AttributeProto[] = []) => {
    nodes.push(node(op, inputs, [out], attrs, out));
    info.push(vi(out, shape));
    return out;
  };
  const conv = (x: string, name: string, cin: number, k: number, bias: string, seed: number) => {
    inits.push(weight(`${name}.w`, [4, cin, k, k], seed));
    const p = (k - 1) / 2;
    const attrs = [
      intsAttr('kernel_shape', [k, k]),
      intsAttr('pads', [p, p, p, p]),
      intsAttr('strides', [1, 1]),
    ];
    return add(
      'Conv',
      [x, `${name}.w`, bias],
      name,
      [1, 4, 8 / (name === 'c1' ? 1 : 2), 8 / (name === 'c1' ? 1 : 2)],
      attrs,
    );
  };

  inits.push(weight('c1.b', [4], 2), weight('c2.b', [4], 3));
  const c1 = conv('x', 'c1', 3, 3, 'c1.b', 1);
  inits.push(f32('bn.s', [4], [1.5, 0.5, 1, 2]), f32('bn.b', [4], [0.1, -0.2, 0.3, 0]));
  inits.push(f32('bn.mean', [4], [0.2, 0.1, 0, -0.1]), f32('bn.var', [4], [1, 0.5, 2, 0.25]));
  const bnAttrs = [floatAttr('epsilon', 1e-5)];
  if (v < 9) bnAttrs.push(intAttr('spatial', 1));
  if (v >= 14) bnAttrs.push(intAttr('training_mode', 0));
  const bn = add(
    'BatchNormalization',
    [c1, 'bn.s', 'bn.b', 'bn.mean', 'bn.var'],
    'bn',
    [1, 4, 8, 8],
    bnAttrs,
  );
  const r1 = add('Relu', [bn], 'r1', [1, 4, 8, 8]);

  const poolAttrs = [intsAttr('kernel_shape', [2, 2]), intsAttr('strides', [2, 2])];
  if (v >= 10) poolAttrs.push(intAttr('ceil_mode', 0), intsAttr('dilations', [1, 1]));
  nodes.push(node('MaxPool', [r1], v >= 8 ? ['mp', 'mp_idx'] : ['mp'], poolAttrs, 'mp'));
  info.push(vi('mp', [1, 4, 4, 4]));
  if (v >= 8) info.push(vi('mp_idx', [1, 4, 4, 4], DataType.INT64));

  // Branch: 1x1 conv and 3x3 conv + Relu, concatenated on channels; both convs share the bias c2.b.
  const c2a = conv('mp', 'c2a', 4, 1, 'c2.b', 4);
  const c2b = conv('mp', 'c2b', 4, 3, 'c2.b', 5);
  const r2 = add('Relu', [c2b], 'r2', [1, 4, 4, 4]);
  const cat = add('Concat', [c2a, r2], 'cat', [1, 8, 4, 4], [intAttr('axis', v >= 11 ? -3 : 1)]);

  // Constant + broadcasting Add: per-channel [8,1,1] before 12, per-column value_floats [4] from 12.
  const k =
    v >= 12
      ? add('Constant', [], 'k', [4], [floatsAttr('value_floats', [0.25, -0.5, 0.75, -1])])
      : add(
          'Constant',
          [],
          'k',
          [8, 1, 1],
          [tensorAttr('value', f32('k.value', [8, 1, 1], [1, -1, 2, -2, 0.5, 0, 3, -3]))],
        );
  const sum = add('Add', [cat, k], 'sum', [1, 8, 4, 4]);

  let drop: string;
  if (v >= 12) {
    inits.push(f32('drop.ratio', [], [0.3]), makeTensor('drop.train', DataType.BOOL, [], Uint8Array.of(0)));
    drop = add('Dropout', [sum, 'drop.ratio', 'drop.train'], 'drop', [1, 8, 4, 4]);
  } else {
    nodes.push(node('Dropout', [sum], ['drop', 'drop_mask'], [floatAttr('ratio', 0.3)], 'drop'));
    info.push(
      vi('drop', [1, 8, 4, 4]),
      vi('drop_mask', [1, 8, 4, 4], v >= 10 ? DataType.BOOL : DataType.FLOAT),
    );
    drop = 'drop';
  }

  inits.push(i64('shape', [2], [1, -1]));
  const flat = add('Reshape', [drop, 'shape'], 'flat', [1, 128], v >= 14 ? [intAttr('allowzero', 0)] : []);
  // Flatten of the pooled map: mp stays alive from position 4 to 13, so many cuts carry two tensors.
  const flat2 = add('Flatten', ['mp'], 'flat2', [1, 64], [intAttr('axis', 1)]);
  inits.push(weight('fc1.w', [10, 128], 6), weight('fc1.b', [10], 7), weight('fc2.w', [10, 64], 8));
  const fc1 = add('Gemm', [flat, 'fc1.w', 'fc1.b'], 'fc1', [1, 10], [intAttr('transB', 1)]);
  const fc2Inputs = v >= 11 ? [flat2, 'fc2.w'] : [flat2, 'fc2.w', 'fc2.b'];
  if (v < 11) inits.push(weight('fc2.b', [10], 9));
  const fc2 = add('Gemm', fc2Inputs, 'fc2', [1, 10], [intAttr('transB', 1), floatAttr('alpha', 0.5)]);
  const logits = add('Add', [fc1, fc2], 'logits', [1, 10]);

  let clip: string;
  if (v >= 11) {
    inits.push(f32('clip.min', [], [-2]), f32('clip.max', [], [2]));
    clip = add('Clip', [logits, 'clip.min', 'clip.max'], 'clip', [1, 10]);
  } else clip = add('Clip', [logits], 'clip', [1, 10], [floatAttr('min', -2), floatAttr('max', 2)]);

  if (v >= 13) inits.push(i64('axes', [1], [1]));
  const axes = (n: string, ins: string[], shape: number[]) =>
    v >= 13
      ? add(n, [...ins, 'axes'], n.toLowerCase(), shape)
      : add(n, ins, n.toLowerCase(), shape, [intsAttr('axes', [1])]);
  const un = axes('Unsqueeze', [clip], [1, 1, 10]);
  const soft = add('Softmax', [un], 'soft', [1, 1, 10], [intAttr('axis', v >= 11 ? -1 : 2)]);
  axes('Squeeze', [soft], [1, 10]);

  const output = info.pop()!;
  const input = [vi('x', [1, 3, 8, 8])];
  // IR 3 (opsets 7-8) requires every initializer to be a graph input as well.
  if (IR_FOR_OPSET[v]! < 4)
    for (const t of inits)
      input.push({
        name: t.name!,
        type: {
          tensor_type: {
            elem_type: t.data_type!,
            shape: { dim: t.dims.map((d) => ({ dim_value: Number(d) })) },
          },
        },
      });
  return {
    ir_version: IR_FOR_OPSET[v]!,
    opset_import: [{ domain: '', version: v }],
    producer_name: 'edgecut-test',
    metadata_props: [],
    graph: {
      name: `cnn_opset${v}`,
      node: nodes,
      input,
      output: [output],
      initializer: inits,
      value_info: info,
    },
  };
}

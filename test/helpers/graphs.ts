// Hand-built test graphs whose crossing sets are known by hand.

import { valueInfo } from '../../model/builder.ts';
import type { AttributeProto, NodeProto, OnnxModel, TensorProto, ValueInfoProto } from '../../model/onnx.ts';
import { DataType, graphAttr, makeTensor, tensorAttr } from '../../model/onnx.ts';
import { seededUniform } from '../../model/random.ts';

/** A float32 ValueInfoProto. */
export function vi(name: string, shape: number[], dtype: number = DataType.FLOAT): ValueInfoProto {
  return valueInfo({ name, dtype, shape });
}

/** A node with the given outputs; name defaults to '' (exercising generated names). */
export function node(
  op: string,
  input: string[],
  output: string[],
  attribute: AttributeProto[] = [],
  name = '',
): NodeProto {
  return { name, op_type: op, input, output, attribute };
}

/** A model around a graph (opset 13, IR 7 unless given). */
export function model(
  graph: {
    node: NodeProto[];
    input: ValueInfoProto[];
    output: ValueInfoProto[];
    initializer?: TensorProto[];
    value_info?: ValueInfoProto[];
  },
  opts: { ir?: number; opset?: number } = {},
): OnnxModel {
  return {
    ir_version: opts.ir ?? 7,
    opset_import: [{ domain: '', version: opts.opset ?? 13 }],
    producer_name: 'edgecut-test',
    metadata_props: [{ key: 'k', value: 'v' }],
    graph: {
      name: 'test',
      node: graph.node,
      input: graph.input,
      output: graph.output,
      initializer: graph.initializer ?? [],
      value_info: graph.value_info ?? [],
    },
  };
}

/** A seeded float32 initializer. */
export function weight(name: string, dims: number[], seed: number): TensorProto {
  const n = dims.reduce((a, b) => a * b, 1);
  return makeTensor(name, DataType.FLOAT, dims, seededUniform(n, seed, -1, 1));
}

// Positions: 1 a = MatMul(x, W)   2 b = Relu(a)   3 c = Sigmoid(b)  (c is a graph output, also read by 4)
//            4 d = Add(b, c)      5 e = MatMul(d, W)  (W shared by 1 and 5)   6 f = Add(e, y)  (y read late)
/** The DAG of the crossing-set tests: a late graph input, an output read inside, a shared initializer. */
export function crossingDag(): OnnxModel {
  return model({
    node: [
      node('MatMul', ['x', 'W'], ['a'], [], 'mm1'),
      node('Relu', ['a'], ['b'], [], 'relu'),
      node('Sigmoid', ['b'], ['c'], [], 'sig'),
      node('Add', ['b', 'c'], ['d'], [], 'add1'),
      node('MatMul', ['d', 'W'], ['e'], [], 'mm2'),
      node('Add', ['e', 'y'], ['f'], [], 'add2'),
    ],
    input: [vi('x', [1, 4]), vi('y', [1, 4])],
    output: [vi('c', [1, 4]), vi('f', [1, 4])],
    initializer: [weight('W', [4, 4], 3)],
    value_info: ['a', 'b', 'd', 'e'].map((n) => vi(n, [1, 4])),
  });
}

/** Hand-computed crossing sets of {@link crossingDag}, k = 0..6, in the toolkit's order. */
export const CROSSING_DAG_CUTS = [
  ['x', 'y'],
  ['y', 'a'],
  ['y', 'b'],
  ['y', 'b', 'c'],
  ['y', 'c', 'd'],
  ['y', 'c', 'e'],
  ['c', 'f'],
];

// Positions: 1 k = Constant   2 h = Mul(x, k)   3 dr = Dropout(h, ratio)   4 cl = Clip(dr, '', max)   5 out = Relu(cl)
/** Dropout (with a ratio input), a Constant node, and Clip with an omitted optional input (''). */
export function dropoutConstantGraph(): OnnxModel {
  const k = makeTensor('k_value', DataType.FLOAT, [1, 3], Float32Array.from([0.5, -2, 3]));
  return model({
    node: [
      node('Constant', [], ['k'], [tensorAttr('value', k)], 'const'),
      node('Mul', ['x', 'k'], ['h'], [], 'mul'),
      node('Dropout', ['h', 'ratio'], ['dr'], [], 'dropout'),
      node('Clip', ['dr', '', 'max'], ['cl'], [], 'clip'),
      node('Relu', ['cl'], ['out'], [], 'relu'),
    ],
    input: [vi('x', [2, 3])],
    output: [vi('out', [2, 3])],
    initializer: [
      makeTensor('ratio', DataType.FLOAT, [], Float32Array.from([0.5])),
      makeTensor('max', DataType.FLOAT, [], Float32Array.from([1.5])),
    ],
    value_info: [vi('k', [1, 3]), vi('h', [2, 3]), vi('dr', [2, 3]), vi('cl', [2, 3])],
  });
}

/** An IR 3 / opset 8 model that lists its initializers among the graph inputs, as old exporters did. */
export function ir3Model(): OnnxModel {
  const W1 = weight('W1', [4, 4], 5);
  const B = weight('B', [1, 4], 6);
  return model(
    {
      node: [
        node('MatMul', ['x', 'W1'], ['a'], [], 'mm'),
        node('Add', ['a', 'B'], ['b'], [], 'add'),
        node('Relu', ['b'], ['c'], [], 'relu'),
        node('Add', ['c', 'B'], ['out'], [], 'add_again'),
      ],
      input: [vi('x', [1, 4]), vi('W1', [4, 4]), vi('B', [1, 4])],
      output: [vi('out', [1, 4])],
      initializer: [W1, B],
    },
    { ir: 3, opset: 8 },
  );
}

// Positions: 1 a = Relu(x)   2 cond = Constant(true)   3 y = If(cond) { Neg(a) } else { Abs(a) }
/** An If node whose branches read the outer-scope tensor `a` (an implicit input). */
export function ifGraph(): OnnxModel {
  const branch = (op: string) => ({
    name: op,
    node: [node(op, ['a'], [`${op}_out`])],
    input: [],
    output: [vi(`${op}_out`, [1, 3])],
    initializer: [],
    value_info: [],
  });
  const cond = makeTensor('cond_value', DataType.BOOL, [], Uint8Array.from([1]));
  return model({
    node: [
      node('Relu', ['x'], ['a'], [], 'relu'),
      node('Constant', [], ['cond'], [tensorAttr('value', cond)], 'cond'),
      node(
        'If',
        ['cond'],
        ['y'],
        [graphAttr('then_branch', branch('Neg')), graphAttr('else_branch', branch('Abs'))],
        'if',
      ),
    ],
    input: [vi('x', [1, 3])],
    output: [vi('y', [1, 3])],
    value_info: [vi('a', [1, 3]), vi('cond', [], DataType.BOOL)],
  });
}

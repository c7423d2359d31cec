import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import * as ort from 'onnxruntime-node';
import { enumerateCuts } from '../model/cuts.ts';
import { buildDemoCnn, DEMO_PREPROCESS } from '../model/demo-cnn.ts';
import { analyzeGraph, topologicalOrder, typeInfo } from '../model/graph.ts';
import {
  attrInts,
  DataType,
  ModelError,
  modelId,
  type OnnxModel,
  readModel,
  readModelFile,
  tensorFloats,
  writeModel,
} from '../model/onnx.ts';
import { mulberry32, seededUniform } from '../model/random.ts';
import { inferShapes } from '../model/shapes.ts';
import { CROSSING_DAG_CUTS, crossingDag, model, node, vi } from './helpers/graphs.ts';
import { session } from './helpers/onnx-run.ts';

function shuffled<T>(xs: T[], seed: number): T[] {
  const rand = mulberry32(seed);
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

test('crossing sets of the hand-built DAG match the hand-computed ones', (t) => {
  const a = analyzeGraph(crossingDag());
  const cuts = enumerateCuts(a);
  t.deepEqual(
    cuts.map((c) => c.tensors.map((x) => x.name)),
    CROSSING_DAG_CUTS,
  );
  t.deepEqual(
    cuts.map((c) => c.after),
    [null, 'mm1', 'relu', 'sig', 'add1', 'mm2', 'add2'],
  );
  t.deepEqual(
    cuts.map((c) => c.index),
    [0, 1, 2, 3, 4, 5, 6],
  );
  for (const c of cuts) {
    t.is(c.bytes, c.tensors.length * 16); // float32 [1, 4]
    t.is(c.singleTensor, c.tensors.length === 1);
    for (const x of c.tensors)
      t.deepEqual([x.dtype, x.elemType, x.shape], ['float32', DataType.FLOAT, [1, 4]]);
  }
  t.false(
    cuts.some((c) => c.tensors.some((x) => x.name === 'W')),
    'initializers never cross',
  );
});

test('cut 0 is the graph inputs and cut N the graph outputs (demo CNN)', (t) => {
  const a = analyzeGraph(readModel(buildDemoCnn(), 'demo'));
  const cuts = enumerateCuts(a);
  t.is(cuts.length, a.nodes.length + 1);
  t.deepEqual(cuts[0]!.tensors, [
    { name: 'input', dtype: 'float32', elemType: 1, shape: [1, 3, 64, 64], bytes: 49152 },
  ]);
  t.deepEqual(cuts.at(-1)!.tensors, [
    { name: 'probs', dtype: 'float32', elemType: 1, shape: [1, 10], bytes: 40 },
  ]);
  t.true(
    cuts.some((c) => c.tensors.length > 1),
    'the fire modules give multi-tensor cuts',
  );
  t.is(cuts.at(-1)!.after, 'probs');
});

test('topological order: sorted graphs keep their order, shuffled ones are re-sorted', (t) => {
  const demo = readModel(buildDemoCnn(), 'demo');
  t.deepEqual(topologicalOrder(demo.graph), [...demo.graph.node.keys()]);
  const dag = crossingDag();
  for (let seed = 1; seed <= 5; seed++) {
    const m: OnnxModel = { ...dag, graph: { ...dag.graph, node: shuffled(dag.graph.node, seed) } };
    t.deepEqual(
      analyzeGraph(m).nodes.map((n) => n.name),
      ['mm1', 'relu', 'sig', 'add1', 'mm2', 'add2'],
    );
    // The demo CNN has independent branches; any valid order must respect every edge.
    const d: OnnxModel = { ...demo, graph: { ...demo.graph, node: shuffled(demo.graph.node, seed) } };
    const a = analyzeGraph(d);
    const seen = new Set(['input', ...demo.graph.initializer.map((i) => i.name!)]);
    for (const n of a.nodes) {
      for (const i of n.inputs) t.true(seen.has(i), `${n.name} reads ${i} after it is produced`);
      for (const o of n.outputs) seen.add(o);
    }
    t.deepEqual(
      enumerateCuts(a)
        .at(-1)!
        .tensors.map((x) => x.name),
      ['probs'],
    );
  }
  // Ties go to the node that comes first in the file.
  const ties = model({
    node: [
      node('Neg', ['x'], ['b'], [], 'B'),
      node('Abs', ['x'], ['a'], [], 'A'),
      node('Add', ['a', 'b'], ['y']),
    ],
    input: [vi('x', [2])],
    output: [vi('y', [2])],
  });
  t.deepEqual(
    analyzeGraph(ties).nodes.map((n) => n.name),
    ['B', 'A', 'Add_3'],
  );
});

test('cycles and undefined tensors are ModelErrors naming the source', (t) => {
  const cyc = model({
    node: [node('Relu', ['b'], ['a']), node('Relu', ['a'], ['b'])],
    input: [vi('x', [1])],
    output: [vi('b', [1])],
  });
  t.throws(() => analyzeGraph(cyc, 'cyc.onnx'), {
    instanceOf: ModelError,
    message: /^cyc\.onnx: graph has a cycle/,
  });
  const undef = model({
    node: [node('Relu', ['nope'], ['y'])],
    input: [vi('x', [1])],
    output: [vi('y', [1])],
  });
  t.throws(() => analyzeGraph(undef, 'u.onnx'), { instanceOf: ModelError, message: /u\.onnx: .*nope/ });
});

test('empty node names get unique <op>_<index> names; duplicates are made unique', (t) => {
  const m = model({
    node: [
      node('Relu', ['x'], ['a']),
      node('Relu', ['a'], ['b'], [], 'Relu_1'),
      node('Neg', ['b'], ['c'], [], 'dup'),
      node('Neg', ['c'], ['d'], [], 'dup'),
    ],
    input: [vi('x', [1])],
    output: [vi('d', [1])],
  });
  t.deepEqual(
    analyzeGraph(m).nodes.map((n) => [n.index, n.name, n.op]),
    [
      [1, 'Relu_1_2', 'Relu'],
      [2, 'Relu_1', 'Relu'],
      [3, 'dup', 'Neg'],
      [4, 'Neg_4', 'Neg'],
    ],
  );
});

test('readModel rejects random, truncated and empty bytes with a one-line ModelError', async (t) => {
  const good = buildDemoCnn();
  const rand = mulberry32(99);
  const random = Uint8Array.from({ length: 4096 }, () => Math.floor(rand() * 256));
  const cases: [string, Uint8Array][] = [
    ['random.onnx', random],
    ['truncated.onnx', good.subarray(0, Math.floor(good.length / 2))],
    ['short.onnx', good.subarray(0, 40)],
    ['empty.onnx', new Uint8Array(0)],
    ['text.onnx', Buffer.from('this is not a model\n')],
    [
      'nograph.onnx',
      writeModel({ ir_version: 7, opset_import: [{ domain: '', version: 13 }], metadata_props: [] }),
    ],
  ];
  for (const [source, bytes] of cases) {
    const err = t.throws(() => readModel(bytes, source), { instanceOf: ModelError });
    t.true(err?.message.startsWith(`${source}: `), err?.message);
    t.false(err?.message.includes('\n'));
    t.is(err?.source, source);
  }
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-model-'));
  await t.throwsAsync(readModelFile(join(dir, 'missing.onnx')), {
    instanceOf: ModelError,
    message: /missing\.onnx/,
  });
  await writeFile(join(dir, 'demo.onnx'), good);
  t.is((await readModelFile(join(dir, 'demo.onnx'))).graph.name, 'edgecut_demo_cnn');
});

test('codec: round trip is byte-identical, raw_data is zero-copy, int64 extremes survive', (t) => {
  const bytes = buildDemoCnn();
  const m = readModel(bytes, 'demo');
  t.deepEqual(Buffer.from(writeModel(m)), Buffer.from(bytes));
  for (const init of m.graph.initializer) t.is(init.raw_data!.buffer, bytes.buffer, `${init.name} is a view`);
  t.deepEqual(attrInts(m.graph.node[0]!, 'pads', []), [1, 1, 1, 1]);
  const w = m.graph.initializer.find((i) => i.name === 'conv1.weight')!;
  t.deepEqual(w.dims, [16, 3, 3, 3]);
  t.is(tensorFloats(w).length, 16 * 27);
  t.true(
    tensorFloats(w).every((v) => Math.abs(v) <= Math.sqrt(6 / 27)),
    'Kaiming-uniform bound',
  );
  t.regex(modelId(bytes), /^[0-9a-f]{64}$/);

  const big = model({
    node: [node('Relu', ['x'], ['y'])],
    input: [vi('x', [1])],
    output: [vi('y', [1])],
    initializer: [
      { name: 'i', dims: [3], data_type: DataType.INT64, int64_data: [2n ** 63n - 1n, -(2n ** 63n), 7] },
    ],
  });
  const back = readModel(writeModel(big), 'big');
  t.deepEqual(back.graph.initializer[0]!.int64_data, [2n ** 63n - 1n, -(2n ** 63n), 7]);
});

test('demo CNN: deterministic, complete value_info, preprocessing metadata', async (t) => {
  const a = buildDemoCnn(1);
  t.deepEqual(Buffer.from(buildDemoCnn(1)), Buffer.from(a));
  t.not(modelId(buildDemoCnn(2)), modelId(a));
  const m = readModel(a, 'demo');
  t.deepEqual(m.opset_import, [{ domain: '', version: 13 }]);
  t.deepEqual(
    m.graph.input.map((v) => v.name),
    ['input'],
  );
  t.deepEqual(
    m.graph.output.map((v) => v.name),
    ['probs'],
  );
  t.true(m.graph.node.some((n) => n.op_type === 'Concat'));
  const meta = Object.fromEntries(m.metadata_props.map((p) => [p.key, p.value]));
  t.deepEqual(JSON.parse(meta['edgecut.preprocess']!), JSON.parse(JSON.stringify(DEMO_PREPROCESS)));
  const intermediates = m.graph.node.flatMap((n) => n.output).filter((o) => o !== 'probs');
  t.deepEqual(
    m.graph.value_info.map((v) => v.name),
    intermediates,
  );
  // The builder's shape arithmetic agrees with onnxruntime's.
  const stripped: OnnxModel = { ...m, graph: { ...m.graph, value_info: [] } };
  const inferred = await inferShapes(stripped);
  const types = (g: OnnxModel) => g.graph.value_info.map((v) => [v.name, typeInfo(v.type)]);
  t.deepEqual(types(inferred), types(m));
  t.is(await inferShapes(m), m, 'nothing to infer: same object back');
});

test('demo CNN runs well under 50 ms per frame on one CPU thread', async (t) => {
  const s = await session(buildDemoCnn());
  const input = new ort.Tensor('float32', seededUniform(3 * 64 * 64, 1), [1, 3, 64, 64]);
  await s.run({ input });
  const times: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t0 = performance.now();
    await s.run({ input });
    times.push(performance.now() - t0);
  }
  const median = times.sort((a, b) => a - b)[10]!;
  t.log(`median ${median.toFixed(2)} ms/frame`);
  t.true(median < 10, `median ${median} ms`);
  await s.release();
});

import test, { type ExecutionContext } from 'ava';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../model/builder.ts';
import { enumerateCuts } from '../model/cuts.ts';
import { buildDemoCnn } from '../model/demo-cnn.ts';
import { analyzeGraph } from '../model/graph.ts';
import { floatToHalf, halfToFloat } from '../model/half.ts';
import { DataType, type OnnxModel, readModel } from '../model/onnx.ts';
import { seededUniform } from '../model/random.ts';
import { inferShapes } from '../model/shapes.ts';
import { splitModel } from '../model/split.ts';
import { crossingDag, dropoutConstantGraph, ifGraph, ir3Model } from './helpers/graphs.ts';
import { bitIdentical, maxAbsDiff, type OptLevel, type Outputs, run, session } from './helpers/onnx-run.ts';

const demoInput = () => ({
  input: new ort.Tensor('float32', seededUniform(3 * 64 * 64, 42), [1, 3, 64, 64]),
});

// Splits at every k, runs head then tail (the tail sees only the head's outputs, as over the
// wire) and compares with the whole model. Returns whether every cut was bit-identical.
async function checkEveryCut(
  t: ExecutionContext,
  m: OnnxModel,
  feeds: Outputs,
  { level = 'all', tolerance = 1e-5 }: { level?: OptLevel; tolerance?: number } = {},
): Promise<boolean> {
  const whole = await run(await session(m, level), feeds);
  const a = analyzeGraph(m);
  let identical = true;
  for (let k = 0; k <= a.nodes.length; k++) {
    const { head, tail, cut } = splitModel(m, k, a);
    const [hs, ts] = await Promise.all([session(head, level), session(tail, level)]);
    const names = cut.tensors.map((c) => c.name);
    t.deepEqual(hs.outputNames, names, `head outputs of cut ${k}`);
    t.deepEqual([...ts.inputNames].sort(), [...names].sort(), `tail inputs of cut ${k}`);
    const mid = await run(hs, feeds);
    for (const c of cut.tensors) {
      const data = mid[c.name]!.data as ArrayBufferView;
      t.is(data.byteLength, c.bytes, `bytes of ${c.name} at cut ${k}`);
    }
    const out = await run(ts, mid);
    for (const name of a.outputs) {
      const diff = maxAbsDiff(out[name]!, whole[name]!);
      t.true(diff <= tolerance, `cut ${k} output ${name}: max abs diff ${diff}`);
      identical &&= bitIdentical(out[name]!, whole[name]!);
    }
    await Promise.all([hs.release(), ts.release()]);
  }
  return identical;
}

test('demo CNN: head + tail equals the whole model at every cut, bit for bit', async (t) => {
  const m = readModel(buildDemoCnn(), 'demo');
  // Full optimisation: within 1e-5 (onnxruntime's NCHWc layout pass may pick a different
  // accumulation order when a conv becomes the first node of a tail, ~1e-8 apart).
  await checkEveryCut(t, m, demoInput());
  // Up to 'extended' the kernels are the same, so single-threaded results are identical.
  t.true(await checkEveryCut(t, m, demoInput(), { level: 'extended' }), 'bit-identical at every cut');
});

test('hand-built DAG: late graph input, output read inside, shared initializer', async (t) => {
  const m = crossingDag();
  const feeds = {
    x: new ort.Tensor('float32', seededUniform(4, 1, -1, 1), [1, 4]),
    y: new ort.Tensor('float32', seededUniform(4, 2, -1, 1), [1, 4]),
  };
  t.true(await checkEveryCut(t, m, feeds));
  // W is read at positions 1 and 5, so cuts 1..4 need a copy on each side; it never crosses.
  for (let k = 0; k <= 6; k++) {
    const { head, tail, cut } = splitModel(m, k);
    t.is(
      head.graph.initializer.some((i) => i.name === 'W'),
      k >= 1,
    );
    t.is(
      tail.graph.initializer.some((i) => i.name === 'W'),
      k <= 4,
    );
    t.false(
      cut.tensors.some((c) => c.name === 'W'),
      `W crosses cut ${k}`,
    );
  }
  // Cut 3: y is forwarded by the head (it only uses x), c is both output and tail input.
  const { head, tail } = splitModel(m, 3);
  t.deepEqual(
    head.graph.input.map((v) => v.name),
    ['x', 'y'],
  );
  t.deepEqual(
    tail.graph.output.map((v) => v.name),
    ['c', 'f'],
  );
  t.deepEqual(
    tail.graph.node.map((n) => n.name),
    ['add1', 'mm2', 'add2'],
  );
});

test('model without value_info splits correctly after inferShapes', async (t) => {
  const m = readModel(buildDemoCnn(), 'demo');
  const stripped: OnnxModel = { ...m, graph: { ...m.graph, value_info: [] } };
  t.throws(() => splitModel(stripped, 5), { message: /unknown.*inferShapes/ });
  const filled = await inferShapes(stripped);
  t.is(filled.graph.value_info.length, m.graph.value_info.length);
  t.true(await checkEveryCut(t, filled, demoInput(), { level: 'extended' }));
});

test('Dropout, Constant and an omitted optional input survive every split', async (t) => {
  const m = dropoutConstantGraph();
  const feeds = { x: new ort.Tensor('float32', seededUniform(6, 9, -2, 2), [2, 3]) };
  t.true(await checkEveryCut(t, m, feeds));
  for (let k = 0; k <= 5; k++) {
    const { head, tail } = splitModel(m, k);
    const ops = [...head.graph.node, ...tail.graph.node].map((n) => n.op_type);
    t.deepEqual(ops, ['Constant', 'Mul', 'Dropout', 'Clip', 'Relu']);
    const clip = [...head.graph.node, ...tail.graph.node].find((n) => n.op_type === 'Clip')!;
    t.deepEqual(clip.input, ['dr', '', 'max']);
  }
  // Cut 1: the Constant's output is the (small) crossing tensor.
  t.deepEqual(
    splitModel(m, 1).cut.tensors.map((c) => [c.name, c.bytes]),
    [
      ['x', 24],
      ['k', 12],
    ],
  );
});

test('If node: outer-scope tensors read by its subgraphs cross the cut and reach the tail', async (t) => {
  const m = ifGraph();
  t.deepEqual(analyzeGraph(m).nodes[2]!.implicitInputs, ['a']);
  t.deepEqual(
    enumerateCuts(analyzeGraph(m)).map((c) => c.tensors.map((x) => x.name)),
    [['x'], ['a'], ['a', 'cond'], ['y']],
  );
  const feeds = { x: new ort.Tensor('float32', Float32Array.from([-1, 2, -3]), [1, 3]) };
  t.true(await checkEveryCut(t, m, feeds));
});

test('IR 3 model: initializers listed as inputs stay initializers and never cross', async (t) => {
  const m = await inferShapes(ir3Model());
  const feeds = { x: new ort.Tensor('float32', seededUniform(4, 4, -1, 1), [1, 4]) };
  t.true(await checkEveryCut(t, m, feeds));
  for (let k = 0; k <= 4; k++) {
    const { head, tail, cut } = splitModel(m, k);
    t.false(cut.tensors.some((c) => c.name === 'W1' || c.name === 'B'));
    for (const g of [head.graph, tail.graph]) {
      const inits = new Set(g.initializer.map((i) => i.name));
      // IR 3 requires every initializer to be declared as an input too.
      for (const name of inits)
        t.true(
          g.input.some((v) => v.name === name),
          `${name} declared as input`,
        );
      t.is(head.ir_version, 3);
    }
  }
  const { head, tail } = splitModel(m, 2);
  t.deepEqual(head.graph.initializer.map((i) => i.name).sort(), ['B', 'W1']);
  t.deepEqual(
    tail.graph.initializer.map((i) => i.name),
    ['B'],
  );
});

// Rewrites float16 weights to multiples of `step` (e.g. 0.5), keeping them float16.
function dyadicWeights(m: OnnxModel, step: (name: string) => number): void {
  for (const init of m.graph.initializer) {
    const raw = init.raw_data!;
    const bits = new Uint16Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
    const q = step(init.name!);
    const out = Uint16Array.from(bits, (h) => floatToHalf(Math.round(halfToFloat(h) / q) * q));
    init.raw_data = Buffer.from(out.buffer);
  }
}

test('float16 Conv graph (no Cast nodes) splits bit-exactly', async (t) => {
  // onnxruntime's CPU EP has no float16 Conv: it runs the whole float16 graph in float32 and
  // rounds only at the model's outputs, while a split rounds its crossing tensors to float16
  // (their declared type). With dyadic weights and inputs every intermediate is exact in
  // float16, so any difference left would be the splitter's fault, not rounding.
  const b = new GraphBuilder({ name: 'fp16', dtype: DataType.FLOAT16, seed: 5 });
  const x = b.input('x', [1, 2, 6, 6]);
  const c1 = b.conv(x, 2, { kernel: 3, pad: 1, name: 'c1' });
  const r1 = b.relu(b.concat([c1, x], 1, 'cat1'), 'r1');
  b.output(b.conv(b.concat([r1, x], 1, 'cat2'), 3, { kernel: 1, name: 'c2' }));
  const m = b.build();
  dyadicWeights(m, (name) => (name.startsWith('c1') ? 0.5 : 1));
  t.true(m.graph.initializer.every((i) => i.data_type === DataType.FLOAT16));
  t.false(m.graph.node.some((n) => n.op_type === 'Cast'));
  const input = Uint16Array.from(seededUniform(72, 8, -1, 1), (v) => floatToHalf(Math.round(v * 8) / 4));
  const feeds = { x: new ort.Tensor('float16', input, [1, 2, 6, 6]) };
  t.true(await checkEveryCut(t, m, feeds, { tolerance: 0 }), 'bit-identical at every cut');
  t.true(enumerateCuts(analyzeGraph(m)).every((c) => c.tensors.every((x) => x.dtype === 'float16')));
  const out = await run(await session(m), feeds);
  t.true(
    (out.c2!.data as Uint16Array).some((h) => h !== 0),
    'non-trivial output',
  );
});

test('float16 Conv -> Relu -> Conv with random weights: split matches within float16 rounding', async (t) => {
  // See above: the whole model skips the float16 rounding of the crossing tensor.
  const b = new GraphBuilder({ name: 'fp16chain', dtype: DataType.FLOAT16, seed: 5 });
  const x = b.input('x', [1, 2, 6, 6]);
  const y = b.relu(b.conv(x, 4, { kernel: 3, pad: 1, name: 'c1' }), 'r1');
  b.output(b.conv(y, 3, { kernel: 1, name: 'c2' }));
  const feeds = {
    x: new ort.Tensor('float16', Uint16Array.from(seededUniform(72, 8, -1, 1), floatToHalf), [1, 2, 6, 6]),
  };
  await checkEveryCut(t, b.build(), feeds, { tolerance: 2 ** -7 });
});

test('split shares weight bytes with the source model and keeps model metadata', (t) => {
  const bytes = buildDemoCnn();
  const m = readModel(bytes, 'demo');
  const { head, tail } = splitModel(m, 10);
  const src = new Map(m.graph.initializer.map((i) => [i.name, i.raw_data]));
  for (const i of [...head.graph.initializer, ...tail.graph.initializer]) t.is(i.raw_data, src.get(i.name));
  for (const part of [head, tail]) {
    t.deepEqual(part.metadata_props, m.metadata_props);
    t.deepEqual(part.opset_import, m.opset_import);
    t.is(part.ir_version, m.ir_version);
    t.is(part.producer_name, m.producer_name);
  }
  // value_info is pruned to each side's own intermediates.
  const headMade = new Set(head.graph.node.flatMap((n) => n.output));
  t.true(head.graph.value_info.every((v) => headMade.has(v.name!)));
  t.throws(() => splitModel(m, 25), { instanceOf: RangeError });
  t.throws(() => splitModel(m, -1), { instanceOf: RangeError });
});

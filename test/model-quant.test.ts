/**
 * Splits of int8-quantized models (test/helpers/quant-graphs.ts), at every cut, with the services' session settings
 * (createSession defaults): head then tail must give the whole model's output bit for bit, the tensors that cross
 * must stay 1-byte uint8/int8 tensors (in the analysis, in ModelHandle's cut list, in the head's outputs and on the
 * wire), and the tail must accept them as decoded from a Request.
 *
 * Findings (onnxruntime-node 1.30, CPU, x86-64; details in model/qdq.ts and runtime.ts):
 * - onnxruntime fuses DequantizeLinear -> Conv/Add/MaxPool -> QuantizeLinear into QLinearConv, QLinearAdd and NHWC
 *   MaxPool from level 'extended' on. Splitting at node positions alone (before qdq.ts's QDQ placement), a cut
 *   between a DQ and its consumer, or between an op (or its Relu) and the Q after it, left a float op unfused on one
 *   side: on the uint8 QDQ CNN below, 15 of its 23 cuts (1-10, 15-19) differed by one quantization step (0.14 in the
 *   output), at 'extended' and 'all'; float weights even crossed the wire (cuts 1-21). With the placement (each DQ
 *   runs next to its readers, each Q, with a Relu/Clip before it, next to its producer) only 1-byte tensors cross,
 *   and every cut of the three QDQ CNNs is bit-identical at 'all', 'extended', 'basic', 'disabled', with NCHWc and
 *   with 2 threads.
 * - int8 activations: on x86 QDQS8ToU8Transformer rewrites int8 Q/DQ pairs to uint8, which it cannot do for a pair
 *   split by a cut; the int8-activation CNN then differs at cuts 7-12 (the premise test below), the mixed one at
 *   14-21. createSession disables that transformer by default, which makes every cut bit-identical again.
 * - The QOperator graph (QLinearConv, uint8 MaxPool, QLinearAdd, QLinearConcat) is bit-identical at every cut at
 *   every level, NHWC layout transformer included.
 */
import test, { type ExecutionContext } from 'ava';
import { enumerateCuts } from '../model/cuts.ts';
import { analyzeGraph } from '../model/graph.ts';
import { ModelHandle } from '../model/handle.ts';
import { type OnnxModel, writeModel } from '../model/onnx.ts';
import { seededUniform } from '../model/random.ts';
import { createSession, maxAbsDiff, type RuntimeOptions, runWire } from '../model/runtime.ts';
import { splitModel } from '../model/split.ts';
import {
  decodeMessage,
  emptyTimes,
  encodeRequest,
  tensorFromTyped,
  type WireTensor,
} from '../schemas/codec.ts';
import { type QdqOptions, qdqCnn, qopCnn } from './helpers/quant-graphs.ts';

const SIZE = 32;

async function run(model: Uint8Array, inputs: WireTensor[], opts?: RuntimeOptions): Promise<WireTensor[]> {
  const s = await createSession(model, opts);
  try {
    return await runWire(s, inputs);
  } finally {
    await s.release();
  }
}

const same = (a: WireTensor, b: WireTensor) =>
  a.dtype === b.dtype && a.shape.join() === b.shape.join() && Buffer.from(a.data).equals(Buffer.from(b.data));

const inputFor = (m: OnnxModel, size: number) => [
  tensorFromTyped(
    m.graph.input[0]!.name!,
    'float32',
    [1, 3, size, size],
    seededUniform(3 * size * size, 3, -1, 1),
  ),
];

/** Checks every cut; returns the dtypes that crossed inner cuts. */
async function everyCut(t: ExecutionContext, m: OnnxModel, size: number): Promise<Set<string>> {
  const a = analyzeGraph(m);
  const N = a.nodes.length;
  const x = inputFor(m, size);
  const [whole] = await run(writeModel(m), x);
  const h = await ModelHandle.fromBytes(writeModel(m), `${m.graph.name}.onnx`);
  const boundary = new Set([...a.inputs, ...a.outputs]);
  const crossed = new Set<string>();
  for (let k = 0; k <= N; k++) {
    const { head, tail, cut } = splitModel(m, k, a);
    t.is(cut.fusedAcross, undefined);
    for (const c of cut.tensors) {
      // Declared type, never widened; every intermediate that crosses is a 1-byte quantized tensor.
      t.is(c.elemType, a.tensors.get(c.name)!.elemType, `${c.name} at cut ${k}`);
      if (boundary.has(c.name)) continue;
      t.true(c.dtype === 'uint8' || c.dtype === 'int8', `cut ${k} carries ${c.name} as ${c.dtype}`);
      t.is(
        c.bytes,
        c.shape.reduce((p, d) => p * d, 1),
      );
      crossed.add(c.dtype);
    }
    // ModelHandle: same crossing list (dtype, bytes) and the same parts.
    const info = (c: { tensors: { name: string; dtype: string; bytes: number }[] }) =>
      c.tensors.map((x) => `${x.name} ${x.dtype} ${x.bytes}`);
    t.deepEqual(info(h.cuts[k]!), info(cut));
    t.true(Buffer.from(h.part(k, 'head')).equals(writeModel(head)), `head of cut ${k}`);
    t.true(Buffer.from(h.part(k, 'tail')).equals(writeModel(tail)), `tail of cut ${k}`);
    const mid = k === 0 ? x : await run(writeModel(head), x);
    t.deepEqual(
      mid.map((w) => [w.name, w.dtype, w.data.byteLength]),
      cut.tensors.map((c) => [c.name, c.dtype, c.bytes]),
    );
    // Over the wire: encode the head's outputs in a Request, decode, and run the tail on the decoded tensors.
    const bytes = encodeRequest({
      requestId: `r${k}`,
      deviceId: 'edge',
      modelId: h.id,
      cutId: k,
      tensors: mid,
      times: emptyTimes(),
      deadlineMs: 0,
    });
    const msg = decodeMessage(bytes);
    if (msg.kind !== 'request') throw new Error('not a request');
    const received = msg.value.tensors;
    t.deepEqual(
      received.map((w) => [w.name, w.dtype, w.shape, Buffer.from(w.data)]),
      mid.map((w) => [w.name, w.dtype, w.shape, Buffer.from(w.data)]),
    );
    const [out] = await run(writeModel(tail), received);
    t.true(same(out!, whole!), `cut ${k} (${cut.after}) differs by ${maxAbsDiff(out!, whole!)}`);
  }
  return crossed;
}

const qdqCases: [string, QdqOptions, string[]][] = [
  ['opset 13, uint8 activations, weight DQs first', { opset: 13, acts: 'u8', weightsFirst: true }, ['uint8']],
  ['opset 13, int8 activations, weight DQs first', { opset: 13, acts: 's8', weightsFirst: true }, ['int8']],
  ['opset 21, uint8 then int8 activations', { opset: 21, acts: 'mixed' }, ['int8', 'uint8']],
];
for (const [label, o, dtypes] of qdqCases)
  test(`QDQ CNN, ${label}: every cut bit-identical, only 1-byte tensors cross`, async (t) => {
    const m = qdqCnn({ ...o, channels: 32, size: SIZE });
    const crossed = await everyCut(t, m, SIZE);
    t.deepEqual([...crossed].sort(), dtypes);
  });

test('QDQ placement: quantized tensors cross instead of floats around Q and DQ nodes', (t) => {
  const m = qdqCnn({ opset: 13, acts: 'u8', weightsFirst: true });
  const a = analyzeGraph(m);
  const names = enumerateCuts(a).map((c) => c.tensors.map((x) => x.name).join(' '));
  // Positions 1-6 are the weight and bias DQs: nothing but the input crosses, weights stay with the Convs.
  t.deepEqual(names.slice(0, 8), ['x', 'x', 'x', 'x', 'x', 'x', 'x', 'x.q']);
  // 8 DQ(x) runs in the tail; 9 Conv, 10 Relu: the Relu and Q(r1) join the Conv in the head.
  t.deepEqual(names.slice(8, 13), ['x.q', 'r1.q', 'r1.q', 'r1.q', 'r1.q']);
  // p.dq is read by the Conv (16) and the Add (19): p.q crosses until the Add.
  t.deepEqual(names.slice(15, 22), ['p.q', 'p.q c2.q', 'p.q c2.q', 'p.q c2.q', 'sum.q', 'sum.q', 'sum.q']);
  const { head, tail } = splitModel(m, 9, a);
  t.deepEqual(
    head.graph.node.map((n) => n.name),
    ['conv1.w', 'conv1.bias', 'x.q', 'x.dq', 'c1', 'r1', 'r1.q'],
  );
  // The other weight DQs (positions 3-6) are read only by the tail: they run there, not in the head.
  t.deepEqual(
    tail.graph.node.slice(0, 5).map((n) => n.name),
    ['conv2.w', 'conv2.bias', 'conv3.w', 'conv3.bias', 'r1.dq'],
  );
});

test('premise: with onnxruntime rewriting int8 Q/DQ pairs to uint8 (s8ToU8), int8 cuts are not bit-identical', async (t) => {
  const m = qdqCnn({ opset: 13, acts: 's8', weightsFirst: true, channels: 32, size: SIZE });
  const a = analyzeGraph(m);
  const x = inputFor(m, SIZE);
  const opts = { s8ToU8: true };
  const [whole] = await run(writeModel(m), x, opts);
  const differing: number[] = [];
  for (let k = 0; k <= a.nodes.length; k++) {
    const { head, tail } = splitModel(m, k, a);
    const [out] = await run(writeModel(tail), k === 0 ? x : await run(writeModel(head), x, opts), opts);
    if (!same(out!, whole!)) differing.push(k);
  }
  t.log(`cuts differing with s8ToU8: ${differing.join(' ')}`);
  t.true(
    differing.length > 0,
    'if this fails, onnxruntime no longer breaks int8 cuts and s8ToU8 could be re-enabled',
  );
});

test('QOperator CNN (QLinearConv, uint8 MaxPool, QLinearAdd, QLinearConcat): every cut bit-identical', async (t) => {
  const m = qopCnn(16, 16);
  t.deepEqual(
    m.graph.node.map((n) => (n.domain ? `${n.domain}.${n.op_type}` : n.op_type)),
    [
      'QuantizeLinear',
      'QLinearConv',
      'QLinearConv',
      'MaxPool',
      'QLinearConv',
      'com.microsoft.QLinearAdd',
      'com.microsoft.QLinearConcat',
      'DequantizeLinear',
    ],
  );
  t.deepEqual([...(await everyCut(t, m, 16))], ['uint8']);
  for (const level of ['extended', 'basic', 'disabled'] as const) {
    const x = inputFor(m, 16);
    const [whole] = await run(writeModel(m), x, { optimization: level });
    for (let k = 1; k < m.graph.node.length; k++) {
      const { head, tail } = splitModel(m, k);
      const mid = await run(writeModel(head), x, { optimization: level });
      const [out] = await run(writeModel(tail), mid, { optimization: level });
      t.true(same(out!, whole!), `cut ${k} at ${level}`);
    }
  }
});

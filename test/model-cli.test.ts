/**
 * `edgecut model inspect|split` and `edgecut zoo list|build`, run as processes, and their one-line errors.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import * as ort from 'onnxruntime-node';
import { DataType, graphAttr, writeModel } from '../model/onnx.ts';
import { ZOO, ZOO_NAMES } from '../model/zoo/index.ts';
import { edgecut } from './helpers/cli.ts';
import { model, node, vi } from './helpers/graphs.ts';
import { demoModelDir } from './helpers/models.ts';

async function tempDir(t: { teardown(fn: () => Promise<void>): void }) {
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-cli-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

interface Inspection {
  name: string;
  params: number;
  flops: number;
  layers: Array<{ index: number; name: string; op: string; flops: number; params: number }>;
  cuts: Array<{
    index: number;
    after: string | null;
    bytes: number;
    tensors: string[];
    singleTensor: boolean;
  }>;
}

for (const name of ZOO_NAMES) {
  test(`inspect --json reports ${name}'s parameter count within 0.5% of the published one`, async (t) => {
    const r = await edgecut(['model', 'inspect', name, '--json']);
    t.is(r.code, 0, r.stderr);
    const data = JSON.parse(r.stdout) as Inspection;
    const published = ZOO[name].publishedParams;
    t.log(
      `${name}: ${data.params} parameters (published ${published}), ${(data.flops / 1e9).toFixed(2)} GFLOPs`,
    );
    t.true(Math.abs(data.params - published) / published <= 0.005, `${data.params} vs ${published}`);
    t.is(data.name, name);
    t.is(data.cuts.length, data.layers.length + 1);
    t.deepEqual(data.cuts[0]!.after, null);
    t.is(data.cuts.at(-1)!.tensors.length, 1);
    t.true(data.layers.every((l, i) => l.index === i + 1 && typeof l.op === 'string'));
    t.is(
      data.layers.reduce((s, l) => s + l.flops, 0),
      data.flops,
    );
  });
}

test('inspect prints a table per layer', async (t) => {
  const r = await edgecut(['model', 'inspect', 'squeezenet1.1']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^squeezenet1\.1: \d+ layers, 1,235,496 parameters/);
  t.regex(r.stdout, /#\s+name\s+op\s+output shape\s+MFLOPs\s+params\s+out KiB\s+D_k KiB\s+single/);
  t.regex(r.stdout, /\n\s*1\s+\S+\s+Conv\s+\[1x64x111x111\]/);
  t.regex(r.stdout, /no \(2\)/, 'fire modules have two-tensor cuts');
});

test('split writes head.onnx, tail.onnx and cut.json, and head then tail equals the whole model', async (t) => {
  const { path } = await demoModelDir(t);
  const out = await tempDir(t);
  const r = await edgecut(['model', 'split', path, '--after', '8', '--out', out]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^cut 8 after \S+: 2 tensor\(s\)/);
  const cut = JSON.parse(await readFile(join(out, 'cut.json'), 'utf8')) as {
    index: number;
    tensors: Array<{ name: string; dtype: string; shape: number[] }>;
  };
  t.is(cut.index, 8);
  t.is(cut.tensors.length, 2);
  t.true(cut.tensors.every((x) => x.dtype === 'float32' && x.shape.length === 4));
  const whole = await ort.InferenceSession.create(await readFile(path));
  const head = await ort.InferenceSession.create(join(out, 'head.onnx'));
  const tail = await ort.InferenceSession.create(join(out, 'tail.onnx'));
  const input = new ort.Tensor(
    'float32',
    Float32Array.from({ length: 3 * 64 * 64 }, (_, i) => (i % 97) / 97),
    [1, 3, 64, 64],
  );
  const expected = await whole.run({ input });
  const mid = await head.run({ input });
  t.deepEqual([...head.outputNames].sort(), cut.tensors.map((x) => x.name).sort());
  const got = await tail.run(mid as Record<string, ort.Tensor>);
  t.deepEqual(Array.from(got.probs!.data as Float32Array), Array.from(expected.probs!.data as Float32Array));
});

test('split accepts a node name as well as an index', async (t) => {
  const { model: m, path } = await demoModelDir(t);
  const out = await tempDir(t);
  const name = m.cuts[3]!.after!;
  const r = await edgecut(['model', 'split', path, '--after', name, '--out', out]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, new RegExp(`^cut 3 after ${name.replace(/\./g, '\\.')}`));
});

test('an unknown cut name lists the nearest valid ones', async (t) => {
  const { path } = await demoModelDir(t);
  const out = await tempDir(t);
  const r = await edgecut(['model', 'split', path, '--after', 'conv_1', '--out', out]);
  t.is(r.code, 2);
  t.regex(
    r.stderr,
    /^edgecut: .*demo-cnn\.onnx: no node named "conv_1"; nearest valid cuts: \d+ \(\S+\), \d+ \(\S+\), \d+ \(\S+\)/,
  );
  t.is(r.stderr.trim().split('\n').length, 1);
  const far = await edgecut(['model', 'split', path, '--after', '999', '--out', out]);
  t.is(far.code, 2);
  t.regex(far.stderr, /cut 999 does not exist; cuts are numbered 0 to \d+/);
});

test('a cut through an If subgraph is refused with the enclosing node named', async (t) => {
  const dir = await tempDir(t);
  const branch = (op: string) => ({
    name: op,
    node: [node(op, ['a'], [`${op}_out`], [], `inner_${op.toLowerCase()}`)],
    input: [],
    output: [vi(`${op}_out`, [1, 3])],
    initializer: [],
    value_info: [],
  });
  const m = model({
    node: [
      node('Relu', ['x'], ['a'], [], 'relu'),
      node('Greater', ['x', 'x'], ['c0'], [], 'cmp'),
      node('ReduceMax', ['c0'], ['cond'], [], 'anycmp'),
      node(
        'If',
        ['cond'],
        ['y'],
        [graphAttr('then_branch', branch('Neg')), graphAttr('else_branch', branch('Abs'))],
        'choose',
      ),
    ],
    input: [vi('x', [1, 3])],
    output: [vi('y', [1, 3])],
    value_info: [vi('a', [1, 3]), vi('c0', [1, 3], DataType.BOOL), vi('cond', [], DataType.BOOL)],
  });
  const file = join(dir, 'if.onnx');
  await writeFile(file, writeModel(m));
  const r = await edgecut(['model', 'split', file, '--after', 'inner_neg', '--out', join(dir, 'out')]);
  t.is(r.code, 2);
  t.regex(
    r.stderr,
    /node "inner_neg" is inside a subgraph of If node "choose", which runs as one step and cannot be cut through; nearest valid cuts: 3 \(anycmp\), 4 \(choose\)/,
  );
});

test('files that are not ONNX, truncated or empty get one line naming the file', async (t) => {
  const { path } = await demoModelDir(t);
  const dir = await tempDir(t);
  const bytes = await readFile(path);
  const cases = {
    'text.onnx': Buffer.from('this is not a model\n'),
    'truncated.onnx': bytes.subarray(0, Math.floor(bytes.length * 0.6)),
    'empty.onnx': Buffer.alloc(0),
  };
  for (const [name, content] of Object.entries(cases)) {
    const file = join(dir, name);
    await writeFile(file, content);
    const r = await edgecut(['model', 'inspect', file]);
    t.is(r.code, 2, name);
    t.is(r.stderr.trim().split('\n').length, 1, `${name}: ${r.stderr}`);
    t.true(r.stderr.startsWith(`edgecut: ${file}: `), `${name}: ${r.stderr}`);
    t.notRegex(r.stderr, /\bat .*:\d+:\d+/);
  }
});

test('zoo list and zoo build', async (t) => {
  const list = await edgecut(['zoo', 'list']);
  t.is(list.code, 0);
  for (const name of ZOO_NAMES) t.true(list.stdout.includes(name), name);
  const dir = await tempDir(t);
  const out = join(dir, 'sq.onnx');
  const built = await edgecut(['zoo', 'build', 'squeezenet1.1', '--out', out]);
  t.is(built.code, 0, built.stderr);
  const s = await ort.InferenceSession.create(out);
  t.deepEqual(s.outputNames, ['probs']);
  const bad = await edgecut(['zoo', 'build', 'vgg16', '--out', out]);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /unknown zoo model "vgg16"; the zoo has: squeezenet1\.0, /);
});

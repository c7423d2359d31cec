// The model zoo: every model builds with its published parameter count, loads in onnxruntime
// and classifies a seeded input; builds are deterministic; the on-disk cache is reused.

import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import * as ort from 'onnxruntime-node';
import { enumerateCuts } from '../model/cuts.ts';
import { analyzeGraph } from '../model/graph.ts';
import { readModel } from '../model/onnx.ts';
import { seededUniform } from '../model/random.ts';
import {
  countParams,
  defaultZooCacheDir,
  isZooName,
  ZOO,
  ZOO_NAMES,
  type ZooName,
  zooFileName,
  zooModelPath,
} from '../model/zoo/index.ts';

// Exact counts by countParams' rule (BN scale + bias count, running mean/var do not): torchvision's
// numbers. Inception-v3's published 23,851,784 is Keras' convention, 17,216 (0.07%) higher.
const EXACT: Record<ZooName, number> = {
  'squeezenet1.0': 1_248_424,
  'squeezenet1.1': 1_235_496,
  alexnet: 61_100_840,
  'inception-v3': 23_834_568,
  'mobilenet-v2': 3_504_872,
  'resnet-50': 25_557_032,
};

test('zoo names and entries agree', (t) => {
  t.deepEqual(Object.keys(ZOO).sort(), [...ZOO_NAMES].sort());
  for (const name of ZOO_NAMES) {
    t.true(isZooName(name));
    t.is(ZOO[name].name, name);
  }
  t.false(isZooName('resnet-51'));
  t.false(isZooName('toString'));
  t.deepEqual(ZOO['inception-v3'].input, [1, 3, 299, 299]);
  t.deepEqual(ZOO.alexnet.input, [1, 3, 224, 224]);
});

// One test per model: each is built once, checked, run, and released before the next big one.
for (const name of ZOO_NAMES) {
  test.serial(`${name}: parameters, shapes, metadata, and one onnxruntime inference`, async (t) => {
    const entry = ZOO[name];
    const started = performance.now();
    const bytes = entry.build();
    const buildMs = performance.now() - started;
    const model = readModel(bytes, name);

    const params = countParams(model);
    const off = (params - entry.publishedParams) / entry.publishedParams;
    t.log(
      `${name}: ${params.toLocaleString('en')} parameters (published ${entry.publishedParams.toLocaleString('en')}, ` +
        `${(off * 100).toFixed(3)}%), ${model.graph.node.length} nodes, ${(bytes.byteLength / 1e6).toFixed(1)} MB, built in ${buildMs.toFixed(0)} ms`,
    );
    t.true(Math.abs(off) <= 0.005);
    t.is(params, EXACT[name]);

    // Opset 13, the declared interface, and a complete static shape for every tensor.
    t.deepEqual(model.opset_import, [{ domain: '', version: 13 }]);
    const a = analyzeGraph(model, name);
    t.deepEqual(a.inputs, ['input']);
    t.deepEqual(a.outputs, ['probs']);
    t.deepEqual(a.tensors.get('input')?.shape, entry.input);
    t.deepEqual(a.tensors.get('probs')?.shape, [1, 1000]);
    for (const n of a.nodes)
      for (const o of n.outputs) {
        const shape = a.tensors.get(o)?.shape;
        t.true(!!shape && shape.every((d) => d > 0), `${o} has no static shape`);
      }
    t.is(enumerateCuts(a).length, a.nodes.length + 1);
    const meta = Object.fromEntries((model.metadata_props ?? []).map((p) => [p.key, p.value]));
    t.is(meta['edgecut.zoo'], name);
    const pre = JSON.parse(meta['edgecut.preprocess']!);
    t.deepEqual(pre.size, entry.input.slice(2));
    t.deepEqual(pre.mean, [0.485, 0.456, 0.406]);
    t.is(pre.channels, 'RGB');

    // A seeded "normalised image" in [-2, 2): the output must be a real distribution.
    const session = await ort.InferenceSession.create(bytes);
    try {
      const count = entry.input.reduce((x, y) => x * y, 1);
      const input = new ort.Tensor('float32', seededUniform(count, 7, -2, 2), entry.input);
      const out = (await session.run({ input })).probs!;
      t.deepEqual(out.dims, [1, 1000]);
      const p = out.data as Float32Array;
      let sum = 0;
      let min = Infinity;
      let max = -Infinity;
      t.true(p.every(Number.isFinite), `${name} gives a non-finite probability`);
      for (const v of p) {
        sum += v;
        min = Math.min(min, v);
        max = Math.max(max, v);
      }
      t.log(`${name}: probs sum ${sum.toFixed(6)}, min ${min.toExponential(2)}, max ${max.toFixed(4)}`);
      t.true(Math.abs(sum - 1) < 1e-4);
      t.true(max - min > 1e-6, 'all classes equally likely: activations died');
      t.true(max < 0.99, 'softmax saturated: activations blew up');
    } finally {
      await session.release();
    }
  });
}

test('same seed, same bytes; another seed, other weights (small models)', (t) => {
  for (const name of ['squeezenet1.0', 'squeezenet1.1', 'mobilenet-v2'] as const) {
    const a = ZOO[name].build(5);
    const b = ZOO[name].build(5);
    t.true(Buffer.from(a).equals(b), `${name} is not deterministic`);
    const c = ZOO[name].build(6);
    t.is(c.byteLength, a.byteLength);
    t.false(Buffer.from(a).equals(c));
  }
  t.true(Buffer.from(ZOO['squeezenet1.1'].build()).equals(ZOO['squeezenet1.1'].build(1)));
  t.throws(() => ZOO['squeezenet1.1'].build(-1), { instanceOf: RangeError });
});

test('zooModelPath builds once, atomically, and then returns the cached file at once', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-zoo-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const cacheDir = join(dir, 'nested', 'zoo');

  // Concurrent first calls share one build.
  const [p1, p2] = await Promise.all([
    zooModelPath('squeezenet1.1', { cacheDir, seed: 3 }),
    zooModelPath('squeezenet1.1', { cacheDir, seed: 3 }),
  ]);
  t.is(p1, p2);
  t.is(p1, join(cacheDir, zooFileName('squeezenet1.1', 3)));
  t.regex(p1, /squeezenet1\.1-seed3-v\d+\.onnx$/);
  t.true(Buffer.from(ZOO['squeezenet1.1'].build(3)).equals(await readFile(p1)));

  const started = performance.now();
  const again = await zooModelPath('squeezenet1.1', { cacheDir, seed: 3 });
  const ms = performance.now() - started;
  t.log(`cached lookup took ${ms.toFixed(2)} ms`);
  t.is(again, p1);
  t.true(ms < 100);
  t.deepEqual(await readdir(cacheDir), [zooFileName('squeezenet1.1', 3)], 'temp files left behind');

  // Another seed is another file; the session loads from the path.
  const other = await zooModelPath('squeezenet1.1', { cacheDir, seed: 4 });
  t.not(other, p1);
  const session = await ort.InferenceSession.create(other);
  t.deepEqual(session.outputNames, ['probs']);
  await session.release();
  await t.throwsAsync(zooModelPath('nope' as ZooName, { cacheDir }), { instanceOf: RangeError });
});

test.serial('the default cache dir is <repo>/.cache/zoo, or $EDGECUT_CACHE_DIR/zoo', (t) => {
  const saved = process.env.EDGECUT_CACHE_DIR;
  try {
    delete process.env.EDGECUT_CACHE_DIR;
    const repo = new URL('..', import.meta.url).pathname;
    t.is(defaultZooCacheDir(), join(repo, '.cache', 'zoo'));
    t.true(existsSync(join(defaultZooCacheDir(), '..', '..', 'package.json')));
    process.env.EDGECUT_CACHE_DIR = '/tmp/edgecut-cache';
    t.is(defaultZooCacheDir(), '/tmp/edgecut-cache/zoo');
  } finally {
    if (saved === undefined) delete process.env.EDGECUT_CACHE_DIR;
    else process.env.EDGECUT_CACHE_DIR = saved;
  }
});

// The per-layer latency predictors (planning/predict/): the regressions recover known relations, the tree finds a
// piecewise-linear structure a single line cannot, zero-cost layers fit without NaN, the JSON round-trips and other
// versions are refused, and the quick sweep's models load and run in onnxruntime.

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import * as ort from 'onnxruntime-node';
import { sweepCommand } from '../cli/sweep.ts';
import {
  PredictorsError,
  parsePredictors,
  predictorsToJson,
  readPredictors,
  writePredictors,
} from '../measurement/predictor-store.ts';
import { SWEEP_OPS, sweepConfigs } from '../measurement/sweep/configs.ts';
import { buildSweepModel, sweepFeatures } from '../measurement/sweep/model.ts';
import { parseSweep, runSweep } from '../measurement/sweep/run.ts';
import { buildDemoCnn } from '../model/demo-cnn.ts';
import { ModelHandle } from '../model/handle.ts';
import { writeModel } from '../model/onnx.ts';
import { mulberry32 } from '../model/random.ts';
import { type LayerSample, layerType } from '../planning/predict/features.ts';
import { evalLinear, fitLinear, ridgeFit } from '../planning/predict/linear.ts';
import {
  ape,
  LINEAR_FEATURES,
  PREDICTORS_VERSION,
  predictLayer,
  predictorFor,
  predictProfile,
  trainPredictors,
} from '../planning/predict/predictors.ts';
import { evalTree, fitTree, treeLeaves } from '../planning/predict/tree.ts';
import { median } from '../planning/stats.ts';
import { UserError } from '../runtime/errors.ts';

const X = (s: LayerSample) => [s.flops, s.inputBytes, s.outputBytes, s.paramBytes];

// Random conv-like layers: FLOPs 1e5..1e9, bytes 1e3..1e7 (log-uniform), deterministic.
function synthetic(n: number, seed: number, ms: (s: LayerSample) => number, op = 'Conv'): LayerSample[] {
  const rand = mulberry32(seed);
  const logU = (lo: number, hi: number) => 10 ** (lo + (hi - lo) * rand());
  return Array.from({ length: n }, () => {
    const s: LayerSample = {
      op,
      flops: logU(5, 9),
      inputBytes: logU(3, 7),
      outputBytes: logU(3, 7),
      paramBytes: logU(3, 6),
      ms: 0,
      source: 'synthetic',
    };
    return { ...s, ms: ms(s) };
  });
}

test('weighted ridge regression recovers a known linear relation', (t) => {
  const truth = (s: LayerSample) => 0.004 + 1e-8 * s.flops + 3e-7 * s.inputBytes + 1e-7 * s.outputBytes;
  const samples = synthetic(300, 1, truth);
  for (const weightPower of [0, 1, 2]) {
    const m = fitLinear(samples.map(X), samples.map(truth), LINEAR_FEATURES, {
      space: 'time',
      weightPower,
      ridge: 1e-9,
    });
    t.true(Math.abs(m.intercept - 0.004) < 1e-4, `intercept ${m.intercept} (p=${weightPower})`);
    [1e-8, 3e-7, 1e-7].forEach((c, i) => {
      t.true(Math.abs(m.coef[i]! - c) / c < 1e-3, `coef ${i} ${m.coef[i]} vs ${c} (p=${weightPower})`);
    });
    const worst = Math.max(...samples.map((s) => ape(evalLinear(m, X(s)), s.ms)));
    t.true(worst < 1e-3, `worst APE ${worst}`);
  }
  // A power law is recovered in log space: ms = 2e-6 * flops^0.9 (features scaled by their median).
  const power = synthetic(200, 2, (s) => 2e-6 * s.flops ** 0.9);
  const lm = fitLinear(
    power.map(X),
    power.map((s) => s.ms),
    ['flops'],
    { space: 'log', weightPower: 0, ridge: 0 },
  );
  const mdape = median(power.map((s) => ape(evalLinear(lm, X(s)), s.ms)));
  t.true(mdape < 0.05, `log-space MdAPE ${mdape}`);
});

test('the regression tree splits a piecewise-linear function and beats a single linear fit', (t) => {
  // Two regimes by arithmetic intensity, as depthwise vs dense convolutions: 4 GFLOP/s below 1e7 FLOPs, 40 above,
  // plus a memory term.
  const truth = (s: LayerSample) =>
    s.flops < 1e7 ? 0.01 + s.flops / 4e6 + s.outputBytes / 2e7 : 0.2 + s.flops / 4e7 + s.outputBytes / 2e7;
  const train = synthetic(400, 3, truth);
  const test_ = synthetic(200, 4, truth);
  const opts = {
    space: 'time' as const,
    weightPower: 2,
    ridge: 1e-8,
    maxDepth: 3,
    minLeaf: 10,
    minGain: 0.02,
    thresholds: 24,
    smoothing: 0,
  };
  const splits = train.map((s) => [...X(s), 0, 0]);
  const tree = fitTree(
    train.map(X),
    splits,
    train.map((s) => s.ms),
    ['flops', 'inputBytes', 'outputBytes', 'paramBytes'],
    opts,
  );
  t.true('split' in tree.root, 'the root splits');
  if ('split' in tree.root) {
    t.is(tree.root.split, 'flops');
    t.true(tree.root.threshold > 5e6 && tree.root.threshold < 2e7, `threshold ${tree.root.threshold}`);
  }
  t.true(treeLeaves(tree.root) >= 2);
  const line = fitLinear(
    train.map(X),
    train.map((s) => s.ms),
    LINEAR_FEATURES,
    opts,
  );
  const mdTree = median(test_.map((s) => ape(evalTree(tree, X(s), [...X(s), 0, 0]), s.ms)));
  const mdLine = median(test_.map((s) => ape(evalLinear(line, X(s)), s.ms)));
  t.log(`held-out MdAPE: tree ${(mdTree * 100).toFixed(2)}%, single linear ${(mdLine * 100).toFixed(1)}%`);
  t.true(mdTree < 0.02, `tree MdAPE ${mdTree}`);
  t.true(mdLine > 5 * mdTree, `linear MdAPE ${mdLine}`);

  // trainPredictors' cross-validation picks the tree for this type.
  const p = trainPredictors(train, { linear: { space: 'time' }, tree: opts });
  t.is(p.types.conv?.chosen, 'tree');
  t.true(p.types.conv!.validationMdape.tree! < p.types.conv!.validationMdape.linear!);
});

test('zero-cost layers (no FLOPs, no parameters, tiny constant or zero times) fit without NaN', (t) => {
  const rand = mulberry32(5);
  const zeroCost: LayerSample[] = [];
  for (const op of ['Reshape', 'Flatten', 'Dropout', 'Identity', 'Squeeze']) {
    for (let i = 0; i < 8; i++) {
      const bytes = 4 * Math.floor(1 + rand() * 1000);
      zeroCost.push({
        op,
        flops: 0,
        inputBytes: bytes,
        outputBytes: bytes,
        paramBytes: 0,
        ms: 0.002,
        source: 'a',
      });
    }
  }
  // Identical features and times (a singular design), and exact zeros.
  for (let i = 0; i < 6; i++)
    zeroCost.push({
      op: 'Flatten',
      flops: 0,
      inputBytes: 0,
      outputBytes: 0,
      paramBytes: 0,
      ms: 0,
      source: 'b',
    });
  // Concat: zero FLOPs, bytes vary, times tiny but nonzero.
  for (let i = 0; i < 12; i++) {
    const bytes = 4 * Math.floor(1000 + rand() * 100_000);
    zeroCost.push({
      op: 'Concat',
      flops: 0,
      inputBytes: bytes,
      outputBytes: bytes,
      paramBytes: 0,
      ms: 0.003 + bytes / 2e7,
      source: 'a',
    });
  }
  // Only a few samples of a type, all identical: too few to validate.
  for (let i = 0; i < 3; i++)
    zeroCost.push({
      op: 'Unsqueeze',
      flops: 0,
      inputBytes: 16,
      outputBytes: 16,
      paramBytes: 0,
      ms: 0.001,
      source: 'a',
    });

  const p = trainPredictors(zeroCost);
  const numbers: number[] = [];
  JSON.stringify(p, (_k, v) => {
    if (typeof v === 'number') numbers.push(v);
    return v;
  });
  t.true(numbers.length > 50);
  t.true(numbers.every(Number.isFinite), 'every coefficient, threshold and score is finite');
  t.notThrows(() => predictorsToJson(p));
  t.is(layerType('Dropout', p.groups), 'zero-cost');
  for (const s of zeroCost) {
    for (const method of ['chosen', 'linear', 'tree'] as const) {
      const v = predictLayer(p, s, s.op, method);
      t.true(Number.isFinite(v) && v >= 0, `${s.op} ${method}: ${v}`);
    }
  }
  const reshape = predictLayer(p, { flops: 0, inputBytes: 400, outputBytes: 400, paramBytes: 0 }, 'Reshape');
  t.true(reshape > 0.0005 && reshape < 0.01, `Reshape predicted ${reshape} ms (trained on 0.002 and 0)`);
  // Extreme inputs stay finite and >= 0.
  for (const f of [
    { flops: 1e15, inputBytes: 1e12, outputBytes: 1e12, paramBytes: 1e12 },
    { flops: 0, inputBytes: 0, outputBytes: 0, paramBytes: 0 },
  ]) {
    for (const op of ['Concat', 'Flatten', 'Unsqueeze', 'NeverSeen']) {
      const v = predictLayer(p, f, op);
      t.true(Number.isFinite(v) && v >= 0, `${op}: ${v}`);
    }
  }
  // The solver itself: an all-zero design is not singular thanks to the ridge term.
  const sol = ridgeFit(
    [
      [0, 0],
      [0, 0],
      [0, 0],
    ],
    [1, 2, 3],
    [1, 1, 1],
    1e-6,
  );
  t.true(sol.every(Number.isFinite));
  t.true(Math.abs(sol[0]! - 2) < 1e-6);
});

test('an op the training never saw is predicted by the global model', (t) => {
  const samples = [
    ...synthetic(60, 6, (s) => 0.01 + s.flops / 5e7, 'Conv'),
    ...synthetic(60, 7, (s) => 0.005 + s.outputBytes / 1e7, 'Relu'),
  ];
  const p = trainPredictors(samples);
  const f = { flops: 2e8, inputBytes: 1e6, outputBytes: 1e6, paramBytes: 1e5 };
  const known = predictorFor(p, 'Conv');
  t.false(known.fallback);
  t.is(known.type, 'conv');
  const unknown = predictorFor(p, 'ConvTranspose');
  t.true(unknown.fallback);
  t.is(unknown.predictor, p.global);
  const v = predictLayer(p, f, 'ConvTranspose');
  t.true(Number.isFinite(v) && v > 0);
});

test('predictors round-trip through JSON; another version is refused in one line', async (t) => {
  const samples = [
    ...synthetic(40, 8, (s) => 0.01 + s.flops / 5e7, 'Conv'),
    ...synthetic(20, 9, (s) => 0.002 + s.outputBytes / 1e7, 'Add'),
  ];
  const p = trainPredictors(samples, { referenceMs: 7.5 });
  const back = parsePredictors(JSON.parse(predictorsToJson(p)), 'p.json');
  t.deepEqual(back, p);
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-predict-'));
  try {
    const file = join(dir, 'sub', 'predictors.json');
    await writePredictors(file, p);
    t.deepEqual(await readPredictors(file), p);
    const f = { flops: 1e8, inputBytes: 1e5, outputBytes: 1e5, paramBytes: 1e4 };
    t.is(predictLayer(await readPredictors(file), f, 'Conv'), predictLayer(p, f, 'Conv'));

    const other = join(dir, 'v2.json');
    await writeFile(other, JSON.stringify({ ...p, version: 2 }));
    const err = await t.throwsAsync(readPredictors(other), { instanceOf: PredictorsError });
    t.is(
      err?.message,
      `${other}: predictors format version 2 is not supported; this edgecut reads version ${PREDICTORS_VERSION} (train the predictors again)`,
    );
    t.false(err?.message.includes('\n'));
    const noVersion = t.throws(() => parsePredictors({ types: {} }, 'x.json'), {
      instanceOf: PredictorsError,
    });
    t.regex(noVersion?.message ?? '', /^x\.json: predictors format version undefined is not supported/);
    // A damaged file names the field.
    const bad = JSON.parse(predictorsToJson(p));
    bad.types.conv.chosen = 'forest';
    const e2 = t.throws(() => parsePredictors(bad, 'bad.json'), { instanceOf: PredictorsError });
    t.regex(e2?.message ?? '', /^bad\.json: types\.conv\.chosen: /);
    await writeFile(other, '{');
    await t.throwsAsync(readPredictors(other), {
      instanceOf: PredictorsError,
      message: `${other}: not JSON`,
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('predictProfile gives one finite latency per layer of a model', async (t) => {
  const handle = await ModelHandle.fromBytes(buildDemoCnn(), 'demo.onnx');
  const samples = handle.costs.map((c, i) => ({
    op: handle.analysis.nodes[i]!.op,
    flops: c.flops,
    inputBytes: c.inputBytes,
    outputBytes: c.outputBytes,
    paramBytes: c.paramBytes,
    ms: 0.002 + c.flops / 3e7 + c.outputBytes / 2e7,
    source: 'demo',
  }));
  const p = trainPredictors(samples);
  const r = predictProfile(p, handle);
  t.is(r.layers.length, handle.layers);
  t.true(r.layers.every((v) => Number.isFinite(v) && v >= 0));
  t.is(
    r.total,
    r.layers.reduce((a, b) => a + b, 0),
  );
  const truth = samples.reduce((a, s) => a + s.ms, 0);
  t.true(Math.abs(r.total - truth) / truth < 0.1, `total ${r.total} vs ${truth}`);
});

test('the quick sweep: deterministic configurations covering every op; models load and run in onnxruntime', async (t) => {
  const configs = sweepConfigs('quick');
  t.deepEqual(sweepConfigs('quick'), configs);
  t.notDeepEqual(sweepConfigs('quick', 2), configs);
  t.true(configs.length >= 25 && configs.length <= 35, `${configs.length} configurations`);
  t.deepEqual([...new Set(configs.map((c) => c.op))].sort(), [...SWEEP_OPS].sort());
  const full = sweepConfigs('full');
  t.true(full.length >= 300 && full.length <= 600, `${full.length} full configurations`);
  t.is(new Set(full.map((c) => c.id)).size, full.length);

  // Every quick model builds, and its features are the op's.
  for (const c of configs) {
    const m = buildSweepModel(c);
    t.is(m.graph.node[0]!.op_type, c.op);
    const f = sweepFeatures(m);
    t.true(f.outputBytes > 0);
    if (c.op === 'Conv' || c.op === 'Gemm' || c.op === 'MatMul') t.true(f.flops > 0 && f.paramBytes > 0);
  }

  // The first 5 (Conv, Gemm, MaxPool, BatchNormalization, Conv: interleaved) load and run.
  const first = configs.slice(0, 5);
  t.true(new Set(first.map((c) => c.op)).size >= 4);
  for (const c of first) {
    const s = await ort.InferenceSession.create(writeModel(buildSweepModel(c, 2)));
    t.is(s.outputNames.length, 2);
    await s.release();
  }
  const started = performance.now();
  const sweep = await runSweep({ size: 'quick', limit: 5 });
  t.log(`5 quick configurations timed in ${(performance.now() - started).toFixed(0)} ms`);
  t.is(sweep.samples.length, 5);
  t.deepEqual(
    sweep.samples.map((s) => s.config),
    first.map((c) => c.id),
  );
  for (const s of sweep.samples) t.true(Number.isFinite(s.ms) && s.ms > 0, `${s.config}: ${s.ms} ms`);
  t.true(sweep.reference.ms > 0);
  t.deepEqual(parseSweep(JSON.parse(JSON.stringify(sweep)), 's.json'), sweep);
  t.throws(() => parseSweep({ ...sweep, version: 9 }, 's.json'), {
    message: /^s\.json: sweep format version 9 is not supported; this edgecut reads version 1/,
  });
});

test('sweepCommand writes a readable quick sweep and refuses bad flags', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-sweep-'));
  const write = process.stdout.write;
  let printed = '';
  process.stdout.write = ((s: string) => {
    printed += s;
    return true;
  }) as typeof process.stdout.write;
  try {
    const out = join(dir, 'nested', 'sweep.json');
    const started = performance.now();
    await sweepCommand({ out, quick: true });
    const ms = performance.now() - started;
    process.stdout.write = write;
    t.log(`quick sweep: ${ms.toFixed(0)} ms`);
    const sweep = parseSweep(JSON.parse(await readFile(out, 'utf8')), out);
    t.is(sweep.size, 'quick');
    t.is(sweep.samples.length, sweepConfigs('quick').length);
    t.true(sweep.samples.every((s) => Number.isFinite(s.ms) && s.ms >= 0));
    t.regex(printed, /^wrote .*sweep\.json: \d+ of \d+ layers \(quick, seed 1, 1 pass\)/);
    await t.throwsAsync(sweepCommand({ out, quick: true, passes: '0' }), {
      instanceOf: UserError,
      message: '--passes="0" is not allowed: expected a whole number from 1 to 100',
    });
  } finally {
    process.stdout.write = write;
    await rm(dir, { recursive: true, force: true });
  }
});

// The real model: SqueezeNet 1.0 with float16 weights, from ../shared (next to the repo; never copied into it).
// Checks whole-model classification against ../shared/models/README.md, the fish output against the Windows ML
// reference, and that head + tail gives the whole model's output bytes at every cut, with the services' session
// settings (createSession defaults) and the services' per-model carry (exactCarry).
//
// Findings behind split.ts's `carry` and runtime.ts's defaults (onnxruntime-node 1.30, CPU, 1 thread, fish.png):
// - Native carry (crossing tensors in their declared float16): 65 of the 67 cuts differ from the whole model (61 at
//   'disabled'), by up to 7.3e-4 per class. onnxruntime runs the float16 graph in float32 and rounds only
//   at its output, while a native split rounds every crossing tensor.
// - Carry 'float32' (exactCarry picks it for float16 models): all 67 cuts bit-identical at basic, extended, all, and
//   all minus NCHWc, with 1 and with 2 threads; at 'disabled' 65 cuts differ by 1.9e-6 (onnxruntime then keeps the
//   last Concat and the Dropout in float16). Payload of cuts 1..65 doubles (cut 33, after MaxPool_33: 86,528 ->
//   173,056 bytes; cut 65: 2,000 -> 4,000); cuts 0 and 66 carry the float16 input/output unchanged.
// - NCHWc (level all) broke 4 of the float32 demo CNN's 25 cuts by ~1e-8; not squeezenet's. The demo CNN test
//   below guards the default that disables it.
// - Whole-model latency, median of 5x30 runs, 1 thread: all 7.1 ms, all minus NCHWc (the default) 9.0, extended 9.6,
//   basic 9.7.
// - Whole fish output vs the Windows ML reference CSV: max 1.9e-6 per class.

import { existsSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import jpeg from 'jpeg-js';
import * as ort from 'onnxruntime-node';
import { PNG } from 'pngjs';
import { buildDemoCnn } from '../model/demo-cnn.ts';
import { analyzeGraph, type GraphAnalysis } from '../model/graph.ts';
import { floatToHalf, halfToFloat } from '../model/half.ts';
import { decodeImage, ImageError, type PreprocessSpec, preprocess, resizeBilinear } from '../model/image.ts';
import { type OnnxModel, readModel, writeModel } from '../model/onnx.ts';
import { seededUniform } from '../model/random.ts';
import { createSession, type RuntimeOptions } from '../model/runtime.ts';
import { exactCarry, type SplitOptions, splitModel } from '../model/split.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SHARED = resolve(ROOT, '../shared');
const MODEL = join(SHARED, 'models/squeezenet1.0-fp16.onnx');
const IMAGES = join(SHARED, 'images');
const LABELS = join(IMAGES, 'imagenet-labels.csv');
const REFERENCE = join(IMAGES, 'squeezenet1.0-fp16.fish.reference.csv');

// As ../shared/models/README.md says: BGR, raw 0..255, no mean/std, stretched (bilinear) to 224x224, float16.
const SPEC: PreprocessSpec = { size: [224, 224], channels: 'BGR', scale: 1, dtype: 'float16' };

// README's table. Probabilities are given to `digits` decimals, so the tolerance is half a unit of the last digit
// plus one float16 step at that magnitude (2^-11 below 1).
const EXPECTED = [
  { file: 'fish.png', index: 0, label: 'tench', prob: 0.7378, digits: 4 },
  { file: 'kitten_224.png', index: 281, label: 'tabby', prob: 0.93, digits: 2 },
  { file: 'pelican.jpeg', index: 144, label: 'pelican', prob: 0.85, digits: 2 },
  { file: 'bald_eagle.jpeg', index: 21, label: 'kite', prob: 0.37, digits: 2, second: 22 },
];

const required = [MODEL, LABELS, REFERENCE, ...EXPECTED.map((e) => join(IMAGES, e.file))];
const missing = required.filter((p) => !existsSync(p));
const inCI = ['true', '1'].includes((process.env.CI ?? '').toLowerCase());

type Feeds = Record<string, ort.Tensor>;

function bytesOf(t: ort.Tensor): Buffer {
  const d = t.data as ArrayBufferView;
  return Buffer.from(d.buffer, d.byteOffset, d.byteLength);
}

async function run(s: ort.InferenceSession, feeds: Feeds): Promise<Feeds> {
  const mine: Feeds = {};
  for (const name of s.inputNames) mine[name] = feeds[name]!;
  return (await s.run(mine)) as Feeds;
}

interface EveryCut {
  /** Cuts whose output bytes differ from the whole model's. */
  differing: number[];
  cuts: number;
  /** Bytes sent over all cuts (for the report). */
  bytes: number;
}

// Splits at every cut, runs head then tail on the head's outputs only (as over the wire), and compares raw output
// bytes with the whole model. Head and tail sessions are created per cut and released.
async function everyCut(
  t: ExecutionContext,
  m: OnnxModel,
  a: GraphAnalysis,
  feeds: Feeds,
  whole: Feeds,
  split: SplitOptions,
  runtime: RuntimeOptions = {},
): Promise<EveryCut> {
  const differing: number[] = [];
  let bytes = 0;
  for (let k = 0; k <= a.nodes.length; k++) {
    const { head, tail, cut } = splitModel(m, k, a, split);
    const [hs, ts] = await Promise.all([
      createSession(writeModel(head), runtime),
      createSession(writeModel(tail), runtime),
    ]);
    try {
      const mid = await run(hs, feeds);
      // What the head sends is what the cut says travels (dtype and bytes), so the planner's D_k is right.
      for (const c of cut.tensors) {
        const v = mid[c.name];
        if (!v || v.type !== c.dtype || bytesOf(v).byteLength !== c.bytes)
          t.fail(
            `cut ${k}: head output ${c.name} is ${v?.type} (${v && bytesOf(v).byteLength} B), cut says ${c.dtype} (${c.bytes} B)`,
          );
      }
      bytes += cut.bytes;
      const sent: Feeds = {};
      for (const c of cut.tensors) sent[c.name] = mid[c.name]!;
      const out = await run(ts, sent);
      if (a.outputs.some((o) => !bytesOf(out[o]!).equals(bytesOf(whole[o]!)))) differing.push(k);
    } finally {
      await Promise.all([hs.release(), ts.release()]);
    }
  }
  return { differing, cuts: a.nodes.length + 1, bytes };
}

if (missing.length > 0) {
  const first = relative(ROOT, missing[0]!);
  const what = `${first}${missing.length > 1 ? ` and ${missing.length - 1} more` : ''} not found (../shared = ${SHARED})`;
  if (inCI)
    test(`real squeezenet: ${what}`, (t) =>
      t.fail(`CI must provide ../shared next to the repo; missing: ${missing.join(', ')}`));
  else test.skip(`real squeezenet skipped: ${what}; under CI=true this fails`, () => {});
} else {
  const labels = readFileSync(LABELS, 'utf8')
    .trim()
    .split(/\r?\n/)
    .map((line) => line.slice(line.indexOf(',') + 1));
  const reference = readFileSync(REFERENCE, 'utf8')
    .trim()
    .split(/\r?\n/)
    .slice(1)
    .map((line) => Number(line.split(',')[1]));
  const bytes = readFileSync(MODEL);
  const model = readModel(bytes, MODEL);
  const analysis = analyzeGraph(model, MODEL);
  const image = (file: string): Feeds => {
    const x = preprocess(decodeImage(readFileSync(join(IMAGES, file)), file), SPEC);
    return { data_0: new ort.Tensor('float16', x.data as Uint16Array, x.shape) };
  };
  // The whole model, in a session made with the services' defaults; shared by the tests below.
  let whole: Promise<ort.InferenceSession> | undefined;
  const wholeSession = () => {
    whole ??= createSession(bytes);
    return whole;
  };
  test.after.always(async () => {
    await (await whole)?.release();
  });
  const probabilities = (out: Feeds) => Array.from(out.softmaxout_1!.data as Uint16Array, halfToFloat);

  test.serial('whole model: top-1 of the four images as ../shared/models/README.md lists', async (t) => {
    t.is(labels.length, 1000);
    const s = await wholeSession();
    for (const e of EXPECTED) {
      const p = probabilities(await run(s, image(e.file)));
      t.is(p.length, 1000);
      const ranked = [...p.keys()].sort((x, y) => p[y]! - p[x]!);
      const top = ranked[0]!;
      t.log(
        `${e.file}: ${top} ${labels[top]} ${p[top]!.toFixed(4)}; second ${ranked[1]} ${p[ranked[1]!]!.toFixed(4)}`,
      );
      t.is(top, e.index, `${e.file} top-1`);
      t.true(labels[top]!.split(',')[0] === e.label, `${e.file}: label ${labels[top]}`);
      const tol = 0.5 * 10 ** -e.digits + 2 ** -11;
      t.true(
        Math.abs(p[top]! - e.prob) <= tol,
        `${e.file}: p = ${p[top]}, README ${e.prob} (tolerance ${tol})`,
      );
      if (e.second !== undefined) t.is(ranked[1], e.second, `${e.file} second (${labels[e.second]})`);
    }
  });

  test.serial('whole model: fish output within 1e-3 of the Windows ML reference, per class', async (t) => {
    const p = probabilities(await run(await wholeSession(), image('fish.png')));
    t.is(reference.length, 1000);
    let max = 0;
    for (let i = 0; i < 1000; i++) {
      const d = Math.abs(p[i]! - reference[i]!);
      if (!(d <= 1e-3)) t.fail(`class ${i} (${labels[i]}): ${p[i]} vs reference ${reference[i]}`);
      max = Math.max(max, d);
    }
    t.log(`max difference ${max.toExponential(2)}`);
    t.true(max <= 1e-3);
  });

  test.serial('every cut: head then tail is bit-identical to the whole model on fish.png', async (t) => {
    const carry = exactCarry(analysis);
    // onnxruntime computes this float16 model in float32; only float32 crossings reproduce that exactly.
    t.is(carry, 'float32');
    const feeds = image('fish.png');
    const out = await run(await wholeSession(), feeds);
    const started = performance.now();
    const r = await everyCut(t, model, analysis, feeds, out, { carry });
    t.log(
      `${r.cuts} cuts in ${((performance.now() - started) / 1000).toFixed(1)} s, ${r.bytes} bytes carried in all`,
    );
    t.is(r.cuts, 67);
    t.deepEqual(r.differing, [], `cuts whose output differs from the whole model: ${r.differing.join(' ')}`);
  });

  test.serial(
    'native float16 carry rounds the crossing tensor, so it differs (why exactCarry says float32)',
    async (t) => {
      // Guards the premise: if onnxruntime ever computes this model in float16, this fails and exactCarry needs a look.
      const feeds = image('fish.png');
      const out = await run(await wholeSession(), feeds);
      const k = 10;
      const { head, tail, cut } = splitModel(model, k, analysis, { carry: 'native' });
      t.deepEqual(
        cut.tensors.map((c) => c.dtype),
        ['float16'],
      );
      const [hs, ts] = await Promise.all([createSession(writeModel(head)), createSession(writeModel(tail))]);
      const got = await run(ts, await run(hs, feeds));
      await Promise.all([hs.release(), ts.release()]);
      t.false(bytesOf(got.softmaxout_1!).equals(bytesOf(out.softmaxout_1!)), `cut ${k} with native carry`);
      const carried = splitModel(model, k, analysis, { carry: 'float32' }).cut;
      t.deepEqual(
        carried.tensors.map((c) => [c.dtype, c.bytes]),
        [['float32', 2 * cut.bytes]],
      );
    },
  );
}

// Independent of ../shared: on the float32 demo CNN, onnxruntime's NCHWc layout pass changes results at some cuts, so
// this checks that createSession's defaults (which disable it) really keep every cut bit-identical.
test.serial('createSession defaults: demo CNN head + tail bit-identical at every cut', async (t) => {
  const m = readModel(buildDemoCnn(), 'demo');
  const a = analyzeGraph(m);
  t.is(exactCarry(a), 'native');
  const feeds = { input: new ort.Tensor('float32', seededUniform(3 * 64 * 64, 42), [1, 3, 64, 64]) };
  const ws = await createSession(writeModel(m));
  const out = await run(ws, feeds);
  await ws.release();
  const r = await everyCut(t, m, a, feeds, out, {});
  t.deepEqual(r.differing, [], `cuts whose output differs: ${r.differing.join(' ')}`);
});

test('image: PNG and JPEG decode, half-pixel bilinear stretch, NCHW preprocessing', (t) => {
  // 2x1 RGBA PNG: red-ish and blue-ish pixels.
  const png = new PNG({ width: 2, height: 1 });
  png.data.set([0, 10, 200, 255, 100, 30, 0, 128]);
  const img = decodeImage(PNG.sync.write(png), 'tiny.png');
  t.like(img, { width: 2, height: 1, channels: 4 });
  t.deepEqual([...img.data], [0, 10, 200, 255, 100, 30, 0, 128]);
  // Half-pixel centres: destination x samples (x + 0.5) * 2 / 4 - 0.5 = -0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
  const wide = resizeBilinear(img, 4, 1);
  t.deepEqual(
    Array.from({ length: 4 }, (_, x) => wide.data[x * 4]),
    [0, 25, 75, 100],
  );
  t.is(resizeBilinear(img, 2, 1), img, 'same size is returned as is');
  // Planar BGR, alpha dropped, value = (pixel * scale - mean) / std per output channel.
  const bgr = preprocess(img, { size: [1, 2], channels: 'BGR', dtype: 'float32' });
  t.deepEqual(bgr.shape, [1, 3, 1, 2]);
  t.deepEqual([...bgr.data], [200, 0, 10, 30, 0, 100]);
  const norm = preprocess(img, {
    size: [1, 2],
    channels: 'RGB',
    scale: 1 / 255,
    mean: [0, 0.5, 1],
    std: [1, 2, 4],
    dtype: 'float16',
  });
  const f = Math.fround;
  const want = [
    [0, 100],
    [10, 30],
    [200, 0],
  ].flatMap((row, c) =>
    row.map((v) => floatToHalf(f(f(f(v * f(1 / 255)) - f([0, 0.5, 1][c]!)) / f([1, 2, 4][c]!)))),
  );
  t.deepEqual([...norm.data], want);
  // JPEG (lossy, so only roughly): a flat grey 8x8 block.
  const jpg = jpeg.encode({ width: 8, height: 8, data: new Uint8Array(8 * 8 * 4).fill(128) }, 90);
  const grey = decodeImage(jpg.data, 'grey.jpg');
  t.like(grey, { width: 8, height: 8, channels: 3 });
  t.true([...grey.data].every((v) => Math.abs(v - 128) <= 2));
  t.throws(() => decodeImage(new Uint8Array([1, 2, 3, 4]), 'junk.bin'), {
    instanceOf: ImageError,
    message: /junk\.bin/,
  });
  t.throws(() => decodeImage(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0]), 'cut.png'), {
    instanceOf: ImageError,
  });
});

/**
 * Class names and the top-1 class of each frame (model/labels.ts): labels files in both formats (told by content),
 * the demo CNN's metadata labels, one-line errors for unreadable, empty and mismatched files (also from the CLI, at
 * start), softmax only when the output is not a probability vector, float16 outputs, and the top-1 of frames run
 * through the real pipeline (embedded broker, tail worker, planner) equal to the whole model's, in the printed line
 * and REPORT=json.
 */
import { readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { profileModel } from '../measurement/profiler.ts';
import { DEMO_LABELS } from '../model/demo-cnn.ts';
import { floatToHalf } from '../model/half.ts';
import { ModelHandle } from '../model/handle.ts';
import {
  classOutput,
  frameTop1,
  MAX_LABELS_BYTES,
  metadataLabels,
  modelClasses,
  parseLabels,
  readLabelsFile,
  topOne,
} from '../model/labels.ts';
import { readModel, writeModel } from '../model/onnx.ts';
import { createSession, runWire } from '../model/runtime.ts';
import { UserError } from '../runtime/errors.ts';
import { silentLogger } from '../runtime/log.ts';
import { tensorFromTyped } from '../schemas/codec.ts';
import { EdgeHead, type FrameReport } from '../services/edge-head/edge.ts';
import { type Frame, openFrameSource } from '../services/edge-head/frames.ts';
import { formatFrame, frameJson } from '../services/edge-head/report.ts';
import { Planner } from '../services/planner/planner.ts';
import { TailWorker } from '../services/server-tail/worker.ts';
import { startBroker } from './helpers/broker.ts';
import { edgecut } from './helpers/cli.ts';
import { tap, tempDir, writePngs } from './helpers/edge.ts';
import { demoModelDir } from './helpers/models.ts';
import { edgeOptions, tailOptions } from './helpers/services.ts';

/** Generated class names for the demo CNN's 10 outputs (not its metadata's, so a file is told apart). */
const NAMES = Array.from({ length: 10 }, (_, i) => `class-${String.fromCharCode(97 + i)} ${i}`);

/** The demo CNN without its metadata labels. */
async function unlabelledDemo(model: ModelHandle): Promise<ModelHandle> {
  const m = readModel(model.bytes, 'demo');
  m.metadata_props = (m.metadata_props ?? []).filter((p) => p.key !== 'edgecut.labels');
  return ModelHandle.fromBytes(writeModel(m), 'unlabelled.onnx');
}

const oneLine = (t: { false: (v: boolean, m?: string) => void }, message: string) =>
  t.false(message.includes('\n'), `one line: ${message}`);

test('a text file: one name per line, CRLF and a BOM tolerated, trailing blank lines ignored', (t) => {
  t.deepEqual(parseLabels('\uFEFFcat\r\ndog \r\n  bird\n\n\n', 'l.txt'), ['cat', 'dog', 'bird']);
  // Names with commas that are not `index,` lines stay whole.
  t.deepEqual(parseLabels('tench, Tinca tinca\ngoldfish, Carassius auratus\n', 'l.txt'), [
    'tench, Tinca tinca',
    'goldfish, Carassius auratus',
  ]);
});

test('the CSV format: index,label lines, told by content, in any order, with a header, quotes or a stray quote', (t) => {
  // As ../shared/images/imagenet-labels.csv: unquoted names with commas, and a stray quote ending the last line.
  t.deepEqual(parseLabels('0,tench, Tinca tinca\n1,goldfish\n2,toilet tissue, toilet paper"\n', 'l.csv'), [
    'tench, Tinca tinca',
    'goldfish',
    'toilet tissue, toilet paper',
  ]);
  t.deepEqual(parseLabels('index,label\n1,"b ""quoted"", x"\n0,a\n', 'l.csv'), ['a', 'b "quoted", x']);
});

test('bad labels text: one line naming the file, the line and what is allowed', (t) => {
  const bad = (text: string, pattern: RegExp) => {
    const err = t.throws(() => parseLabels(text, 'f.txt'), { instanceOf: UserError });
    t.regex(err.message, pattern);
    oneLine(t, err.message);
  };
  bad('', /^labels file f\.txt is empty; expected one class name per line, or index,label lines/);
  bad(' \n\n', /^labels file f\.txt is empty/);
  bad('cat\n\ndog\n', /^labels file f\.txt line 2: empty class name; expected one class name per line/);
  bad('0,a\n0,b\n', /^labels file f\.txt line 2: index 0 again \(first on line 1\); each index once$/);
  bad('0,a\n2,b\n', /^labels file f\.txt line 2: index 2 is out of range; 2 lines need indexes 0\.\.1$/);
  bad('0,a\n1,\n', /^labels file f\.txt line 2: empty class name/);
  bad(`${'x'.repeat(201)}\n`, /^labels file f\.txt line 1: class name of 201 characters; at most 200/);
  bad('a\u0007b\n', /line 1: class name with a control character/);
});

test('labels files that cannot be read: missing, a directory, too large, binary', async (t) => {
  const dir = await tempDir(t);
  const bad = async (path: string, pattern: RegExp) => {
    const err = await t.throwsAsync(readLabelsFile(path), { instanceOf: UserError });
    t.regex(err.message, pattern);
    oneLine(t, err.message);
  };
  await bad(
    join(dir, 'none.txt'),
    /^labels file .*none\.txt cannot be read \(ENOENT\); expected one class name/,
  );
  await bad(dir, /is not a file; expected one class name per line/);
  const big = join(dir, 'big.txt');
  await writeFile(big, 'a\n');
  await truncate(big, MAX_LABELS_BYTES + 1);
  await bad(big, new RegExp(`has ${MAX_LABELS_BYTES + 1} bytes; at most ${MAX_LABELS_BYTES} are allowed`));
  const bin = join(dir, 'labels.bin');
  await writeFile(bin, Buffer.from([0x61, 0, 0x62, 0x0a]));
  await bad(bin, /is binary, not text/);
  const ok = join(dir, 'ok.csv');
  await writeFile(ok, '1,b\n0,a\n');
  t.deepEqual(await readLabelsFile(ok), ['a', 'b']);
});

test('the demo CNN: its metadata names its 10 classes; a labels file wins; a wrong count is one line', async (t) => {
  const { model } = await demoModelDir(t);
  t.deepEqual(metadataLabels(model), [...DEMO_LABELS]);
  const meta = classOutput(model);
  t.like(meta, { output: 0, name: 'probs', classes: 10 });
  t.deepEqual(meta?.labels, [...DEMO_LABELS]);
  t.is(meta?.source, "model demo-cnn's metadata edgecut.labels");

  const dir = await tempDir(t);
  const file = join(dir, 'names.txt');
  await writeFile(file, `${NAMES.join('\n')}\n`);
  const fromFile = await modelClasses(model, file);
  t.deepEqual(fromFile?.labels, NAMES);
  t.is(fromFile?.source, `labels file ${file}`);

  const nine = join(dir, 'nine.txt');
  await writeFile(nine, `${NAMES.slice(0, 9).join('\n')}\n`);
  const err = await t.throwsAsync(modelClasses(model, nine), { instanceOf: UserError });
  t.is(
    err.message,
    `labels file ${nine} names 9 classes but model demo-cnn's output probs has 10 classes; ` +
      'the labels must name every class, one per output element',
  );

  // Without labels, the single class-vector output still gives the top-1 index and probability.
  const bare = await unlabelledDemo(model);
  t.is(metadataLabels(bare), undefined);
  t.deepEqual(classOutput(bare), { output: 0, name: 'probs', classes: 10 });
});

test('metadata edgecut.labels that is not an array of names is one line', async (t) => {
  const { model } = await demoModelDir(t);
  const withMeta = async (value: string) => {
    const m = readModel(model.bytes, 'demo');
    m.metadata_props = [
      ...(m.metadata_props ?? []).filter((p) => p.key !== 'edgecut.labels'),
      { key: 'edgecut.labels', value },
    ];
    return ModelHandle.fromBytes(writeModel(m), 'meta.onnx');
  };
  const bad = async (value: string, pattern: RegExp) => {
    const m = await withMeta(value);
    const err = t.throws(() => classOutput(m), { instanceOf: UserError });
    t.regex(err.message, pattern);
    oneLine(t, err.message);
  };
  await bad(
    '[oops',
    /^model meta: metadata edgecut\.labels is not JSON; expected an array of class names, or set LABELS$/,
  );
  await bad(
    '{"a":1}',
    /^model meta: metadata edgecut\.labels is not a non-empty JSON array of strings; set LABELS/,
  );
  await bad('[]', /not a non-empty JSON array of strings/);
  await bad('["a", 2]', /not a non-empty JSON array of strings/);
  await bad(
    JSON.stringify(NAMES.slice(0, 3)),
    /^model meta's metadata edgecut\.labels names 3 classes but model meta's output probs has 10 classes/,
  );
});

test('top-1: probabilities taken as they are, anything else through a softmax; float16 outputs', (t) => {
  t.deepEqual(topOne([0.1, 0.7, 0.2]), { index: 1, probability: 0.7 });
  // Logits: softmax of [1, 3, 2] at index 1 is e^3 / (e^1 + e^3 + e^2).
  const soft = topOne([1, 3, 2])!;
  t.is(soft.index, 1);
  t.true(Math.abs(soft.probability - Math.exp(3) / (Math.exp(1) + Math.exp(3) + Math.exp(2))) < 1e-12);
  // In [0, 1] but not summing to 1 (e.g. sigmoid scores): a softmax too.
  t.true(
    Math.abs(topOne([0.9, 0.9, 0.1])!.probability - Math.exp(0.9) / (2 * Math.exp(0.9) + Math.exp(0.1))) <
      1e-12,
  );
  // Large logits stay finite.
  t.deepEqual(topOne([1000, 0]), { index: 0, probability: 1 });
  t.is(topOne([]), undefined);
  t.is(topOne([0.5, Number.NaN]), undefined);

  const probs = [0.05, 0.15, 0.8];
  const classes = { output: 0, name: 'p', classes: 3, labels: ['a', 'b', 'c'] };
  const half = tensorFromTyped('p', 'float16', [1, 3, 1, 1], new Uint16Array(probs.map(floatToHalf)));
  const top = frameTop1([half], classes)!;
  t.is(top.index, 2);
  t.is(top.label, 'c');
  t.true(Math.abs(top.probability - 0.8) < 1e-3, `float16 0.8 read as ${top.probability}`);
  const f32 = tensorFromTyped('p', 'float32', [1, 3], new Float32Array([2, 1, 0]));
  t.like(frameTop1([f32], { output: 0, name: 'p', classes: 3 }), { index: 0 });
  t.is(frameTop1([f32], { output: 0, name: 'p', classes: 3 })?.label, undefined);
  t.is(frameTop1([f32], { output: 0, name: 'p', classes: 4 }), undefined, 'another size than declared');
  const ints = tensorFromTyped('p', 'int32', [1, 3], new Int32Array([1, 2, 3]));
  t.is(frameTop1([ints], classes), undefined, 'not a float output');
});

test('frames through broker, tail worker and planner report the whole model’s top-1 with the file’s names', async (t) => {
  const broker = await startBroker(t);
  const { dir: modelsDir, model } = await demoModelDir(t);
  const dir = await tempDir(t);
  const images = await writePngs(dir, ['a.png', 'b.png', 'c.png', 'd.png'], 80, 60);
  const file = join(dir, 'names.csv');
  // The CSV format, out of order.
  await writeFile(
    file,
    `index,label\n${NAMES.map((n, i) => `${i},${n}`)
      .reverse()
      .join('\n')}\n`,
  );
  const classes = await modelClasses(model, file);
  const worker = new TailWorker(
    tailOptions({ mqttUrl: broker.url, workerId: 'tail-l', modelsDir }),
    silentLogger,
  );
  const planner = new Planner({ mqttUrl: broker.url, plannerId: 'planner-l', cut: 'middle' }, silentLogger);
  const profile = await profileModel(model, { runs: 2, warmup: 1, checkCuts: 0 });
  const edge = new EdgeHead(
    model,
    profile,
    edgeOptions({ mqttUrl: broker.url, deviceId: 'robot-labels', classes }),
    silentLogger,
  );
  await worker.start();
  t.teardown(() => worker.stop());
  await planner.start();
  t.teardown(() => planner.stop());
  await edge.start();
  t.teardown(() => edge.stop());
  t.true(await edge.waitForPlan());
  const seen: Frame[] = [];
  const source = await openFrameSource({ kind: 'dir', path: dir }, model, {
    count: images.length,
    fps: 0,
    loop: false,
    seed: 1,
    now: () => performance.now(),
    logger: silentLogger,
  });
  const reports: FrameReport[] = [];
  await edge.run(tap(source, seen), (r) => reports.push(r));
  t.is(reports.length, images.length);
  const whole = await createSession(await readFile(join(modelsDir, 'demo-cnn.onnx')), { threads: 1 });
  t.teardown(async () => {
    await whole.release();
  });
  for (const r of reports) {
    t.is(r.tailBy, 'tail-l', 'offloaded');
    t.true(r.cut.index > 0 && r.cut.index < model.layers);
    const [out] = await runWire(whole, seen.find((f) => f.index === r.index)!.inputs);
    const probs = new Float32Array(out!.data.buffer, out!.data.byteOffset, 10);
    const best = probs.indexOf(Math.max(...probs));
    // The demo CNN ends in a Softmax: its output is taken as the probabilities, no second softmax.
    t.deepEqual(r.top1, { index: best, label: NAMES[best], probability: probs[best] });
    t.true(
      formatFrame(r, 1).endsWith(
        `  tail by tail-l  equal (max diff 0.0e+0)  top-1 ${NAMES[best]} ${probs[best]!.toFixed(3)}`,
      ),
    );
    t.deepEqual(JSON.parse(frameJson(r, 1, 0)).top1, r.top1);
  }
});

test('edgecut edge: bad labels stop it at start with one line and exit code 2', async (t) => {
  const { dir } = await demoModelDir(t);
  const files = await tempDir(t);
  const empty = join(files, 'empty.txt');
  await writeFile(empty, '');
  const nine = join(files, 'nine.txt');
  await writeFile(nine, `${NAMES.slice(0, 9).join('\n')}\n`);
  const cases: Array<[Record<string, string>, string[], RegExp]> = [
    [
      {},
      ['--labels', join(files, 'missing.txt')],
      /^edgecut: labels file .*missing\.txt cannot be read \(ENOENT\)/,
    ],
    [
      {},
      ['--labels', empty],
      /^edgecut: labels file .*empty\.txt is empty; expected one class name per line/,
    ],
    [
      { LABELS: nine },
      [],
      /^edgecut: labels file .*nine\.txt names 9 classes but model demo-cnn's output probs has 10 classes/,
    ],
  ];
  for (const [env, flags, pattern] of cases) {
    // An unreachable broker and no profiling needed: the labels are checked before either.
    const r = await edgecut(['edge', '--models-dir', dir, '--mqtt-url', 'mqtt://127.0.0.1:1', ...flags], env);
    t.is(r.code, 2, r.stderr);
    t.regex(r.stderr, pattern);
    t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
    t.false(r.stdout.includes('"ready"'), 'stopped before it was ready');
  }
});

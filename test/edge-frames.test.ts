/**
 * Frame sources of the edge-head: images and directories of images preprocessed from the model's metadata (or the
 * PREPROCESS setting), bad files skipped with one line, bad paths refused at start, pacing; and a directory of
 * PNGs streamed through the real pipeline (embedded broker, tail worker, planner) equal to the whole model.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import jpeg from 'jpeg-js';
import { profileModel } from '../measurement/profiler.ts';
import { GraphBuilder } from '../model/builder.ts';
import { ModelHandle } from '../model/handle.ts';
import { DataType } from '../model/onnx.ts';
import { UserError } from '../runtime/errors.ts';
import { silentLogger } from '../runtime/log.ts';
import { EdgeHead, type FrameReport } from '../services/edge-head/edge.ts';
import {
  type Frame,
  openFrameSource,
  parseSourceSpec,
  type SourceOptions,
} from '../services/edge-head/frames.ts';
import { imageInput, imageTensor } from '../services/edge-head/images.ts';
import { Planner } from '../services/planner/planner.ts';
import { TailWorker } from '../services/server-tail/worker.ts';
import { startBroker } from './helpers/broker.ts';
import { captureLogger, randomPng, tap, tempDir, writePngs } from './helpers/edge.ts';
import { demoModelDir } from './helpers/models.ts';
import { edgeOptions, tailOptions } from './helpers/services.ts';

const opts = (o: Partial<SourceOptions> = {}): SourceOptions => ({
  count: 0,
  fps: 0,
  loop: true,
  seed: 1,
  now: () => performance.now(),
  logger: silentLogger,
  ...o,
});

async function take(frames: AsyncIterable<Frame>, n = Number.POSITIVE_INFINITY): Promise<Frame[]> {
  const out: Frame[] = [];
  for await (const f of frames) {
    out.push(f);
    if (out.length >= n) break;
  }
  return out;
}

/** A float16 model without preprocessing metadata (like the real squeezenet1.0-fp16). */
async function bareFloat16Model(): Promise<ModelHandle> {
  const b = new GraphBuilder({ name: 'bare16', dtype: DataType.FLOAT16, seed: 3 });
  const x = b.input('data', [1, 3, 32, 32]);
  b.output(b.relu(b.conv(x, 4, { kernel: 3, pad: 1, name: 'conv' }), 'out'));
  return ModelHandle.fromBytes(b.toBytes(), 'bare16.onnx');
}

test('SOURCE values', (t) => {
  t.deepEqual(parseSourceSpec('synthetic'), { kind: 'synthetic' });
  t.deepEqual(parseSourceSpec('image:/a/b.png'), { kind: 'image', path: '/a/b.png' });
  t.deepEqual(parseSourceSpec('dir:frames'), { kind: 'dir', path: 'frames' });
  t.is(parseSourceSpec('camera'), undefined);
  t.is(parseSourceSpec('dir:'), undefined);
});

test('preprocessing comes from the model metadata, PREPROCESS overrides it or supplies it', async (t) => {
  const { model } = await demoModelDir(t);
  const demo = imageInput(model, undefined);
  t.deepEqual(demo.spec.size, [64, 64]);
  t.is(demo.spec.channels, 'RGB');
  t.is(demo.spec.dtype, 'float32');
  t.is(demo.spec.scale, 1 / 255);
  t.is(imageInput(model, { channels: 'BGR' }).spec.channels, 'BGR');
  const mismatch = t.throws(() => imageInput(model, { size: [32, 32] }), { instanceOf: UserError });
  t.regex(mismatch.message, /size \[32, 32\] does not match input input \[64, 64\]/);

  const bare = await bareFloat16Model();
  const none = t.throws(() => imageInput(bare, undefined), { instanceOf: UserError });
  t.regex(none.message, /^model bare16 has no preprocessing in its metadata.*set PREPROCESS/);
  t.false(none.message.includes('\n'));
  const raw = imageInput(bare, { channels: 'BGR' });
  t.deepEqual(raw.spec, { size: [32, 32], channels: 'BGR', dtype: 'float16' });
  const tensor = imageTensor(randomPng(40, 30, 9), raw, 'x.png');
  t.is(tensor.dtype, 'float16');
  t.deepEqual(tensor.shape, [1, 3, 32, 32]);
  t.is(tensor.data.byteLength, 3 * 32 * 32 * 2);
});

test('a directory: natural name order, JPEG too, other files ignored, a bad image skipped with one line', async (t) => {
  const { model } = await demoModelDir(t);
  const dir = await tempDir(t);
  const [f1, f2, f10] = await writePngs(dir, ['f1.png', 'f2.png', 'f10.png']);
  const corrupt = join(dir, 'f3.png');
  await writeFile(corrupt, Buffer.concat([(await readFile(f1!)).subarray(0, 40), Buffer.from('garbage')]));
  const rgb = Buffer.alloc(20 * 10 * 4, 128);
  await writeFile(join(dir, 'f4.jpg'), jpeg.encode({ data: rgb, width: 20, height: 10 }, 90).data);
  await writeFile(join(dir, 'notes.txt'), 'not an image');
  const { logger, lines } = captureLogger();
  const frames = await take(
    await openFrameSource({ kind: 'dir', path: dir }, model, opts({ logger, count: 8 })),
  );
  t.deepEqual(
    frames.map((f) => f.index),
    [0, 1, 2, 3, 4, 5, 6, 7],
  );
  const input = imageInput(model, undefined);
  const expect = async (path: string) => imageTensor(await readFile(path), input, path).data;
  // f1, f2, f4.jpg, f10, then again from the start (f3 is broken).
  t.deepEqual(frames[0]!.inputs[0]!.data, await expect(f1!));
  t.deepEqual(frames[1]!.inputs[0]!.data, await expect(f2!));
  t.deepEqual(frames[2]!.inputs[0]!.data, await expect(join(dir, 'f4.jpg')));
  t.deepEqual(frames[3]!.inputs[0]!.data, await expect(f10!));
  t.deepEqual(frames[4]!.inputs[0]!.data, await expect(f1!));
  t.deepEqual(frames[0]!.inputs[0]!.shape, [1, 3, 64, 64]);
  const skipped = lines.filter((l) => String(l.msg).includes('f3.png'));
  t.is(skipped.length, 1, 'the broken file is named once, not on every pass');
  t.is(skipped[0]!.level, 40);

  const once = await take(await openFrameSource({ kind: 'dir', path: dir }, model, opts({ loop: false })));
  t.is(once.length, 4);
  const single = await take(
    await openFrameSource({ kind: 'image', path: f2! }, model, opts({ loop: false })),
  );
  t.is(single.length, 1);
  const looped = await take(await openFrameSource({ kind: 'image', path: f2! }, model, opts({ count: 3 })));
  t.is(looped.length, 3);
});

test('bad paths stop at start with one line; a directory of broken images ends the stream', async (t) => {
  const { model } = await demoModelDir(t);
  const dir = await tempDir(t);
  const refuse = async (spec: Parameters<typeof openFrameSource>[0], pattern: RegExp) => {
    const err = await t.throwsAsync(openFrameSource(spec, model, opts()), { instanceOf: UserError });
    t.regex(err.message, pattern);
    t.false(err.message.includes('\n'));
  };
  await refuse({ kind: 'dir', path: dir }, /no PNG or JPEG files/);
  await refuse(
    { kind: 'dir', path: join(dir, 'missing') },
    /missing: cannot read the image directory \(ENOENT\)/,
  );
  await refuse({ kind: 'image', path: join(dir, 'none.png') }, /none\.png: cannot read the image \(ENOENT\)/);
  await writeFile(join(dir, 'broken.png'), 'not a png at all');
  await refuse({ kind: 'image', path: join(dir, 'broken.png') }, /broken\.png: not a PNG or JPEG file/);
  const { logger } = captureLogger();
  const frames = await openFrameSource({ kind: 'dir', path: dir }, model, opts({ logger }));
  const err = await t.throwsAsync(take(frames), { instanceOf: UserError });
  t.regex(err.message, /none of its 1 image files could be decoded/);
  const bare = await bareFloat16Model();
  await writePngs(dir, ['ok.png']);
  const noSpec = await t.throwsAsync(openFrameSource({ kind: 'dir', path: dir }, bare, opts()), {
    instanceOf: UserError,
  });
  t.regex(noSpec.message, /set PREPROCESS/);
});

test('frames are paced at the given fps', async (t) => {
  const { model } = await demoModelDir(t);
  const t0 = performance.now();
  const frames = await take(await openFrameSource({ kind: 'synthetic' }, model, opts({ count: 6, fps: 50 })));
  const ms = performance.now() - t0;
  t.is(frames.length, 6);
  // Frame i is due at i x 20 ms: the sixth at 100 ms.
  t.true(ms >= 98 && ms < 200, `6 frames at 50 fps took ${ms.toFixed(1)} ms`);
});

test('a directory of PNGs through head, broker and tail worker equals the whole model', async (t) => {
  const broker = await startBroker(t);
  const { dir: modelsDir, model } = await demoModelDir(t);
  const dir = await tempDir(t);
  await writePngs(dir, ['a.png', 'b.png', 'c.png'], 100, 75);
  await writeFile(
    join(dir, 'b2-corrupt.png'),
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2]),
  );
  const worker = new TailWorker(
    tailOptions({ mqttUrl: broker.url, workerId: 'tail-a', modelsDir }),
    silentLogger,
  );
  const planner = new Planner({ mqttUrl: broker.url, plannerId: 'planner-a', cut: 'middle' }, silentLogger);
  const profile = await profileModel(model, { runs: 2, warmup: 1, checkCuts: 0 });
  const edge = new EdgeHead(
    model,
    profile,
    edgeOptions({ mqttUrl: broker.url, deviceId: 'robot-img' }),
    silentLogger,
  );
  await worker.start();
  t.teardown(() => worker.stop());
  await planner.start();
  t.teardown(() => planner.stop());
  await edge.start();
  t.teardown(() => edge.stop());
  t.true(await edge.waitForPlan());
  const { logger, lines } = captureLogger();
  const seen: Frame[] = [];
  const source = await openFrameSource(
    { kind: 'dir', path: dir },
    model,
    opts({ logger, count: 7, fps: 100 }),
  );
  const reports: FrameReport[] = [];
  await edge.run(tap(source, seen), (r) => reports.push(r));
  t.is(reports.length, 7);
  t.deepEqual(reports.map((r) => r.index).sort(), [0, 1, 2, 3, 4, 5, 6]);
  for (const r of reports) {
    t.is(r.tailBy, 'tail-a');
    t.is(r.fallback, undefined);
    t.true(r.cut.index > 0 && r.cut.index < model.layers);
    t.true(r.maxAbsDiff !== undefined && r.maxAbsDiff <= 1e-5, `frame ${r.index} differs by ${r.maxAbsDiff}`);
  }
  // The images were stretched from 100x75 to the model's 64x64, and they are not all the same.
  t.deepEqual(seen[0]!.inputs[0]!.shape, [1, 3, 64, 64]);
  t.notDeepEqual(seen[0]!.inputs[0]!.data, seen[1]!.inputs[0]!.data);
  t.deepEqual(seen[0]!.inputs[0]!.data, seen[3]!.inputs[0]!.data);
  t.is(lines.filter((l) => String(l.msg).includes('b2-corrupt.png')).length, 1);
});

/**
 * Weights by reference (model/external.ts) and weight files (model/weight-files.ts): a part whose weights
 * point into a copy of the model file computes the same bytes as the part holding them, at every cut; the copy is
 * written once, under its content hash, and found again; a directory open to others is refused with one line; a
 * copy that cannot be written is one warning, and sessions then hold their own weights.
 */
import { chmod, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { EXTERNAL_MIN_BYTES } from '../model/external.ts';
import { readModel } from '../model/onnx.ts';
import { mulberry32 } from '../model/random.ts';
import { createSession, runWire } from '../model/runtime.ts';
import { SessionThread } from '../model/session-thread.ts';
import { WeightFiles } from '../model/weight-files.ts';
import { ConfigError } from '../runtime/config.ts';
import { randomInputs } from '../services/edge-head/frames.ts';
import { demoModelDir } from './helpers/models.ts';

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-weights-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('a part referencing the weight file computes the same bytes as the part holding its weights, at every cut', async (t) => {
  const { model } = await demoModelDir(t);
  const dir = join(await tempDir(t), 'weights');
  const files = new WeightFiles(dir);
  const ref = await files.forModel(model);
  t.truthy(ref);
  t.is((await stat(join(dir, ref!.file))).size, model.bytes.byteLength);
  const big = model.model.graph.initializer.filter(
    (i) => (i.raw_data?.byteLength ?? 0) >= EXTERNAL_MIN_BYTES,
  );
  t.true(big.length > 0, 'the demo CNN has weights large enough to reference');
  const x = randomInputs(model.inputs, mulberry32(7));
  const whole = await runWire(await createSession(model.bytes), x);
  const byRef = await runWire(await createSession(model.referencing(ref!.file), { weightsDir: ref!.dir }), x);
  t.deepEqual(byRef, whole, 'the whole model, by reference');
  for (let k = 1; k < model.layers; k++) {
    const inline = model.part(k, 'tail');
    const referencing = model.part(k, 'tail', ref!.file);
    const tail = readModel(referencing, 'tail');
    // Every large weight of the tail is a reference into the file; small ones stay inline.
    for (const init of tail.graph.initializer) {
      const external = init.data_location === 1;
      const size = Number(
        init.external_data?.find((e) => e.key === 'length')?.value ?? init.raw_data?.byteLength,
      );
      t.is(external, size >= EXTERNAL_MIN_BYTES, `cut ${k}: ${init.name} (${size} bytes)`);
    }
    t.true(referencing.byteLength <= inline.byteLength);
    const head = await runWire(await createSession(model.part(k, 'head')), x);
    const a = await runWire(await createSession(inline), head);
    const s = await SessionThread.create(referencing, { weightsDir: ref!.dir }, true);
    const b = await s.run(head);
    await s.release();
    t.deepEqual(b, a, `cut ${k}`);
    t.deepEqual(b, whole, `cut ${k} vs the whole model`);
  }
  // The model itself still holds its weights (references are made on copies).
  t.true(model.model.graph.initializer.every((i) => i.data_location !== 1));
});

test('a weight file is written once, under its content hash, and found again by another process', async (t) => {
  const { model } = await demoModelDir(t);
  const dir = join(await tempDir(t), 'w');
  const a = new WeightFiles(dir);
  const [r1, r2] = await Promise.all([a.forModel(model), a.forModel(model)]);
  t.deepEqual(r1, r2);
  t.is(r1!.file, `${model.id}.onnx`);
  const before = await stat(join(dir, r1!.file));
  t.is(before.mode & 0o777, 0o600);
  t.is((await stat(dir)).mode & 0o777, 0o700);
  // Another WeightFiles on the same directory (another service on this host) finds it and writes nothing.
  const again = await new WeightFiles(dir).forModel(model);
  t.deepEqual(again, r1);
  t.is((await stat(join(dir, r1!.file))).mtimeMs, before.mtimeMs);
  t.deepEqual(await readdir(dir), [r1!.file], 'no temporary file left');
  // A file of the wrong size under that name (not a copy of the model) is replaced.
  await writeFile(join(dir, r1!.file), 'truncated');
  t.deepEqual(await new WeightFiles(dir).forModel(model), r1);
  t.is((await stat(join(dir, r1!.file))).size, model.bytes.byteLength);
});

test('a weights directory open to others is refused with one line; a file that cannot be written is one warning', async (t) => {
  const { model } = await demoModelDir(t);
  const open = join(await tempDir(t), 'open');
  await mkdir(open);
  await chmod(open, 0o777);
  const err = await t.throwsAsync(new WeightFiles(open).checkDir(), { instanceOf: ConfigError });
  t.regex(
    err!.message,
    /WEIGHTS_DIR .*open must belong to this user and be closed to others \(mode 700\); it is mode 777/,
  );
  // A directory where the file should be: the copy cannot be put there. One warning; sessions hold their weights.
  const dir = join(await tempDir(t), 'w');
  await mkdir(join(dir, `${model.id}.onnx`), { recursive: true });
  await chmod(dir, 0o700);
  const warnings: string[] = [];
  const files = new WeightFiles(dir, (fields, msg) => warnings.push(`${msg} (${String(fields.err)})`));
  t.is(await files.forModel(model), undefined);
  t.is(await files.forModel(model), undefined);
  t.is(warnings.length, 1);
  t.regex(
    warnings[0]!,
    /^cannot write the weight file: sessions of this model hold their own copy of its weights/,
  );
  t.deepEqual(
    (await readdir(dir)).filter((f) => f.startsWith('.')),
    [],
    'the temporary file was removed',
  );
  // No directory at all: nothing written, nothing warned.
  t.is(await new WeightFiles(undefined).forModel(model), undefined);
});

/**
 * The tail workers' model directory: a model copied in is served by the next request at once (the directory's
 * mtime moved), and a model rewritten in place gets its new hash.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { ModelDirectory } from '../model/directory.ts';
import { UserError } from '../runtime/errors.ts';
import { createLogger } from '../runtime/log.ts';
import { writeDemoModel } from '../services/edge-head/main.ts';

const logger = createLogger('silent', {});

test('a model copied into the directory is found by the first request for it, within the rescan limit', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-models-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // An hour between rate-limited rescans: only the directory's mtime can make the second lookup rescan.
  const models = new ModelDirectory(dir, logger, 3_600_000);
  await models.scan();
  t.deepEqual(models.ids(), []);
  const path = await writeDemoModel(dir);
  const id = createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
  const model = await models.get(id);
  t.is(model?.id, id);
  t.is(await models.get('0'.repeat(64)), undefined, 'an unknown id stays unknown');
});

test('a missing directory is one clear error naming MODELS_DIR', async (t) => {
  const models = new ModelDirectory('/nonexistent/models', logger);
  await t.throwsAsync(models.scan(), {
    instanceOf: UserError,
    message:
      'models directory /nonexistent/models does not exist: create it, or point MODELS_DIR at the directory of your *.onnx models',
  });
});

test('a model rewritten in place is served under its new hash after a rescan', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-models-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const path = await writeDemoModel(dir);
  const models = new ModelDirectory(dir, logger, 0);
  await models.scan();
  const [id] = models.ids();
  const bytes = await readFile(path);
  bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 1, bytes.length - 1);
  await writeFile(path, bytes);
  // Size unchanged; the scan sees the new mtime and hashes the file again.
  await utimes(path, new Date(), new Date(Date.now() + 5000));
  await models.scan();
  t.is(models.ids().length, 1);
  t.not(models.ids()[0], id);
});

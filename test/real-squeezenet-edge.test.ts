/**
 * The command docs/edge.md shows for the real SqueezeNet (../shared), run as processes: its photos through the
 * broker and a tail worker, every offloaded result equal to the whole model.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test, { type ExecutionContext } from 'ava';
import { EDGECUT_BIN, type ServiceProcess, startBrokerProcess, startService } from '../cli/processes.ts';

const run = promisify(execFile);
const SHARED = resolve(fileURLToPath(new URL('..', import.meta.url)), '../shared');
const MODEL = join(SHARED, 'models/squeezenet1.0-fp16.onnx');
const IMAGES = join(SHARED, 'images');
const present = existsSync(MODEL) && existsSync(IMAGES);

const body = async (t: ExecutionContext) => {
  if (!present) {
    t.fail(`CI must provide ../shared next to the repo; missing ${MODEL} or ${IMAGES}`);
    return;
  }
  // The doc's relative paths, in a scratch folder that links to ../shared (nothing is copied).
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-real-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await symlink(MODEL, join(dir, 'squeezenet1.0-fp16.onnx'));
  await symlink(IMAGES, join(dir, 'photos'));
  const procs: ServiceProcess[] = [];
  t.teardown(async () => {
    for (const p of procs.reverse()) await p.stop(3000);
  });
  const quiet = { onStderr: () => undefined, env: { LOG_LEVEL: 'error' } };
  const { proc: broker, url } = await startBrokerProcess(quiet);
  procs.push(broker);
  const env = { LOG_LEVEL: 'error', MQTT_URL: url, PROFILE_RUNS: '0' };
  const tail = startService('tail', ['tail', '--worker-id', 'real-tail', '--models-dir', dir], {
    ...quiet,
    env,
  });
  const planner = startService('planner', ['planner', '--cut', 'middle'], { ...quiet, env });
  procs.push(tail, planner);
  await Promise.all([tail.ready, planner.ready]);
  const args = [
    'edge',
    '--model',
    'squeezenet1.0-fp16.onnx',
    '--source',
    'dir:./photos',
    '--preprocess',
    '{"channels":"BGR"}',
  ];
  args.push('--frames', '4', '--verify', 'true', '--device-id', 'real-robot', '--profile-runs', '2');
  const { stdout } = await run(process.execPath, [EDGECUT_BIN, ...args], {
    cwd: dir,
    env: { ...process.env, ...env },
    timeout: 120_000,
  });
  t.regex(
    stdout,
    /check: 4\/4 frames offloaded and equal to the whole model run locally, 0 run on the device and equal to it \(0 local fallbacks\) \(max abs diff 0\.00e\+0/,
  );
};

if (present || process.env.CI === 'true')
  test('docs/edge.md: the real SqueezeNet on the shared photos, split and bit-exact', body);
else test.skip('docs/edge.md: the real SqueezeNet (skipped: ../shared missing)', () => undefined);

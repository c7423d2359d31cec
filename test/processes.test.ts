/**
 * The services as real processes, as compose.yaml and the demo run them: each announces itself, and each stops
 * cleanly on SIGTERM after the frames in flight finish, leaving a retained `offline`.
 */
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import {
  BROKER_NODE_FLAGS,
  MALLOC_TUNABLES,
  SERVICE_NODE_FLAGS,
  type ServiceProcess,
  serviceEnv,
  serviceNodeFlags,
  startBrokerProcess,
  startService,
} from '../cli/processes.ts';
import { StatusSchema } from '../schemas/messages.ts';
import { topics } from '../schemas/topics.ts';
import { writeDemoModel } from '../services/edge-head/main.ts';
import { collect, connectClient } from './helpers/broker.ts';
import { edgecut } from './helpers/cli.ts';
import { waitFor } from './helpers/wait.ts';

test('services stop on SIGTERM after their frames in flight, and say offline', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-proc-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const model = await writeDemoModel(dir);
  const procs: ServiceProcess[] = [];
  t.teardown(async () => {
    for (const p of procs.reverse()) await p.stop(2000);
  });
  const quiet = { onStderr: () => undefined, env: { LOG_LEVEL: 'warn' } };
  const { proc: broker, url } = await startBrokerProcess(quiet);
  procs.push(broker);
  const env = { LOG_LEVEL: 'warn', MQTT_URL: url };
  const tail = startService('tail', ['tail', '--worker-id', 'proc-tail', '--models-dir', dir], {
    ...quiet,
    env,
  });
  const planner = startService('planner', ['planner', '--planner-id', 'proc-planner', '--cut', 'middle'], {
    ...quiet,
    env,
  });
  procs.push(tail, planner);
  await Promise.all([tail.ready, planner.ready]);

  const lines: string[] = [];
  let seen = 0;
  let onFrame: () => void = () => undefined;
  const edge = startService('edge', ['edge', '--device-id', 'proc-robot', '--model', model, '--fps', '100'], {
    ...quiet,
    env,
    onStdout: (line) => {
      lines.push(line);
      if (line.startsWith('frame ')) {
        seen++;
        onFrame();
      }
    },
  });
  procs.push(edge);
  await edge.ready;
  const watcher = await connectClient(t, url);
  const edgeStatus = await collect(watcher, topics.deviceStatus.build({ device: 'proc-robot' }));
  const status = async () => StatusSchema.parse(JSON.parse((await edgeStatus.next()).payload.toString()));
  t.is((await status()).state, 'online');
  await new Promise<void>((resolve) => {
    onFrame = () => seen >= 10 && resolve();
  });

  t.is(await edge.stop(), 0, 'edge exits 0 on SIGTERM');
  const frames = lines.filter((l) => l.startsWith('frame '));
  const numbers = frames.map((l) => Number(/^frame\s+(\d+)/.exec(l)?.[1]));
  const done = lines.find((l) => l.startsWith('done: '));
  t.truthy(done, 'the edge prints its closing line');
  t.regex(
    done ?? '',
    new RegExp(
      `^done: ${frames.length} frames answered \\(${frames.length} by tail workers, 0 on the device by plan, 0 local`,
    ),
  );
  // Frames complete in order here (one tail, window 2), and none taken was lost.
  t.deepEqual(
    [...numbers].sort((a, b) => a - b),
    numbers.map((_, i) => i + 1),
  );
  t.is((await status()).state, 'offline');

  const tailStatus = await collect(watcher, topics.workerStatus.build({ worker: 'proc-tail' }));
  t.is(StatusSchema.parse(JSON.parse((await tailStatus.next()).payload.toString())).state, 'online');
  t.is(await tail.stop(), 0, 'tail exits 0 on SIGTERM');
  t.is(StatusSchema.parse(JSON.parse((await tailStatus.next()).payload.toString())).state, 'offline');
  t.is(await planner.stop(), 0);
  t.is(await broker.stop(), 0);
});

test('a service that exits before it is ready says why: its last output is in the error', async (t) => {
  const tail = startService('tail', ['tail', '--concurrency', 'many'], { onStderr: () => undefined });
  const err = await t.throwsAsync(tail.ready);
  t.regex(err?.message ?? '', /^tail exited with code 2 before it was ready; its last output: .*concurrency/);
});

/** An empty models directory of this test's own (the tail worker needs one; ./models exists only after a demo). */
async function emptyModelsDir(t: { teardown(f: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-models-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('a tail worker or planner that cannot reach the broker gives up after MQTT_CONNECT_TIMEOUT_MS with one line', async (t) => {
  const models = await emptyModelsDir(t);
  for (const service of ['tail', 'planner']) {
    const r = await edgecut([service, '--mqtt-url', 'mqtt://127.0.0.1:9', '--metrics-port', '0'], {
      MQTT_CONNECT_TIMEOUT_MS: '1000',
      MODELS_DIR: models,
    });
    t.is(r.code, 2, service);
    t.is(
      r.stderr.trim().split('\n').pop(),
      'edgecut: cannot reach the broker at mqtt://127.0.0.1:9: no connection within 1 s (MQTT_CONNECT_TIMEOUT_MS); is it running, and is MQTT_URL right?',
    );
  }
});

test('a service still waiting for the broker stops on the first SIGTERM', async (t) => {
  const models = await emptyModelsDir(t);
  for (const service of ['tail', 'planner']) {
    const lines: string[] = [];
    const p = startService(service, [service, '--mqtt-url', 'mqtt://127.0.0.1:9', '--metrics-port', '0'], {
      onStderr: (l) => lines.push(l),
      env: { MODELS_DIR: models },
    });
    p.ready.catch(() => undefined);
    // Started, and trying to connect.
    await waitFor(
      () => lines.some((l) => l.includes('broker unreachable')),
      `${service} to try to connect`,
      20_000,
    );
    p.child.kill('SIGTERM');
    const code = await Promise.race([
      p.exited,
      new Promise((r) => setTimeout(() => r('still running'), 10_000)),
    ]);
    if (code === 'still running') p.child.kill('SIGKILL');
    t.is(code, 0, `${service} exits on the first SIGTERM`);
  }
});

test('a weights directory open to other users stops the tail worker and the edge at start with one line', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-open-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await chmod(dir, 0o777);
  const models = await mkdtemp(join(tmpdir(), 'edgecut-models-'));
  t.teardown(() => rm(models, { recursive: true, force: true }));
  const model = await writeDemoModel(models);
  for (const args of [
    ['tail', '--models-dir', models, '--profile-runs', '0', '--metrics-port', '0'],
    ['edge', '--model', model, '--frames', '1', '--mqtt-url', 'mqtt://127.0.0.1:9'],
  ]) {
    const r = await edgecut([...args, '--weights-dir', dir], { MQTT_CONNECT_TIMEOUT_MS: '1000' });
    t.is(r.code, 2, args[0]);
    t.is(
      r.stderr.trim().split('\n').pop(),
      `edgecut: WEIGHTS_DIR ${dir} must belong to this user and be closed to others (mode 700); it is mode 777, owner ${process.getuid?.()}: choose another directory, or none`,
      args[0],
    );
  }
});

test("the broker's process gets the malloc settings and its V8 options (young generation, collector on its own thread); a caller's malloc settings are kept", async (t) => {
  const quiet = { onStdout: () => undefined, onStderr: () => undefined };
  const environ = async (pid: number | undefined) =>
    (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0').find((v) => v.startsWith('GLIBC_TUNABLES='));
  const { proc } = await startBrokerProcess(quiet);
  t.teardown(() => proc.stop(3000));
  // glibc cuts the variable in place at the end of each setting it reads: the process's copy shows the first.
  const seen = await environ(proc.child.pid);
  t.is(seen, `GLIBC_TUNABLES=${MALLOC_TUNABLES.split(':')[0]}`);
  const own = 'glibc.malloc.trim_threshold=1048576';
  const { proc: other } = await startBrokerProcess({ ...quiet, env: { GLIBC_TUNABLES: own } });
  t.teardown(() => other.stop(3000));
  t.is(await environ(other.child.pid), `GLIBC_TUNABLES=${own}`);
  t.deepEqual(serviceEnv(['edge'], {}), { GLIBC_TUNABLES: MALLOC_TUNABLES }, 'the edge too');
  t.deepEqual(serviceEnv(['tail'], {}), {}, 'not the tail worker');
  t.deepEqual(serviceEnv(['edge'], { GLIBC_TUNABLES: own }), {}, "the caller's own kept");
  // Its young generation too (the other services keep the small one).
  const cmdline = (await readFile(`/proc/${proc.child.pid}/cmdline`, 'utf8')).split('\0');
  for (const flag of BROKER_NODE_FLAGS) t.true(cmdline.includes(flag), cmdline.join(' '));
  t.deepEqual(serviceNodeFlags(['tail']), SERVICE_NODE_FLAGS);
});

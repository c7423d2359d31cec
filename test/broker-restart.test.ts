/**
 * A restart of the embedded broker: with a data directory (BROKER_DATA_DIR) its retained messages survive it on
 * disk; without one they are lost, and every service publishes its own retained state again when it reconnects
 * (runtime/mqtt.ts), so a planner started after the restart still finds the workers' profiles and plans for the
 * devices: offloading does not silently stop either way.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { EmbeddedBroker } from '../broker/broker.ts';
import { profileModel } from '../measurement/profiler.ts';
import { ConfigError } from '../runtime/config.ts';
import { silentLogger } from '../runtime/log.ts';
import { topics } from '../schemas/topics.ts';
import { EdgeHead } from '../services/edge-head/edge.ts';
import { Planner } from '../services/planner/planner.ts';
import { TailWorker } from '../services/server-tail/worker.ts';
import { collect, connectClient, stablePort } from './helpers/broker.ts';
import { waitFor } from './helpers/edge.ts';
import { demoModelDir } from './helpers/models.ts';
import { edgeOptions, tailOptions } from './helpers/services.ts';

test('after a broker restart the workers and devices publish their retained state again; a new planner plans', async (t) => {
  const port = await stablePort();
  const start = async () => {
    const b = new EmbeddedBroker({ host: '127.0.0.1', port, logger: silentLogger });
    await b.start();
    return b;
  };
  let broker = await start();
  t.teardown(() => broker.stop());
  const { dir, model } = await demoModelDir(t);
  const worker = new TailWorker(
    tailOptions({ mqttUrl: broker.url, workerId: 'tail-r', modelsDir: dir, profileRuns: 1 }),
    silentLogger,
  );
  await worker.start();
  t.teardown(() => worker.stop());
  const profile = await profileModel(model, { runs: 1, warmup: 1, checkCuts: 0 });
  const edge = new EdgeHead(
    model,
    profile,
    edgeOptions({ mqttUrl: broker.url, deviceId: 'robot-r' }),
    silentLogger,
  );
  await edge.start();
  t.teardown(() => edge.stop());
  const before = await connectClient(t, broker.url);
  const seen = await collect(before, topics.workerProfile.filter());
  await seen.next(30_000);

  // The broker restarts on the same port, empty.
  await broker.stop();
  broker = await start();
  await waitFor(() => worker.connected, 'the worker to reconnect', 20_000);
  // A planner started now, which never saw the old broker's retained messages.
  const planner = new Planner(
    { mqttUrl: broker.url, plannerId: 'planner-r', cut: 'auto', bandwidth: 100e6 },
    silentLogger,
  );
  await planner.start();
  t.teardown(() => planner.stop());
  await waitFor(() => planner.plans.has('robot-r'), 'a plan for the device after the restart', 20_000);
  t.is(planner.noPlan.get('robot-r'), undefined);
  const after = await connectClient(t, broker.url);
  const retained = await collect(after, topics.workerProfile.filter());
  const got = await retained.next();
  t.is(got.topic, topics.workerProfile.build({ worker: 'tail-r', model: model.id }));
});

test('with BROKER_DATA_DIR retained messages survive a restart, deletions too; a second broker on the directory is refused', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'edgecut-broker-data-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const start = async () => {
    const b = new EmbeddedBroker({ host: '127.0.0.1', port: 0, logger: silentLogger, dataDir });
    await b.start();
    return b;
  };
  let broker = await start();
  t.teardown(() => broker.stop());
  // A second broker on the same directory: one line naming the setting.
  const second = new EmbeddedBroker({ host: '127.0.0.1', port: 0, logger: silentLogger, dataDir });
  const err = await t.throwsAsync(() => second.start(), { instanceOf: ConfigError });
  t.regex(
    err?.message ?? '',
    /^BROKER_DATA_DIR=.* \(--data-dir\): cannot open the retained-message store: another broker is using this directory$/,
  );
  await second.stop();

  const client = await connectClient(t, broker.url);
  const plan = topics.plan.build({ device: 'robot-d' });
  const status = topics.workerStatus.build({ worker: 'tail-d' });
  const profile = topics.workerProfile.build({ worker: 'tail-d', model: 'm' });
  await client.publishAsync(plan, JSON.stringify({ cut: 3 }), { qos: 1, retain: true });
  await client.publishAsync(status, 'first', { qos: 1, retain: true });
  await client.publishAsync(status, 'second', { qos: 1, retain: true });
  await client.publishAsync(profile, Buffer.alloc(100_000, 7), { qos: 1, retain: true });
  await client.publishAsync(plan, '', { qos: 1, retain: true }); // deleted [MQTT-3.3.1-10]
  await client.endAsync();

  await broker.stop();
  broker = await start();
  const after = await connectClient(t, broker.url);
  const got = await collect(after, 'edgecut/#');
  const messages = [await got.next(10_000), await got.next(10_000)].sort((a, b) =>
    a.topic.localeCompare(b.topic),
  );
  t.deepEqual(
    messages.map((m) => [m.topic, m.payload.length]),
    [
      [profile, 100_000],
      [status, 6],
    ],
  );
  t.is(messages[1]!.payload.toString(), 'second');
  t.true(messages[0]!.payload.equals(Buffer.alloc(100_000, 7)));
  await t.throwsAsync(() => got.next(500), { message: /no message/ }, 'the deleted plan stays deleted');
});

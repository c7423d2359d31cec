/**
 * A restart of the embedded broker loses its retained messages (they live in memory); every service publishes its
 * own retained state again when it reconnects (common/mqtt.ts), so a planner started after the restart still finds
 * the workers' profiles and plans for the devices: offloading does not silently stop.
 */
import test from 'ava';
import { EmbeddedBroker } from '../broker/broker.ts';
import { silentLogger } from '../common/log.ts';
import { profileModel } from '../common/profile/profiler.ts';
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

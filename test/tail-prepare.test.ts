/**
 * The planner's prepare (services/server-tail/worker.ts `onPrepare`): a tail worker asked to load a tail ahead of
 * a plan loads its session and says so at once in its telemetry (`warm`); a prepare it cannot act on is logged and
 * ignored, and the worker goes on serving. Real broker, real worker, a raw MQTT client as the planner.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { ModelHandle } from '../model/handle.ts';
import { writeModel } from '../model/onnx.ts';
import { SessionThread } from '../model/session-thread.ts';
import { WorkerTelemetrySchema } from '../schemas/messages.ts';
import { topics } from '../schemas/topics.ts';
import { GUESS_LOADS, RUNTIME_THREADS, TailWorker } from '../services/server-tail/worker.ts';
import { collect, connectClient, startBroker } from './helpers/broker.ts';
import { model as graph, node, vi, weight } from './helpers/graphs.ts';
import { capturingLogger } from './helpers/log.ts';
import { demoModelDir } from './helpers/models.ts';
import { tailOptions } from './helpers/services.ts';
import { waitFor } from './helpers/wait.ts';

test('a prepare loads the tail and the next telemetry, sent at once, reports it warm; bad prepares are ignored', async (t) => {
  const broker = await startBroker(t);
  const { dir, model } = await demoModelDir(t);
  const { logger, lines } = capturingLogger('debug');
  const logged = (msg: string) => lines.filter((l) => l.msg === msg);
  // Telemetry once a minute: a report within seconds of the prepare is the one the prepare sends.
  const worker = new TailWorker(
    tailOptions({ mqttUrl: broker.url, workerId: 'tail-prep', modelsDir: dir, telemetryMs: 60_000 }),
    logger,
  );
  await worker.start();
  t.teardown(() => worker.stop());
  const planner = await connectClient(t, broker.url);
  const telemetry = await collect(planner, topics.workerTelemetry.build({ worker: 'tail-prep' }));
  const prepare = (body: unknown) =>
    planner.publishAsync(
      topics.tailPrepare.build({ planner: 'p1' }),
      typeof body === 'string' ? body : JSON.stringify(body),
      { qos: 1 },
    );
  const k = Math.floor(model.layers / 2);
  const valid = { version: 1, device: 'r1', modelId: model.id, cut: k, issuedAt: Date.now() };

  // Not JSON, a wrong field, a model the worker does not hold, a cut the model does not have: logged, no telemetry.
  await prepare('not json');
  await prepare({ ...valid, cut: -1 });
  await prepare({ ...valid, modelId: 'f'.repeat(64) });
  await prepare({ ...valid, cut: model.layers + 5 });
  const ignored = () => [
    ...logged('tail prepare ignored'),
    ...logged('tail prepare for a tail not held here'),
  ];
  await waitFor(() => ignored().length >= 4, 'four ignored prepares logged');
  t.deepEqual(
    logged('tail prepare ignored').map((l) => String(l.err).replace(/^(tail prepare: cut): .*/, '$1: ...')),
    ['tail prepare: payload is not JSON', 'tail prepare: cut: ...'],
  );
  t.is(logged('tail prepare for a tail not held here').length, 2);
  t.is(telemetry.all.length, 0);

  // A valid prepare: the tail is loaded, logged, and reported warm at once.
  await prepare(valid);
  const report = WorkerTelemetrySchema.parse(JSON.parse((await telemetry.next(10_000)).payload.toString()));
  t.deepEqual(report.warm, [`${model.id}:${k}`]);
  t.is(logged('tail prepared for a plan').length, 1);

  // A burst of prepares for every cut at once: at most 8 wait their turn, the rest are dropped with a warning, and
  // the worker goes on preparing the ones that waited.
  const cuts = Array.from({ length: model.layers }, (_, c) => c).filter((c) => c !== k);
  t.true(cuts.length > 9, `${cuts.length} cuts`);
  const burst = JSON.stringify(cuts.map((cut) => ({ ...valid, cut })));
  await planner.publishAsync(topics.tailPrepare.build({ planner: 'p1' }), burst, { qos: 1 }); // an array: refused
  await Promise.all(cuts.map((cut) => prepare({ ...valid, cut })));
  await waitFor(() => logged('tail prepare dropped: too many waiting').length > 0, 'a dropped prepare');
  await waitFor(() => logged('tail prepared for a plan').length >= 9, 'the waiting ones prepared');
  t.true(logged('tail prepared for a plan').length < cuts.length + 1, 'some were dropped');
});

test('a speculative prepare (before the link is measured) loads a tail only while the session cache has room', async (t) => {
  const broker = await startBroker(t);
  const { dir, model } = await demoModelDir(t);
  const { logger, lines } = capturingLogger('debug');
  const logged = (msg: string) => lines.filter((l) => l.msg === msg).map((l) => l.cut);
  const worker = new TailWorker(
    tailOptions({
      mqttUrl: broker.url,
      workerId: 'tail-guess',
      modelsDir: dir,
      telemetryMs: 60_000,
      sessionCache: 2,
    }),
    logger,
  );
  await worker.start();
  t.teardown(() => worker.stop());
  const planner = await connectClient(t, broker.url);
  const telemetry = await collect(planner, topics.workerTelemetry.build({ worker: 'tail-guess' }));
  const prepare = (cut: number, speculative?: boolean) =>
    planner.publishAsync(
      topics.tailPrepare.build({ planner: 'p1' }),
      JSON.stringify({ version: 1, device: 'r1', modelId: model.id, cut, speculative, issuedAt: Date.now() }),
      { qos: 1 },
    );
  const warm = async () =>
    WorkerTelemetrySchema.parse(JSON.parse((await telemetry.next(10_000)).payload.toString())).warm;
  // An empty cache: the guess is loaded and reported warm like a plan's tail.
  await prepare(1, true);
  t.deepEqual(await warm(), [`${model.id}:1`]);
  t.deepEqual(logged('tail prepared ahead of the first plan'), [1]);
  // A plan's prepare fills the cache (2 sessions).
  await prepare(2);
  t.deepEqual(await warm(), [`${model.id}:1`, `${model.id}:2`]);
  // A further guess would push out a tail in use: skipped, nothing evicted.
  await prepare(3, true);
  await waitFor(
    () => logged('speculative tail prepare skipped: cache full').length > 0,
    'the skipped guess logged',
  );
  t.deepEqual(logged('speculative tail prepare skipped: cache full'), [3]);
  // A plan's prepare for that cut is loaded: the cache evicts the least recently used tail (the guess).
  await prepare(3);
  t.deepEqual(await warm(), [`${model.id}:2`, `${model.id}:3`]);
});

/**
 * x [1, n] -> three MatMuls with [n, n] weights (16 MiB each at n = 2048) and a last one with [n, n / 8] (2 MiB) -> y:
 * tails that take a while to load, except the last layer's, which loads far sooner than any other.
 */
async function heavyModelDir(
  t: import('ava').ExecutionContext,
): Promise<{ dir: string; model: ModelHandle }> {
  const n = 2048;
  const names = ['x', 'a', 'b', 'c', 'y'];
  const bytes = writeModel(
    graph({
      node: names.slice(1).map((out, i) => node('MatMul', [names[i]!, `W${i}`], [out])),
      input: [vi('x', [1, n])],
      output: [vi('y', [1, n / 8])],
      initializer: names.slice(1).map((_, i) => weight(`W${i}`, [n, i === 3 ? n / 8 : n], i + 1)),
    }),
  );
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'heavy.onnx');
  await writeFile(path, bytes);
  return { dir, model: await ModelHandle.fromFile(path) };
}

test.serial(
  "two guesses load at once, and a plan's prepare meanwhile has a runtime thread of its own",
  async (t) => {
    t.is(GUESS_LOADS, 2);
    const broker = await startBroker(t);
    const { dir, model } = await heavyModelDir(t);
    const { logger, lines } = capturingLogger('debug');
    const logged = (msg: string) => lines.filter((l) => l.msg === msg).map((l) => l.cut);
    const worker = new TailWorker(
      // Weights held by each session (no weight files): loads that take a while, to watch them overlap.
      tailOptions({
        mqttUrl: broker.url,
        workerId: 'tail-two',
        modelsDir: dir,
        telemetryMs: 60_000,
        weightsDir: undefined,
      }),
      logger,
    );
    await worker.start();
    t.teardown(() => worker.stop());
    t.is(SessionThread.threads().threads, RUNTIME_THREADS);
    const planner = await connectClient(t, broker.url);
    const prepare = (cut: number, speculative?: boolean) =>
      planner.publishAsync(
        topics.tailPrepare.build({ planner: 'p1' }),
        JSON.stringify({
          version: 1,
          device: 'r1',
          modelId: model.id,
          cut,
          speculative,
          issuedAt: Date.now(),
        }),
        { qos: 1 },
      );
    // The two guesses of a safe start (34 and 18 MiB tails), sent together: both threads load at the same time.
    let most = 0;
    const watch = setInterval(() => {
      most = Math.max(most, SessionThread.threads().loading);
    }, 1);
    t.teardown(() => clearInterval(watch));
    await prepare(1, true);
    await prepare(2, true);
    await waitFor(
      () =>
        SessionThread.threads().loading >= 2 || logged('tail prepared ahead of the first plan').length > 0,
      'a guess loading',
    );
    const guessesAtOnce = most;
    // The plan's tail (the last layer, 2 MiB) meanwhile: it does not wait for either guess. (With a 16 MiB last
    // layer, a loaded host finished the 32 MiB guess, started a moment before, first.)
    await prepare(3);
    await waitFor(
      () => logged('tail prepared ahead of the first plan').length === 2,
      'both guesses loaded',
      60_000,
    );
    await waitFor(() => logged('tail prepared for a plan').length === 1, "the plan's tail loaded", 60_000);
    clearInterval(watch);
    t.is(guessesAtOnce, 2, 'two guesses were loading at the same time');
    t.is(most, 3, "and the plan's tail beside them");
    const order = lines
      .filter(
        (l) => l.msg === 'tail prepared ahead of the first plan' || l.msg === 'tail prepared for a plan',
      )
      .map((l) => `${l.cut}${l.msg === 'tail prepared for a plan' ? ' (plan)' : ''}`);
    t.log(`loaded in this order: ${order.join(', ')}`);
    t.is(order[0], '3 (plan)', "the plan's tail was ready before the guesses loading ahead of it");
  },
);

/**
 * The edge-head and the tail worker on injected timers (CONTRIBUTING.md, convention 8): their telemetry, the worker's
 * rescan of its models directory, and the edge's waits (for the broker, for a plan, for a worker's answer) happen when
 * the test advances the timers, not before, and without real time passing. Real embedded broker, real onnxruntime
 * sessions; periods of minutes and hours, so a timer left on real time would never fire while a test runs.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { profileModel } from '../measurement/profiler.ts';
import { ModelHandle } from '../model/handle.ts';
import { modelId, writeModel } from '../model/onnx.ts';
import { mulberry32 } from '../model/random.ts';
import { silentLogger } from '../runtime/log.ts';
import { decodeMessage, emptyTimes, encodeRequest } from '../schemas/codec.ts';
import { DeviceTelemetrySchema, WorkerTelemetrySchema } from '../schemas/messages.ts';
import { topics } from '../schemas/topics.ts';
import { EdgeHead, type EdgeOptions } from '../services/edge-head/edge.ts';
import { type Frame, randomInputs } from '../services/edge-head/frames.ts';
import { writeDemoModel } from '../services/edge-head/main.ts';
import { TailWorker } from '../services/server-tail/worker.ts';
import { collect, connectClient, stablePort, startBroker } from './helpers/broker.ts';
import { captureLogger, planFor, tempDir } from './helpers/edge.ts';
import { ManualTimers } from './helpers/manual-timers.ts';
import { demoModelDir } from './helpers/models.ts';
import { opsetCnn } from './helpers/opset-cnn.ts';
import { edgeOptions, tailOptions } from './helpers/services.ts';
import { waitFor } from './helpers/wait.ts';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** `p`, or a failure naming `what` when it has not settled within 5 s of real time (the timers are virtual). */
function soon<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within 20 s`)), 20_000);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** Whether `p` has settled once the microtasks queued so far have run (a fired timer's work runs in them). */
async function settled(p: Promise<unknown>): Promise<boolean> {
  const yes = () => true;
  const tick = new Promise<boolean>((resolve) => setImmediate(() => resolve(false)));
  return Promise.race([p.then(yes, yes), tick]);
}

function frame(model: ModelHandle, index: number): Frame {
  const inputs = randomInputs(model.inputs, mulberry32(index + 1));
  return { index, capturedAt: performance.timeOrigin + performance.now(), inputs };
}

/** A device of its own client that sends the worker whole-model requests (cut 0); each resolves with the reply. */
async function requester(t: ExecutionContext, url: string, device: string) {
  // A client per collector: a collector takes every message its client receives.
  const client = await connectClient(t, url);
  const replies = await collect(client, topics.result.build({ device }));
  return async (model: ModelHandle, n: number, modelId = model.id) => {
    const request = encodeRequest({
      requestId: `r${n}`,
      deviceId: device,
      modelId,
      cutId: 0,
      tensors: randomInputs(model.inputs, mulberry32(n)),
      times: emptyTimes(),
      deadlineMs: 0,
    });
    await client.publishAsync(topics.request.build({ device }), Buffer.from(request), { qos: 1 });
    return decodeMessage((await replies.next()).payload);
  };
}

async function startEdge(
  t: ExecutionContext,
  model: ModelHandle,
  o: Pick<EdgeOptions, 'mqttUrl' | 'deviceId' | 'timers'> & Partial<EdgeOptions>,
  logger = silentLogger,
) {
  const profile = await profileModel(model, { runs: 1, warmup: 1, checkCuts: 0 });
  // No probes: the edge's telemetry then goes out on its timer alone.
  const edge = new EdgeHead(model, profile, edgeOptions({ verify: false, probeMs: 0, ...o }), logger);
  t.teardown(() => edge.stop());
  return { edge, started: edge.start() };
}

test('the worker publishes telemetry when its timers reach telemetryMs, not before', async (t) => {
  const broker = await startBroker(t);
  const { dir, model } = await demoModelDir(t);
  const timers = new ManualTimers();
  const workerId = 'tail-timers';
  const worker = new TailWorker(
    tailOptions({ mqttUrl: broker.url, workerId, modelsDir: dir, telemetryMs: MINUTE, timers }),
    silentLogger,
  );
  await worker.start();
  t.teardown(() => worker.stop());
  const client = await connectClient(t, broker.url);
  const telemetry = await collect(client, topics.workerTelemetry.build({ worker: workerId }));
  const request = await requester(t, broker.url, 'robot-timers');
  const serve = async (n: number) => {
    t.is((await request(model, n)).kind, 'result');
    await waitFor(() => worker.servedCount === n, `request ${n} to be counted`);
  };
  const next = async () =>
    WorkerTelemetrySchema.parse(JSON.parse((await telemetry.next(20_000)).payload.toString()));

  await serve(1);
  timers.advance(MINUTE - 1);
  await serve(2);
  timers.advance(1);
  // Any telemetry published earlier would come first on the topic, with fewer requests served.
  t.is((await next()).served, 2, 'the first telemetry is the one at telemetryMs, after both requests');
  timers.advance(MINUTE);
  t.is((await next()).served, 2, 'and the next one a period later');
});

test('the worker profiles the models added to its directory when the rescan timer fires, not before', async (t) => {
  const broker = await startBroker(t);
  const dir = await tempDir(t, 'edgecut-watch-');
  const timers = new ManualTimers();
  const workerId = 'tail-watch';
  const o = {
    mqttUrl: broker.url,
    workerId,
    modelsDir: dir,
    profileRuns: 1,
    modelWatchMs: HOUR,
    telemetryMs: DAY,
  };
  const worker = new TailWorker(tailOptions({ ...o, timers }), silentLogger);
  await worker.start();
  t.teardown(() => worker.stop());
  const client = await connectClient(t, broker.url);
  const profiles = await collect(client, topics.workerProfile.filter({ worker: workerId }));
  const request = await requester(t, broker.url, 'robot-watch');

  // One model is copied in at once, another 1 ms before the rescan is due. The rescan profiles the models in the
  // order of their file names (cnn.onnx first): a rescan before the second was there would have published the
  // first one's profile first.
  const demo = await ModelHandle.fromFile(await writeDemoModel(dir));
  const bytes = writeModel(opsetCnn(13));
  timers.advance(HOUR - 1);
  // An answer from the worker (to a request for a model it does not hold): it has run past that point.
  const reply = await request(demo, 1, '0'.repeat(64));
  t.is(reply.kind === 'error' && reply.value.code, 'unknown-model');
  await writeFile(join(dir, 'cnn.onnx'), bytes);
  timers.advance(1);
  const profiled = async () => topics.workerProfile.match((await profiles.next(20_000)).topic)!.model;
  t.deepEqual([await profiled(), await profiled()], [modelId(bytes), demo.id]);
});

test('the edge publishes telemetry when its timers reach telemetryMs, not before', async (t) => {
  const broker = await startBroker(t);
  const { model } = await demoModelDir(t);
  const client = await connectClient(t, broker.url);
  const deviceId = 'robot-telemetry';
  const telemetry = await collect(client, topics.deviceTelemetry.build({ device: deviceId }));
  const timers = new ManualTimers();
  const { edge, started } = await startEdge(t, model, {
    mqttUrl: broker.url,
    deviceId,
    telemetryMs: MINUTE,
    timers,
  });
  await started;
  const next = async () =>
    DeviceTelemetrySchema.parse(JSON.parse((await telemetry.next(20_000)).payload.toString()));
  // No plan: every frame runs on the device, its head being the whole model.
  const local = String(model.layers);

  await edge.process(frame(model, 0));
  timers.advance(MINUTE - 1);
  await edge.process(frame(model, 1));
  timers.advance(1);
  // Any telemetry published earlier would come first on the topic, counting fewer heads.
  t.deepEqual((await next()).headCounts, { [local]: 2 }, 'the first telemetry counts both frames');
  timers.advance(MINUTE);
  t.deepEqual((await next()).headCounts, {}, 'the next one, a period later, counts the heads since');
});

test('the edge waits for a plan and for a worker’s answer on its timers, without real time passing', async (t) => {
  const broker = await startBroker(t);
  const { model } = await demoModelDir(t);
  const client = await connectClient(t, broker.url);
  const deviceId = 'robot-waits';
  const timers = new ManualTimers();
  const o = { mqttUrl: broker.url, deviceId, resultTimeoutMs: HOUR, telemetryMs: DAY, timers };
  const { edge, started } = await startEdge(t, model, o);
  await started;
  const t0 = performance.now();

  // No plan comes: the wait ends, unanswered, when the timers reach its timeout.
  const none = edge.waitForPlan(HOUR);
  timers.advance(HOUR);
  t.false(await soon(none, 'the wait for a plan to time out'));
  // A plan that comes 1 ms before the timeout is in time.
  const waiting = edge.waitForPlan(HOUR);
  timers.advance(HOUR - 1);
  const k = 5;
  const plan = planFor(model, deviceId, k);

  await client.publishAsync(topics.plan.build({ device: deviceId }), JSON.stringify(plan), { qos: 1 });
  t.true(await soon(waiting, 'the plan'), 'the plan came before the timeout fired');

  // No worker answers: the frame waits for its deadline (RESULT_TIMEOUT_MS, the plan has no prediction) on the
  // timers, then runs its tail on the device.
  const report = edge.process(frame(model, 0));
  await waitFor(() => edge.inFlight === 1, 'the request to be sent');
  timers.advance(HOUR - 1);
  t.is(edge.inFlight, 1, 'still waiting 1 ms before the deadline');
  timers.advance(1);
  t.is(edge.inFlight, 0, 'given up at the deadline');
  const r = await soon(report, 'the frame to fall back');
  t.is(r.tailBy, 'local');
  t.is(r.fallbackKind, 'deadline');
  t.is(r.fallback, `no result within the deadline of ${HOUR} ms`);
  t.true(performance.now() - t0 < MINUTE, 'hours of waits passed on the timers alone');
});

test('the edge waits for an unreachable broker until its timers reach brokerWaitMs, then starts alone', async (t) => {
  const { model } = await demoModelDir(t);
  const port = await stablePort();
  const { logger, lines } = captureLogger();
  const timers = new ManualTimers();
  const { edge, started } = await startEdge(
    t,
    model,
    { mqttUrl: `mqtt://127.0.0.1:${port}`, deviceId: 'robot-alone', brokerWaitMs: HOUR, timers },
    logger,
  );
  await waitFor(() => timers.pending === 1, 'the wait for the broker to be set', 20_000);
  timers.advance(HOUR - 1);
  t.false(await settled(started), 'still waiting 1 ms before brokerWaitMs');
  timers.advance(1);
  await soon(started, 'start to end at brokerWaitMs');
  t.false(edge.connected);
  t.true(
    lines.some((l) => String(l.msg).startsWith('broker unreachable') && l.waitedMs === HOUR),
    'the edge says it runs alone',
  );
  const r = await edge.process(frame(model, 0));
  t.is(r.tailBy, 'local');
});

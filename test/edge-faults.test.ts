/**
 * Faults of the data plane (services/edge-head/faults.ts): deadlines derived from the plan's prediction, local
 * fallback when no worker answers, when a worker refuses, and while the broker is down; offloading resumes after
 * the broker comes back on the same port; late results are ignored and counted; every frame is answered once.
 * Real embedded broker, real tail workers, real onnxruntime sessions.
 */
import test, { type ExecutionContext } from 'ava';
import type { MqttClient } from 'mqtt';
import { EmbeddedBroker } from '../broker/broker.ts';
import { profileModel } from '../measurement/profiler.ts';
import type { ModelHandle } from '../model/handle.ts';
import { mulberry32 } from '../model/random.ts';
import type { Timers } from '../runtime/clock.ts';
import { silentLogger } from '../runtime/log.ts';
import { emptyTimes, encodeResult } from '../schemas/codec.ts';
import { DeviceTelemetrySchema, type Plan } from '../schemas/messages.ts';
import { topics } from '../schemas/topics.ts';
import { EdgeHead, type EdgeOptions, type FrameReport } from '../services/edge-head/edge.ts';
import { FALLBACK, frameDeadline } from '../services/edge-head/faults.ts';
import { type Frame, randomInputs } from '../services/edge-head/frames.ts';
import { PendingResults } from '../services/edge-head/pending.ts';
import { TailWorker } from '../services/server-tail/worker.ts';
import { collect, connectClient, stablePort, startBroker } from './helpers/broker.ts';
import { planFor, tempDir, waitFor } from './helpers/edge.ts';
import { demoModelDir } from './helpers/models.ts';
import { edgeOptions, tailOptions } from './helpers/services.ts';
import { sleep } from './helpers/wait.ts';

const predicted = (transferMs: number, serverMs: number) => ({
  edgeMs: 1,
  transferMs,
  serverMs,
  totalMs: 1 + transferMs + serverMs,
});

async function publishPlan(client: MqttClient, plan: Plan): Promise<void> {
  await client.publishAsync(topics.plan.build({ device: plan.device }), JSON.stringify(plan), {
    qos: 1,
    retain: true,
  });
}

async function* frames(model: ModelHandle, n: number, from = 0): AsyncGenerator<Frame> {
  const rand = mulberry32(11 + from);
  for (let i = from; i < from + n; i++)
    yield {
      index: i,
      capturedAt: performance.timeOrigin + performance.now(),
      inputs: randomInputs(model.inputs, rand),
    };
}

async function edgeFor(
  t: ExecutionContext,
  model: ModelHandle,
  o: Pick<EdgeOptions, 'mqttUrl' | 'deviceId'> & Partial<EdgeOptions>,
): Promise<EdgeHead> {
  const profile = await profileModel(model, { runs: 1, warmup: 1, checkCuts: 0 });
  const edge = new EdgeHead(model, profile, edgeOptions(o), silentLogger);
  await edge.start();
  t.teardown(() => edge.stop());
  return edge;
}

test('deadline = clamp(factor x predicted transfer + server, min, RESULT_TIMEOUT_MS) + the link time of what is queued ahead; fixed plans wait the maximum', (t) => {
  const o = { factor: 3, minMs: 250, maxMs: 5000 };
  t.is(frameDeadline(undefined, o), 5000);
  const plan = (p: Plan['predicted']) => ({ predicted: p }) as Plan;
  t.is(frameDeadline(plan(null), o), 5000);
  t.is(frameDeadline(plan(predicted(20, 30)), o), 250);
  t.is(frameDeadline(plan(predicted(100, 200)), o), 900);
  t.is(frameDeadline(plan(predicted(1000, 2000)), o), 5000);
  t.is(frameDeadline(plan(predicted(Number.NaN, 2)), o), 5000);
  // Three requests of 100 KB still on the link ahead of this one (of 100 KB, 100 ms predicted on the link): each adds
  // its link time, beyond the clamp (a frame in a window waits for the frames before it).
  t.is(
    frameDeadline(plan(predicted(100, 200)), o, { aheadBytes: 300_000, requestBytes: 100_000 }),
    900 + 300,
  );
  t.is(
    frameDeadline(plan(predicted(1000, 2000)), o, { aheadBytes: 50_000, requestBytes: 100_000 }),
    5000 + 500,
  );
  t.is(frameDeadline(plan(predicted(100, 200)), o, { aheadBytes: 0, requestBytes: 100_000 }), 900);
  t.is(frameDeadline(undefined, o, { aheadBytes: 300_000, requestBytes: 100_000 }), 5000);
});

test('pending results: the deadline rejects, a result after it is ignored and counted', async (t) => {
  const fired: Array<() => void> = [];
  const timers: Timers = {
    after(_ms, fn) {
      fired.push(fn);
      return () => undefined;
    },
    every: () => () => undefined,
  };
  const pending = new PendingResults(silentLogger, timers);
  const waiting = pending.expect('r1', 300);
  t.is(pending.size, 1);
  fired[0]!();
  await t.throwsAsync(waiting, { message: 'no result within the deadline of 300 ms' });
  t.is(pending.size, 0);
  const late = {
    requestId: 'r1',
    deviceId: 'd',
    modelId: 'm',
    cutId: 1,
    workerId: 'w',
    tensors: [],
    times: emptyTimes(),
  };
  pending.resolve(late);
  t.is(pending.ignored, 1);
  const a = pending.expect('a', 300);
  const b = pending.expect('b', 300);
  t.is(pending.abandonAll(new Error(FALLBACK.lost)), 2);
  await t.throwsAsync(a, { message: FALLBACK.lost });
  await t.throwsAsync(b, { message: FALLBACK.lost });
  pending.resolve({ ...late, requestId: 'b' });
  t.is(pending.ignored, 2);
});

test('no worker answers: every frame runs its tail locally at the deadline; a late result is ignored and counted', async (t) => {
  const broker = await startBroker(t);
  const { dir, model } = await demoModelDir(t);
  const client = await connectClient(t, broker.url);
  const worker = new TailWorker(
    tailOptions({ mqttUrl: broker.url, workerId: 'tail-gone', modelsDir: dir }),
    silentLogger,
  );
  await worker.start();
  t.teardown(() => worker.stop());
  const edge = await edgeFor(t, model, {
    mqttUrl: broker.url,
    deviceId: 'robot-deadline',
    resultTimeoutMs: 300,
    telemetryMs: 200,
  });
  const telemetry = await collect(client, topics.deviceTelemetry.build({ device: 'robot-deadline' }));
  await publishPlan(client, planFor(model, 'robot-deadline', 8));
  t.true(await edge.waitForPlan(5000));

  const before: FrameReport[] = [];
  await edge.run(frames(model, 2), (r) => before.push(r));
  t.deepEqual(
    before.map((r) => r.tailBy),
    ['tail-gone', 'tail-gone'],
  );
  await worker.stop();

  const counts = new Map<number, number>();
  const reports: FrameReport[] = [];
  const t0 = performance.now();
  await edge.run(frames(model, 4, 2), (r) => {
    reports.push(r);
    counts.set(r.index, (counts.get(r.index) ?? 0) + 1);
  });
  const ms = performance.now() - t0;
  t.deepEqual([...counts.entries()].sort(), [
    [2, 1],
    [3, 1],
    [4, 1],
    [5, 1],
  ]);
  for (const r of reports) {
    t.is(r.tailBy, 'local');
    t.is(r.fallback, 'no result within the deadline of 300 ms');
    t.is(r.deadlineMs, 300);
    t.true(r.totalMs >= 295, `frame ${r.index} fell back after ${r.totalMs.toFixed(1)} ms`);
    t.true(
      r.maxAbsDiff !== undefined && r.maxAbsDiff <= 1e-5,
      'the local tail gives the whole model’s output',
    );
  }
  // Window 2: two frames wait at a time.
  t.true(ms >= 590 && ms < 2000, `4 frames took ${ms.toFixed(0)} ms`);
  t.is(edge.fallbacks, 4);

  // Telemetry reports the fallbacks and the host's load, and the frames that missed their deadline as late, but
  // those sent before the first miss at the cut was noticed (a worker may be loading its session for the cut).
  let seen = DeviceTelemetrySchema.parse(JSON.parse((await telemetry.next()).payload.toString()));
  let late = seen.late?.length ?? 0;
  while (seen.fallbacks < 4) {
    seen = DeviceTelemetrySchema.parse(JSON.parse((await telemetry.next()).payload.toString()));
    late += seen.late?.length ?? 0;
  }
  t.is(seen.fallbacks, 4);
  t.is(
    late,
    2,
    'four misses at cut 8; the two sent before the first miss was noticed (window 2) not counted',
  );
  t.true(seen.cpuPercent >= 0 && seen.cpuPercent <= 100);
  t.true(seen.cores >= 1 && seen.loadavg1 >= 0);

  // The answer to frame 2 finally comes: ignored, counted, and no frame is reported again.
  const answer = reports[0]!;
  const times = {
    ...emptyTimes(),
    captured: 1,
    headStart: 1,
    headEnd: 2,
    sent: 3,
    tailReceived: 4,
    tailStart: 4,
    tailEnd: 5,
    replied: 6,
  };
  const result = encodeResult({
    requestId: answer.requestId,
    deviceId: 'robot-deadline',
    modelId: model.id,
    cutId: 8,
    workerId: 'tail-late',
    tensors: answer.outputs,
    times,
  });
  const ignoredBefore = edge.lateResults;
  await client.publishAsync(topics.result.build({ device: 'robot-deadline' }), Buffer.from(result), {
    qos: 1,
  });
  await waitFor(() => edge.lateResults === ignoredBefore + 1, 'the late result to be counted');
  t.is(reports.length, 4);
});

test('the deadline follows the plan’s prediction', async (t) => {
  const broker = await startBroker(t);
  const { model } = await demoModelDir(t);
  const client = await connectClient(t, broker.url);
  const edge = await edgeFor(t, model, {
    mqttUrl: broker.url,
    deviceId: 'robot-predicted',
    resultTimeoutMs: 5000,
    deadlineFactor: 4,
    deadlineMinMs: 100,
  });
  // 4 x (40 + 35) = 300 ms, far below RESULT_TIMEOUT_MS.
  await publishPlan(client, planFor(model, 'robot-predicted', 5, predicted(40, 35)));
  t.true(await edge.waitForPlan(5000));
  const reports: FrameReport[] = [];
  await edge.run(frames(model, 2), (r) => reports.push(r));
  for (const r of reports) {
    // 300 ms, plus 40 ms for each request's worth of bytes still unacknowledged on the uplink when it was sent (the
    // frame before it in the window, the link probe's burst at start: up to 1 MiB, 20 requests' worth): far below
    // RESULT_TIMEOUT_MS either way.
    const deadline = r.deadlineMs ?? Number.NaN;
    t.true(deadline >= 300 && deadline < 2500, `deadline ${deadline} ms`);
    t.is(r.fallback, `no result within the deadline of ${Math.round(deadline)} ms`);
    t.true(r.totalMs >= deadline - 5 && r.totalMs < 1500, `fell back after ${r.totalMs.toFixed(0)} ms`);
  }
});

test('an error reply makes the device run the tail at once', async (t) => {
  const broker = await startBroker(t);
  const { model } = await demoModelDir(t);
  const empty = await tempDir(t);
  const worker = new TailWorker(
    tailOptions({ mqttUrl: broker.url, workerId: 'tail-empty', modelsDir: empty }),
    silentLogger,
  );
  await worker.start();
  t.teardown(() => worker.stop());
  const client = await connectClient(t, broker.url);
  const edge = await edgeFor(t, model, {
    mqttUrl: broker.url,
    deviceId: 'robot-refused',
    resultTimeoutMs: 5000,
  });
  await publishPlan(client, planFor(model, 'robot-refused', 3));
  t.true(await edge.waitForPlan(5000));
  const reports: FrameReport[] = [];
  await edge.run(frames(model, 2), (r) => reports.push(r));
  for (const r of reports) {
    t.is(r.tailBy, 'local');
    t.regex(r.fallback ?? '', /^worker tail-empty refused the request: unknown-model/);
    t.true(r.totalMs < 1000);
    t.true(r.maxAbsDiff !== undefined && r.maxAbsDiff <= 1e-5);
  }
});

test('broker down mid-stream: frames fall back locally, and offloading resumes when it is back on the same port', async (t) => {
  const first = await startBroker(t, false, await stablePort());
  const port = first.port;
  const url = first.url;
  const { dir, model } = await demoModelDir(t);
  const worker = new TailWorker(
    tailOptions({ mqttUrl: url, workerId: 'tail-b', modelsDir: dir }),
    silentLogger,
  );
  await worker.start();
  t.teardown(() => worker.stop());
  const client = await connectClient(t, url);
  const edge = await edgeFor(t, model, { mqttUrl: url, deviceId: 'robot-outage', resultTimeoutMs: 1500 });
  await publishPlan(client, planFor(model, 'robot-outage', 10));
  t.true(await edge.waitForPlan(5000));

  const reports: FrameReport[] = [];
  const counts = new Map<number, number>();
  let produced = 0;
  let stop = false;
  async function* camera(): AsyncGenerator<Frame> {
    const rand = mulberry32(5);
    while (!stop) {
      yield { index: produced++, capturedAt: Date.now(), inputs: randomInputs(model.inputs, rand) };
      await sleep(15);
    }
  }
  const running = edge.run(camera(), (r) => {
    reports.push(r);
    counts.set(r.index, (counts.get(r.index) ?? 0) + 1);
  });
  const byWorker = () => reports.filter((r) => r.tailBy === 'tail-b');
  await waitFor(() => byWorker().length >= 5, 'frames by the worker');

  await first.stop();
  const down = reports.length;
  await waitFor(
    () => reports.slice(down).filter((r) => r.fallback).length >= 10,
    'local fallbacks while down',
  );
  t.false(edge.currentPlan === undefined, 'the plan stays in force');
  const outage = reports.slice(down).filter((r) => r.fallback);
  t.true(
    outage.some((r) => r.fallback === FALLBACK.unreachable),
    `reasons: ${[...new Set(outage.map((r) => r.fallback))].join('; ')}`,
  );
  for (const r of outage) t.is(r.tailBy, 'local');

  const second = new EmbeddedBroker({ host: '127.0.0.1', port, logger: silentLogger });
  await second.start();
  t.teardown(() => second.stop());
  const restartedAt = produced;
  await waitFor(
    () => reports.filter((r) => r.index >= restartedAt && r.tailBy === 'tail-b').length >= 5,
    'offloading to resume',
    15_000,
  );
  stop = true;
  await running;

  t.is(reports.length, produced, 'every frame taken was answered');
  for (let i = 0; i < produced; i++) t.is(counts.get(i), 1, `frame ${i} answered once`);
  for (const r of reports) if (!r.fallback) t.true(r.maxAbsDiff !== undefined && r.maxAbsDiff <= 1e-5);
  t.log(`outage reasons: ${[...new Set(outage.map((r) => r.fallback))].join('; ')}`);
  t.log(
    `${produced} frames: ${reports.filter((r) => r.tailBy === 'tail-b').length} by the worker, ${edge.fallbacks} local fallbacks, ${edge.lateResults} late results ignored`,
  );
});

test('frames in flight when the connection drops fall back at once, not at their deadline', async (t) => {
  const broker = await startBroker(t);
  const { model } = await demoModelDir(t);
  const client = await connectClient(t, broker.url, { reconnectPeriod: 0 });
  const edge = await edgeFor(t, model, {
    mqttUrl: broker.url,
    deviceId: 'robot-drop',
    resultTimeoutMs: 5000,
  });
  await publishPlan(client, planFor(model, 'robot-drop', 6));
  t.true(await edge.waitForPlan(5000));
  const reports: FrameReport[] = [];
  const running = edge.run(frames(model, 2), (r) => reports.push(r));
  // No worker: both requests wait for an answer.
  await waitFor(() => edge.inFlight === 2, 'two frames in flight');
  const t0 = performance.now();
  await broker.stop();
  await running;
  const ms = performance.now() - t0;
  t.is(reports.length, 2);
  for (const r of reports) {
    t.is(r.fallback, FALLBACK.lost);
    t.is(r.deadlineMs, 5000);
  }
  t.true(ms < 1000, `answered ${ms.toFixed(0)} ms after the drop`);
});

test('a frame keeps the deadline of the plan it started under, when a new plan comes while its head runs', async (t) => {
  const broker = await startBroker(t);
  const { model } = await demoModelDir(t);
  const client = await connectClient(t, broker.url);
  const device = 'robot-midframe';
  const telemetry: Array<{ transfers: Array<{ bytes: number; seconds: number }> }> = [];
  client.on('message', (topic, payload) => {
    if (topic === topics.deviceTelemetry.build({ device }))
      telemetry.push(DeviceTelemetrySchema.parse(JSON.parse(payload.toString())));
  });
  await client.subscribeAsync(topics.deviceTelemetry.build({ device }), { qos: 1 });
  // Heads take 400 x their profiled time, long enough for a plan to come in between. The periodic probe is off in
  // effect (once at start only).
  const edge = await edgeFor(t, model, {
    mqttUrl: broker.url,
    deviceId: device,
    resultTimeoutMs: 5000,
    deadlineFactor: 4,
    deadlineMinMs: 100,
    emulation: { factor: 400, description: '400x slower', gflops: null, rule: 'x' },
    probeMs: 3_600_000,
  });
  // The start-up probe burst reported: no probe of it is queued on the uplink ahead of the frame.
  await waitFor(
    () => telemetry.some((m) => m.transfers.length >= 3),
    'the start-up probe burst to be reported',
  );
  // Plan 1 at cut 5: 4 x (40 + 35) = 300 ms. Plan 2 at cut 3: 4 x (600 + 400), capped at 5000 ms.
  await publishPlan(client, planFor(model, device, 5, predicted(40, 35)));
  t.true(await edge.waitForPlan(5000));
  const reports: FrameReport[] = [];
  const running = edge.run(frames(model, 1), (r) => reports.push(r));
  await sleep(30); // into the frame's head, 400x slower than the host
  await publishPlan(client, { ...planFor(model, device, 3, predicted(600, 400)), seq: 2 });
  await running;
  t.is(reports.length, 1);
  t.is(reports[0]!.cut.index, 5, 'the frame ran the head of the plan it started under');
  // And waited as that plan predicted (300 ms), not as the new one (4000 ms), plus the link time of what was queued
  // ahead of it on the uplink (frameDeadline): a telemetry message at most, a fraction of the request's 40 ms.
  const deadline = reports[0]!.deadlineMs!;
  t.true(deadline >= 300 && deadline < 300 + 40, `deadline ${deadline} ms`);
  t.is(reports[0]!.fallback, `no result within the deadline of ${Math.round(deadline)} ms`);
});

test('an upload slower than its deadline is followed at once by a probe burst, reported with it', async (t) => {
  const broker = await startBroker(t);
  const { model } = await demoModelDir(t);
  const client = await connectClient(t, broker.url);
  const device = 'robot-slow-upload';
  const probes: number[] = [];
  const telemetry: Array<{ transfers: Array<{ bytes: number; seconds: number }> }> = [];
  client.on('message', (topic, payload) => {
    if (topic === topics.deviceProbe.build({ device })) probes.push(Date.now());
    if (topic === topics.deviceTelemetry.build({ device }))
      telemetry.push(DeviceTelemetrySchema.parse(JSON.parse(payload.toString())));
  });
  await client.subscribeAsync(
    [topics.deviceProbe.build({ device }), topics.deviceTelemetry.build({ device })],
    {
      qos: 1,
    },
  );
  // 200 kbit/s: the demo model's input takes far longer than the 100 ms deadline. The periodic probe is off in
  // effect (once at start only).
  const edge = await edgeFor(t, model, {
    mqttUrl: broker.url,
    deviceId: device,
    resultTimeoutMs: 5000,
    deadlineFactor: 1,
    deadlineMinMs: 100,
    uplink: { rateBps: 200_000, setupMs: 0 },
    probeMs: 3_600_000,
  });
  await waitFor(() => telemetry.some((m) => m.transfers.length >= 2), 'the start-up probe to be reported');
  const before = probes.length;
  await publishPlan(client, planFor(model, device, 0, predicted(20, 10)));
  t.true(await edge.waitForPlan(5000));
  const reports: FrameReport[] = [];
  await edge.run(frames(model, 1), (r) => reports.push(r));
  t.regex(reports[0]!.fallback ?? '', /no result within the deadline/);
  const request = reports[0]!.requestBytes;
  await waitFor(() => probes.length >= before + 2, 'a probe burst after the slow upload');
  // One telemetry message carries the slow upload and the burst after it (sizes as PUBLISH packets: 4 KiB, 8 KiB
  // and their headers).
  const probe = (s: { bytes: number }) => s.bytes > 4096 && s.bytes < 4096 + 256;
  await waitFor(
    () => telemetry.some((m) => m.transfers.some((s) => s.bytes >= request) && m.transfers.some(probe)),
    'telemetry with the slow upload and the probes',
  );
  const m = telemetry.find((x) => x.transfers.some((s) => s.bytes >= request))!;
  const slow = m.transfers.find((s) => s.bytes >= request)!;
  t.true(slow.seconds * 1000 > 100, `the upload took ${(slow.seconds * 1000).toFixed(0)} ms`);
});

test('broker unreachable at start: frames run on the device at once; when the broker comes up the edge joins it', async (t) => {
  const port = await stablePort();
  const { model } = await demoModelDir(t);
  const profile = await profileModel(model, { runs: 1, warmup: 1, checkCuts: 0 });
  const edge = new EdgeHead(
    model,
    profile,
    edgeOptions({ mqttUrl: `mqtt://127.0.0.1:${port}`, deviceId: 'robot-nb', brokerWaitMs: 200 }),
    silentLogger,
  );
  t.teardown(() => edge.stop());
  await edge.start();
  t.false(edge.connected);
  const reports: FrameReport[] = [];
  await edge.run(frames(model, 3), (r) => reports.push(r));
  t.deepEqual(
    reports.map((r) => [r.tailBy, r.fallback ?? null, r.cut.index]),
    Array.from({ length: 3 }, () => ['local', null, model.layers]),
    'every frame ran on the device, none waited for the broker',
  );
  // The broker comes up on that port: the edge connects and publishes its profile.
  const broker = await startBroker(t, false, port);
  await waitFor(() => edge.connected, 'the edge to connect', 20_000);
  const client = await connectClient(t, broker.url);
  const profiles = await collect(client, topics.deviceProfile.build({ device: 'robot-nb' }));
  t.true((await profiles.next(10_000)).payload.length > 0);
});

test('telemetry reports the way back of answered requests: PUBACK to answer, less the worker span', async (t) => {
  const broker = await startBroker(t);
  const { dir, model } = await demoModelDir(t);
  const client = await connectClient(t, broker.url);
  const worker = new TailWorker(
    tailOptions({ mqttUrl: broker.url, workerId: 'tail-back', modelsDir: dir }),
    silentLogger,
  );
  await worker.start();
  t.teardown(() => worker.stop());
  const edge = await edgeFor(t, model, { mqttUrl: broker.url, deviceId: 'robot-back', telemetryMs: 200 });
  const telemetry = await collect(client, topics.deviceTelemetry.build({ device: 'robot-back' }));
  await publishPlan(client, planFor(model, 'robot-back', 8));
  t.true(await edge.waitForPlan(5000));
  const reports: FrameReport[] = [];
  await edge.run(frames(model, 4), (r) => reports.push(r));
  t.deepEqual(
    reports.map((r) => r.tailBy),
    ['tail-back', 'tail-back', 'tail-back', 'tail-back'],
  );
  const returns: number[] = [];
  while (returns.length < 4) {
    const m = DeviceTelemetrySchema.parse(JSON.parse((await telemetry.next()).payload.toString()));
    returns.push(...(m.returns ?? []));
  }
  t.is(returns.length, 4);
  // Each is within its frame's measured transfer (send to answer, less the worker span), which adds the upload.
  const longest = Math.max(...reports.map((r) => r.transferMs));
  for (const ms of returns) t.true(ms >= 0 && ms <= longest + 1, `${ms} ms (transfers up to ${longest} ms)`);
});

test('the device keeps at most SESSION_CACHE sessions however many cuts it is moved across; results stay exact', async (t) => {
  const broker = await startBroker(t);
  const { dir, model } = await demoModelDir(t);
  const client = await connectClient(t, broker.url);
  const worker = new TailWorker(
    tailOptions({ mqttUrl: broker.url, workerId: 'tail-lru', modelsDir: dir }),
    silentLogger,
  );
  await worker.start();
  t.teardown(() => worker.stop());
  const edge = await edgeFor(t, model, {
    mqttUrl: broker.url,
    deviceId: 'robot-lru',
    sessionCache: 2,
    verify: true,
  });
  const cuts = [2, 4, 6, 8, 10, 12].filter((k) => k < model.layers);
  t.true(cuts.length >= 5, `${cuts.length} cuts`);
  let seq = 0;
  for (const k of cuts) {
    await publishPlan(client, { ...planFor(model, 'robot-lru', k), seq: ++seq });
    await waitFor(() => edge.currentPlan?.cut.index === k, `the plan for cut ${k} in force`);
    const reports: FrameReport[] = [];
    await edge.run(frames(model, 2), (r) => reports.push(r));
    for (const r of reports) {
      t.is(r.cut.index, k);
      t.is(r.tailBy, 'tail-lru');
      t.true(r.maxAbsDiff !== undefined && r.maxAbsDiff <= 1e-5, `cut ${k}: max diff ${r.maxAbsDiff}`);
    }
    t.true(edge.sessionsKept <= 2, `${edge.sessionsKept} sessions kept after cut ${k}`);
  }
});

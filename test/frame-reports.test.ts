/**
 * Per-frame reports on the device's `frames` topic (services/edge-head/frame-stream.ts): one valid
 * FrameReportMessage per frame with the frame's figures, at most FRAME_REPORTS_PER_SECOND per second (reports
 * skipped and counted, never frames), nothing while the broker is away, and a bad payload on the topic from another
 * client crashes nothing: the planner does not even read the topic. Real embedded broker, real onnxruntime.
 */
import test, { type ExecutionContext } from 'ava';
import { profileModel } from '../measurement/profiler.ts';
import type { ModelHandle } from '../model/handle.ts';
import { classOutput } from '../model/labels.ts';
import { mulberry32 } from '../model/random.ts';
import { silentLogger } from '../runtime/log.ts';
import {
  FRAME_REPORT_MAX_BYTES,
  type FrameReportMessage,
  FrameReportMessageSchema,
  parseFrameReport,
} from '../schemas/messages.ts';
import { topics } from '../schemas/topics.ts';
import { EdgeHead, type EdgeOptions, type FrameReport } from '../services/edge-head/edge.ts';
import {
  FRAME_REPORTS_PER_SECOND,
  FrameReportStream,
  frameReportMessage,
  SlidingLimit,
} from '../services/edge-head/frame-stream.ts';
import { type Frame, randomInputs } from '../services/edge-head/frames.ts';
import { Planner } from '../services/planner/planner.ts';
import { TailWorker } from '../services/server-tail/worker.ts';
import { collect, connectClient, startBroker } from './helpers/broker.ts';
import { captureLogger, planFor } from './helpers/edge.ts';
import { demoModelDir } from './helpers/models.ts';
import { edgeOptions, tailOptions } from './helpers/services.ts';
import { until, waitFor } from './helpers/wait.ts';

const now = () => performance.timeOrigin + performance.now();

/** `n` frames, or frames until `forMs` has passed when `n` is Infinity. */
async function* frames(
  model: ModelHandle,
  n: number,
  forMs = Number.POSITIVE_INFINITY,
): AsyncGenerator<Frame> {
  const rand = mulberry32(7);
  const end = now() + forMs;
  for (let i = 0; i < n && now() < end; i++)
    yield { index: i, capturedAt: now(), inputs: randomInputs(model.inputs, rand) };
}

async function edgeFor(
  t: ExecutionContext,
  model: ModelHandle,
  o: Pick<EdgeOptions, 'mqttUrl' | 'deviceId'> & Partial<EdgeOptions>,
): Promise<EdgeHead> {
  const profile = await profileModel(model, { runs: 1, warmup: 1, checkCuts: 0 });
  const edge = new EdgeHead(
    model,
    profile,
    edgeOptions({ verify: false, probeMs: 0, frameReports: true, ...o }),
    silentLogger,
  );
  await edge.start();
  t.teardown(() => edge.stop());
  return edge;
}

const parse = (payload: Buffer): FrameReportMessage => parseFrameReport(payload);

test('the sliding limit takes at most `limit` events in any span', (t) => {
  const limit = new SlidingLimit(3, 1000);
  t.deepEqual(
    [0, 10, 20, 30, 999, 1000, 1005, 1010, 1011, 2009, 2010].map((at) => limit.take(at)),
    [true, true, true, false, false, true, false, true, false, true, true],
  );
});

test('a report is skipped, and counted, while the link is not ready; it never throws into the frame path', (t) => {
  let ready = false;
  const sent: string[] = [];
  let at = 1000;
  const stream = new FrameReportStream(
    'robot-x',
    {
      ready: () => ready,
      publish: async (_topic, body) => {
        sent.push(body);
      },
    },
    { now: () => at },
  );
  const report = {
    index: 0,
    requestId: 'r',
    cut: { index: 2, after: 'relu1', bytes: 10, tensors: [] },
    tailBy: 'tail-1',
    headMs: 1,
    tailMs: 2,
    transferMs: 3,
    totalMs: 6,
    requestBytes: 10,
    outputs: [],
  } as unknown as FrameReport;
  stream.offer(report);
  t.deepEqual([stream.published, stream.skipped, sent.length], [0, 1, 0]);
  ready = true;
  at += 10;
  stream.offer({ ...report, index: 1 });
  t.deepEqual([stream.published, stream.skipped], [1, 1]);
  const m = FrameReportMessageSchema.parse(JSON.parse(sent[0]!));
  t.is(m.frame, 2);
  t.is(m.skipped, 1, 'the message says how many reports went unpublished before it');
  t.is(m.tailBy, 'tail-1');
  t.is(m.fallback, null);
  const throwing = new FrameReportStream(
    'robot-x',
    {
      ready: () => {
        throw new Error('connection torn down');
      },
      publish: async () => undefined,
    },
    { now: () => at },
  );
  t.notThrows(() => throwing.offer(report));
  t.is(throwing.skipped, 1);
  // A long fallback reason is cut, so the report stays within its size limit.
  const long = frameReportMessage('robot-x', { ...report, fallback: 'x'.repeat(10_000) }, 1, at);
  t.true(JSON.stringify(long).length < FRAME_REPORT_MAX_BYTES);
  t.notThrows(() => FrameReportMessageSchema.parse(long));
});

test('an edge publishes one valid report per frame, with the frame’s figures, below the rate limit', async (t) => {
  const broker = await startBroker(t);
  const { dir, model } = await demoModelDir(t);
  const worker = new TailWorker(
    tailOptions({ mqttUrl: broker.url, workerId: 'tail-frames', modelsDir: dir }),
    silentLogger,
  );
  await worker.start();
  t.teardown(() => worker.stop());
  const device = 'robot-frames';
  const client = await connectClient(t, broker.url);
  await client.publishAsync(topics.plan.build({ device }), JSON.stringify(planFor(model, device, 3)), {
    qos: 1,
    retain: true,
  });
  const reports = await collect(client, topics.deviceFrames.build({ device }));
  const classes = classOutput(model);
  t.truthy(classes, 'the demo CNN ends in a class vector');
  const labels = Array.from({ length: classes!.classes }, (_, i) => `class-${i}`);
  const edge = await edgeFor(t, model, {
    mqttUrl: broker.url,
    deviceId: device,
    classes: classOutput(model, { labels, source: 'test labels' }),
  });
  t.true(await edge.waitForPlan(10_000));
  const n = FRAME_REPORTS_PER_SECOND - 5;
  const local: FrameReport[] = [];
  await edge.run(frames(model, n), (r) => local.push(r));
  t.is(local.length, n);
  const got: FrameReportMessage[] = [];
  for (let i = 0; i < n; i++) got.push(parse((await reports.next(5000)).payload));
  t.deepEqual(edge.frameReports, { published: n, skipped: 0 });
  t.deepEqual(
    got.map((m) => m.frame).sort((a, b) => a - b),
    Array.from({ length: n }, (_, i) => i + 1),
    'every frame reported once',
  );
  for (const m of got) {
    const r = local.find((x) => x.index + 1 === m.frame)!;
    t.like(m, {
      device,
      cut: 3,
      after: model.cuts[3]!.after,
      headMs: r.headMs,
      transferMs: r.transferMs,
      tailMs: r.tailMs,
      totalMs: r.totalMs,
      tailBy: r.tailBy,
      fallback: r.fallback ?? null,
    });
    t.true(m.fps > 0);
    t.true(Math.abs(m.at - Date.now()) < 60_000, 'at is wall-clock ms');
    t.truthy(m.top1, 'the top-1 the edge found is in the report');
    t.deepEqual(m.top1, r.top1);
    t.regex(m.top1!.label!, /^class-\d+$/);
  }
  t.true(
    got.some((m) => m.tailBy === 'tail-frames'),
    'offloaded frames name their worker',
  );
});

test('above the limit at most 20 reports go out in any second; frames are all processed, the rest skipped and counted', async (t) => {
  const broker = await startBroker(t);
  const { model } = await demoModelDir(t);
  const device = 'robot-burst';
  const client = await connectClient(t, broker.url);
  const reports = await collect(client, topics.deviceFrames.build({ device }));
  // No plan: every frame runs on the device, as fast as it can (hundreds per second for the demo CNN).
  const edge = await edgeFor(t, model, { mqttUrl: broker.url, deviceId: device, planWaitMs: 0 });
  let done = 0;
  await edge.run(frames(model, Number.POSITIVE_INFINITY, 2500), () => void done++);
  const { published, skipped } = edge.frameReports;
  t.is(published + skipped, done, 'every frame is either reported or counted as skipped');
  t.true(done > 2 * FRAME_REPORTS_PER_SECOND, `${done} frames ran, more than the limit allows reports for`);
  t.true(skipped > 0, 'reports were skipped');
  t.true(published >= FRAME_REPORTS_PER_SECOND, `${published} published`);
  const got: FrameReportMessage[] = [];
  for (let i = 0; i < published; i++) got.push(parse((await reports.next(5000)).payload));
  const at = got.map((m) => m.at).sort((a, b) => a - b);
  for (let i = 0; i < at.length; i++) {
    const inSecond = at.filter((x) => x >= at[i]! && x < at[i]! + 1000).length;
    t.true(inSecond <= FRAME_REPORTS_PER_SECOND, `${inSecond} reports in the second from ${at[i]}`);
  }
  const told = got.reduce((s, m) => s + (m.skipped ?? 0), 0);
  t.true(told <= skipped && told > 0, `the reports tell of ${told} of the ${skipped} skipped`);
});

test('FRAME_REPORTS off: an edge publishes no reports', async (t) => {
  const broker = await startBroker(t);
  const { model } = await demoModelDir(t);
  const device = 'robot-quiet';
  const client = await connectClient(t, broker.url);
  const reports = await collect(client, topics.deviceFrames.build({ device }));
  // A client per collector: a collector takes every message its client receives.
  const status = await collect(await connectClient(t, broker.url), topics.deviceStatus.build({ device }));
  const edge = await edgeFor(t, model, {
    mqttUrl: broker.url,
    deviceId: device,
    planWaitMs: 0,
    frameReports: false,
  });
  let done = 0;
  await edge.run(frames(model, 10), () => void done++);
  await edge.stop();
  // The edge's `offline` goes out after everything it published: once it is here, no report is still on its way.
  await until(
    async () => JSON.parse((await status.next(5000)).payload.toString()).state === 'offline',
    'offline',
  );
  t.is(done, 10);
  t.is(reports.all.length, 0);
  t.deepEqual(edge.frameReports, { published: 0, skipped: 0 });
});

test('bad payloads on a frames topic crash nothing: readers refuse them in one line, the planner does not read them', async (t) => {
  const broker = await startBroker(t);
  const { logger, lines } = captureLogger('debug');
  const planner = new Planner({ mqttUrl: broker.url, plannerId: 'planner-frames', cut: 'auto' }, logger);
  await planner.start();
  t.teardown(() => planner.stop());
  const device = 'robot-bad';
  const client = await connectClient(t, broker.url);
  const topic = topics.deviceFrames.build({ device });
  const bad = [
    Buffer.from('not json'),
    Buffer.from(JSON.stringify({ device, frame: 0, cut: -1 })),
    Buffer.from(JSON.stringify({ device, huge: 'x'.repeat(256 * 1024) })),
    Buffer.alloc(0),
  ];
  for (const payload of bad) {
    await client.publishAsync(topic, payload, { qos: 1 });
    const err = t.throws(() => parse(payload))!;
    t.regex(err.message, /^frame report: /);
    if (payload.length > FRAME_REPORT_MAX_BYTES)
      t.is(
        err.message,
        `frame report: payload of ${payload.length} bytes exceeds the limit of ${FRAME_REPORT_MAX_BYTES} bytes`,
      );
    t.false(err.message.includes('\n'));
  }
  // A fence: telemetry of a device without a profile, sent after the bad payloads on the same connection, makes the
  // planner say so; had it read the frames topic, it would have read the bad payloads first.
  const telemetry = {
    device,
    at: Date.now(),
    loadavg1: 0,
    cores: 1,
    cpuPercent: 0,
    headMs: {},
    transfers: [],
    framesInFlight: 0,
    fallbacks: 0,
  };
  await client.publishAsync(topics.deviceTelemetry.build({ device }), JSON.stringify(telemetry), { qos: 1 });
  await waitFor(
    () => JSON.stringify(lines).includes('the device sends telemetry but has published no profile'),
    'the planner to read the telemetry after the bad frame reports',
  );
  t.false(JSON.stringify(lines).includes('/frames'), 'nothing in the planner’s log about the frames topic');
  t.is(lines.filter((l) => l.msg === 'message handler failed').length, 0);
  const again = await connectClient(t, broker.url);
  t.true(again.connected, 'the broker still serves');
});

/**
 * The live prediction stream (schemas/topics.ts `devicePredictions`, schemas/messages.ts `PredictionsMessage`): a plan
 * is published only when the cut changes, so between plans the planner publishes Algorithm 1's curve of now, on each
 * new telemetry message, at most once a second per device (the evaluations in between are dropped), only for a device
 * with a plan of Algorithm 1 on a known link. Its `best` is the curve's minimum (latency objective), its `chosen`
 * and `seq` those of the plan in force, and on the embedded broker it arrives between plans, parsed by the schema.
 */
import test from 'ava';
import type { Observable } from 'rxjs';
import type { TestScheduler } from 'rxjs/testing';
import { linkFromBandwidth } from '../planning/link.ts';
import { silentLogger } from '../runtime/log.ts';
import {
  PLAN_CURVE_MAX,
  type Plan,
  PlanSchema,
  PREDICTIONS_MAX_BYTES,
  type PredictionsMessage,
  PredictionsMessageSchema,
  parsePredictions,
} from '../schemas/messages.ts';
import { TOPIC_ROOT, topics } from '../schemas/topics.ts';
import { Planner } from '../services/planner/planner.ts';
import {
  fixedCutEvents,
  type PlannerEvent,
  type PlannerSources,
  type PlanningOptions,
  planEvents,
} from '../services/planner/streams.ts';
import { collect, connectClient, startBroker } from './helpers/broker.ts';
import { deviceTelemetry, makeProfile, type PlannerScript, runPlanner } from './helpers/profiles.ts';
import { until } from './helpers/wait.ts';

const edge = makeProfile([10, 10, 10], [100_000, 50_000, 1_000, 10], { device: 'r1' });
const server = makeProfile([1, 1, 1], [100_000, 50_000, 1_000, 10], { device: 'w1' });
const opts: PlanningOptions = {
  objective: 'latency',
  edgeLoadMode: 'loadavg',
  link: linkFromBandwidth(10e6, 0, 1500),
  linkWindow: 3,
  hysteresis: { minGain: 0.1, holdMs: 3000 },
  tickMs: 1000,
  staleMs: 10_000,
};

type Timed = { at: number; event: PlannerEvent };

/** The events the streams emit on scripted inputs within `untilMs` of virtual time, with their virtual times. */
function run(
  script: (s: PlannerScript, at: PlannerScript['at']) => void,
  untilMs: number,
  events: (s: PlannerSources, scheduler: TestScheduler) => Observable<PlannerEvent> = (s, scheduler) =>
    planEvents(s, opts, scheduler),
): Timed[] {
  return runPlanner((s) => script(s, s.at), untilMs, events);
}

const predictionsOf = (events: Timed[]) =>
  events.flatMap((e) => (e.event.kind === 'predictions' ? [{ at: e.at, p: e.event.predictions }] : []));
const plansOf = (events: Timed[]) =>
  events.flatMap((e) => (e.event.kind === 'plan' ? [{ at: e.at, plan: e.event.plan }] : []));

/** What every predictions message must hold, given the plan in force when it was made. */
function checkPredictions(
  t: import('ava').ExecutionContext,
  p: PredictionsMessage,
  plan: Plan,
  cuts: number,
) {
  t.is(p.seq, plan.seq, "the plan in force's seq");
  t.is(p.chosen, plan.cut.index, "the plan in force's cut");
  t.is(p.modelId, plan.modelId);
  t.deepEqual(
    p.curve.map((c) => c.cut),
    Array.from({ length: cuts }, (_, k) => k),
    'every cut, in order',
  );
  const min = Math.min(...p.curve.map((c) => c.totalMs));
  t.is(p.curve.find((c) => c.cut === p.best)?.totalMs, min, `best (${p.best}) is the curve's minimum`);
  for (const c of p.curve) t.true(Math.abs(c.headMs + c.transferMs + c.tailMs - c.totalMs) < 1e-9);
  t.deepEqual(parsePredictions(JSON.stringify(p)), p, 'it survives JSON and the schema');
}

test('each new telemetry gets a prediction of every cut, at most one per second per device, between plans', (t) => {
  // Telemetry every 100 ms from 2 s to 6.9 s, the link ramping from 6 to 20 Mbit/s: the cut stays 2 throughout.
  const events = run(({ deviceProfiles, workerProfiles, deviceTelemetry: tel }, at) => {
    at(0, () => workerProfiles.next({ worker: 'w1', profile: server }));
    at(0, () => deviceProfiles.next({ device: 'r1', profile: edge }));
    for (let ms = 2000; ms < 7000; ms += 100)
      at(ms, () => tel.next(deviceTelemetry('r1', ms, 6000 + (ms - 2000) * 2.8)));
  }, 10_000);
  const plans = plansOf(events);
  t.deepEqual(
    plans.map((p) => p.plan.cut.index),
    [2],
    'one plan: the link changes, the cut does not',
  );
  const predictions = predictionsOf(events);
  t.deepEqual(
    predictions.map((p) => p.at),
    [2000, 3000, 4000, 5000, 6000],
    'one on the first telemetry, then the first after each second; none on ticks without telemetry',
  );
  for (const { p, at } of predictions) {
    checkPredictions(t, p, plans[0]!.plan, 4);
    t.is(p.at, at);
    t.is(p.device, 'r1');
    t.true(p.inputs?.linkKbps !== undefined && p.inputs.linkKbps > 0, 'the link it rests on');
    t.is(typeof p.inputs?.edgeLoad, 'number');
    t.is(typeof p.inputs?.serverLoad, 'number');
  }
  // The curve moved with the link, while no plan was published: full offload got cheaper as the link sped up.
  const offload = predictions.map(({ p }) => p.curve.find((c) => c.cut === 0)!.transferMs);
  t.true(
    offload.every((ms, i) => i === 0 || ms < offload[i - 1]!),
    `cut 0's transfer falls: ${offload.map((ms) => ms.toFixed(1)).join(', ')}`,
  );
  t.true(
    predictions.at(-1)!.p.inputs!.linkKbps! > predictions[0]!.p.inputs!.linkKbps!,
    'the link estimate rose',
  );
});

test('while the hysteresis holds a switch back, best is the new cut and chosen the plan in force; then both move', (t) => {
  // A device loaded 5x (loadavg 10 on 2 cores) offloads everything at once (a load that moved by half or more skips
  // the hold); then its load eases to 3.4x, a move of less than half: cut 2 is better by more than minGain, but only
  // after the 3 s hold does the plan move there. Meanwhile the predictions say so.
  const events = run(({ deviceProfiles, workerProfiles, deviceTelemetry: tel }, at) => {
    at(0, () => workerProfiles.next({ worker: 'w1', profile: server }));
    at(0, () => deviceProfiles.next({ device: 'r1', profile: edge }));
    at(1000, () => tel.next(deviceTelemetry('r1', 1000, 10_000, 10)));
    for (let ms = 2000; ms < 9000; ms += 250) at(ms, () => tel.next(deviceTelemetry('r1', ms, 10_000, 6.8)));
  }, 12_000);
  const plans = plansOf(events);
  const predictions = predictionsOf(events);
  t.log(
    `plans: ${plans.map((p) => `${p.at} ms cut ${p.plan.cut.index}`).join(', ')}; predictions: ${predictions
      .map((p) => `${p.at} ms chosen ${p.p.chosen} best ${p.p.best}`)
      .join(', ')}`,
  );
  t.deepEqual(
    plans.map((p) => p.plan.cut.index),
    [2, 0, 2],
    'cut 2, everything offloaded under the load, back to 2 after the hold',
  );
  const [, loaded, eased] = plans;
  t.true(eased!.at - loaded!.at >= 3000, 'the way back waited for the hold');
  const held = predictions.filter((p) => p.at > loaded!.at + 1000 && p.at < eased!.at);
  t.true(held.length >= 2, `predictions during the hold (${held.length})`);
  for (const { p } of held) {
    checkPredictions(t, p, loaded!.plan, 4);
    t.is(p.chosen, 0, 'the plan in force');
    t.is(p.best, 2, 'Algorithm 1 already finds cut 2 best');
  }
  const after = predictions.filter((p) => p.at >= eased!.at);
  t.true(after.length > 0, 'predictions go on after the switch');
  for (const { p } of after) {
    checkPredictions(t, p, eased!.plan, 4);
    t.is(p.best, p.chosen);
  }
});

test('no predictions without an Algorithm 1 plan on a known link: the safe start and fixed cuts', (t) => {
  const safe = run(
    ({ deviceProfiles, workerProfiles, deviceTelemetry: tel }, at) => {
      at(0, () => workerProfiles.next({ worker: 'w1', profile: server }));
      at(0, () => deviceProfiles.next({ device: 'r1', profile: edge }));
      // Telemetry without uplink samples: the link stays unknown.
      for (let ms = 1000; ms < 5000; ms += 500)
        at(ms, () => tel.next({ ...deviceTelemetry('r1', ms, 1000), transfers: [] }));
    },
    6000,
    (s, scheduler) => planEvents(s, { ...opts, link: undefined }, scheduler),
  );
  t.is(plansOf(safe).length, 1);
  t.regex(plansOf(safe)[0]!.plan.reason, /safe start/);
  t.deepEqual(predictionsOf(safe), [], 'none in the safe start');
  // Once the link is measured the plan of Algorithm 1 follows, and predictions with it.
  const measured = run(
    ({ deviceProfiles, workerProfiles, deviceTelemetry: tel }, at) => {
      at(0, () => workerProfiles.next({ worker: 'w1', profile: server }));
      at(0, () => deviceProfiles.next({ device: 'r1', profile: edge }));
      at(1000, () => tel.next({ ...deviceTelemetry('r1', 1000, 10_000), transfers: [] }));
      at(2000, () => tel.next(deviceTelemetry('r1', 2000, 10_000)));
    },
    4000,
    (s, scheduler) => planEvents(s, { ...opts, link: undefined }, scheduler),
  );
  t.deepEqual(
    predictionsOf(measured).map((p) => p.at),
    [2000],
    'the first on the telemetry that measured the link',
  );
  t.is(predictionsOf(measured)[0]!.p.seq, plansOf(measured).at(-1)!.plan.seq);
  const fixed = run(
    ({ deviceProfiles, deviceTelemetry: tel }, at) => {
      at(0, () => deviceProfiles.next({ device: 'r1', profile: edge }));
      for (let ms = 1000; ms < 5000; ms += 500) at(ms, () => tel.next(deviceTelemetry('r1', ms, 1000)));
    },
    6000,
    (s, scheduler) => fixedCutEvents(s, { cut: '1' }, scheduler),
  );
  t.is(plansOf(fixed).length, 1);
  t.deepEqual(predictionsOf(fixed), [], 'none for a fixed cut');
});

test('the predictions schema: bounded curve and payload, one clear message for a bad one', (t) => {
  const good: PredictionsMessage = {
    version: 1,
    device: 'r1',
    modelId: 'a'.repeat(64),
    at: 1,
    seq: 1,
    chosen: 2,
    best: 2,
    curve: [{ cut: 2, headMs: 1, transferMs: 1, tailMs: 1, totalMs: 3 }],
  };
  t.deepEqual(PredictionsMessageSchema.parse(good), good);
  const long = Array.from({ length: PLAN_CURVE_MAX + 1 }, (_, cut) => ({ ...good.curve[0]!, cut }));
  t.false(
    PredictionsMessageSchema.safeParse({ ...good, curve: long }).success,
    'a curve past PLAN_CURVE_MAX',
  );
  t.throws(() => parsePredictions(JSON.stringify({ ...good, best: -1 }), 'predictions of r1'), {
    message: /^predictions of r1: .*best/s,
  });
  t.throws(() => parsePredictions(' '.repeat(PREDICTIONS_MAX_BYTES + 1)), {
    message: `predictions: payload of ${PREDICTIONS_MAX_BYTES + 1} bytes exceeds the limit of ${PREDICTIONS_MAX_BYTES} bytes`,
  });
});

test('on the embedded broker, predictions arrive between plans at most once a second, about the plan in force', async (t) => {
  t.timeout(60_000);
  const broker = await startBroker(t);
  const planner = new Planner(
    {
      mqttUrl: broker.url,
      plannerId: 'planner-predictions',
      cut: 'auto',
      bandwidth: 10e6,
      objective: 'latency',
      edgeLoad: 'loadavg',
      linkWindow: 3,
    },
    silentLogger,
  );
  await planner.start();
  t.teardown(() => planner.stop());
  const device = 'robot-predictions';
  const robot = await connectClient(t, broker.url);
  // One subscriber for the plan and the predictions: the planner publishes a plan before the predictions about it,
  // and one subscriber gets them in that order.
  const watcher = await connectClient(t, broker.url);
  const seen = await collect(watcher, `${TOPIC_ROOT}/devices/${device}/+`);
  const profile = { ...edge, device: { ...edge.device, id: device } };
  await robot.publishAsync(
    topics.workerProfile.build({ worker: 'w1', model: server.model.id }),
    JSON.stringify(server),
    { qos: 1, retain: true },
  );
  await robot.publishAsync(topics.deviceProfile.build({ device }), JSON.stringify(profile), {
    qos: 1,
    retain: true,
  });
  const plans: Plan[] = [];
  const predictions: Array<{ p: PredictionsMessage; plan: Plan | undefined }> = [];
  const drain = () => {
    for (const m of seen.all.splice(0)) {
      if (topics.plan.match(m.topic)) plans.push(PlanSchema.parse(JSON.parse(m.payload.toString())));
      else if (topics.devicePredictions.match(m.topic))
        predictions.push({ p: parsePredictions(m.payload, m.topic), plan: plans.at(-1) });
    }
  };
  await until(
    () => {
      drain();
      return plans.length > 0;
    },
    'the first plan',
    10_000,
  );
  t.is(plans[0]!.cut.index, 2);
  t.deepEqual(predictions, [], 'no predictions before any telemetry');
  // Telemetry every 100 ms, the link ramping from 6 to 20 Mbit/s: the curve changes, the cut (2) does not.
  let kbps = 6000;
  let sent = 0;
  const firstSent = Date.now();
  const sender = setInterval(() => {
    kbps = Math.min(20_000, kbps + 300);
    sent++;
    void robot
      .publishAsync(
        topics.deviceTelemetry.build({ device }),
        JSON.stringify(deviceTelemetry(device, Date.now(), kbps)),
      )
      .catch(() => undefined);
  }, 100);
  t.teardown(() => clearInterval(sender));
  await until(
    () => {
      drain();
      return predictions.length >= 4;
    },
    'four predictions messages',
    30_000,
  );
  clearInterval(sender);
  const spanMs = Date.now() - firstSent;
  drain();
  t.log(
    `${sent} telemetry messages over ${spanMs} ms; ${predictions.length} predictions; ${plans.length} plan(s)`,
  );
  t.deepEqual(
    plans.map((p) => p.seq),
    [plans[0]!.seq],
    'no new plan: the cut did not change',
  );
  for (const { p, plan } of predictions) {
    t.truthy(plan, 'each after the plan it is about');
    checkPredictions(t, p, plan!, 4);
    t.is(p.device, device);
  }
  const ats = predictions.map(({ p }) => p.at);
  for (let i = 1; i < ats.length; i++)
    t.true(ats[i]! - ats[i - 1]! >= 1000, `at most one per second: ${ats[i]! - ats[i - 1]!} ms apart`);
  t.true(sent >= 2 * predictions.length, `telemetry in between was dropped (${sent} sent)`);
  // The curve changed between plans: full offload's transfer follows the link estimate.
  const offload = new Set(predictions.map(({ p }) => p.curve.find((c) => c.cut === 0)!.transferMs));
  t.true(offload.size > 1, 'the curve changed while the plan did not');
  t.is(planner.predictionsPublished >= predictions.length, true);
});

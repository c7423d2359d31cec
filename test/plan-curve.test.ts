/**
 * The plan's predicted curve (schemas/messages.ts `Plan.curve`, planning/curve.ts): the stage times of every cut
 * Algorithm 1 considered, the paper's Fig. 3 for the dashboard. Its minimum is the chosen cut (latency objective),
 * the chosen cut's entry equals `predicted`, it is thinned to at most PLAN_CURVE_MAX entries for a model with
 * thousands of cuts, it survives PlanSchema parsing, and the planner's retained plan on the broker carries it.
 */
import test from 'ava';
import type { Observable } from 'rxjs';
import type { TestScheduler } from 'rxjs/testing';
import { predictedCurve } from '../planning/curve.ts';
import { linkFromBandwidth } from '../planning/link.ts';
import { searchPartition } from '../planning/search.ts';
import { silentLogger } from '../runtime/log.ts';
import { type CurvePoint, PLAN_CURVE_MAX, type Plan, PlanSchema, parseJson } from '../schemas/messages.ts';
import { topics } from '../schemas/topics.ts';
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

const edge = makeProfile([10, 10, 10], [100_000, 50_000, 1_000, 10], { device: 'r1' });
const server = makeProfile([1, 1, 1], [100_000, 50_000, 1_000, 10], { device: 'w1' });
const opts: PlanningOptions = {
  objective: 'latency',
  edgeLoadMode: 'loadavg',
  link: linkFromBandwidth(10e6, 0, 1500),
  linkWindow: 16,
  hysteresis: { minGain: 0.1, holdMs: 3000 },
  tickMs: 1000,
  staleMs: 10_000,
};

/** The plans the streams publish on scripted inputs within `untilMs` of virtual time. */
function plans(
  script: (s: PlannerScript) => void,
  untilMs: number,
  events: (s: PlannerSources, scheduler: TestScheduler) => Observable<PlannerEvent> = (s, scheduler) =>
    planEvents(s, opts, scheduler),
): Plan[] {
  return runPlanner(script, untilMs, events).flatMap((e) => (e.event.kind === 'plan' ? [e.event.plan] : []));
}

/** Checks what every curve of a plan of Algorithm 1 must hold; `chosenIsMin` for a plan without a hold pending. */
function checkCurve(t: import('ava').ExecutionContext, plan: Plan, cuts: number, chosenIsMin = true): void {
  const curve = plan.curve!;
  t.truthy(curve, `plan ${plan.seq} has a curve`);
  t.deepEqual(
    curve.map((p) => p.cut),
    Array.from({ length: cuts }, (_, k) => k),
    'every cut, in order',
  );
  const chosen = curve.find((p) => p.cut === plan.cut.index)!;
  t.deepEqual(
    { headMs: chosen.headMs, transferMs: chosen.transferMs, tailMs: chosen.tailMs, totalMs: chosen.totalMs },
    {
      headMs: plan.predicted!.edgeMs,
      transferMs: plan.predicted!.transferMs,
      tailMs: plan.predicted!.serverMs,
      totalMs: plan.predicted!.totalMs,
    },
    "the chosen cut's entry is the plan's prediction",
  );
  for (const p of curve) t.true(Math.abs(p.headMs + p.transferMs + p.tailMs - p.totalMs) < 1e-9);
  if (chosenIsMin)
    t.is(Math.min(...curve.map((p) => p.totalMs)), chosen.totalMs, 'its minimum is the chosen cut');
  // Through JSON and the schema, as a device or a dashboard reads it.
  t.deepEqual(parseJson(PlanSchema, 'plan', JSON.stringify(plan)).curve, curve);
}

test('every plan of Algorithm 1 carries the curve of its search: minimum at the chosen cut, equal to predicted', (t) => {
  const got = plans(({ deviceProfiles, workerProfiles, deviceTelemetry: telemetry, at }) => {
    at(0, () => workerProfiles.next({ worker: 'w1', profile: server }));
    at(0, () => deviceProfiles.next({ device: 'r1', profile: edge }));
    at(2000, () => telemetry.next(deviceTelemetry('r1', 2000, 10_000)));
    at(5000, () => telemetry.next(deviceTelemetry('r1', 5000, 100)));
  }, 20_000);
  t.deepEqual(
    got.map((p) => p.cut.index),
    [2, 3],
    'a first plan, and a switch once the link slowed',
  );
  for (const plan of got) checkCurve(t, plan, 4);
  // The curve moved with the link: offloading at cut 0 costs far more on the slow link.
  t.true(got[1]!.curve![0]!.transferMs > 10 * got[0]!.curve![0]!.transferMs);
});

test('no curve without a prediction: the safe start (no link measured) and fixed cuts', (t) => {
  const safe = plans(
    ({ deviceProfiles, workerProfiles, at }) => {
      at(0, () => workerProfiles.next({ worker: 'w1', profile: server }));
      at(0, () => deviceProfiles.next({ device: 'r1', profile: edge }));
    },
    5000,
    (s, scheduler) => planEvents(s, { ...opts, link: undefined }, scheduler),
  );
  t.is(safe.length, 1);
  t.regex(safe[0]!.reason, /safe start/);
  t.is(safe[0]!.curve, undefined);
  const fixed = plans(
    ({ deviceProfiles, at }) => at(0, () => deviceProfiles.next({ device: 'r1', profile: edge })),
    5000,
    (s, scheduler) => fixedCutEvents(s, { cut: '1' }, scheduler),
  );
  t.is(fixed.length, 1);
  t.is(fixed[0]!.curve, undefined);
  t.is(fixed[0]!.predicted, null);
});

test('a model with thousands of cuts gets a thinned curve: at most PLAN_CURVE_MAX, both ends, the chosen and the best', (t) => {
  const n = 3000;
  const layers = Array.from({ length: n }, (_, i) => 0.01 + (i % 7) * 0.001);
  const bytes = Array.from({ length: n + 1 }, (_, k) => (k === 1234 ? 10 : 50_000 + k));
  const result = searchPartition({
    edgeMs: layers,
    serverMs: layers.map((ms) => ms / 10),
    cuts: bytes.map((b, index) => ({ index, bytes: b })),
    link: linkFromBandwidth(10e6, 0, 1500),
  });
  const chosen = 2001;
  const curve = predictedCurve(result.candidates, [chosen, result.best.index]);
  t.true(curve.length <= PLAN_CURVE_MAX && curve.length >= PLAN_CURVE_MAX - 4, `${curve.length} entries`);
  const cuts = curve.map((p) => p.cut);
  t.deepEqual(
    cuts,
    [...cuts].sort((a, b) => a - b),
    'in cut order',
  );
  t.is(new Set(cuts).size, cuts.length, 'no cut twice');
  for (const k of [0, n, chosen, result.best.index]) t.true(cuts.includes(k), `cut ${k} kept`);
  // Evenly spread: no gap much wider than n / max.
  const gaps = cuts.slice(1).map((k, i) => k - cuts[i]!);
  t.true(Math.max(...gaps) <= Math.ceil(n / (PLAN_CURVE_MAX - 4)) + 1, `largest gap ${Math.max(...gaps)}`);
  const p = result.candidates.find((c) => c.index === chosen)!;
  t.deepEqual(
    curve.find((e) => e.cut === chosen),
    {
      cut: chosen,
      headMs: p.edgeMs,
      transferMs: p.transferMs,
      tailMs: p.serverMs,
      totalMs: p.totalMs,
    } satisfies CurvePoint,
  );
  // Below the bound, every candidate; an infinite time (no link) is left out, as JSON cannot carry it.
  const small = searchPartition({
    edgeMs: [1, 1],
    serverMs: [1, 1],
    cuts: [0, 1, 2].map((index) => ({ index, bytes: 100 })),
    link: { setupMs: 0, alphaMs: 0, mtu: 1500, betaMsPerByte: Number.POSITIVE_INFINITY },
  });
  t.deepEqual(
    predictedCurve(small.candidates).map((e) => e.cut),
    [2],
  );
  const over = Array.from({ length: PLAN_CURVE_MAX + 1 }, (_, i) => ({
    cut: i,
    headMs: 0,
    transferMs: 0,
    tailMs: 0,
    totalMs: 0,
  }));
  t.false(PlanSchema.shape.curve.safeParse(over).success, 'a plan refuses a curve past the bound');
});

test("the planner's retained plan on the broker carries the curve", async (t) => {
  const broker = await startBroker(t);
  const planner = new Planner(
    { mqttUrl: broker.url, plannerId: 'planner-curve', cut: 'auto', bandwidth: 10e6, objective: 'latency' },
    silentLogger,
  );
  await planner.start();
  t.teardown(() => planner.stop());
  const device = 'robot-curve';
  const client = await connectClient(t, broker.url);
  const profile = { ...edge, device: { ...edge.device, id: device } };
  await client.publishAsync(
    topics.workerProfile.build({ worker: 'w1', model: server.model.id }),
    JSON.stringify(server),
    {
      qos: 1,
      retain: true,
    },
  );
  await client.publishAsync(topics.deviceProfile.build({ device }), JSON.stringify(profile), {
    qos: 1,
    retain: true,
  });
  // A reader that comes later gets the retained plan, as a dashboard does.
  const late = await connectClient(t, broker.url);
  const planned = await collect(late, topics.plan.build({ device }));
  const plan = parseJson(PlanSchema, 'plan', (await planned.next(10_000)).payload);
  t.is(plan.objective, 'latency');
  checkCurve(t, plan, 4);
});

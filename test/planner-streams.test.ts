/**
 * The planner's streams and hysteresis under virtual time (RxJS TestScheduler): no sleeping.
 */
import test from 'ava';
import { linkFromBandwidth } from '../planning/link.ts';
import { searchPartition } from '../planning/search.ts';
import type { Profile } from '../schemas/profile.ts';
import { decide } from '../services/planner/decide.ts';
import {
  fixedCutEvents,
  likelyCuts,
  type PlannerEvent,
  type PlanningOptions,
  planEvents,
  SPECULATIVE_RATES_BPS,
  SPECULATIVE_TAILS,
} from '../services/planner/streams.ts';
import {
  deviceTelemetry,
  makeProfile,
  type PlannerScript,
  runPlanner,
  workerTelemetry,
} from './helpers/profiles.ts';

const telemetry = (at: number, kbps: number, loadavg1 = 0.1) => deviceTelemetry('r1', at, kbps, loadavg1);

const edge = makeProfile([10, 10, 10], [100_000, 50_000, 1_000, 10], { device: 'r1' });
const server = makeProfile([1, 1, 1], [100_000, 50_000, 1_000, 10], { device: 'w1' });
const opts = {
  objective: 'latency' as const,
  edgeLoadMode: 'loadavg' as const,
  link: linkFromBandwidth(10e6, 0, 1500),
  linkWindow: 16,
  hysteresis: { minGain: 0.1, holdMs: 3000 },
  tickMs: 1000,
  staleMs: 10_000,
};

/** Runs the planner streams on scripted inputs for `untilMs` of virtual time; returns [time, event] pairs. */
function simulate(
  script: (s: PlannerScript) => void,
  untilMs: number,
  options: PlanningOptions = opts,
): Array<[number, PlannerEvent]> {
  return runPlanner(script, untilMs, (s, scheduler) => planEvents(s, options, scheduler)).map((e) => [
    e.at,
    e.event,
  ]);
}

test('hysteresis: switch only after the gain held for the hold time', (t) => {
  const candidates = (best: number, costs: number[]) => ({
    objective: 'latency' as const,
    best: {
      index: best,
      bytes: 0,
      edgeMs: 0,
      transferMs: 0,
      serverMs: 0,
      totalMs: costs[best]!,
      periodMs: 0,
      energyJ: null,
    },
    candidates: costs.map((c, i) => ({
      index: i,
      bytes: 0,
      edgeMs: 0,
      transferMs: 0,
      serverMs: 0,
      totalMs: c,
      periodMs: 0,
      energyJ: null,
    })),
  });
  const h = { minGain: 0.1, holdMs: 3000 };
  const first = decide({}, candidates(1, [50, 40]), 0, h);
  t.is(first.switchTo?.index, 1);
  // 5% better: below the threshold, never switches.
  t.is(decide(first.state, candidates(0, [38, 40]), 100, h).switchTo, undefined);
  // 50% better: pending, then switches once held for 3 s.
  const p1 = decide(first.state, candidates(0, [20, 40]), 1000, h);
  t.is(p1.switchTo, undefined);
  t.deepEqual(p1.state.pending, { index: 0, since: 1000 });
  t.is(decide(p1.state, candidates(0, [20, 40]), 3999, h).switchTo, undefined);
  t.is(decide(p1.state, candidates(0, [20, 40]), 4000, h).switchTo?.index, 0);
  // A blip back to the current cut resets the clock.
  const reset = decide(p1.state, candidates(1, [45, 40]), 2000, h);
  t.is(reset.state.pending, undefined);
});

test('a device with no server profile gets no plan, with the reason, once', (t) => {
  const events = simulate(({ deviceProfiles, at }) => {
    at(0, () => deviceProfiles.next({ device: 'r1', profile: edge }));
  }, 5000);
  t.is(events.length, 1);
  t.like(events[0]![1], { kind: 'no-plan', device: 'r1' });
  t.regex(
    (events[0]![1] as { reason: string }).reason,
    /no online tail worker has published a profile of model m/,
  );
});

test('a slower link moves the plan to a later cut, after the hold time', (t) => {
  const events = simulate(({ deviceProfiles, workerProfiles, deviceTelemetry, at }) => {
    at(0, () => workerProfiles.next({ worker: 'w1', profile: server }));
    at(0, () => deviceProfiles.next({ device: 'r1', profile: edge }));
    at(2000, () => deviceTelemetry.next(telemetry(2000, 10_000)));
    at(5000, () => deviceTelemetry.next(telemetry(5000, 100)));
  }, 20_000);
  const plans = events.filter(([, e]) => e.kind === 'plan') as Array<
    [number, { plan: { cut: { index: number }; reason: string; seq: number } }]
  >;
  t.deepEqual(
    plans.map(([time, e]) => [time, e.plan.cut.index]),
    [
      [0, 2],
      [8000, 3],
    ],
  );
  // The samples after the change (50 and 80 kB) do not pin the new link down alone, so the hold applies.
  t.regex(plans[1]![1].plan.reason, /switched from cut 2: cut 3 predicted \d+\.\d% lower latency for 3\.0 s/);
  t.regex(
    plans[1]![1].plan.reason,
    /evidence: uplink 10\.00 Mbit\/s -> 100 kbit\/s; the uplink became slower/,
  );
  t.is(plans[1]![1].plan.seq, 2);
});

test('a short burst of slow transfers does not flap the cut', (t) => {
  const events = simulate(({ deviceProfiles, workerProfiles, deviceTelemetry, at }) => {
    at(0, () => workerProfiles.next({ worker: 'w1', profile: server }));
    at(0, () => deviceProfiles.next({ device: 'r1', profile: edge }));
    // Fast link, one slow window for 1 s, then fast again: the window's robust fit must settle back.
    at(1000, () => deviceTelemetry.next(telemetry(1000, 10_000)));
    at(4000, () =>
      deviceTelemetry.next({
        ...telemetry(4000, 100),
        transfers: telemetry(4000, 100).transfers.slice(0, 1),
      }),
    );
    at(5000, () => deviceTelemetry.next(telemetry(5000, 10_000)));
    at(6000, () => deviceTelemetry.next(telemetry(6000, 10_000)));
  }, 20_000);
  const cuts = events
    .filter(([, e]) => e.kind === 'plan')
    .map(([, e]) => (e as { plan: { cut: { index: number } } }).plan.cut.index);
  t.deepEqual(cuts, [2]);
});

test('one slow upload confirmed by the probe burst after it moves the plan at once; a stall the probe clears does not', (t) => {
  const sample = (bytes: number, kbps: number) => ({ bytes, seconds: (bytes * 8) / (kbps * 1000) });
  const run = (probeKbps: number) =>
    simulate(({ deviceProfiles, workerProfiles, deviceTelemetry, at }) => {
      at(0, () => workerProfiles.next({ worker: 'w1', profile: server }));
      at(0, () => deviceProfiles.next({ device: 'r1', profile: edge }));
      at(1000, () => deviceTelemetry.next(telemetry(1000, 10_000)));
      // A request of 100 kB took 8 s (100 kbit/s), then the device's probe burst, doubling from 4 KiB until a
      // probe takes 100 ms: 4 to 16 KiB at 100 kbit/s, 4 to 128 KiB at 10 Mbit/s.
      const burst = [4096, 8192, 16384, 32768, 65536, 131072].filter((_, i) => i < 3 || probeKbps > 1000);
      at(9000, () =>
        deviceTelemetry.next({
          ...telemetry(9000, 10_000),
          transfers: [sample(100_000, 100), ...burst.map((b) => sample(b, probeKbps))],
        }),
      );
    }, 20_000)
      .filter(([, e]) => e.kind === 'plan')
      .map(([time, e]) => [time, (e as { plan: { cut: { index: number } } }).plan.cut.index]);
  t.deepEqual(run(100), [
    [0, 2],
    [9000, 3],
  ]);
  t.deepEqual(run(10_000), [[0, 2]]);
});

test('edge load (loadavg, Fig. 17) moves the plan earlier; the plan records the mode', (t) => {
  const events = simulate(({ deviceProfiles, workerProfiles, deviceTelemetry, at }) => {
    at(0, () => workerProfiles.next({ worker: 'w1', profile: server }));
    at(0, () => deviceProfiles.next({ device: 'r1', profile: edge }));
    at(1000, () => deviceTelemetry.next(telemetry(1000, 10_000, 0.5)));
    at(3000, () => deviceTelemetry.next(telemetry(3000, 10_000, 20)));
  }, 15_000);
  const plans = events
    .filter(([, e]) => e.kind === 'plan')
    .map(
      ([time, e]) =>
        [
          time,
          (
            e as unknown as {
              plan: { cut: { index: number }; inputs: { edgeLoad: { mode: string; factor: number } } };
            }
          ).plan,
        ] as const,
    );
  t.deepEqual(
    plans.map(([time, p]) => [time, p.cut.index]),
    [
      [0, 2],
      // The load factor moved from 1 to 10, more than half: a change, not noise, so no hold.
      [3000, 0],
    ],
  );
  t.is(plans[1]![1].inputs.edgeLoad.mode, 'loadavg');
  t.is(plans[1]![1].inputs.edgeLoad.factor, 10);
});

test('a worker going offline removes its profile from the plan', (t) => {
  const events = simulate(({ deviceProfiles, workerProfiles, workerStatus, at }) => {
    at(0, () => workerProfiles.next({ worker: 'w1', profile: server }));
    at(0, () => deviceProfiles.next({ device: 'r1', profile: edge }));
    at(2000, () => workerStatus.next({ worker: 'w1', online: false }));
  }, 5000);
  t.deepEqual(
    events.map(([time, e]) => [time, e.kind]),
    [
      [0, 'plan'],
      [2000, 'no-plan'],
    ],
  );
});

test('the search behind the scenario agrees with hand computation', (t) => {
  const input = {
    edgeMs: [10, 10, 10],
    serverMs: [1, 1, 1],
    cuts: edge.cuts.map((c) => ({ index: c.index, bytes: c.bytes })),
  };
  t.is(searchPartition({ ...input, link: linkFromBandwidth(10e6) }).best.index, 2);
  t.is(searchPartition({ ...input, link: linkFromBandwidth(100e3) }).best.index, 3);
  t.is(searchPartition({ ...input, link: linkFromBandwidth(10e6), edgeLoad: 10 }).best.index, 0);
});

test('energy: a plan for a device of a preset with power figures carries its joules; the energy objective needs them', (t) => {
  const pi = { ...edge, device: { ...edge.device, preset: 'rpi3b' } };
  const script = (profile: Profile) => (s: Parameters<Parameters<typeof simulate>[0]>[0]) => {
    s.at(0, () => s.workerProfiles.next({ worker: 'w1', profile: server }));
    s.at(0, () => s.deviceProfiles.next({ device: 'r1', profile }));
    s.at(1000, () => s.deviceTelemetry.next(telemetry(1000, 10_000)));
  };
  const plan = (events: Array<[number, PlannerEvent]>) =>
    events.flatMap(([, e]) => (e.kind === 'plan' ? [e.plan] : []));
  // Latency objective: the joules are reported (rpi3b has power figures), and null without a preset.
  const withPower = plan(simulate(script(pi), 5000));
  t.true((withPower[0]?.predicted?.energyJ ?? 0) > 0, JSON.stringify(withPower[0]?.predicted));
  t.is(plan(simulate(script(edge), 5000))[0]?.predicted?.energyJ, null);
  // Energy objective: planned by joules with the preset's figures; a device without them gets no plan, and why.
  const energy = { ...opts, objective: 'energy' as const };
  const byEnergy = plan(simulate(script(pi), 5000, energy));
  t.is(byEnergy[0]?.objective, 'energy');
  const none = simulate(script(edge), 5000, energy).map(([, e]) => e);
  t.false(none.some((e) => e.kind === 'plan'));
  t.regex(
    (none.find((e) => e.kind === 'no-plan') as { reason: string } | undefined)?.reason ?? '',
    /energy objective needs the device's power figures/,
  );
});

test('frames that missed their deadline are evidence: the plan leaves the slow server at once, and tries it again later', (t) => {
  const events = simulate(({ deviceProfiles, workerProfiles, deviceTelemetry, at }) => {
    at(0, () => workerProfiles.next({ worker: 'w1', profile: server }));
    at(0, () => deviceProfiles.next({ device: 'r1', profile: edge }));
    for (let s = 1; s <= 40; s++) {
      const base = telemetry(s * 1000, 10_000);
      // At 5 s the device reports a frame at cut 2 that got no answer within 500 ms (the plan predicted ~2 ms).
      at(s * 1000, () =>
        deviceTelemetry.next(s === 5 ? { ...base, late: [{ cut: 2, bytes: 1000, waitedMs: 500 }] } : base),
      );
    }
  }, 45_000);
  const plans = events.flatMap(([time, e]) => (e.kind === 'plan' ? [[time, e.plan] as const] : []));
  t.deepEqual(
    plans.map(([time, p]) => [time, p.cut.index]),
    [
      [0, 2],
      [5000, 3],
      // The evidence is held for LATE_HOLD_MS after the last late frame; then offloading is tried again.
      [35_000, 2],
    ],
  );
  t.regex(plans[1]![1].reason, /got no answer within 500 ms/);
});

test('a device silent for forgetMs is forgotten, once; one that keeps reporting is not', (t) => {
  const events = simulate(
    ({ deviceProfiles, workerProfiles, deviceTelemetry, at }) => {
      at(0, () => workerProfiles.next({ worker: 'w1', profile: server }));
      at(0, () => deviceProfiles.next({ device: 'r1', profile: edge }));
      at(0, () => deviceProfiles.next({ device: 'r2', profile: edge }));
      // r1 reports every second for 50 s, then goes silent; r2 sends nothing after its profile.
      for (let s = 1; s <= 50; s++) at(s * 1000, () => deviceTelemetry.next(telemetry(s * 1000, 10_000)));
      // r2 comes back after it was forgotten: planned afresh.
      at(100_000, () => deviceProfiles.next({ device: 'r2', profile: edge }));
    },
    200_000,
    { ...opts, forgetMs: 60_000 },
  );
  // Without the predictions r1's telemetry gets (test/plan-predictions.test.ts).
  const of = (device: string) =>
    events.filter(([, e]) => e.device === device && e.kind !== 'predictions').map(([at, e]) => [at, e.kind]);
  // r1: last telemetry at 50 s, forgotten 60 s later; r2: silent from 0 s, forgotten at 60 s; back at 100 s.
  t.deepEqual(of('r1'), [
    [0, 'plan'],
    [110_000, 'forgotten'],
  ]);
  t.deepEqual(of('r2'), [
    [0, 'plan'],
    [60_000, 'forgotten'],
    [100_000, 'plan'],
    [160_000, 'forgotten'],
  ]);
  // The plan after coming back starts a new sequence: the planner kept nothing of the device.
  const back = events.find(([at, e]) => at === 100_000 && e.kind === 'plan')![1] as { plan: { seq: number } };
  t.is(back.plan.seq, 1);
});

test('likelyCuts: the cuts best at some uplink rate, most rates first, the faster rate breaking ties', (t) => {
  const layers = 10;
  // Everything on the device up to 300 kbit/s, cut 7 to 3 Mbit/s, cut 4 to 30 Mbit/s, cut 0 above.
  const best = (bps: number) => (bps <= 3e5 ? layers : bps <= 3e6 ? 7 : bps <= 3e7 ? 4 : 0);
  t.deepEqual(likelyCuts(best, layers, 3), [0, 4, 7]);
  t.deepEqual(likelyCuts(best, layers), [0, 4], `by default the ${SPECULATIVE_TAILS} most likely`);
  t.deepEqual(
    likelyCuts(() => layers, layers),
    [],
  );
  const many = (bps: number) => SPECULATIVE_RATES_BPS.indexOf(bps);
  // All tie at one rate each: the fastest rates' cuts first.
  t.deepEqual(likelyCuts(many, layers, 3), [8, 7, 6]);
});

test('a new cut waits for a worker to report its tail loaded (asked with a prepare), at most prepareMs', (t) => {
  const key = `${edge.model.id}:2`;
  const worker = (at: number, warm: string[]) => workerTelemetry('w1', at, warm);
  // No link configured: the safe start (everything on the device), then the measured 10 Mbit/s link makes cut 2 best.
  const run = (warmAtMs: number | undefined) =>
    simulate(
      ({ deviceProfiles, workerProfiles, workerTelemetry, deviceTelemetry, at }) => {
        at(0, () => workerProfiles.next({ worker: 'w1', profile: server }));
        at(0, () => deviceProfiles.next({ device: 'r1', profile: edge }));
        for (let s = 0; s <= 30; s++) {
          const warm = warmAtMs !== undefined && s * 1000 >= warmAtMs ? [key] : [];
          at(s * 1000 + 500, () => workerTelemetry.next(worker(s * 1000 + 500, warm)));
          if (s >= 1) at(s * 1000, () => deviceTelemetry.next(telemetry(s * 1000, 10_000)));
        }
      },
      30_000,
      { ...opts, link: undefined, prepareMs: 10_000 },
    );
  const summary = (events: Array<[number, PlannerEvent]>) =>
    events.flatMap(([time, e]) =>
      e.kind === 'plan'
        ? [[time, 'plan', e.plan.cut.index]]
        : e.kind === 'prepare'
          ? [[time, e.speculative ? 'guess' : 'prepare', e.cut]]
          : [],
    );
  // The worker reports the tail loaded at 4.5 s: the switch follows at once, the reason says so. While the link is
  // not measured yet, the workers are asked (once) for the likely tails: cut 2 (best from 1 to 30 Mbit/s), then
  // cut 0 (best from 100 Mbit/s).
  const warmed = run(4000);
  t.deepEqual(summary(warmed), [
    [0, 'plan', 3],
    [500, 'guess', 2],
    [500, 'guess', 0],
    [1000, 'prepare', 2],
    [4500, 'plan', 2],
  ]);
  const plan = warmed.find(([time, e]) => time === 4500 && e.kind === 'plan')![1] as {
    plan: { reason: string };
  };
  t.regex(plan.plan.reason, /cut 2's tail loaded on 1 of 1 workers first \(3\.5 s\)/);
  // Never reported: the switch comes after prepareMs, naming the wait; one prepare only.
  const cold = run(undefined);
  t.deepEqual(summary(cold), [
    [0, 'plan', 3],
    [500, 'guess', 2],
    [500, 'guess', 0],
    [1000, 'prepare', 2],
    [11_000, 'plan', 2],
  ]);
  const late = cold.find(([time, e]) => time === 11_000 && e.kind === 'plan')![1] as {
    plan: { reason: string };
  };
  t.regex(late.plan.reason, /no worker reported cut 2's tail loaded within 10\.0 s/);
  // Workers that do not report `warm` (or prepareMs 0): no wait.
  const old = simulate(
    ({ deviceProfiles, workerProfiles, deviceTelemetry, at }) => {
      at(0, () => workerProfiles.next({ worker: 'w1', profile: server }));
      at(0, () => deviceProfiles.next({ device: 'r1', profile: edge }));
      for (let s = 1; s <= 5; s++) at(s * 1000, () => deviceTelemetry.next(telemetry(s * 1000, 10_000)));
    },
    6000,
    { ...opts, link: undefined, prepareMs: 10_000 },
  );
  t.deepEqual(summary(old), [
    [0, 'plan', 3],
    [1000, 'plan', 2],
  ]);
});

test('fixed cut: each profile gets the configured cut (a prepare, then the plan), a bad cut a reason, a silent device is forgotten', (t) => {
  const out: Array<[number, PlannerEvent]> = runPlanner(
    ({ deviceProfiles, at }) => {
      at(0, () => deviceProfiles.next({ device: 'r1', profile: edge }));
      // Published again (a restarted broker): the plan again, with the next seq.
      at(1000, () => deviceProfiles.next({ device: 'r1', profile: edge }));
      at(2000, () =>
        deviceProfiles.next({ device: 'r2', profile: makeProfile([1], [10, 1], { device: 'r2' }) }),
      );
    },
    30_000,
    (s, scheduler) => fixedCutEvents(s, { cut: '1', forgetMs: 10_000 }, scheduler),
  ).map((e) => [e.at, e.event]);
  const of = (device: string) => out.filter(([, e]) => e.device === device).map(([at, e]) => [at, e.kind]);
  t.deepEqual(of('r1'), [
    [0, 'prepare'],
    [0, 'plan'],
    [1000, 'prepare'],
    [1000, 'plan'],
    [11_000, 'forgotten'],
  ]);
  const plans = out.flatMap(([, e]) => (e.kind === 'plan' && e.device === 'r1' ? [e.plan] : []));
  t.deepEqual(
    plans.map((p) => [p.seq, p.cut.index, p.objective, p.predicted]),
    [
      [1, 1, 'fixed', null],
      [2, 1, 'fixed', null],
    ],
  );
  // r2's model has one layer: cut 1 is its last, the device runs everything, and there is no tail to prepare.
  t.deepEqual(of('r2'), [
    [2000, 'plan'],
    [12_000, 'forgotten'],
  ]);
});

test('fixed cut: a cut the model does not have is no plan, with the reason', (t) => {
  const out = runPlanner(
    ({ deviceProfiles, at }) => at(0, () => deviceProfiles.next({ device: 'r1', profile: edge })),
    5000,
    (s, scheduler) => fixedCutEvents(s, { cut: '7' }, scheduler),
  ).map((e) => e.event);
  t.deepEqual(out, [
    { kind: 'no-plan', device: 'r1', reason: "cut 7 does not exist: the device's model has cuts 0..3" },
  ]);
});

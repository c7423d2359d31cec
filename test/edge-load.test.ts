/**
 * The planner's edge load factor (services/planner/inputs.ts): `measured` compares the measured head at cut k with
 * the profile's head at the same cut, holds the last measured factor while no head runs (scaled only by the change
 * of the other processes' load), and ignores heads too short to measure by; `loadavg` is the paper's Fig. 17 rule
 * with the device's own process counted once.
 */
import test from 'ava';
import { loadFactor } from '../measurement/load.ts';
import { type DeviceTelemetry, DeviceTelemetrySchema, parseJson } from '../schemas/messages.ts';
import { medianHead } from '../services/edge-head/telemetry.ts';
import {
  type EdgeLoadState,
  MIN_HEAD_SHARE,
  nextEdgeLoad,
  persistentOthers,
} from '../services/planner/inputs.ts';
import { deviceTelemetry, makeProfile } from './helpers/profiles.ts';

// Six layers, 200 ms in all; the first is a 1 ms input normalisation (0.5% of the model, below MIN_HEAD_SHARE).
const layerMs = [1, 9, 30, 40, 60, 60];
const profile = makeProfile(layerMs, [150_000, 150_000, 80_000, 40_000, 20_000, 8_000, 4_000]);
/** The profile's head at cut k: layers 1..k. */
const head = (k: number) => layerMs.slice(0, k).reduce((a, b) => a + b, 0);

/** Telemetry with measured heads per cut and the heads run since the last message. */
function telemetry(
  at: number,
  heads: Record<number, number>,
  counts: Record<number, number>,
  load: { loadavg1?: number; ownLoad1?: number; cores?: number } = {},
): DeviceTelemetry {
  const t = deviceTelemetry('r1', at, 1000, load.loadavg1 ?? 1);
  return {
    ...t,
    cores: load.cores ?? 2,
    ownLoad1: load.ownLoad1 ?? 1,
    headMs: Object.fromEntries(Object.entries(heads)),
    headCounts: Object.fromEntries(Object.entries(counts)),
  };
}

test('the profile of the scenario has a head below MIN_HEAD_SHARE at cut 1 only', (t) => {
  const whole = head(6);
  t.true(head(1) < MIN_HEAD_SHARE * whole);
  t.true(head(2) > MIN_HEAD_SHARE * whole);
});

test('measured: like with like gives 1 at every cut, also when a light head gives way to a heavy one', (t) => {
  let state: EdgeLoadState | undefined;
  const heads: Record<number, number> = {};
  // The device runs cut 2, then 3, ..., then 6 (the whole model): each head as profiled.
  for (let k = 2; k <= 6; k++) {
    heads[k] = head(k);
    const counts = Object.fromEntries(Object.keys(heads).map((c) => [c, Number(c) === k ? 8 : 0]));
    // A heavier head keeps the device's own process busier: its own load and the load average rise with it.
    const own = head(k) / 100;
    state = nextEdgeLoad(
      'measured',
      profile,
      telemetry(k * 1000, heads, counts, { loadavg1: own, ownLoad1: own }),
      state,
      k * 1000,
    );
    t.is(state.factor, 1, `cut ${k}: ${state.source}`);
    t.regex(state.source, new RegExp(`at cut ${k}`));
  }
  // From the heavy head back to a light one: still 1.
  state = nextEdgeLoad(
    'measured',
    profile,
    telemetry(9000, { ...heads, 2: head(2) }, { 2: 8, 6: 0 }),
    state,
    9000,
  );
  t.is(state.factor, 1);
  // Both running since the last message, both as profiled: 1.
  state = nextEdgeLoad('measured', profile, telemetry(10_000, heads, { 2: 4, 6: 4 }), state, 10_000);
  t.is(state.factor, 1);
});

test('measured: a head twice the profile at the current cut gives 2', (t) => {
  const state = nextEdgeLoad(
    'measured',
    profile,
    telemetry(1000, { 4: 2 * head(4) }, { 4: 8 }),
    undefined,
    1000,
  );
  t.is(state.factor, 2);
  t.deepEqual(state.measured, { factor: 2, cut: 4, othersLoad: 0, at: 1000 });
  // A stale head at another cut (no frames there since) does not count.
  const withStale = nextEdgeLoad(
    'measured',
    profile,
    telemetry(2000, { 3: head(3), 4: 2 * head(4) }, { 3: 0, 4: 8 }),
    state,
    2000,
  );
  t.is(withStale.factor, 2);
});

test('measured: with no fresh head the last factor is held, scaled by the change of the other processes', (t) => {
  // Measured 2x at cut 4, other processes idle (load average = own load = 1 on 2 cores).
  const measured = nextEdgeLoad(
    'measured',
    profile,
    telemetry(1000, { 4: 2 * head(4) }, { 4: 8 }, { loadavg1: 1, ownLoad1: 1 }),
    undefined,
    1000,
  );
  t.is(measured.factor, 2);
  // Full offload: no head since; the load average falls as the device's own process idles. Held at 2, not 1.
  const idle = nextEdgeLoad(
    'measured',
    profile,
    telemetry(60_000, { 4: 2 * head(4) }, { 4: 0 }, { loadavg1: 0.1, ownLoad1: 0.1 }),
    measured,
    60_000,
  );
  t.is(idle.factor, 2);
  t.regex(idle.source, /^held: measured 2\.00 at cut 4 59 s ago/);
  // No headCounts entries at all (nothing ran): the same.
  const none = nextEdgeLoad(
    'measured',
    profile,
    telemetry(61_000, {}, {}, { loadavg1: 1, ownLoad1: 1 }),
    idle,
    61_000,
  );
  t.is(none.factor, 2);
  // Other processes take 2 run-queue slots on 2 cores: Fig. 17 says (2 + 1) / 2 = 1.5 vs max(1, 1 / 2) = 1 before.
  // One report is not yet a change (a burst of another process moves one report); the second one is.
  const first = nextEdgeLoad(
    'measured',
    profile,
    telemetry(61_500, {}, {}, { loadavg1: 2.1, ownLoad1: 0.1 }),
    none,
    61_500,
  );
  t.is(first.factor, 2);
  const busy = nextEdgeLoad(
    'measured',
    profile,
    telemetry(62_000, {}, {}, { loadavg1: 2.1, ownLoad1: 0.1 }),
    first,
    62_000,
  );
  const scale = loadFactor(2 + 1, 2) / loadFactor(0 + 1, 2);
  t.is(scale, 1.5);
  t.true(Math.abs(busy.factor - 2 * scale) < 1e-9, `${busy.factor}`);
  t.regex(busy.source, /scaled by the other processes' load 0\.00 -> 2\.00/);
  // Held from the measurement, not compounded: still 3 at the next message with the same load.
  const again = nextEdgeLoad(
    'measured',
    profile,
    telemetry(63_000, {}, {}, { loadavg1: 2.1, ownLoad1: 0.1 }),
    busy,
    63_000,
  );
  t.true(Math.abs(again.factor - 3) < 1e-9, `${again.factor}`);
  // The others gone again (two reports): back to 2.
  const going = nextEdgeLoad(
    'measured',
    profile,
    telemetry(63_500, {}, {}, { loadavg1: 0.1, ownLoad1: 0.1 }),
    again,
    63_500,
  );
  t.true(Math.abs(going.factor - 3) < 1e-9, `${going.factor}`);
  const calm = nextEdgeLoad(
    'measured',
    profile,
    telemetry(64_000, {}, {}, { loadavg1: 0.1, ownLoad1: 0.1 }),
    going,
    64_000,
  );
  t.true(Math.abs(calm.factor - 2) < 1e-9, `${calm.factor}`);
  // A fresh head replaces the held factor.
  const fresh = nextEdgeLoad('measured', profile, telemetry(65_000, { 5: head(5) }, { 5: 3 }), calm, 65_000);
  t.is(fresh.factor, 1);
});

test('measured: heads shorter than MIN_HEAD_SHARE of the model are ignored', (t) => {
  // Only the 1 ms head ran, measured 10x (noise, a timer's resolution): not evidence; the loadavg rule stands.
  const short = nextEdgeLoad(
    'measured',
    profile,
    telemetry(1000, { 1: 10 * head(1) }, { 1: 8 }, { loadavg1: 1, ownLoad1: 1 }),
    undefined,
    1000,
  );
  t.is(short.factor, 1);
  t.is(short.measured, undefined);
  t.regex(short.source, /no head measured yet/);
  // With a held measurement, the short head neither replaces nor moves it.
  const measured = nextEdgeLoad(
    'measured',
    profile,
    telemetry(2000, { 3: 1.5 * head(3) }, { 3: 8 }),
    undefined,
    2000,
  );
  t.is(measured.factor, 1.5);
  const held = nextEdgeLoad(
    'measured',
    profile,
    telemetry(3000, { 1: 10 * head(1) }, { 1: 8 }),
    measured,
    3000,
  );
  t.is(held.factor, 1.5);
  t.regex(held.source, /^measured 1\.50 at cut 3/, 'the measurement at cut 3 stands');
  // Beside a long head, the short one does not count at all.
  const both = nextEdgeLoad(
    'measured',
    profile,
    telemetry(4000, { 1: 10 * head(1), 5: head(5) }, { 1: 8, 5: 8 }),
    held,
    4000,
  );
  t.is(both.factor, 1);
  t.notRegex(both.source, /weighted median/);
});

test('loadavg: the device itself counted once; without ownLoad1 the paper rule loadavg1 / cores', (t) => {
  const withOwn = nextEdgeLoad(
    'loadavg',
    profile,
    telemetry(1000, {}, {}, { loadavg1: 2, ownLoad1: 1 }),
    undefined,
    1000,
  );
  // Others 1, plus one head, on 2 cores: max(1, (1 + 1) / 2) = 1.
  t.is(withOwn.factor, 1);
  const busier = nextEdgeLoad(
    'loadavg',
    profile,
    telemetry(1000, {}, {}, { loadavg1: 6, ownLoad1: 1 }),
    undefined,
    1000,
  );
  // Others 5 plus one head on 2 cores: 3.
  t.is(busier.factor, 3);
  // The device idle (full offload): others 4, plus the head it would run: 2.5 (not loadavg1 / cores = 2).
  const idle = nextEdgeLoad(
    'loadavg',
    profile,
    telemetry(1000, {}, {}, { loadavg1: 4, ownLoad1: 0 }),
    undefined,
    1000,
  );
  t.is(idle.factor, 2.5);
  // The device busy on both cores with its own work: others 2, plus one head: 1.5 (not 6 / 2 = 3).
  const own = nextEdgeLoad(
    'loadavg',
    profile,
    telemetry(1000, {}, {}, { loadavg1: 4, ownLoad1: 2 }),
    undefined,
    1000,
  );
  t.is(own.factor, 1.5);
  const paper: DeviceTelemetry = { ...deviceTelemetry('r1', 1000, 1000, 2), cores: 2 };
  t.is(paper.ownLoad1, undefined);
  t.is(nextEdgeLoad('loadavg', profile, { ...paper, loadavg1: 2 }, undefined, 1000).factor, 1);
  t.is(nextEdgeLoad('loadavg', profile, { ...paper, loadavg1: 5 }, undefined, 1000).factor, 2.5);
  // The loadavg mode ignores measured heads.
  t.is(
    nextEdgeLoad(
      'loadavg',
      profile,
      telemetry(1000, { 4: 3 * head(4) }, { 4: 8 }, { loadavg1: 2, ownLoad1: 1 }),
      undefined,
      1000,
    ).factor,
    1,
  );
});

test('telemetry from a device is bounded: at most 64 lower bounds, late frames and ways back, 1024 uplink samples', (t) => {
  const base = { ...telemetry(0, {}, {}) };
  const late = Array.from({ length: 65 }, () => ({ cut: 1, bytes: 1, waitedMs: 1 }));
  const r = DeviceTelemetrySchema.safeParse({ ...base, late });
  t.false(r.success);
  t.regex(
    parseError(() => parseJson(DeviceTelemetrySchema, 'device telemetry', JSON.stringify({ ...base, late }))),
    /late/,
  );
  t.true(DeviceTelemetrySchema.safeParse({ ...base, late: late.slice(1) }).success);
  const transfers = Array.from({ length: 1025 }, () => ({ bytes: 1, seconds: 0 }));
  t.false(DeviceTelemetrySchema.safeParse({ ...base, transfers }).success);
  const returns = Array.from({ length: 65 }, () => 3);
  t.false(DeviceTelemetrySchema.safeParse({ ...base, returns }).success);
  t.true(DeviceTelemetrySchema.safeParse({ ...base, returns: returns.slice(1) }).success);
  t.false(DeviceTelemetrySchema.safeParse({ ...base, returns: [-1] }).success);
});

function parseError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return String((err as Error).message);
  }
  return '';
}

test('measured: a head measured under another load than now is carried over to now (headOthers vs othersRunnable)', (t) => {
  const under = (at: number, ratio: number, during: number, now: number) => ({
    ...telemetry(at, { 4: ratio * head(4) }, { 4: 1 }),
    headOthers: { 4: during },
    othersRunnable: now,
  });
  // The head ran idle (1x); four busy processes came on as it ended, seen in this report and the one before:
  // (4 + 1) / 2 = 2.5 now, not 1.
  const before = { factor: 1, source: 'x', others: 4, othersLevel: 0 };
  const on = nextEdgeLoad('measured', profile, under(1000, 1, 0, 4), before, 1000);
  t.true(Math.abs(on.factor - 2.5) < 1e-9, `${on.factor}`);
  t.regex(on.source, /carried from the other processes' load during it 0\.00 to now 4\.00/);
  // Seen in one report only (a burst): the head as measured.
  const burst = nextEdgeLoad('measured', profile, under(1000, 1, 0, 4), { ...before, others: 0 }, 1000);
  t.is(burst.factor, 1);
  t.notRegex(burst.source, /carried/);
  // Half the head under the load (2 on average: 1.5x by Fig. 17, measured 1.5x): 2.5 now.
  const half = nextEdgeLoad('measured', profile, under(2000, 1.5, 2, 4), on, 2000);
  t.true(Math.abs(half.factor - 2.5) < 1e-9, `${half.factor}`);
  // Measured loaded (2.5x under 4 others); the load went as it ended (two reports): 1 now.
  const off = nextEdgeLoad(
    'measured',
    profile,
    under(3000, 2.5, 4, 0),
    { ...half, others: 0, othersLevel: 4 },
    3000,
  );
  t.true(Math.abs(off.factor - 1) < 1e-9, `${off.factor}`);
  // Under the same load as now (the level at 4 again): the measurement as it is, and no word of carrying.
  const same = nextEdgeLoad('measured', profile, under(4000, 2.5, 4, 4), { ...off, othersLevel: 4 }, 4000);
  t.true(Math.abs(same.factor - 2.5) < 1e-9);
  t.notRegex(same.source, /carried/);
});

test('measured: between two heads the held factor follows the other processes within two reports, not after HELD_AS_MEASURED_MS', (t) => {
  const measured = nextEdgeLoad(
    'measured',
    profile,
    { ...telemetry(1000, { 4: head(4) }, { 4: 1 }), othersRunnable: 0, headOthers: { 4: 0 } },
    undefined,
    1000,
  );
  t.is(measured.factor, 1);
  // One and two seconds later, no head finished yet, four busy processes runnable: 2.5 from the second report.
  const report = (at: number, others: number) => ({
    ...telemetry(at, { 4: head(4) }, { 4: 0 }),
    othersRunnable: others,
  });
  const first = nextEdgeLoad('measured', profile, report(2000, 4), measured, 2000);
  t.is(first.factor, 1);
  const loaded = nextEdgeLoad('measured', profile, report(3000, 5), first, 3000);
  t.true(Math.abs(loaded.factor - 2.5) < 1e-9, `the nearer of 4 and 5: ${loaded.factor}`);
  t.regex(loaded.source, /scaled by the other processes' load 0\.00 -> 4\.00/);
  // Unchanged load between heads: the measurement stands, named as such.
  const calm = nextEdgeLoad('measured', profile, report(2000, 0), measured, 2000);
  t.is(calm.factor, 1);
  t.regex(calm.source, /^measured 1\.00 at cut 4 1 s ago$/);
});

test('persistentOthers: a change counts when two reports agree on its direction', (t) => {
  t.is(persistentOthers(4, undefined, 0), 4, 'no report before: as reported');
  t.is(persistentOthers(4, 0, 0), 0);
  t.is(persistentOthers(4, 6, 0), 4);
  t.is(persistentOthers(1, 2, 4), 2);
  t.is(persistentOthers(5, 1, 4), 4, 'opposite directions: no change');
});

test('telemetry: the median head is reported with the load during that same head, not the median of the loads', (t) => {
  // The load came on: two heads before it (1150 ms under 0.4 others), one after (2900 ms under 4.1). The median head
  // is one of before, so the load reported with it is of before too (carried to now, the planner sees the load).
  // The load gone: the median head is a loaded one, reported with its load.
  t.deepEqual(
    medianHead([
      { ms: 1150, others: 0.4 },
      { ms: 1160, others: 0 },
      { ms: 2900, others: 4.1 },
    ]),
    { ms: 1160, others: 0 },
  );
  t.deepEqual(
    medianHead([
      { ms: 2900, others: 4.1 },
      { ms: 2950, others: 4.3 },
      { ms: 1200, others: 0.2 },
    ]),
    { ms: 2900, others: 4.1 },
  );
  // An even count averages the two middle heads and their loads; a head without a load reports none.
  t.deepEqual(
    medianHead([
      { ms: 100, others: 1 },
      { ms: 300, others: 3 },
    ]),
    { ms: 200, others: 2 },
  );
  t.deepEqual(medianHead([{ ms: 100 }, { ms: 300, others: 3 }, { ms: 200 }]), { ms: 200 });
});

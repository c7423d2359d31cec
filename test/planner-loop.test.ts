/**
 * The closed loop under virtual time (RxJS TestScheduler): a simulated device that runs the plan in force and reports
 * what it measures (the head at that cut, its uplink samples: probes while it offloads nothing, its requests and
 * telemetry while it does), against the planner's streams with no configured link and the measured edge load.
 * Safe start, the first measured plan at once, no flapping on steady noisy telemetry, one switch on a bandwidth step.
 */
import test from 'ava';
import { type Observable, takeUntil, timer } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { mulberry32 } from '../model/random.ts';
import type { TransferSample } from '../planning/link-fit.ts';
import { searchPartition } from '../planning/search.ts';
import type { DeviceTelemetry, Plan } from '../schemas/messages.ts';
import { topics } from '../schemas/topics.ts';
import { PROBE, publishPacketBytes } from '../services/edge-head/uplink.ts';
import { type PlannerSources, planEvents } from '../services/planner/streams.ts';
import { makeProfile, plannerSubjects } from './helpers/profiles.ts';

// Six layers. A cheap stem with a large activation (cuts 1 and 2 are poor), then a bottleneck at cut 3 (6 kB after
// 60 ms of head), then heavy layers. The input is 40 kB: cheap to send on a fast link, dear on a slow one.
const edgeMs = [10, 15, 35, 40, 50, 50];
const serverMs = [0.5, 0.5, 1, 1, 1.5, 1.5];
const cutBytes = [40_000, 120_000, 60_000, 6_000, 5_000, 3_000, 1_000];
const N = edgeMs.length;
const edge = makeProfile(edgeMs, cutBytes, { device: 'r1' });
const server = makeProfile(serverMs, cutBytes, { device: 'w1' });
/** The profile's head at cut k. */
const head = (k: number) => edgeMs.slice(0, k).reduce((a, b) => a + b, 0);

/** The uplink's fixed cost per message (broker hop and PUBACK), ms. */
const SETUP_MS = 5;
const FRAMES_PER_S = 4;
const requestTopic = topics.request.build({ device: 'r1' });
const probeTopic = topics.deviceProbe.build({ device: 'r1' });
const telemetryTopic = topics.deviceTelemetry.build({ device: 'r1' });

const opts = {
  objective: 'latency' as const,
  edgeLoadMode: 'measured' as const,
  link: undefined,
  linkBase: { alphaMs: 0, mtu: 1500 },
  linkWindow: 64,
  hysteresis: { minGain: 0.1, holdMs: 3000 },
  tickMs: 1000,
  staleMs: 10_000,
};

/** The cut Algorithm 1 picks on a link of `bps` with the simulated set-up, at an edge load factor. */
function bestCut(bps: number, edgeLoad = 1): number {
  return searchPartition({
    edgeMs,
    serverMs,
    cuts: edge.cuts.map((c) => ({ index: c.index, bytes: c.bytes })),
    link: { setupMs: SETUP_MS, alphaMs: 0, mtu: 1500, betaMsPerByte: 8000 / bps },
    edgeLoad,
  }).best.index;
}

const SLOW = 1e6;
const FAST = 10e6;
const slowCut = bestCut(SLOW);
const fastCut = bestCut(FAST);

interface Timed {
  at: number;
  plan: Plan;
}

/**
 * Runs the loop for `untilMs` of virtual time: the device publishes telemetry every second from t = 1 s, on a link
 * of `bpsAt(t)`; returns the plans with their times and the telemetry the device sent.
 */
function runLoop(untilMs: number, bpsAt: (t: number) => number): { plans: Timed[]; sent: DeviceTelemetry[] } {
  const scheduler = new TestScheduler((a, b) => a === b);
  const plans: Timed[] = [];
  const sent: DeviceTelemetry[] = [];
  scheduler.run(() => {
    const s = plannerSubjects();
    const events$: Observable<unknown> = planEvents(s as PlannerSources, opts, scheduler);
    events$.pipe(takeUntil(timer(untilMs, scheduler))).subscribe((e) => {
      const ev = e as { kind: string; plan?: Plan };
      if (ev.kind === 'plan') plans.push({ at: scheduler.now(), plan: ev.plan! });
    });
    const rand = mulberry32(7);
    const noise = () => 1 + (rand() - 0.5) * 0.1; // ±5%
    let n = 0;
    /** One transfer on the link now: ±5% noise, and every 41st a single outlier (3x, a retransmission). */
    const transfer = (bytes: number, bps: number): TransferSample => {
      const outlier = ++n % 41 === 0 ? 3 : 1;
      return { bytes, seconds: ((SETUP_MS + (bytes * 8000) / bps) * noise() * outlier) / 1000 };
    };
    const headMs: Record<string, number> = {};
    let lastProbe = Number.NEGATIVE_INFINITY;
    scheduler.schedule(() => {
      s.workerProfiles.next({ worker: 'w1', profile: server });
      s.deviceProfiles.next({ device: 'r1', profile: edge });
    }, 0);
    for (let at = 1000; at < untilMs; at += 1000) {
      scheduler.schedule(() => {
        // The device ran the plan in force during the last second.
        const cut = plans.at(-1)?.plan.cut.index;
        const bps = bpsAt(at);
        const transfers: TransferSample[] = [];
        const headCounts: Record<string, number> = Object.fromEntries(Object.keys(headMs).map((k) => [k, 0]));
        if (cut !== undefined && cut > 0) {
          headMs[cut] = head(cut) * noise();
          headCounts[cut] = FRAMES_PER_S;
        }
        if (cut !== undefined && cut < N) {
          for (let f = 0; f < FRAMES_PER_S; f++)
            transfers.push(transfer(publishPacketBytes(requestTopic, cutBytes[cut]! + 64), bps));
        } else if (at > 1000 && at - lastProbe >= 15_000) {
          // Nothing offloaded: the probe burst (its first one ends after the first telemetry), 4 KiB doubling until a
          // probe takes 100 ms.
          lastProbe = at;
          for (let bytes: number = PROBE.firstBytes; bytes <= PROBE.maxBytes; bytes *= 2) {
            const probe = transfer(publishPacketBytes(probeTopic, bytes), bps);
            transfers.push(probe);
            if (bytes > PROBE.firstBytes && probe.seconds * 1000 >= PROBE.targetMs) break;
          }
        }
        // The previous telemetry message's own PUBLISH.
        if (at > 1000) transfers.push(transfer(publishPacketBytes(telemetryTopic, 600), bps));
        // The device's own process is busy with its heads; the other processes idle.
        const own = cut !== undefined && cut > 0 ? (head(cut) * FRAMES_PER_S) / 1000 : 0.02;
        const t: DeviceTelemetry = {
          device: 'r1',
          at,
          loadavg1: own + 0.2,
          ownLoad1: own,
          cores: 2,
          cpuPercent: 0,
          headMs: { ...headMs },
          headCounts,
          transfers,
          framesInFlight: 0,
          window: 1,
          fallbacks: 0,
        };
        sent.push(t);
        s.deviceTelemetry.next(t);
      }, at);
    }
  });
  return { plans, sent };
}

test('the scenario: the best cut differs between 1 and 10 Mbit/s, at the measured edge load and its noise', (t) => {
  t.not(slowCut, N, 'offloading must pay on the slow link');
  t.not(slowCut, 0);
  t.true(head(slowCut) >= 0.25 * head(N), 'a heavy head at the slow cut');
  t.not(fastCut, slowCut);
  for (const load of [0.95, 1.05]) {
    t.is(bestCut(SLOW, load), slowCut);
    t.is(bestCut(FAST, load), fastCut);
  }
});

test('cold start: edge-only until the first uplink sample, then at once the plan on the measured uplink', (t) => {
  const { plans, sent } = runLoop(10_000, () => SLOW);
  // The first telemetry (1 s) has no uplink sample yet; the second (2 s) has the probe burst.
  t.is(sent[0]!.transfers.length, 0);
  t.true(sent[1]!.transfers.length >= PROBE.minProbes);
  t.deepEqual(
    plans.map((p) => [p.at, p.plan.cut.index]),
    [
      [0, N],
      [2000, slowCut],
    ],
  );
  t.regex(plans[0]!.plan.reason, /^safe start/);
  t.like(plans[0]!.plan.inputs, { link: { source: 'none' } });
  const measured = plans[1]!.plan;
  t.regex(measured.reason, /on the measured uplink/);
  t.notRegex(measured.reason, /waiting|hold/);
  const link = measured.inputs.link as { source: string; bandwidthBps: number };
  t.is(link.source, 'fitted');
  t.true(Math.abs(link.bandwidthBps - SLOW) / SLOW < 0.2, `${link.bandwidthBps}`);
  t.is(measured.seq, plans[0]!.plan.seq + 1);
});

test('steady telemetry for 10 minutes with a heavy head at the cut in force: no plan change', (t) => {
  const { plans, sent } = runLoop(600_000, () => SLOW);
  t.is(sent.length, 599);
  t.deepEqual(
    plans.map((p) => [p.at, p.plan.cut.index]),
    [
      [0, N],
      [2000, slowCut],
    ],
  );
  // The device did run the heavy head all along, and the planner saw it as no load.
  const last = sent.at(-1)!;
  t.is(last.headCounts?.[slowCut], FRAMES_PER_S);
});

test('a bandwidth step 1 -> 10 Mbit/s at minute 2: exactly one plan change within 5 s, naming the uplink', (t) => {
  const stepAt = 120_000;
  const { plans, sent } = runLoop(360_000, (at) => (at > stepAt ? FAST : SLOW));
  const changes = plans.slice(2);
  t.deepEqual(
    plans.slice(0, 2).map((p) => [p.at, p.plan.cut.index]),
    [
      [0, N],
      [2000, slowCut],
    ],
  );
  t.is(
    changes.length,
    1,
    JSON.stringify(changes.slice(0, 3).map((p) => [p.at, p.plan.cut.index, p.plan.reason])),
  );
  const change = changes[0]!;
  t.is(change.plan.cut.index, fastCut);
  t.true(change.at > stepAt && change.at <= stepAt + 5000, `switched at ${change.at}`);
  t.regex(change.plan.reason, /^switched from cut \d+: cut \d+ predicted/);
  t.regex(change.plan.reason, /uplink/);
  t.regex(change.plan.reason, /evidence: .*uplink/);
  const link = change.plan.inputs.link as { bandwidthBps: number; change?: string };
  t.true(Math.abs(link.bandwidthBps - FAST) / FAST < 0.2, `${link.bandwidthBps}`);
  t.regex(link.change ?? '', /faster/);
  // After the switch the device sends its input (the request size changed with the cut), and runs no head.
  const after = sent.find((m) => m.at === change.at + 2000)!;
  t.true(after.transfers.some((s) => s.bytes === publishPacketBytes(requestTopic, cutBytes[fastCut]! + 64)));
});

/**
 * What the planner knows about a device and the tail workers, turned into the inputs of Algorithm 1. Pure.
 *
 * Load awareness (paper Fig. 17 and beyond), {@link nextEdgeLoad}:
 * - `loadavg`: the paper's rule, max(1, run queue / cores), with the device's own process counted as the one head
 *   it would run. The 1-minute load average lags by tens of seconds.
 * - `measured`: measured head latency against the profile's at the same cut, which reacts within a few frames and
 *   also corrects a profile that is off for this device; held while no head runs.
 * The server factor comes from the tail workers' queues: a request waits behind (queue depth / concurrency)
 * tails on the least-loaded worker, which the shared subscription's least-in-flight strategy will pick.
 */
import { loadFactor } from '../../measurement/load.ts';
import { type LinkModel, transferMs } from '../../planning/link.ts';
import type { FittedLink } from '../../planning/link-fit.ts';
import type { EdgePower, Objective, SearchInput } from '../../planning/search.ts';
import type { DeviceTelemetry, WorkerTelemetry } from '../../schemas/messages.ts';
import type { Profile } from '../../schemas/profile.ts';

/** How the edge load factor is found. */
export type EdgeLoadMode = 'loadavg' | 'measured' | 'none';

/** A load factor and how it was found. */
export interface LoadFactor {
  factor: number;
  source: string;
}

/** The edge load as the planner keeps it per device between telemetry messages. */
export interface EdgeLoadState extends LoadFactor {
  /** A factor measured from heads, kept while no head runs. */
  measured?: { factor: number; cut: number; othersLoad: number; at: number };
  /** The other processes' load as the last telemetry reported it. */
  others?: number;
  /** The other processes' load the factor was carried to: it moves once two reports agree (persistentOthers). */
  othersLevel?: number;
}

/**
 * The other processes' load level after a report: `now` when it and the previous report both moved away from the
 * level in the same direction (the nearer of the two), else the level as it was. A one-second burst of another
 * process moves one report, not two, so it does not move the plan.
 */
export function persistentOthers(now: number, previous: number | undefined, reference: number): number {
  if (previous === undefined) return now;
  if (now > reference && previous > reference) return Math.min(now, previous);
  if (now < reference && previous < reference) return Math.max(now, previous);
  return reference;
}

/**
 * For this long after the last measured head (ms) the device is taken to be between two heads (the reason names the
 * measurement); later no head runs (full offload, frames paused) and the reason says the factor is held. Either way
 * the held factor follows the other processes' load.
 */
export const HELD_AS_MEASURED_MS = 5000;

/** Cuts whose profiled head is below this share of the whole model are too short to measure load by. */
export const MIN_HEAD_SHARE = 0.02;

/**
 * The run-queue load of everything but the device's own process: the runnable threads of other processes over the
 * last second (telemetry `othersRunnable`), else the 1-minute load average less the process's own CPU use averaged
 * the same way (`ownLoad1`; where a device reports neither, the whole load average).
 */
export function othersLoad(t: DeviceTelemetry): number {
  if (t.othersRunnable !== undefined) return t.othersRunnable;
  return Math.max(0, t.loadavg1 - (t.ownLoad1 ?? 0));
}

/**
 * The paper's Fig. 17 rule for the head the device would run: the run queue per core it would see, counting itself
 * once whatever it runs now (so the factor neither rises because the device runs a heavier head nor falls because
 * it runs none), when above 1. A device that does not report its own load gets the paper's rule as it stands,
 * loadavg1 / cores.
 */
export function loadavgFactor(t: DeviceTelemetry): LoadFactor {
  // A device that does not report its own load (a robot without edgecut's code): the paper's rule as it stands.
  if (t.ownLoad1 === undefined)
    return {
      factor: loadFactor(t.loadavg1, t.cores),
      source: `loadavg ${t.loadavg1.toFixed(2)} on ${t.cores} cores`,
    };
  return {
    factor: loadFactor(Math.max(0, t.loadavg1 - t.ownLoad1) + 1, t.cores),
    source: `loadavg ${t.loadavg1.toFixed(2)} less own ${t.ownLoad1.toFixed(2)}, plus one head, on ${t.cores} cores`,
  };
}

/**
 * The edge load factor after one telemetry message, under the chosen mode.
 *
 * `measured`: like with like. For every cut at which heads ran since the last telemetry, the measured head latency
 * (median of the most recent frames) is divided by the profile's head latency at that same cut; the factor is the
 * median of those ratios weighted by the profiled head time (short heads, whose times are mostly noise, count
 * little; heads under {@link MIN_HEAD_SHARE} of the model not at all). A head measured while the other processes'
 * load was another than now (`headOthers` vs `othersRunnable`: the load came or went during it) is carried over to
 * now by Fig. 17's rule applied to both, so load switched on shows in the next telemetry, not only after two loaded
 * heads. Between two heads, and when no head runs (full offload, or frames paused), the last measured factor is
 * held, scaled the same way by how the other processes' load changed since, so the factor neither decays to idle
 * merely because no head ran nor waits for a head to see new load. Before any head was measured it is 1: the
 * profile as the device measured it at start.
 */
export function nextEdgeLoad(
  mode: EdgeLoadMode,
  profile: Profile,
  t: DeviceTelemetry | undefined,
  prev: EdgeLoadState | undefined,
  now: number,
): EdgeLoadState {
  if (mode === 'none') return { factor: 1, source: 'none' };
  if (!t) return prev ?? { factor: 1, source: 'no telemetry yet' };
  const avg = loadavgFactor(t);
  if (mode === 'loadavg') return avg;
  const whole = profile.layers.reduce((s, l) => s + l.ms, 0);
  const ratios: Array<{
    ratio: number;
    weight: number;
    cut: number;
    measured: number;
    profiled: number;
    during: number | undefined;
  }> = [];
  let profiled = 0;
  let k = 0;
  const fresh = (cut: string) => (t.headCounts ? (t.headCounts[cut] ?? 0) > 0 : true);
  const scale = (others: number) => loadFactor(others + 1, t.cores);
  const reported = othersLoad(t);
  const level =
    prev?.othersLevel === undefined ? reported : persistentOthers(reported, prev.others, prev.othersLevel);
  const others = { others: reported, othersLevel: level };
  for (const [cut, measured] of Object.entries(t.headMs).sort((a, b) => Number(a[0]) - Number(b[0]))) {
    const c = Number(cut);
    if (!fresh(cut) || !Number.isInteger(c) || c <= 0 || c > profile.layers.length) continue;
    for (; k < c; k++) profiled += profile.layers[k]!.ms;
    if (!(profiled > MIN_HEAD_SHARE * whole) || !(measured > 0)) continue;
    // A head measured under another load than now (the load came or went while it ran) is carried over to now.
    const during = t.headOthers?.[cut];
    ratios.push({
      ratio: (measured / profiled) * (during === undefined ? 1 : scale(level) / scale(during)),
      weight: profiled,
      cut: c,
      measured,
      profiled,
      during,
    });
  }
  if (ratios.length > 0) {
    const m = weightedMedian(ratios);
    const factor = Math.max(0.25, m.ratio);
    const carried =
      m.during !== undefined && scale(m.during) !== scale(level)
        ? `, carried from the other processes' load during it ${m.during.toFixed(2)} to now ${level.toFixed(2)}`
        : '';
    return {
      factor,
      source: `measured head ${m.measured.toFixed(1)} ms vs profiled ${m.profiled.toFixed(1)} ms at cut ${m.cut}${carried}${ratios.length > 1 ? ` (weighted median over ${ratios.length} cuts)` : ''}`,
      measured: { factor, cut: m.cut, othersLoad: m.during === undefined ? reported : level, at: now },
      ...others,
    };
  }
  const held = prev?.measured;
  // Before any head: the profile as the device measured it at start, under the load it had then.
  if (!held) return { factor: 1, source: 'no head measured yet: the profile as measured', ...others };
  // Between two heads (a head may take longer than a telemetry period) and when none runs, the last measurement
  // is held, scaled only by how the other processes' load changed since.
  const factor = Math.max(0.25, (held.factor * scale(level)) / scale(held.othersLoad));
  const ago = `${((now - held.at) / 1000).toFixed(0)} s ago`;
  if (factor === held.factor && now - held.at < HELD_AS_MEASURED_MS)
    return {
      factor,
      source: `measured ${held.factor.toFixed(2)} at cut ${held.cut} ${ago}`,
      measured: held,
      ...others,
    };
  return {
    factor,
    source:
      `held: measured ${held.factor.toFixed(2)} at cut ${held.cut} ${ago}` +
      (factor !== held.factor
        ? `, scaled by the other processes' load ${held.othersLoad.toFixed(2)} -> ${level.toFixed(2)}`
        : ', the other processes’ load unchanged'),
    measured: held,
    ...others,
  };
}

function weightedMedian<T extends { ratio: number; weight: number }>(items: readonly T[]): T {
  const sorted = [...items].sort((a, b) => a.ratio - b.ratio);
  const total = sorted.reduce((s, i) => s + i.weight, 0);
  let acc = 0;
  for (const i of sorted) {
    acc += i.weight;
    if (acc >= total / 2) return i;
  }
  return sorted[sorted.length - 1]!;
}

/** What frames that missed their deadline say about the server side, held for a while. */
export interface LateEvidence extends LoadFactor {
  /** When the last late frame was reported (the planner's clock). */
  at: number;
}

/** How long late frames are held as evidence after the last one (ms): then offloading is tried again. */
export const LATE_HOLD_MS = 30_000;

/**
 * Frames that missed their deadline are evidence, never silence: at least `waitedMs` passed between sending the
 * request and giving up, so the server side (queue, tail, the result's way back) took at least that less the uplink
 * the link fit predicts. The factor is what the server's predicted time must be multiplied by to meet that bound
 * (the largest over the late frames of one telemetry message); it is held {@link LATE_HOLD_MS} after the last late
 * frame, so the plan that avoids the slow server stays until the evidence is old, and then offloading is tried
 * again.
 */
export function nextLateEvidence(
  late: DeviceTelemetry['late'],
  profile: Profile,
  serverMs: readonly number[],
  link: LinkModel,
  prev: LateEvidence | undefined,
  now: number,
): LateEvidence | undefined {
  let best: LateEvidence | undefined;
  const n = profile.layers.length;
  const outBytes = profile.cuts.find((c) => c.index === n)?.bytes ?? 0;
  for (const l of late ?? []) {
    if (!(l.cut >= 0 && l.cut < n)) continue;
    const server = serverMs.slice(l.cut).reduce((a, b) => a + b, 0);
    const uplink = transferMs(link, l.bytes) + transferMs(link, outBytes);
    if (!(server > 0) || !(l.waitedMs > uplink + server)) continue;
    const factor = (l.waitedMs - uplink) / server;
    if (!best || factor > best.factor)
      best = {
        factor,
        at: now,
        source: `a frame at cut ${l.cut} got no answer within ${l.waitedMs.toFixed(0)} ms, where ${(uplink + server).toFixed(0)} ms was predicted`,
      };
  }
  if (best)
    return prev && now - prev.at < LATE_HOLD_MS && prev.factor > best.factor ? { ...prev, at: now } : best;
  return prev && now - prev.at < LATE_HOLD_MS ? prev : undefined;
}

/** The server load factor from the online workers' queues. */
export function serverLoadFactor(workers: readonly WorkerTelemetry[]): LoadFactor {
  if (workers.length === 0) return { factor: 1, source: 'no worker telemetry' };
  const waits = workers.map((w) => w.queueDepth / Math.max(1, w.concurrency));
  const least = Math.min(...waits);
  return {
    factor: 1 + least,
    source: `least-loaded worker queue ${least.toFixed(2)} per slot over ${workers.length} workers`,
  };
}

/** The server's per-layer latency: the median across the workers' profiles of the model, layer by layer. */
export function serverLayers(profiles: readonly Profile[]): number[] | undefined {
  if (profiles.length === 0) return undefined;
  const n = profiles[0]!.layers.length;
  if (profiles.some((p) => p.layers.length !== n)) return undefined;
  return Array.from({ length: n }, (_, i) => {
    const v = profiles.map((p) => p.layers[i]!.ms).sort((a, b) => a - b);
    return v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
  });
}

/** Everything one search needs. */
export interface PlanInputs {
  profile: Profile;
  serverMs: number[];
  link: FittedLink;
  edgeLoad: LoadFactor;
  serverLoad: LoadFactor;
  objective: Objective;
  /** The edge's power draw (its preset's figures), when known. */
  power?: EdgePower | undefined;
  /** Frames the device keeps in flight, as its telemetry says; undefined: not bounded by it. */
  window?: number | undefined;
  /** Measured cost of an offloaded frame beyond the link model, ms (see {@link returnExcess}); 0 until measured. */
  returnMs?: number | undefined;
}

/** Answered requests' ways back a device's estimate keeps (the newest). */
export const RETURN_WINDOW = 16;
/** Fewer ways back than this are not an estimate yet. */
export const RETURN_MIN = 3;

/**
 * The measured cost of an offloaded frame beyond the link model: the median of the device's recent ways back (from
 * a request's PUBACK to its answer, less the worker's span: forwarding to the worker and the result's return) less
 * what the link model predicts for the result's return, never below 0. Undefined with fewer than
 * {@link RETURN_MIN} samples.
 */
export function returnExcess(returns: readonly number[], predictedBackMs: number): number | undefined {
  if (returns.length < RETURN_MIN) return undefined;
  const sorted = [...returns].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return Math.max(0, median - predictedBackMs);
}

/** The search input for Algorithm 1. */
export function toSearchInput(i: PlanInputs): SearchInput {
  return {
    edgeMs: i.profile.layers.map((l) => l.ms),
    serverMs: i.serverMs,
    cuts: i.profile.cuts.map((c) => ({ index: c.index, bytes: c.bytes })),
    link: i.link.link,
    edgeLoad: i.edgeLoad.factor,
    serverLoad: i.serverLoad.factor,
    objective: i.objective,
    ...(i.power ? { power: i.power } : {}),
    ...(i.window !== undefined ? { window: i.window } : {}),
    ...(i.returnMs ? { returnMs: i.returnMs } : {}),
  };
}

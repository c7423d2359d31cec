/**
 * What the planner knows about a device and the tail workers, turned into the inputs of Algorithm 1. Pure.
 *
 * Load awareness (paper Fig. 17 and beyond):
 * - `loadavg`: the edge factor is max(1, loadavg1 / cores), the paper's rule. The 1-minute load average lags
 *   by tens of seconds.
 * - `measured`: the edge factor is the measured head latency of the cut in use divided by the profile's
 *   prediction for it (the median of the last telemetry interval), which reacts within one telemetry period and
 *   also corrects a profile that is off for this device. Where no head runs (full offload) it falls back to
 *   `loadavg`.
 * The server factor comes from the tail workers' queues: a request waits behind (queue depth / concurrency)
 * tails on the least-loaded worker, which the shared subscription's least-in-flight strategy will pick.
 */
import { loadFactor } from '../../common/load.ts';
import type { FittedLink } from '../../common/plan/link-fit.ts';
import type { Objective, SearchInput } from '../../common/plan/search.ts';
import type { DeviceTelemetry, WorkerTelemetry } from '../../schemas/messages.ts';
import type { Profile } from '../../schemas/profile.ts';

/** How the edge load factor is found. */
export type EdgeLoadMode = 'loadavg' | 'measured' | 'none';

/** A load factor and how it was found. */
export interface LoadFactor {
  factor: number;
  source: string;
}

/** The edge load factor under the chosen mode, for the cut in force. */
export function edgeLoadFactor(
  mode: EdgeLoadMode,
  profile: Profile,
  telemetry: DeviceTelemetry | undefined,
  currentCut: number | undefined,
): LoadFactor {
  if (mode === 'none' || !telemetry)
    return { factor: 1, source: mode === 'none' ? 'none' : 'no telemetry yet' };
  const avg = {
    factor: loadFactor(telemetry.loadavg1, telemetry.cores),
    source: `loadavg ${telemetry.loadavg1.toFixed(2)} on ${telemetry.cores} cores`,
  };
  if (mode === 'loadavg') return avg;
  const measured = currentCut === undefined ? undefined : telemetry.headMs[String(currentCut)];
  const predicted =
    currentCut === undefined ? 0 : profile.layers.slice(0, currentCut).reduce((s, l) => s + l.ms, 0);
  if (measured === undefined || !(predicted > 0))
    return { ...avg, source: `${avg.source} (no head measured)` };
  return {
    factor: Math.max(0.25, measured / predicted),
    source: `measured head ${measured.toFixed(2)} ms vs profiled ${predicted.toFixed(2)} ms at cut ${currentCut}`,
  };
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
  };
}

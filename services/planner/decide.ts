/**
 * Hysteresis of the planner: a device switches to a new cut only when the search has predicted a gain above a
 * threshold for at least a minimum time, so noisy telemetry does not make the cut flap. Pure: time is a parameter.
 */
import type { Candidate, SearchResult } from '../../planning/search.ts';

/** Hysteresis settings. */
export interface HysteresisOptions {
  /** Relative gain (0.1 = 10%) the new cut must promise over the current one. */
  minGain: number;
  /** How long, ms, the gain must hold before switching. */
  holdMs: number;
}

/** What the planner remembers per device. */
export interface DecisionState {
  /** The cut in force, if any. */
  current?: number;
  /** A better cut seen, and since when. */
  pending?: { index: number; since: number };
  /** The cut in force is the safe start (no link measured yet): the first measured plan replaces it at once. */
  safe?: boolean;
}

/** The outcome of one evaluation. */
export interface Decision {
  state: DecisionState;
  /** The cut to publish, when it changes (or on the first plan). */
  switchTo?: Candidate;
  /** Why, one sentence. */
  reason: string;
}

/** What the objective minimises: the period, the device-side joules or the one-frame latency. */
const cost = (c: Candidate, r: SearchResult) =>
  r.objective === 'throughput' ? c.periodMs : r.objective === 'energy' ? (c.energyJ ?? c.totalMs) : c.totalMs;

const MEASURE = { latency: 'latency', throughput: 'period', energy: 'energy' } as const;

/** Decides, at time `now`, whether the search result should change the device's cut. */
export function decide(
  state: DecisionState,
  result: SearchResult,
  now: number,
  opts: HysteresisOptions,
): Decision {
  const best = result.best;
  const measure = MEASURE[result.objective];
  if (state.current === undefined) {
    return {
      state: { current: best.index },
      switchTo: best,
      reason: `first plan: cut ${best.index} has the lowest predicted ${measure}`,
    };
  }
  const current = result.candidates.find((c) => c.index === state.current);
  if (!current) {
    return {
      state: { current: best.index },
      switchTo: best,
      reason: `cut ${state.current} is no longer a candidate`,
    };
  }
  if (best.index === state.current) {
    return { state: { current: state.current }, reason: `cut ${state.current} is still the best` };
  }
  const gain = (cost(current, result) - cost(best, result)) / cost(current, result);
  if (!(gain > opts.minGain)) {
    return {
      state: { current: state.current },
      reason: `cut ${best.index} would gain ${(gain * 100).toFixed(1)}%, below the ${(opts.minGain * 100).toFixed(0)}% threshold`,
    };
  }
  const since = state.pending?.index === best.index ? state.pending.since : now;
  if (now - since >= opts.holdMs) {
    return {
      state: { current: best.index },
      switchTo: best,
      reason:
        `switched from cut ${state.current}: cut ${best.index} predicted ${(gain * 100).toFixed(1)}% lower ${measure}` +
        ` for ${((now - since) / 1000).toFixed(1)} s (threshold ${(opts.minGain * 100).toFixed(0)}%, hold ${(opts.holdMs / 1000).toFixed(1)} s)`,
    };
  }
  return {
    state: { current: state.current, pending: { index: best.index, since } },
    reason: `cut ${best.index} gains ${(gain * 100).toFixed(1)}%; waiting ${((opts.holdMs - (now - since)) / 1000).toFixed(1)} s more`,
  };
}

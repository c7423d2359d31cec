/**
 * Algorithm 1 of the paper (PartitionSelection), as a pure function: a linear search over every cut k = 0..N for
 * the one that minimises the objective, given per-layer latencies on the edge (P^e) and on the server (P^c), the
 * bytes D_k crossing each cut, a link model and load factors.
 *
 * Refinements over the paper, each for a physical reason:
 * - The result travels back: an offloaded frame also pays T(D_out) for the model's output (a few KiB for a
 *   classifier), and what the device measured an offloaded frame to cost beyond the link model (`returnMs`: the
 *   broker's forwarding both ways). The edge-only candidate pays neither way.
 * - Load factors multiply the stage latencies: the edge's from its load (Fig. 17), the server's from its queue.
 * - A second objective, throughput: with frames pipelined, the edge, the link and the server work on different
 *   frames at once, so the slowest stage bounds the rate; so does the window, the frames a device keeps in flight
 *   (Little's law: w frames, each in the pipeline for the one-frame latency, give at most w per latency). The
 *   period is the larger of the two bounds, max(slowest stage, latency / w); candidates are ranked by it, ties by
 *   the one-frame latency.
 * - A third, energy (the paper's "best latency or energy"): the device-side joules per frame, given the edge's
 *   power in three states: E_k = computeW * edge + radioW * uplink(D_k) + idleW * (server + downlink), each time
 *   in seconds, the uplink and the result's way back being the two parts of the transfer. The device computes the
 *   head, transmits D_k, then waits with its radio on. Ranked by E_k, ties by the one-frame latency. Every
 *   candidate carries E_k whenever power is given, whatever the objective.
 * The search runs over prefix sums: O(N) per call and no allocation beyond the candidate list.
 */
import { type LinkModel, transferMs } from './link.ts';

/** What to minimise. */
export type Objective = 'latency' | 'throughput' | 'energy';

/** The edge device's power draw, watts (a preset's `power`, measurement/device/presets.ts). */
export interface EdgePower {
  /** Whole device while computing. */
  computeW: number;
  /** Whole device while the radio sends, compute idle. */
  radioW: number;
  /** Whole device while waiting for the reply: radio on, compute idle. */
  idleW: number;
}

/** One cut, as the search sees it. */
export interface SearchCut {
  /** k: the head runs layers 1..k. */
  index: number;
  /** D_k: bytes crossing the cut. */
  bytes: number;
}

/** Inputs of one search. */
export interface SearchInput {
  /** P^e: per-layer latency on the edge, ms, layers 1..N. */
  edgeMs: readonly number[];
  /** P^c: per-layer latency on the server, ms, layers 1..N. */
  serverMs: readonly number[];
  /** The cuts to consider, including k = 0 and k = N; `bytes` of k = N is the output size (sent back). */
  cuts: readonly SearchCut[];
  link: LinkModel;
  /** Edge load factor (>= 1 under load). */
  edgeLoad?: number;
  /** Server load factor (>= 1 under load). */
  serverLoad?: number;
  objective?: Objective;
  /** The edge's power draw; gives every candidate its energy, and is required by the `energy` objective. */
  power?: EdgePower;
  /** Frames the device keeps in flight (its pipeline's window); default: as many as the stages allow. */
  window?: number;
  /**
   * What an offloaded frame measurably costs beyond the link model, ms: the way through the broker to the worker
   * and back, (de)serialising. Added to the result's way back of every k < N. Default 0.
   */
  returnMs?: number;
}

/** One candidate cut with its predicted stage times. */
export interface Candidate {
  index: number;
  bytes: number;
  edgeMs: number;
  /** Uplink of D_k plus the result's way back; 0 for edge-only. */
  transferMs: number;
  serverMs: number;
  /** One frame's latency: edge + transfer + server. */
  totalMs: number;
  /** Pipelined period: the slowest of the three stages, or latency / window when the window bounds the rate. */
  periodMs: number;
  /**
   * Device-side joules per frame: computeW * edge + radioW * uplink + idleW * (server + downlink), times in
   * seconds; null without power figures.
   */
  energyJ: number | null;
}

/** The result of a search. */
export interface SearchResult {
  objective: Objective;
  best: Candidate;
  candidates: Candidate[];
}

/** Runs Algorithm 1 over every given cut. */
export function searchPartition(input: SearchInput): SearchResult {
  const { edgeMs, serverMs, cuts, link } = input;
  const n = edgeMs.length;
  if (serverMs.length !== n) {
    throw new RangeError(`edge profile has ${n} layers but server profile has ${serverMs.length}`);
  }
  if (cuts.length === 0) throw new RangeError('no cuts to search');
  const fe = input.edgeLoad ?? 1;
  const fs = input.serverLoad ?? 1;
  const objective = input.objective ?? 'latency';
  const window = input.window ?? Number.POSITIVE_INFINITY;
  if (!(window >= 1)) throw new RangeError(`window must be >= 1 frame, got ${input.window}`);
  const power = input.power;
  if (objective === 'energy' && !power) {
    throw new RangeError(
      "objective 'energy' needs the edge's power figures (computeW, radioW, idleW); none were given",
    );
  }
  if (power) {
    for (const key of ['computeW', 'radioW', 'idleW'] as const) {
      const w = power[key];
      if (!(Number.isFinite(w) && w >= 0)) throw new RangeError(`power ${key} must be >= 0 W, got ${w}`);
    }
  }
  // prefixE[k] = sum of edge layers 1..k; suffixS[k] = sum of server layers k+1..N.
  const prefixE = new Float64Array(n + 1);
  for (let i = 0; i < n; i++) prefixE[i + 1] = prefixE[i]! + edgeMs[i]!;
  const suffixS = new Float64Array(n + 1);
  for (let i = n - 1; i >= 0; i--) suffixS[i] = suffixS[i + 1]! + serverMs[i]!;
  const outputBytes = cuts.find((c) => c.index === n)?.bytes ?? 0;
  const extra = input.returnMs ?? 0;
  if (!(Number.isFinite(extra) && extra >= 0)) throw new RangeError(`returnMs must be >= 0, got ${extra}`);
  const back = transferMs(link, outputBytes) + extra;
  const candidates: Candidate[] = new Array(cuts.length);
  let best = 0;
  for (let j = 0; j < cuts.length; j++) {
    const { index: k, bytes } = cuts[j]!;
    if (!(k >= 0 && k <= n)) throw new RangeError(`cut ${k} is outside 0..${n}`);
    const edge = fe * prefixE[k]!;
    const server = fs * suffixS[k]!;
    const uplink = k === n ? 0 : transferMs(link, bytes);
    const downlink = k === n ? 0 : back;
    const transfer = uplink + downlink;
    const c: Candidate = {
      index: k,
      bytes,
      edgeMs: edge,
      transferMs: transfer,
      serverMs: server,
      totalMs: edge + transfer + server,
      periodMs: Math.max(edge, transfer, server, (edge + transfer + server) / window),
      energyJ: power
        ? (power.computeW * edge + power.radioW * uplink + power.idleW * (server + downlink)) / 1000
        : null,
    };
    candidates[j] = c;
    if (j > 0 && better(c, candidates[best]!, objective)) best = j;
  }
  return { objective, best: candidates[best]!, candidates };
}

function better(a: Candidate, b: Candidate, objective: Objective): boolean {
  if (objective === 'throughput') {
    if (a.periodMs !== b.periodMs) return a.periodMs < b.periodMs;
    return a.totalMs < b.totalMs;
  }
  if (objective === 'energy') {
    // Both non-null: the search refuses 'energy' without power.
    if (a.energyJ !== b.energyJ) return a.energyJ! < b.energyJ!;
    return a.totalMs < b.totalMs;
  }
  return a.totalMs < b.totalMs;
}

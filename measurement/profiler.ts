/**
 * The layer-wise profiler (paper section II-A): the latency of every layer (ONNX node) of a model on this host, as
 * the P^e / P^c vectors Algorithm 1 sums, plus a check that the profile's prefix sums predict real head latencies.
 * Per-node times come from onnxruntime's own profiler on an unoptimised session, scaled to the whole model's median
 * under the production settings; with one thread the clock is CPU time; each check head's output hand-off cost is
 * taken off; nodes onnxruntime inserts are excluded or attributed to the next model node. docs/profiling.md ("How
 * the profiler measures, and why") gives the reasons and the measurements behind each choice. Reading and mapping
 * onnxruntime's trace is in profile-trace.ts, timing the sessions and the hand-off model in profile-runs.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { floatToHalf } from '../model/half.ts';
import type { CrossingTensor, ModelHandle } from '../model/handle.ts';
import { seededUniform } from '../model/random.ts';
import { createSession } from '../model/runtime.ts';
import { median, quantile } from '../planning/stats.ts';
import { UserError } from '../runtime/errors.ts';
import { PROFILE_VERSION, type Profile, type ProfileLayer } from '../schemas/profile.ts';
import { handoffModel, type RunTimes, timeRoundRobin } from './profile-runs.ts';
import { type LayerSamples, mapTrace, readTrace, type TraceEvent } from './profile-trace.ts';

/** How `profile.runtime.optimization` names the production session settings of runtime.ts `createSession`. */
export const PRODUCTION_OPTIMIZATION = 'all-minus-nchwc';

/** The most a check cut's measured and profiled head latencies may differ (relative to the measured one). */
export const CHECK_TOLERANCE = 0.15;

/** The smallest head time the check tells apart from zero: one microsecond, below any layer this profiles. */
const CLOCK_STEP_MS = 0.001;

/** Options of {@link profileModel}. */
export interface ProfileOptions {
  /** Timed runs per measurement (default 20). */
  runs?: number;
  /** Untimed runs before them (default 3). */
  warmup?: number;
  /** Intra-op threads of every session (default 1). */
  threads?: number;
  /** The device the profile is for (default: this host). */
  device?: { id: string; description: string; gflops: number | null };
  /** Cuts at which the profile is checked against real head latencies (default 5; 0 disables the check). */
  checkCuts?: number;
  /**
   * How whole-model and head runs are timed (default `cpu` with 1 thread, else `wall`): `cpu` is this process's CPU
   * time during `session.run`, `wall` the wall clock around it. See the top of this file for why.
   */
  clock?: 'cpu' | 'wall';
  /** Called as work completes: `done` of `total` in the current phase (`preparing` sessions, then `measuring`). */
  onProgress?: (done: number, total: number, phase: string) => void;
}

/** The inputs a profile runs the model on: seeded uniform [0, 1) floats, zeros for integer inputs. */
export function profileFeeds(inputs: readonly CrossingTensor[]): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  inputs.forEach((t, i) => {
    const n = t.shape.reduce((a, d) => a * Math.max(d, 1), 1);
    const shape = t.shape.map((d) => Math.max(d, 1));
    const values = () => seededUniform(n, 1000 + i);
    switch (t.dtype) {
      case 'float32':
        feeds[t.name] = new ort.Tensor('float32', values(), shape);
        break;
      case 'float16':
        feeds[t.name] = new ort.Tensor('float16', Uint16Array.from(values(), floatToHalf), shape);
        break;
      case 'int64':
        feeds[t.name] = new ort.Tensor('int64', new BigInt64Array(n), shape);
        break;
      case 'int32':
        feeds[t.name] = new ort.Tensor('int32', new Int32Array(n), shape);
        break;
      case 'int8':
        feeds[t.name] = new ort.Tensor('int8', new Int8Array(n), shape);
        break;
      case 'uint8':
        feeds[t.name] = new ort.Tensor('uint8', new Uint8Array(n), shape);
        break;
      default:
        throw new UserError(`cannot profile: input ${t.name} has dtype ${String(t.dtype)}`);
    }
  });
  return feeds;
}

/**
 * Check cuts: `count` cuts 0 < k < N spread evenly over the topological order, each the single-tensor cut nearest
 * its target position when there is one (those are the cuts a planner usually picks), else the nearest cut.
 */
export function chooseCheckCuts(handle: ModelHandle, count: number): number[] {
  const N = handle.layers;
  const inner = handle.cuts.filter((c) => c.index > 0 && c.index < N);
  if (count <= 0 || inner.length === 0) return [];
  if (count >= inner.length) return inner.map((c) => c.index);
  const chosen = new Set<number>();
  for (let i = 1; i <= count; i++) {
    const target = (i * N) / (count + 1);
    const free = inner.filter((c) => !chosen.has(c.index));
    const pool = free.some((c) => c.singleTensor) ? free.filter((c) => c.singleTensor) : free;
    const best = pool.reduce((a, c) => (Math.abs(c.index - target) < Math.abs(a.index - target) ? c : a));
    chosen.add(best.index);
  }
  return [...chosen].sort((a, b) => a - b);
}

function checkCount(name: string, value: number, min: number): void {
  if (!Number.isSafeInteger(value) || value < min)
    throw new UserError(`${name} must be a whole number >= ${min}, got ${value}`);
}

/** This host as a profile's device. */
export function hostDevice(): { id: string; description: string; gflops: number | null } {
  const list = cpus();
  const model = list[0]?.model.trim() || 'unknown CPU';
  return { id: hostname(), description: `${model}, ${list.length} cores`, gflops: null };
}

/** The settings of one profiling: the options with their defaults, checked. */
interface ProfileSettings {
  runs: number;
  warmup: number;
  threads: number;
  checkCuts: number;
  clock: 'cpu' | 'wall';
}

/** The settings {@link profileModel} runs with; a UserError names an option out of range. */
function profileSettings(opts: ProfileOptions): ProfileSettings {
  const runs = opts.runs ?? 20;
  const warmup = opts.warmup ?? 3;
  const threads = opts.threads ?? 1;
  const checkCuts = opts.checkCuts ?? 5;
  checkCount('runs', runs, 1);
  checkCount('warmup', warmup, 0);
  checkCount('threads', threads, 1);
  checkCount('checkCuts', checkCuts, 0);
  const clock = opts.clock ?? (threads === 1 ? 'cpu' : 'wall');
  if (clock === 'cpu' && threads !== 1)
    throw new UserError(
      `the cpu clock measures latency only with 1 thread (threads is ${threads}); use the wall clock`,
    );
  return { runs, warmup, threads, checkCuts, clock };
}

/** Sessions opened so far, each with the feeds it runs on, in the order each round runs them. */
interface OpenSessions {
  sessions: ort.InferenceSession[];
  feeds: Record<string, ort.Tensor>[];
}

/**
 * Opens the sessions, in the order each round runs them: the profiled one (level disabled, its trace written to
 * files starting with `tracePrefix`), the whole model, then per check cut its head and the hand-off of its crossing
 * tensors, and last the hand-off of the model's outputs. Each session goes into `into` as soon as it is open, so
 * the caller releases those opened before one that failed.
 */
async function openSessions(
  handle: ModelHandle,
  feeds: Record<string, ort.Tensor>,
  checkAt: readonly number[],
  threads: number,
  tracePrefix: string,
  into: OpenSessions,
  onProgress?: ProfileOptions['onProgress'],
): Promise<void> {
  const setup = 2 + (checkAt.length > 0 ? 2 * checkAt.length + 1 : 0);
  const open = async (p: Promise<ort.InferenceSession>, f: Record<string, ort.Tensor>) => {
    into.sessions.push(await p);
    into.feeds.push(f);
    onProgress?.(into.sessions.length, setup, 'preparing');
  };
  await open(
    createSession(handle.bytes, { threads, optimization: 'disabled', profileFilePrefix: tracePrefix }),
    feeds,
  );
  await open(createSession(handle.bytes, { threads }), feeds);
  for (const k of checkAt) {
    await open(createSession(handle.part(k, 'head'), { threads }), feeds);
    const crossing = handle.cuts[k]!.tensors;
    await open(createSession(handoffModel(crossing), { threads }), profileFeeds(crossing));
  }
  if (checkAt.length > 0)
    await open(createSession(handoffModel(handle.outputs), { threads }), profileFeeds(handle.outputs));
}

/**
 * Opens the sessions ({@link openSessions}), times them round-robin and reads the profiled session's trace: the run
 * times of every session (in the order they were opened) and the trace. Releases every session and removes the
 * trace's directory, also when a step fails.
 */
async function measureSessions(
  handle: ModelHandle,
  feeds: Record<string, ort.Tensor>,
  checkAt: readonly number[],
  s: ProfileSettings,
  onProgress?: ProfileOptions['onProgress'],
): Promise<{ runTimes: RunTimes; trace: TraceEvent[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-profile-'));
  const open: OpenSessions = { sessions: [], feeds: [] };
  try {
    let runTimes: RunTimes;
    try {
      await openSessions(handle, feeds, checkAt, s.threads, join(dir, 'ort'), open, onProgress);
      runTimes = await timeRoundRobin(open.sessions, open.feeds, {
        runs: s.runs,
        warmup: s.warmup,
        onRound: (d, t) => onProgress?.(d, t, 'measuring'),
      });
      open.sessions[0]!.endProfiling();
    } finally {
      await Promise.all(open.sessions.map((x) => x.release()));
    }
    return { runTimes, trace: await readTrace(dir) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The profile's layers: each layer's median and p90 over the timed runs, scaled by the whole model's median
 * (`whole`: its run times by the profile's clock) over the sum of the layer medians.
 */
function scaledLayers(
  handle: ModelHandle,
  layers: LayerSamples,
  whole: number[],
): { profiled: ProfileLayer[]; layerSumMs: number; wholeMs: Profile['wholeMs']; scale: number } {
  const medians = layers.samples.map((s) => median(s));
  const layerSumMs = medians.reduce((a, b) => a + b, 0);
  const wholeMs = { median: median(whole), p90: quantile(whole, 0.9) };
  const scale = layerSumMs > 0 ? wholeMs.median / layerSumMs : 1;
  const profiled: ProfileLayer[] = handle.analysis.nodes.map((n, i) => {
    const c = handle.costs[i]!;
    return {
      index: n.index,
      name: n.name,
      op: n.op,
      ms: medians[i]! * scale,
      p90: quantile(layers.samples[i]!, 0.9) * scale,
      flops: c.flops,
      inputBytes: c.inputBytes,
      outputBytes: c.outputBytes,
      paramBytes: c.paramBytes,
    };
  });
  return { profiled, layerSumMs, wholeMs, scale };
}

/**
 * The check at each check cut: the head's measured latency (`times`: the run times of every session, by the
 * profile's clock), less the extra hand-off of its crossing tensors, against the profile's prefix sum.
 */
function checkHeads(
  checkAt: readonly number[],
  times: number[][],
  prefix: readonly number[],
): NonNullable<Profile['check']>['cuts'] {
  const outputHandoff = checkAt.length > 0 ? median(times[times.length - 1]!) : 0;
  return checkAt.map((k, j) => {
    const headMs = median(times[2 + 2 * j]!);
    // What handing this cut's tensors to JavaScript costs beyond handing over the model's outputs (which the whole
    // model, and so the profile, pays too): a cost of the cut's size, not of layers 1..k.
    const handoffMs = Math.max(0, median(times[3 + 2 * j]!) - outputHandoff);
    // A head faster than the clock can tell apart from its hand-off (a tiny model on a fast host) is taken as one
    // clock step, so the error stays a finite number.
    const measuredMs = Math.max(headMs - handoffMs, CLOCK_STEP_MS);
    const profiledMs = prefix[k]!;
    return {
      index: k,
      measuredMs,
      profiledMs,
      error: Math.abs(profiledMs - measuredMs) / measuredMs,
      headMs,
      handoffMs,
    };
  });
}

/** Measures a profile of the model on this host (see the top of this file). */
export async function profileModel(handle: ModelHandle, opts: ProfileOptions = {}): Promise<Profile> {
  const s = profileSettings(opts);
  const { runs, warmup, threads, clock } = s;
  const feeds = profileFeeds(handle.inputs);
  const checkAt = chooseCheckCuts(handle, s.checkCuts);
  const { runTimes, trace } = await measureSessions(handle, feeds, checkAt, s, opts.onProgress);
  const layers = mapTrace(handle, trace, warmup, runs);
  const times = runTimes[clock];
  const { profiled, layerSumMs, wholeMs, scale } = scaledLayers(handle, layers, times[1]!);
  const check = checkHeads(checkAt, times, prefixSums(profiled.map((l) => l.ms)));

  return {
    version: PROFILE_VERSION,
    kind: 'measured',
    device: opts.device ?? hostDevice(),
    runtime: {
      name: 'onnxruntime-node',
      version: ort.env.versions.node ?? ort.env.versions.common,
      threads,
      optimization: PRODUCTION_OPTIMIZATION,
    },
    model: { name: handle.name, id: handle.id, flops: handle.totals.flops, params: handle.totals.params },
    runs,
    warmup,
    wholeMs,
    scale,
    layers: profiled,
    cuts: handle.cuts.map((c) => ({
      index: c.index,
      after: c.after,
      bytes: c.bytes,
      tensors: c.tensors.map((t) => t.name),
    })),
    ...(check.length > 0 ? { check: { cuts: check, maxError: Math.max(...check.map((c) => c.error)) } } : {}),
    measurement: {
      layerOptimization: 'disabled',
      layerSumMs,
      clock,
      wholeWallMs: { median: median(runTimes.wall[1]!), p90: quantile(runTimes.wall[1]!, 0.9) },
      unreported: layers.unreported,
      attributed: layers.attributed,
      excluded: layers.excluded,
    },
    createdAt: new Date().toISOString(),
  };
}

/** prefix[k] = sum of values[0..k-1] (prefix[0] = 0). */
export function prefixSums(values: readonly number[]): number[] {
  const out = [0];
  for (const v of values) out.push(out[out.length - 1]! + v);
  return out;
}

/**
 * The layer-wise profiler (paper section II-A): the latency of every layer (ONNX node) of a model on this host, as
 * the P^e / P^c vectors Algorithm 1 sums, plus a check that the profile's prefix sums predict real head latencies.
 * Per-node times come from onnxruntime's own profiler on an unoptimised session, scaled to the whole model's median
 * under the production settings; with one thread the clock is CPU time; each check head's output hand-off cost is
 * taken off; nodes onnxruntime inserts are excluded or attributed to the next model node. docs/profiling.md ("How
 * the profiler measures, and why") gives the reasons and the measurements behind each choice.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { cpus, hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { valueInfo } from '../model/builder.ts';
import { floatToHalf } from '../model/half.ts';
import type { CrossingTensor, ModelHandle } from '../model/handle.ts';
import { DataType, writeModel } from '../model/onnx.ts';
import { seededUniform } from '../model/random.ts';
import { createSession } from '../model/runtime.ts';
import { median, quantile } from '../planning/stats.ts';
import { UserError } from '../runtime/errors.ts';
import { PROFILE_VERSION, type Profile, type ProfileLayer } from '../schemas/profile.ts';

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

/** Per-node samples from onnxruntime's profiler, mapped to the model's layers. */
export interface LayerSamples {
  /** Per layer (topological order), one duration in ms per timed run. */
  samples: number[][];
  /** Model nodes without an event (0 ms). */
  unreported: string[];
  /** Inserted nodes whose time went to a layer: inserted node name -> layer name. */
  attributed: Record<string, string>;
  /** Inserted nodes on constants only, excluded. */
  excluded: string[];
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

const inputsOf = (s: ort.InferenceSession, feeds: Record<string, ort.Tensor>) =>
  Object.fromEntries(s.inputNames.map((n) => [n, feeds[n]!]));

/** One event of onnxruntime's Chrome-trace profile. */
export interface TraceEvent {
  cat: string;
  name: string;
  ts: number;
  dur: number;
  args?: { op_name?: string; activation_size?: string; parameter_size?: string };
}

/**
 * The name onnxruntime's profiler gives each model node, by layer index (0-based): its name, or `<op>_<i>` with i its
 * index in onnxruntime's graph (file position among the nodes kept at load; Constant nodes are not).
 */
export function ortNodeNames(handle: ModelHandle): string[] {
  const ortIndex = new Map<object, number>();
  let i = 0;
  for (const n of handle.model.graph.node) {
    const isConstant = n.op_type === 'Constant' && (!n.domain || n.domain === 'ai.onnx');
    if (!isConstant) ortIndex.set(n, i++);
  }
  return handle.analysis.nodes.map((n) => {
    if (n.proto.name) return n.proto.name;
    const idx = ortIndex.get(n.proto);
    return idx === undefined ? `${n.op}_(not loaded)` : `${n.op}_${idx}`;
  });
}

/** Reads the one trace onnxruntime wrote into `dir` (after `endProfiling`). */
async function readTrace(dir: string): Promise<TraceEvent[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.json'));
  if (files.length !== 1) throw new Error(`onnxruntime wrote ${files.length} profile files to ${dir}`);
  return JSON.parse(await readFile(join(dir, files[0]!), 'utf8')) as TraceEvent[];
}

/** Maps a parsed onnxruntime trace to per-layer samples (see the top of this file for the rules). */
export function mapTrace(
  handle: ModelHandle,
  events: TraceEvent[],
  warmup: number,
  runs: number,
): LayerSamples {
  const runEvents = events
    .filter((e) => e.cat === 'Session' && e.name === 'model_run')
    .sort((a, b) => a.ts - b.ts);
  if (runEvents.length !== warmup + runs)
    throw new Error(`onnxruntime's profile has ${runEvents.length} runs; expected ${warmup + runs}`);
  const names = ortNodeNames(handle);
  const layerOf = new Map(names.map((n, i) => [n, i]));
  const ops = handle.analysis.nodes.map((n) => n.op);
  const N = names.length;
  const samples: number[][] = names.map(() => []);
  const seen = new Set<number>();
  const attributed: Record<string, string> = {};
  const excluded = new Set<string>();
  // Node events per run, in execution order.
  const perRun: TraceEvent[][] = runEvents.map(() => []);
  const nodeEvents = events
    .filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time'))
    .sort((a, b) => a.ts - b.ts);
  let r = 0;
  for (const e of nodeEvents) {
    while (r < runEvents.length && e.ts > runEvents[r]!.ts + runEvents[r]!.dur) r++;
    if (r === runEvents.length) break;
    if (e.ts >= runEvents[r]!.ts) perRun[r]!.push(e);
  }
  for (let run = warmup; run < runEvents.length; run++) {
    const times = new Array<number>(N).fill(0);
    const evs = perRun[run]!;
    const layerAt = evs.map((e) => {
      const i = layerOf.get(e.name.slice(0, -'_kernel_time'.length));
      return i !== undefined && (e.args?.op_name === undefined || e.args.op_name === ops[i]) ? i : -1;
    });
    evs.forEach((e, j) => {
      const i = layerAt[j]!;
      if (i >= 0) {
        times[i]! += e.dur / 1000;
        seen.add(i);
        return;
      }
      const name = e.name.slice(0, -'_kernel_time'.length);
      // Inside a model node's own event (a subgraph's node): already counted.
      if (evs.some((o, m) => layerAt[m]! >= 0 && o.ts <= e.ts && e.ts + e.dur <= o.ts + o.dur && o !== e))
        return;
      if (Number(e.args?.activation_size ?? 1) === 0 && Number(e.args?.parameter_size ?? 0) > 0) {
        excluded.add(name);
        return;
      }
      let to = -1;
      for (let m = j + 1; m < evs.length && to < 0; m++) to = layerAt[m]!;
      for (let m = j - 1; m >= 0 && to < 0; m--) to = layerAt[m]!;
      if (to < 0) return;
      times[to]! += e.dur / 1000;
      attributed[name] ??= handle.analysis.nodes[to]!.name;
    });
    times.forEach((t, i) => {
      samples[i]!.push(t);
    });
  }
  return {
    samples,
    unreported: handle.analysis.nodes.filter((_, i) => !seen.has(i)).map((n) => n.name),
    attributed,
    excluded: [...excluded],
  };
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

/** Run times of sessions, per session one sample per timed run, in ms by two clocks. */
export interface RunTimes {
  /** Wall clock (performance.now) around `session.run`. */
  wall: number[][];
  /** CPU time of this process (process.cpuUsage, user + system) during `session.run`. */
  cpu: number[][];
}

/**
 * Times sessions round-robin: each round runs every session once, in order (`warmup` untimed rounds first).
 * Round-robin makes a change of load on the host hit every session alike.
 */
export async function timeRoundRobin(
  sessions: readonly ort.InferenceSession[],
  feeds: readonly Record<string, ort.Tensor>[],
  opts: { runs: number; warmup: number; onRound?: (done: number, total: number) => void },
): Promise<RunTimes> {
  const inputs = sessions.map((s, i) => inputsOf(s, feeds[i]!));
  const wall: number[][] = sessions.map(() => []);
  const cpu: number[][] = sessions.map(() => []);
  const total = opts.warmup + opts.runs;
  for (let r = 0; r < total; r++) {
    for (let i = 0; i < sessions.length; i++) {
      const cpuStart = process.cpuUsage();
      const started = performance.now();
      await sessions[i]!.run(inputs[i]!);
      const ms = performance.now() - started;
      const used = process.cpuUsage(cpuStart);
      if (r >= opts.warmup) {
        wall[i]!.push(ms);
        cpu[i]!.push((used.user + used.system) / 1000);
      }
    }
    opts.onRound?.(r + 1, total);
  }
  return { wall, cpu };
}

const ELEM_TYPE: Record<string, number> = {
  float32: DataType.FLOAT,
  float16: DataType.FLOAT16,
  int8: DataType.INT8,
  uint8: DataType.UINT8,
  int32: DataType.INT32,
  int64: DataType.INT64,
};

/**
 * A model with no nodes whose outputs are its inputs: running it costs what `session.run` costs to hand these
 * tensors back to JavaScript (onnxruntime-node copies every output into a new ArrayBuffer).
 */
export function handoffModel(tensors: readonly CrossingTensor[]): Uint8Array {
  const vis = tensors.map((t) => {
    const elemType = ELEM_TYPE[t.dtype];
    if (elemType === undefined) throw new UserError(`cannot profile: tensor ${t.name} has dtype ${t.dtype}`);
    return valueInfo({ name: t.name, dtype: elemType, shape: t.shape.map((d) => Math.max(d, 1)) });
  });
  return writeModel({
    ir_version: 7,
    opset_import: [{ domain: '', version: 13 }],
    producer_name: 'edgecut-profile',
    metadata_props: [],
    graph: { name: 'handoff', node: [], initializer: [], input: vis, output: vis, value_info: [] },
  });
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

/** Measures a profile of the model on this host (see the top of this file). */
export async function profileModel(handle: ModelHandle, opts: ProfileOptions = {}): Promise<Profile> {
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
  const feeds = profileFeeds(handle.inputs);
  const checkAt = chooseCheckCuts(handle, checkCuts);

  // Sessions, in the order each round runs them: the profiled one (level disabled), the whole model, then per check
  // cut its head and the hand-off of its crossing tensors, and last the hand-off of the model's outputs.
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-profile-'));
  const sessions: ort.InferenceSession[] = [];
  const sessionFeeds: Record<string, ort.Tensor>[] = [];
  const setup = 2 + (checkAt.length > 0 ? 2 * checkAt.length + 1 : 0);
  const open = async (p: Promise<ort.InferenceSession>, f: Record<string, ort.Tensor>) => {
    sessions.push(await p);
    sessionFeeds.push(f);
    opts.onProgress?.(sessions.length, setup, 'preparing');
  };
  let runTimes: RunTimes;
  let trace: TraceEvent[];
  try {
    try {
      await open(
        createSession(handle.bytes, {
          threads,
          optimization: 'disabled',
          profileFilePrefix: join(dir, 'ort'),
        }),
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
      runTimes = await timeRoundRobin(sessions, sessionFeeds, {
        runs,
        warmup,
        onRound: (d, t) => opts.onProgress?.(d, t, 'measuring'),
      });
      sessions[0]!.endProfiling();
    } finally {
      await Promise.all(sessions.map((s) => s.release()));
    }
    trace = await readTrace(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const layers = mapTrace(handle, trace, warmup, runs);

  const medians = layers.samples.map((s) => median(s));
  const layerSumMs = medians.reduce((a, b) => a + b, 0);
  const times = runTimes[clock];
  const wholeMs = { median: median(times[1]!), p90: quantile(times[1]!, 0.9) };
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
  const prefix = prefixSums(profiled.map((l) => l.ms));
  const outputHandoff = checkAt.length > 0 ? median(times[times.length - 1]!) : 0;
  const check = checkAt.map((k, j) => {
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

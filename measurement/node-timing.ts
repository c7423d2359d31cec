/**
 * Per-node kernel times from onnxruntime's own profiler (the `<node>_kernel_time` events of its Chrome-trace JSON),
 * for the layer sweep (sweep/).
 *
 * Why the runtime's profiler rather than wall clock minus an empty-model baseline: a single-layer run through
 * onnxruntime-node costs ~20-60 us of binding overhead (feeds, output allocation and the copy to JS), as much as a
 * whole Relu or Reshape, and it varies with the output size; subtracting a baseline leaves that noise in every
 * small layer. Kernel events time exactly what a layer costs inside a whole model, which is what the profiles
 * the predictors are checked against are made of. Resolution is 1 us, so small layers are summarised by the
 * interquartile mean (sub-microsecond resolution, still robust to outliers) rather than the median.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { analyzeGraph } from '../model/graph.ts';
import type { OnnxModel } from '../model/onnx.ts';
import { readModel } from '../model/onnx.ts';
import type { RuntimeOptions } from '../model/runtime.ts';
import { createSession } from '../model/runtime.ts';
import { sampleInput } from '../model/shapes.ts';

/** Options of {@link nodeTimes}. */
export interface NodeTimingOptions {
  /** Timed runs (after the warm-up). */
  runs: number;
  warmup: number;
  threads?: number;
  optimization?: RuntimeOptions['optimization'];
  /** Stop timing once this much wall time has passed after warm-up (keeps big layers cheap); at least `minRuns` runs. */
  budgetMs?: number;
  minRuns?: number;
}

/** Kernel times of every node, in ms, by node name (in run order, warm-up runs dropped), and the runs' times. */
export interface NodeTimes {
  nodes: Map<string, { op: string; ms: number[] }>;
  /** Wall clock around each timed `session.run`. */
  runWallMs: number[];
  /** This process's CPU time (user + system) during each timed `session.run`. */
  runCpuMs: number[];
}

/** The interquartile mean: mean of the samples between the 25th and 75th percentile (all for < 4 samples). */
export function interquartileMean(samples: readonly number[]): number {
  if (samples.length === 0) return Number.NaN;
  const s = [...samples].sort((a, b) => a - b);
  const lo = Math.floor(s.length / 4);
  const hi = s.length - lo;
  let sum = 0;
  for (let i = lo; i < hi; i++) sum += s[i]!;
  return sum / (hi - lo);
}

/** Seeded inputs for every graph input of a model (unknown dims as 1). */
export function sampleFeeds(model: OnnxModel, seed = 1): Record<string, ort.Tensor> {
  const a = analyzeGraph(model, model.graph.name || 'model');
  const feeds: Record<string, ort.Tensor> = {};
  a.inputs.forEach((name, i) => {
    feeds[name] = sampleInput(ort, a, name, seed + i);
  });
  return feeds;
}

interface TraceEvent {
  cat?: string;
  name?: string;
  dur?: number;
  args?: { op_name?: string };
}

/**
 * Runs a model with onnxruntime's profiler on and returns every node's kernel times. Session settings are
 * createSession's (same threads, NCHWc off) plus profiling, which createSession does not expose.
 */
export async function nodeTimes(
  bytes: Uint8Array,
  opts: NodeTimingOptions,
  feeds?: Record<string, ort.Tensor>,
  /** Pre-allocated outputs onnxruntime writes into (saves copying every output to JavaScript each run). */
  fetches?: Record<string, ort.Tensor>,
): Promise<NodeTimes> {
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-ortprof-'));
  try {
    const session = await createSession(bytes, {
      threads: opts.threads ?? 1,
      optimization: opts.optimization ?? 'all',
      profileFilePrefix: join(dir, 'p'),
    });
    const inputs = feeds ?? sampleFeeds(readModel(bytes, 'model'));
    const run = () => (fetches ? session.run(inputs, fetches) : session.run(inputs));
    const runWallMs: number[] = [];
    const runCpuMs: number[] = [];
    let timedRuns = 0;
    try {
      for (let i = 0; i < opts.warmup; i++) await run();
      const start = performance.now();
      const minRuns = Math.min(opts.minRuns ?? opts.runs, opts.runs);
      while (timedRuns < opts.runs) {
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        await run();
        runWallMs.push(performance.now() - t0);
        const used = process.cpuUsage(c0);
        runCpuMs.push((used.user + used.system) / 1000);
        timedRuns++;
        if (opts.budgetMs !== undefined && timedRuns >= minRuns && performance.now() - start > opts.budgetMs)
          break;
      }
      session.endProfiling();
    } finally {
      await session.release();
    }
    const files = (await readdir(dir)).filter((f) => f.endsWith('.json'));
    if (files.length !== 1) throw new Error(`onnxruntime wrote ${files.length} profile files, expected 1`);
    const events = JSON.parse(await readFile(join(dir, files[0]!), 'utf8')) as TraceEvent[];
    const all = new Map<string, { op: string; us: number[] }>();
    for (const e of events) {
      if (e.cat !== 'Node' || !e.name?.endsWith('_kernel_time')) continue;
      const name = e.name.slice(0, -'_kernel_time'.length);
      let entry = all.get(name);
      if (!entry) {
        entry = { op: e.args?.op_name ?? '', us: [] };
        all.set(name, entry);
      }
      entry.us.push(e.dur ?? 0);
    }
    const nodes = new Map<string, { op: string; ms: number[] }>();
    for (const [name, { op, us }] of all) {
      // The first `warmup` events of each node belong to the warm-up runs.
      nodes.set(name, { op, ms: us.slice(us.length - timedRuns).map((u) => u / 1000) });
    }
    return { nodes, runWallMs, runCpuMs };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Size of the last-level cache in bytes (Linux sysfs), or 32 MiB when it cannot be read. */
export function lastLevelCacheBytes(): number {
  let best = 0;
  try {
    for (const entry of readdirSync('/sys/devices/system/cpu/cpu0/cache')) {
      if (!entry.startsWith('index')) continue;
      const size = readFileSync(`/sys/devices/system/cpu/cpu0/cache/${entry}/size`, 'utf8').trim();
      const m = /^(\d+)([KMG]?)/.exec(size);
      if (!m) continue;
      const bytes =
        Number(m[1]) * ({ '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 } as Record<string, number>)[m[2]!]!;
      best = Math.max(best, bytes);
    }
  } catch {
    // Not Linux, or no sysfs: assume a common server L3.
  }
  return best > 0 ? best : 32 * 1024 * 1024;
}

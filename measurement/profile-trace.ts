/**
 * onnxruntime's trace of a profiled session (a Chrome-trace JSON with a `<node>_kernel_time` event per node and run)
 * read back and mapped to the model's layers: the profiler's per-layer samples. docs/profiling.md ("How the
 * profiler measures, and why": mapping onnxruntime's trace back to the model's nodes) gives the rules and why.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ModelHandle } from '../model/handle.ts';

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
export async function readTrace(dir: string): Promise<TraceEvent[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.json'));
  if (files.length !== 1) throw new Error(`onnxruntime wrote ${files.length} profile files to ${dir}`);
  return JSON.parse(await readFile(join(dir, files[0]!), 'utf8')) as TraceEvent[];
}

/** Maps a parsed onnxruntime trace to per-layer samples (the rules: see the top of this file). */
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
  const perRun = nodeEventsByRun(events, runEvents);
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

/** The node events of each run, in execution order: those that start within the run's `model_run` event. */
function nodeEventsByRun(events: TraceEvent[], runEvents: TraceEvent[]): TraceEvent[][] {
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
  return perRun;
}

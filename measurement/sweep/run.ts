/**
 * The layer sweep (`edgecut profile --sweep`): every configuration of a size (configs.ts), built as a model
 * (model.ts) and timed on this host with the production session settings, as training samples for the latency
 * predictors (features + ms + op); the sweep file that holds them, and its reader.
 *
 * A layer's time comes from onnxruntime's own kernel events (node-timing.ts); a layer with weights runs as 2 to
 * MAX_COPIES copies side by side and a run's time is the median over copies 2..K; each run's kernel times are
 * scaled by its CPU time over its wall time, and the layer time is the interquartile mean over the runs. With
 * several passes a configuration keeps its fastest pass; a host-speed reference (reference.ts) is recorded every 30
 * configurations. docs/profiling.md ("How the sweep times a layer, and why") gives the reasons and the measurements.
 */
import { loadavg } from 'node:os';
import * as ort from 'onnxruntime-node';
import { z } from 'zod';
import { type OnnxModel, writeModel } from '../../model/onnx.ts';
import { type LayerSample, LayerSampleSchema } from '../../planning/predict/features.ts';
import { median } from '../../planning/stats.ts';
import { UserError } from '../../runtime/errors.ts';
import { HostInfoSchema, hostInfo } from '../host-info.ts';
import { interquartileMean, nodeTimes, sampleFeeds } from '../node-timing.ts';
import { measureReference } from '../reference.ts';
import { SIZES, type SweepConfig, type SweepSize, sweepConfigs } from './configs.ts';
import { buildSweepModel, sweepCopies, sweepFeatures } from './model.ts';

/** Version of the sweep file format. */
export const SWEEP_VERSION = 1;

const SweepFileSchema = z.object({
  version: z.literal(SWEEP_VERSION),
  kind: z.literal('edgecut-sweep'),
  host: HostInfoSchema,
  size: z.enum(['quick', 'full']),
  seed: z.number().int(),
  /** Timing passes over the configurations (each sample is its configuration's fastest pass). */
  passes: z.number().int().min(1),
  /** One-minute load average of the host before and after the sweep (a busy host makes slow samples). */
  load: z.tuple([z.number(), z.number()]),
  /** The host-speed reference (reference.ts): its median over the sweep, and each measurement (`at`: configurations timed before it). */
  reference: z.object({
    ms: z.number().positive(),
    points: z.array(z.object({ at: z.number().int().min(0), ms: z.number().positive() })),
  }),
  createdAt: z.string(),
  elapsedMs: z.number(),
  samples: z.array(LayerSampleSchema.extend({ config: z.string(), copies: z.number().int().min(1) })),
});
/** A sweep file. */
export type SweepFile = z.infer<typeof SweepFileSchema>;

/** Options of {@link runSweep}. */
export interface SweepOptions {
  size?: SweepSize;
  seed?: number;
  threads?: number;
  /** Timing passes (default: the size's, quick 1, full 2). */
  passes?: number;
  /** Only the first `limit` configurations. */
  limit?: number;
  /** Called after each configuration. */
  onProgress?: (done: number, total: number, config: SweepConfig) => void;
}

/** Float32 buffers for every graph output of a built model, for onnxruntime to write into (no copy to JS). */
function outputBuffers(model: OnnxModel): Record<string, ort.Tensor> {
  const out: Record<string, ort.Tensor> = {};
  for (const o of model.graph.output) {
    const dims = (o.type?.tensor_type?.shape?.dim ?? []).map((d) => Number(d.dim_value ?? 1));
    out[o.name!] = new ort.Tensor('float32', new Float32Array(dims.reduce((a, v) => a * v, 1)), dims);
  }
  return out;
}

/**
 * Times one configuration: its features (one copy's) and its layer time in ms. The time of a run is the median of
 * the kernel times of copies 2..K (copy 1 is the first to touch the input and the kernel's code each run; a
 * single-copy model uses its one node), scaled by the run's CPU time over its wall time when the host preempted the
 * process; the layer time is the interquartile mean over the timed runs.
 */
export async function timeConfig(
  c: SweepConfig,
  opts: { size?: SweepSize; threads?: number; copies?: number } = {},
): Promise<LayerSample & { config: string; copies: number }> {
  const spec = SIZES[opts.size ?? 'full'];
  const threads = opts.threads ?? 1;
  const copies = opts.copies ?? sweepCopies(c);
  const model = buildSweepModel(c, copies);
  const bytes = writeModel(model);
  const features = sweepFeatures(model);
  const feeds = sampleFeeds(model);
  const t = await nodeTimes(
    bytes,
    {
      runs: spec.runs,
      minRuns: spec.minRuns,
      warmup: spec.warmup,
      budgetMs: spec.budgetMs,
      threads,
    },
    feeds,
    outputBuffers(model),
  );
  const runs = t.runWallMs.length;
  const perRun: number[] = [];
  for (let r = 0; r < runs; r++) {
    const times: number[] = [];
    for (let k = copies > 1 ? 1 : 0; k < copies; k++) times.push(t.nodes.get(`layer${k}`)?.ms[r] ?? 0);
    // With 1 thread onnxruntime-node runs on the calling thread, so CPU time < wall time means preemption.
    const busy = threads === 1 ? Math.min(1, t.runCpuMs[r]! / Math.max(t.runWallMs[r]!, 1e-9)) : 1;
    perRun.push(median(times) * busy);
  }
  return { ...features, ms: interquartileMean(perRun), config: c.id, copies };
}

/** Configurations between two measurements of the host-speed reference. */
const REFERENCE_EVERY = 30;

/** Runs the sweep: every configuration of the size, timed on this host. */
export async function runSweep(opts: SweepOptions = {}): Promise<SweepFile> {
  const size = opts.size ?? 'full';
  const seed = opts.seed ?? 1;
  const threads = opts.threads ?? 1;
  const passes = opts.passes ?? SIZES[size].passes;
  let configs = sweepConfigs(size, seed);
  if (opts.limit !== undefined) configs = configs.slice(0, opts.limit);
  const started = performance.now();
  const loadBefore = loadavg()[0]!;
  // A configuration keeps its fastest pass, so a burst of load from other processes has to hit every pass of a
  // configuration to bias it. The host-speed reference (reference.ts) is recorded every REFERENCE_EVERY
  // configurations to show drift; samples are not scaled by it (its own noise is as large as the drift).
  const total = passes * configs.length;
  const points: { at: number; ms: number }[] = [];
  const best: (LayerSample & { config: string; copies: number })[] = [];
  let done = 0;
  points.push({ at: 0, ms: await measureReference() });
  for (let pass = 0; pass < passes; pass++) {
    for (const [i, c] of configs.entries()) {
      const s = await timeConfig(c, { size, threads });
      if (!best[i] || s.ms < best[i].ms) best[i] = s;
      done++;
      opts.onProgress?.(done, total, c);
      if (done % REFERENCE_EVERY === 0 || done === total)
        points.push({ at: done, ms: await measureReference() });
    }
  }
  const refMedian = median(points.map((p) => p.ms));
  return {
    version: SWEEP_VERSION,
    kind: 'edgecut-sweep',
    host: hostInfo(threads),
    size,
    seed,
    passes,
    load: [loadBefore, loadavg()[0]!],
    reference: { ms: refMedian, points },
    createdAt: new Date().toISOString(),
    elapsedMs: performance.now() - started,
    samples: best,
  };
}

/** Checks raw JSON as a sweep file; one-line error naming the problem. */
export function parseSweep(raw: unknown, source: string): SweepFile {
  const v = (raw as { version?: unknown } | null)?.version;
  if (v !== SWEEP_VERSION) {
    throw new UserError(
      `${source}: sweep format version ${JSON.stringify(v)} is not supported; this edgecut reads version ${SWEEP_VERSION} (run edgecut profile --sweep again)`,
    );
  }
  const parsed = SweepFileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new UserError(`${source}: ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data;
}

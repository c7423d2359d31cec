/**
 * The layer sweep (`edgecut profile --sweep`): a deterministic grid of single-layer ONNX models covering the layer
 * types the zoo uses, each timed on this host with the production session settings, as training samples for the
 * latency predictors (features + ms + op).
 *
 * Configurations are drawn from a seeded PRNG over the grid (Conv kernel 1/3/5/7/11 and the 1x3, 3x1, 1x7, 7x1 of
 * Inception, stride 1/2/4, channels 3..1024, spatial 7..224, groups incl. depthwise; Gemm/MatMul up to 9216x4096;
 * pools, BN, activations, Add, Concat of 2-4 inputs, Softmax, LRN, Reshape/Flatten, Dropout), rejecting
 * configurations whose activations or FLOPs exceed the size's caps, so the same seed and size always give the same
 * list. Channel and spatial sizes are drawn so that big feature maps go with few channels, as in real networks.
 *
 * Timing (why each step: the measurements are in the comments of timeConfig, sweepCopies, runSweep, reference.ts):
 * - onnxruntime's own kernel events (node-timing.ts) under createSession's settings, not wall clock minus an
 *   empty-model baseline: the binding overhead of a run (~20-60 us) is as large as a whole small layer.
 * - A layer with weights is timed as 2-8 copies side by side with their own weights, so its weights are cold as
 *   in a network; a run's time is the median over copies 2..K. Layers without weights run alone. Checked against
 *   the same layers inside the zoo models, measured minutes apart: MobileNetV2's 30 distinct convolutions
 *   in-network / sweep median 1.01 (0.63-0.73 for the three with 1-5 MB outputs at 112x112, which the sweep writes
 *   to fresh memory), ResNet-50's 23 convolutions 0.93-0.95. Flushing the caches before every run instead (an
 *   earlier version) cost small layers ~30 us each: BatchNormalization came out 2-4x slower than in a network.
 * - Each run's kernel times are scaled by its CPU time over its wall time (preemption by other processes), and the
 *   layer time is the interquartile mean over the runs.
 * - With several passes a configuration keeps its fastest pass; a host-speed reference is recorded every 30
 *   configurations (reference.ts).
 */
import { loadavg } from 'node:os';
import * as ort from 'onnxruntime-node';
import { z } from 'zod';
import { GraphBuilder, type Value } from '../model/builder.ts';
import { avgPool, batchNorm, clip } from '../model/builder-ops.ts';
import { nodeCost } from '../model/cost.ts';
import { analyzeGraph } from '../model/graph.ts';
import { DataType, floatAttr, intAttr, type OnnxModel, writeModel } from '../model/onnx.ts';
import { mulberry32 } from '../model/random.ts';
import { type LayerSample, LayerSampleSchema } from '../planning/predict/features.ts';
import { median } from '../planning/stats.ts';
import { UserError } from '../runtime/errors.ts';
import { HostInfoSchema, hostInfo } from './host-info.ts';
import { interquartileMean, lastLevelCacheBytes, nodeTimes, sampleFeeds } from './node-timing.ts';
import { measureReference } from './reference.ts';

/** Version of the sweep file format. */
export const SWEEP_VERSION = 1;

/** Ops the sweep covers. */
export const SWEEP_OPS = [
  'Conv',
  'Gemm',
  'MatMul',
  'MaxPool',
  'AveragePool',
  'GlobalAveragePool',
  'BatchNormalization',
  'Relu',
  'Clip',
  'Add',
  'Concat',
  'Softmax',
  'LRN',
  'Reshape',
  'Flatten',
  'Dropout',
] as const;
export type SweepOp = (typeof SWEEP_OPS)[number];

/** One single-layer configuration. Shapes are NCHW with N = 1 (or [1, features] for Gemm/MatMul/Softmax). */
export interface SweepConfig {
  id: string;
  op: SweepOp;
  /** Input shape (the first input's for Concat). */
  shape: number[];
  /** Conv: output channels; Gemm/MatMul: output features. */
  out?: number;
  kernel?: [number, number];
  stride?: number;
  pad?: [number, number];
  group?: number;
  /** Concat: channels of each input. */
  channels?: number[];
}

/** Sweep sizes: `quick` (~30 small layers, seconds) for tests, `full` (~450, minutes) for training. */
export type SweepSize = 'quick' | 'full';

interface SizeSpec {
  counts: Record<SweepOp, number>;
  /** Largest activation tensor (elements). */
  maxElements: number;
  maxFlops: number;
  maxGemm: number;
  runs: number;
  minRuns: number;
  warmup: number;
  /** Per-layer timing budget after warm-up. */
  budgetMs: number;
  passes: number;
}

const SIZES: Record<SweepSize, SizeSpec> = {
  quick: {
    counts: {
      Conv: 8,
      Gemm: 2,
      MatMul: 1,
      MaxPool: 2,
      AveragePool: 1,
      GlobalAveragePool: 1,
      BatchNormalization: 2,
      Relu: 2,
      Clip: 1,
      Add: 2,
      Concat: 2,
      Softmax: 1,
      LRN: 1,
      Reshape: 1,
      Flatten: 1,
      Dropout: 1,
    },
    maxElements: 400_000,
    maxFlops: 40e6,
    maxGemm: 1024,
    runs: 15,
    minRuns: 5,
    warmup: 2,
    budgetMs: 60,
    passes: 1,
  },
  full: {
    counts: {
      Conv: 240,
      Gemm: 24,
      MatMul: 14,
      MaxPool: 24,
      AveragePool: 20,
      GlobalAveragePool: 12,
      BatchNormalization: 24,
      Relu: 20,
      Clip: 14,
      Add: 20,
      Concat: 24,
      Softmax: 10,
      LRN: 10,
      Reshape: 8,
      Flatten: 8,
      Dropout: 8,
    },
    maxElements: 3_300_000,
    maxFlops: 1.5e9,
    maxGemm: 9216,
    runs: 40,
    minRuns: 7,
    warmup: 3,
    budgetMs: 150,
    passes: 2,
  },
};

const SPATIAL = [7, 8, 13, 14, 17, 27, 28, 35, 55, 56, 73, 111, 112, 147, 224];
const CHANNELS = [3, 16, 24, 32, 48, 64, 80, 96, 128, 144, 160, 192, 256, 320, 384, 512, 576, 768, 960, 1024];
const GEMM_SIZES = [10, 100, 256, 512, 1000, 1024, 1280, 2048, 4096, 9216];

const convOut = (size: number, k: number, s: number, p: number) => Math.floor((size + 2 * p - k) / s) + 1;

/** FLOPs of a configuration, as cost.ts counts them (used for the size caps only). */
function roughFlops(c: SweepConfig): number {
  const [, ch, h, w] = c.shape as [number, number, number, number];
  switch (c.op) {
    case 'Conv': {
      const [kh, kw] = c.kernel!;
      const oh = convOut(h, kh, c.stride!, c.pad![0]);
      const ow = convOut(w, kw, c.stride!, c.pad![1]);
      return 2 * c.out! * oh * ow * (ch / c.group!) * kh * kw;
    }
    case 'Gemm':
    case 'MatMul':
      return 2 * c.shape[1]! * c.out!;
    default:
      return c.shape.reduce((a, b) => a * b, 1) * 10;
  }
}

/**
 * The deterministic configuration list of a size: the same seed and size always give the same list, in the same
 * order (ops interleaved so a partial run still covers every type).
 */
export function sweepConfigs(size: SweepSize, seed = 1): SweepConfig[] {
  const spec = SIZES[size];
  const rand = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const chance = (p: number) => rand() < p;
  // A (channels, spatial) pair whose map fits the caps; big maps are drawn with few channels.
  const map = (maxElements: number): [number, number] => {
    for (;;) {
      const s = pick(SPATIAL);
      const c = pick(CHANNELS);
      if (c * s * s <= maxElements && c * s * s >= 64) return [c, s];
    }
  };
  const lists = new Map<SweepOp, SweepConfig[]>();
  const seen = new Set<string>();
  for (const op of SWEEP_OPS) {
    const list: SweepConfig[] = [];
    let attempts = 0;
    while (list.length < spec.counts[op] && attempts++ < 100_000) {
      const c = drawConfig(op, spec, map, pick, chance);
      if (!c) continue;
      const f = roughFlops(c);
      if (f > spec.maxFlops) continue;
      if (seen.has(c.id)) continue;
      seen.add(c.id);
      list.push(c);
    }
    lists.set(op, list);
  }
  // Interleave by op in proportion to the counts.
  const out: SweepConfig[] = [];
  const total = [...lists.values()].reduce((s, l) => s + l.length, 0);
  const taken = new Map<SweepOp, number>(SWEEP_OPS.map((op) => [op, 0]));
  while (out.length < total) {
    let best: SweepOp | undefined;
    let bestLag = Number.NEGATIVE_INFINITY;
    for (const op of SWEEP_OPS) {
      const l = lists.get(op)!;
      const t = taken.get(op)!;
      if (t >= l.length) continue;
      const lag = ((out.length + 1) * l.length) / total - t;
      if (lag > bestLag) {
        bestLag = lag;
        best = op;
      }
    }
    const t = taken.get(best!)!;
    out.push(lists.get(best!)![t]!);
    taken.set(best!, t + 1);
  }
  return out;
}

function drawConfig(
  op: SweepOp,
  spec: SizeSpec,
  map: (maxElements: number) => [number, number],
  pick: <T>(xs: readonly T[]) => T,
  chance: (p: number) => boolean,
): SweepConfig | undefined {
  const [c, s] = map(spec.maxElements);
  const shape = [1, c, s, s];
  const id = (parts: (string | number)[]) => [op, ...parts].join('-');
  switch (op) {
    case 'Conv': {
      // A quarter depthwise (3x3 or 5x5, as MobileNets use them; 1x1 depthwise is a per-channel scale no network
      // uses), the rest dense with the kernels of the zoo.
      const depthwise = c >= 16 && chance(0.25);
      const r = depthwise ? pick([3, 3, 3, 5]) : pick([1, 1, 1, 3, 3, 3, 5, 7, 11, 13, 17, 31, 37]);
      let kernel: [number, number];
      if (r === 13) kernel = [1, 3];
      else if (r === 31) kernel = [3, 1];
      else if (r === 17) kernel = [1, 7];
      else if (r === 37) kernel = [7, 1];
      else kernel = [r, r];
      const big = Math.max(...kernel);
      const stride = big >= 7 && kernel[0] === kernel[1] ? pick([2, 4]) : chance(0.7) ? 1 : 2;
      const group = depthwise ? c : 1;
      const out = depthwise ? c : pick(CHANNELS.filter((x) => x >= 8));
      const pad: [number, number] = chance(0.8)
        ? [Math.floor(kernel[0] / 2), Math.floor(kernel[1] / 2)]
        : [0, 0];
      if (s < big) return undefined;
      const oh = convOut(s, kernel[0], stride, pad[0]);
      const ow = convOut(s, kernel[1], stride, pad[1]);
      if (oh < 1 || ow < 1 || out * oh * ow > spec.maxElements) return undefined;
      return {
        id: id([c, s, out, `${kernel.join('x')}`, `s${stride}`, `p${pad.join('x')}`, `g${group}`]),
        op,
        shape,
        out,
        kernel,
        stride,
        pad,
        group,
      };
    }
    case 'Gemm':
    case 'MatMul': {
      const sizes = GEMM_SIZES.filter((x) => x <= spec.maxGemm);
      const k = pick(sizes);
      const n = pick(sizes);
      if (k * n > 9216 * 4096) return undefined;
      return { id: id([k, n]), op, shape: [1, k], out: n };
    }
    case 'MaxPool':
    case 'AveragePool': {
      const k = pick([2, 3, 3]);
      const stride = pick([1, 2, 2]);
      const pad = k === 3 && chance(0.4) ? 1 : 0;
      if (s < k) return undefined;
      return {
        id: id([c, s, k, `s${stride}`, `p${pad}`]),
        op,
        shape,
        kernel: [k, k],
        stride,
        pad: [pad, pad],
      };
    }
    case 'Concat': {
      const n = pick([2, 2, 3, 4]);
      const channels = Array.from({ length: n }, () => pick(CHANNELS.filter((x) => x >= 16 && x <= 512)));
      const total = channels.reduce((a, b) => a + b, 0);
      if (total * s * s > spec.maxElements) return undefined;
      return { id: id([channels.join('+'), s]), op, shape: [1, channels[0]!, s, s], channels };
    }
    case 'Softmax': {
      const n = pick([10, 100, 1000, 1000, 4096, 10_000, 21_843]);
      return { id: id([n]), op, shape: [1, n] };
    }
    case 'Reshape':
    case 'Flatten':
      // Usually at the end of the features: small maps.
      if (s > 56) return undefined;
      return { id: id([c, s]), op, shape };
    default:
      return { id: id([c, s]), op, shape };
  }
}

/**
 * Builds the model of a configuration: `copies` instances of the layer side by side (`layer0`, `layer1`, ...),
 * all reading the same graph inputs, each with its own weights and its own graph output (seeded weights).
 */
export function buildSweepModel(c: SweepConfig, copies = 1, seed = 1): OnnxModel {
  const b = new GraphBuilder({ name: c.id.replace(/[^A-Za-z0-9_]/g, '_'), seed });
  const x = b.input('x', c.shape);
  const extra: Value[] = [];
  if (c.op === 'Add') extra.push(b.input('x2', c.shape));
  if (c.op === 'Concat') {
    const s = c.shape[2]!;
    extra.push(...c.channels!.slice(1).map((ch, i) => b.input(`x${i + 2}`, [1, ch, s, s])));
  }
  for (let k = 0; k < copies; k++) b.output(layer(b, c, x, extra, `layer${k}`));
  return b.build();
}

function layer(b: GraphBuilder, c: SweepConfig, x: Value, extra: Value[], name: string): Value {
  switch (c.op) {
    case 'Conv':
      return b.conv(x, c.out!, { kernel: c.kernel!, stride: c.stride!, pad: c.pad!, group: c.group!, name });
    case 'Gemm':
      return b.gemm(x, c.out!, name);
    case 'MatMul': {
      const w = b.weight(`${name}.weight`, [c.shape[1]!, c.out!], b.uniform(c.shape[1]! * c.out!, 0.05));
      return b.node('MatMul', [x.name, w], [[1, c.out!]], [], name)[0]!;
    }
    case 'MaxPool':
      return b.pool(x, { kernel: c.kernel!, stride: c.stride!, pad: c.pad!, name });
    case 'AveragePool':
      return avgPool(b, x, {
        kernel: c.kernel!,
        stride: c.stride!,
        pad: c.pad!,
        countIncludePad: true,
        name,
      });
    case 'GlobalAveragePool':
      return b.gap(x, name);
    case 'BatchNormalization':
      return batchNorm(b, x, { name });
    case 'Relu':
      return b.relu(x, name);
    case 'Clip':
      return clip(b, x, 0, 6, name);
    case 'Add':
      return b.add(x, extra[0]!, name);
    case 'Concat':
      return b.concat([x, ...extra], 1, name);
    case 'Softmax':
      return b.softmax(x, name);
    case 'LRN':
      return b.node(
        'LRN',
        [x.name],
        [x.shape],
        [intAttr('size', 5), floatAttr('alpha', 1e-4), floatAttr('beta', 0.75), floatAttr('bias', 2)],
        name,
      )[0]!;
    case 'Reshape': {
      const n = c.shape.slice(1).reduce((a, v) => a * v, 1);
      const shape = b.constant(`${name}.shape`, DataType.INT64, [2], BigInt64Array.of(1n, BigInt(n)));
      return b.node('Reshape', [x.name, shape], [[1, n]], [], name)[0]!;
    }
    case 'Flatten':
      return b.flatten(x, name);
    case 'Dropout':
      return b.dropout(x, name);
  }
}

/** Rough bytes of one copy's weights (float32), to choose the number of copies. */
function roughParamBytes(c: SweepConfig): number {
  switch (c.op) {
    case 'Conv': {
      const [kh, kw] = c.kernel!;
      return 4 * (c.out! * (c.shape[1]! / c.group!) * kh * kw + c.out!);
    }
    case 'Gemm':
    case 'MatMul':
      return 4 * (c.shape[1]! * c.out! + c.out!);
    case 'BatchNormalization':
      return 16 * c.shape[1]!;
    default:
      // Clip's bounds are shared initializers, not weights.
      return 0;
  }
}

/** The most copies of a layer a sweep model has. */
export const MAX_COPIES = 8;

/**
 * Copies of a configuration's layer in its sweep model. A layer with weights gets enough copies (2 to MAX_COPIES)
 * that their weights together exceed 1.5x the last-level cache, so, as in a network, a copy's weights have left the
 * cache by the time it runs again; re-running one copy alone keeps its weights cached (a batch-1 Gemm with 5 MB of
 * weights ran at 68 GB/s alone, 16 GB/s inside MobileNetV2). A layer without weights runs alone (1 copy): identical
 * weightless nodes on the same input would be merged by onnxruntime's common-subexpression elimination anyway.
 */
export function sweepCopies(c: SweepConfig, cacheBytes = lastLevelCacheBytes()): number {
  const params = roughParamBytes(c);
  if (params === 0) return 1;
  return Math.max(2, Math.min(MAX_COPIES, Math.ceil((1.5 * cacheBytes) / params)));
}

/** Op and static features of a configuration's layer, computed by cost.ts exactly as for a zoo model's nodes. */
export function sweepFeatures(
  model: OnnxModel,
): Pick<LayerSample, 'op' | 'flops' | 'inputBytes' | 'outputBytes' | 'paramBytes'> {
  const a = analyzeGraph(model, model.graph.name);
  const node = a.nodes[0]!;
  const c = nodeCost(a, node);
  return {
    op: node.op,
    flops: c.flops,
    inputBytes: c.inputBytes,
    outputBytes: c.outputBytes,
    paramBytes: c.paramBytes,
  };
}

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

/**
 * The configuration space of the layer sweep (run.ts): the ops it covers, its sizes, and the deterministic list of
 * single-layer configurations of a size.
 *
 * Configurations are drawn from a seeded PRNG over the grid (Conv kernel 1/3/5/7/11 and the 1x3, 3x1, 1x7, 7x1 of
 * Inception, stride 1/2/4, channels 3..1024, spatial 7..224, groups incl. depthwise; Gemm/MatMul up to 9216x4096;
 * pools, BN, activations, Add, Concat of 2-4 inputs, Softmax, LRN, Reshape/Flatten, Dropout), rejecting
 * configurations whose activations or FLOPs exceed the size's caps, so the same seed and size always give the same
 * list. Channel and spatial sizes are drawn so that big feature maps go with few channels, as in real networks.
 */
import { mulberry32 } from '../../model/random.ts';

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
/** One op of {@link SWEEP_OPS}. */
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

/** What a sweep size draws (configurations per op, caps) and how it times each configuration. */
export interface SizeSpec {
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

/** The sweep sizes. */
export const SIZES: Record<SweepSize, SizeSpec> = {
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

/** One configuration of `op` on a map of channels and spatial size drawn by `map`; undefined if it breaks a cap. */
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
    case 'Conv':
      return drawConv(c, s, spec, pick, chance);
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

/** A Conv configuration on a map of `c` channels and `s` x `s` pixels; undefined if it breaks a cap. */
function drawConv(
  c: number,
  s: number,
  spec: SizeSpec,
  pick: <T>(xs: readonly T[]) => T,
  chance: (p: number) => boolean,
): SweepConfig | undefined {
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
  const pad: [number, number] = chance(0.8) ? [Math.floor(kernel[0] / 2), Math.floor(kernel[1] / 2)] : [0, 0];
  if (s < big) return undefined;
  const oh = convOut(s, kernel[0], stride, pad[0]);
  const ow = convOut(s, kernel[1], stride, pad[1]);
  if (oh < 1 || ow < 1 || out * oh * ow > spec.maxElements) return undefined;
  return {
    id: ['Conv', c, s, out, kernel.join('x'), `s${stride}`, `p${pad.join('x')}`, `g${group}`].join('-'),
    op: 'Conv',
    shape: [1, c, s, s],
    out,
    kernel,
    stride,
    pad,
    group,
  };
}

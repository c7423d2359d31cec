/**
 * Training and using the per-layer latency predictors (paper section II-A): for every layer type (features.ts),
 * (a) a Neurosurgeon linear regression on FLOPs, input and output bytes, and (b) a FastDeepIoT tree-structured
 * linear regression on FLOPs, input, output and parameter bytes (tree.ts); 5-fold cross-validation on the training
 * samples picks the one with the lower median absolute percentage error (MdAPE) per type. A global pair trained on
 * all samples of all types predicts ops whose type the training data lacks (e.g. Sigmoid, ConvTranspose): coarse,
 * but finite and >= 0, never an error.
 *
 * Method choices, measured by bench/predict.ts (leave-one-out over the six zoo models: train on five profiles plus
 * the full sweep, predict the sixth) on two independent measurement sets A and B of this host, as worst
 * whole-model error / worst per-model per-layer MdAPE of the chosen mix:
 * - final (time-space leaves weighted 1/y^2, M5 smoothing k = 15, sum calibration, grouped types, depthwise in
 *   `conv`): A 6.7% / 19.9%, B 5.3% / 29.3% (alexnet; the others <= 19.8%).
 * - leaves weighted 1/y: 4.8% / 22.8%, 5.0% / 29.8%; unweighted: 3.7% / 26.4%, 7.4% / 31.0% (sums as good, small
 *   layers worse). Log-time leaves (a power law): 11.3% / 22.8%, 10.8% / 31.8%, and they extrapolate badly: with
 *   an earlier sweep, AlexNet's 151 MB Gemm came out 2.4x too slow.
 * - no smoothing: 10.3% / 23.1%, 9.6% / 29.3%. No sum calibration: 11.6% / 27.4%, 17.1% / 37.8%.
 * - every op its own type: 4.0% / 19.3%, 5.3% / 36.3%. No sweep (profiles only): 31.5% / 28.9%, 27.4% / 32.9%
 *   (MobileNetV2's depthwise convolutions are then seen nowhere).
 * - the Neurosurgeon model alone: 20.8% / 25.4%, 20.9% / 30.1% (one line per type cannot cover dense and depthwise
 *   convolutions, or cached and streamed Gemm weights); cross-validation picks the tree for conv and gemm.
 */

import type { HostInfo } from '../../measurement/host-info.ts';
import type { ModelHandle } from '../../model/handle.ts';
import { mulberry32 } from '../../model/random.ts';
import { median } from '../stats.ts';
import {
  type FeatureName,
  featuresOf,
  featureVector,
  LAYER_TYPES,
  type LayerFeatures,
  type LayerSample,
  layerType,
  splitVector,
} from './features.ts';
import {
  DEFAULT_LINEAR_FIT,
  evalLinear,
  fitLinear,
  type LinearFitOptions,
  type LinearModel,
  TIME_EPS,
} from './linear.ts';
import { DEFAULT_TREE_FIT, evalTree, fitTree, type TreeFitOptions, type TreeModel } from './tree.ts';

/** Current version of the predictors file format. */
export const PREDICTORS_VERSION = 1;

/** Features of the Neurosurgeon model (a). */
export const LINEAR_FEATURES: FeatureName[] = ['flops', 'inputBytes', 'outputBytes'];
/** Features of the FastDeepIoT tree's leaves (b). */
export const TREE_FEATURES: FeatureName[] = ['flops', 'inputBytes', 'outputBytes', 'paramBytes'];

/** The trained models of one layer type. */
export interface TypePredictor {
  /** ONNX ops of the training samples of this type. */
  ops: string[];
  samples: number;
  chosen: 'linear' | 'tree';
  linear: LinearModel;
  tree: TreeModel;
  /** Cross-validated MdAPE (fraction) of each model; null when the type had too few samples to validate. */
  validationMdape: { linear: number | null; tree: number | null };
  /**
   * Sum calibration: the factor each model's predictions are multiplied by, so that their sum over the type's
   * in-network training samples (from profiled models; all samples when there are none) equals the measured sum
   * (clamped to [0.5, 2]; 1 when not calibrated). The relative-error fits are median-unbiased but under-predict
   * sums: leave-one-out whole-model errors were -3% to -11% without it, -5% to +5% with it (bench/predict.ts).
   */
  scale: { linear: number; tree: number };
}

/** Trained predictors (the JSON stored by store.ts). */
export interface Predictors {
  version: typeof PREDICTORS_VERSION;
  host: HostInfo | null;
  /**
   * The host-speed reference (reference.ts) measured with the training data, in ms, or null: a reference measured
   * later over this says how much slower the host has become since (roughly: the reference itself varies by ~10%).
   */
  referenceMs: number | null;
  /** Sample counts by source (`sweep`, model names). */
  trainedOn: { source: string; samples: number }[];
  /** ONNX op -> layer type used at training (and so at prediction). */
  groups: Record<string, string>;
  options: {
    linear: LinearFitOptions;
    tree: TreeFitOptions;
    folds: number;
    seed: number;
    sourceWeights: Record<string, number>;
    calibrate: boolean;
  };
  types: Record<string, TypePredictor>;
  /** Fallback for ops whose type was not in the training data. */
  global: TypePredictor;
  createdAt: string;
}

/** Options of {@link trainPredictors}. */
export interface TrainOptions {
  /** Op -> type (default LAYER_TYPES; ops it lacks are their own type). */
  groups?: Readonly<Record<string, string>>;
  linear?: Partial<LinearFitOptions>;
  tree?: Partial<TreeFitOptions>;
  /** Cross-validation folds (default 5). */
  folds?: number;
  /** Seed of the fold assignment (default 1). */
  seed?: number;
  /** Weight of the samples of each source (LayerSample.source) in the fits; default 1. */
  sourceWeights?: Readonly<Record<string, number>>;
  /** Sum calibration (TypePredictor.scale), default true. */
  calibrate?: boolean;
  host?: HostInfo | null;
  /** The host-speed reference measured with the samples (recorded, not applied). */
  referenceMs?: number | null;
}

/** Absolute percentage error (fraction); the measured time is floored at the timer resolution. */
export function ape(predicted: number, measured: number): number {
  return Math.abs(predicted - measured) / Math.max(measured, TIME_EPS);
}

interface Prepared {
  X: number[][];
  S: number[][];
  y: number[];
  w: number[];
}

function prepare(samples: readonly LayerSample[], sourceWeights: Readonly<Record<string, number>>): Prepared {
  return {
    X: samples.map((s) => featureVector(s)),
    S: samples.map((s) => splitVector(s)),
    y: samples.map((s) => s.ms),
    w: samples.map((s) => sourceWeights[s.source ?? ''] ?? 1),
  };
}

function fitBoth(
  d: Prepared,
  lin: LinearFitOptions,
  tree: TreeFitOptions,
): { linear: LinearModel; tree: TreeModel } {
  return {
    linear: fitLinear(d.X, d.y, LINEAR_FEATURES, lin, d.w),
    tree: fitTree(d.X, d.S, d.y, TREE_FEATURES, tree, d.w),
  };
}

const pick = (d: Prepared, ids: number[]): Prepared => ({
  X: ids.map((i) => d.X[i]!),
  S: ids.map((i) => d.S[i]!),
  y: ids.map((i) => d.y[i]!),
  w: ids.map((i) => d.w[i]!),
});

/** Fits one type: both models on all its samples, and both cross-validated to choose. */
function trainType(
  samples: readonly LayerSample[],
  lin: LinearFitOptions,
  tree: TreeFitOptions,
  folds: number,
  seed: number,
  sourceWeights: Readonly<Record<string, number>>,
  calibrate: boolean,
): TypePredictor {
  const d = prepare(samples, sourceWeights);
  const both = fitBoth(d, lin, tree);
  const k = Math.min(folds, samples.length);
  let validationMdape: TypePredictor['validationMdape'] = { linear: null, tree: null };
  if (k >= 2 && samples.length >= 6) {
    // Deterministic shuffled fold assignment.
    const rand = mulberry32(seed);
    const order = samples.map((_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    const apes = { linear: [] as number[], tree: [] as number[] };
    for (let f = 0; f < k; f++) {
      const test = order.filter((_, i) => i % k === f);
      const train = order.filter((_, i) => i % k !== f);
      const m = fitBoth(pick(d, train), lin, tree);
      for (const i of test) {
        apes.linear.push(ape(evalLinear(m.linear, d.X[i]!), d.y[i]!));
        apes.tree.push(ape(evalTree(m.tree, d.X[i]!, d.S[i]!), d.y[i]!));
      }
    }
    validationMdape = { linear: median(apes.linear), tree: median(apes.tree) };
  }
  const { linear: vl, tree: vt } = validationMdape;
  let scale = { linear: 1, tree: 1 };
  if (calibrate) {
    const net = samples.map((s, i) => (s.source === SWEEP_SOURCE ? -1 : i)).filter((i) => i >= 0);
    const ids = net.length > 0 ? net : samples.map((_, i) => i);
    const y = ids.reduce((a, i) => a + d.y[i]!, 0);
    const pl = ids.reduce((a, i) => a + evalLinear(both.linear, d.X[i]!), 0);
    const pt = ids.reduce((a, i) => a + evalTree(both.tree, d.X[i]!, d.S[i]!), 0);
    const c = (v: number) => (v > 0 && y > 0 ? Math.min(2, Math.max(0.5, y / v)) : 1);
    scale = { linear: c(pl), tree: c(pt) };
  }
  return {
    ops: [...new Set(samples.map((s) => s.op))].sort(),
    samples: samples.length,
    chosen: vl !== null && vt !== null && vt < vl ? 'tree' : 'linear',
    linear: both.linear,
    tree: both.tree,
    validationMdape,
    scale,
  };
}

/** The source name of sweep samples (LayerSample.source). */
export const SWEEP_SOURCE = 'sweep';

/** Trains predictors for every layer type in the samples, plus the global fallback. */
export function trainPredictors(samples: readonly LayerSample[], opts: TrainOptions = {}): Predictors {
  if (samples.length === 0) throw new RangeError('trainPredictors needs at least one sample');
  const groups = { ...(opts.groups ?? LAYER_TYPES) };
  const lin = { ...DEFAULT_LINEAR_FIT, ...opts.linear };
  const tree = { ...DEFAULT_TREE_FIT, ...opts.tree };
  const folds = opts.folds ?? 5;
  const seed = opts.seed ?? 1;
  const sourceWeights = { ...opts.sourceWeights };
  const byType = new Map<string, LayerSample[]>();
  for (const s of samples) {
    const t = layerType(s.op, groups);
    // Ops the grouping lacks become their own type, and are recorded so prediction maps them the same way.
    groups[s.op] = t;
    let list = byType.get(t);
    if (!list) {
      list = [];
      byType.set(t, list);
    }
    list.push(s);
  }
  const calibrate = opts.calibrate !== false;
  const types: Record<string, TypePredictor> = {};
  for (const [t, list] of [...byType].sort(([a], [b]) => a.localeCompare(b))) {
    types[t] = trainType(list, lin, tree, folds, seed, sourceWeights, calibrate);
  }
  const sources = new Map<string, number>();
  for (const s of samples) sources.set(s.source ?? 'unknown', (sources.get(s.source ?? 'unknown') ?? 0) + 1);
  return {
    version: PREDICTORS_VERSION,
    host: opts.host ?? null,
    referenceMs: opts.referenceMs ?? null,
    trainedOn: [...sources].map(([source, n]) => ({ source, samples: n })),
    groups,
    options: { linear: lin, tree, folds, seed, sourceWeights, calibrate },
    types,
    global: trainType(samples, lin, tree, folds, seed, sourceWeights, calibrate),
    createdAt: new Date().toISOString(),
  };
}

/** Which model predicts a layer: the type's chosen one, or either one explicitly. */
export type Method = 'chosen' | 'linear' | 'tree';

/** The type predictor for an op: its type's, or the global fallback when training never saw that type. */
export function predictorFor(
  p: Predictors,
  op: string,
): { type: string; predictor: TypePredictor; fallback: boolean } {
  const type = layerType(op, p.groups);
  const t = p.types[type];
  return t ? { type, predictor: t, fallback: false } : { type, predictor: p.global, fallback: true };
}

/** Predicted latency (ms) of one layer: finite and >= 0. */
export function predictLayer(
  p: Predictors,
  features: LayerFeatures,
  op: string,
  method: Method = 'chosen',
): number {
  const { predictor } = predictorFor(p, op);
  const which = method === 'chosen' ? predictor.chosen : method;
  const x = featureVector(features);
  const v =
    which === 'tree' ? evalTree(predictor.tree, x, splitVector(features)) : evalLinear(predictor.linear, x);
  return v * predictor.scale[which];
}

/** Predicted per-layer latencies (ms, in topological order) of a model, and their sum. */
export function predictProfile(
  p: Predictors,
  handle: Pick<ModelHandle, 'costs' | 'analysis'>,
  method: Method = 'chosen',
): { layers: number[]; total: number } {
  const layers = handle.costs.map((c, i) =>
    predictLayer(p, featuresOf(c), handle.analysis.nodes[i]!.op, method),
  );
  return { layers, total: layers.reduce((s, v) => s + v, 0) };
}

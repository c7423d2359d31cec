/**
 * Weighted ridge least squares and the linear latency model built on it: Neurosurgeon's per-type regression, and
 * the leaves of the FastDeepIoT tree (tree.ts).
 *
 * A model lives in one of two spaces:
 * - `time`: ms = b0 + sum b_i x_i, fitted by weighted least squares with weights 1 / max(y, eps)^p. p = 2 minimises
 *   the squared relative error (a 0.01 ms layer counts as much as a 10 ms one), p = 0 the absolute error.
 * - `log`: ln(ms) = b0 + sum b_i ln(x_i / s_i + 0.001), a power law fitted by ordinary least squares on the logs, so
 *   residuals are relative by construction and predictions are positive.
 * Columns are scaled to unit maximum before solving and a small ridge term (lambda times the mean diagonal of the
 * scaled normal matrix) keeps the system regular when a feature is constant or zero (zero-cost layers: every
 * FLOPs and parameter byte is 0), so no fit is singular. Predictions are clamped at >= 0 and are always finite.
 */
import type { FeatureName } from './features.ts';
import { FEATURE_NAMES } from './features.ts';

/** Smallest time (ms) a weight or a log is taken of: onnxruntime's profiler resolution, 1 us. */
export const TIME_EPS = 1e-3;

/** How a linear model is fitted. */
export interface LinearFitOptions {
  space: 'time' | 'log';
  /** Exponent p of the weights 1 / y^p in `time` space (ignored in `log` space). */
  weightPower: number;
  /** Relative ridge strength. */
  ridge: number;
}

export const DEFAULT_LINEAR_FIT: LinearFitOptions = { space: 'time', weightPower: 2, ridge: 1e-4 };

/** A fitted linear model (JSON-serialisable). */
export interface LinearModel {
  space: 'time' | 'log';
  features: FeatureName[];
  intercept: number;
  /** One coefficient per feature, in the features' own units (ms per FLOP, ... in `time` space). */
  coef: number[];
  /** `log` space only: the s_i of ln(x_i / s_i + 0.001). */
  scale?: number[];
}

/**
 * Solves (A + diag(ridge)) x = b for a symmetric positive semi-definite A by Gaussian elimination with partial
 * pivoting; null when the system is singular anyway or the result is not finite.
 */
export function solve(A: number[][], b: number[]): number[] | null {
  const n = b.length;
  const M = A.map((row, i) => [...row, b[i]!]);
  for (let col = 0; col < n; col++) {
    let piv = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(M[r]![col]!) > Math.abs(M[piv]![col]!)) piv = r;
    if (!(Math.abs(M[piv]![col]!) > 1e-300)) return null;
    [M[col], M[piv]] = [M[piv]!, M[col]!];
    const p = M[col]!;
    for (let r = col + 1; r < n; r++) {
      const row = M[r]!;
      const f = row[col]! / p[col]!;
      if (f === 0) continue;
      for (let c = col; c <= n; c++) row[c]! -= f * p[c]!;
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    const row = M[r]!;
    let s = row[n]!;
    for (let c = r + 1; c < n; c++) s -= row[c]! * x[c]!;
    x[r] = s / row[r]!;
  }
  return x.every(Number.isFinite) ? x : null;
}

/**
 * Weighted ridge regression with an unpenalised intercept: minimises sum w_i (y_i - b0 - x_i.b)^2 + penalty.
 * Returns [b0, b...] in the columns' own units. Never throws: a degenerate system falls back to the weighted mean.
 */
export function ridgeFit(
  X: readonly number[][],
  y: readonly number[],
  w: readonly number[],
  ridge: number,
): number[] {
  const p = X[0]?.length ?? 0;
  const wsum = w.reduce((s, v) => s + v, 0);
  const mean = wsum > 0 ? y.reduce((s, v, i) => s + w[i]! * v, 0) / wsum : 0;
  const fallback = [Number.isFinite(mean) ? mean : 0, ...new Array<number>(p).fill(0)];
  if (X.length === 0 || !(wsum > 0)) return fallback;
  const scale = new Array<number>(p).fill(0);
  for (const row of X) for (let j = 0; j < p; j++) scale[j] = Math.max(scale[j]!, Math.abs(row[j]!));
  for (let j = 0; j < p; j++) if (!(scale[j]! > 0)) scale[j] = 1;
  const d = p + 1;
  const A = Array.from({ length: d }, () => new Array<number>(d).fill(0));
  const b = new Array<number>(d).fill(0);
  const z = new Array<number>(d);
  X.forEach((row, i) => {
    z[0] = 1;
    for (let j = 0; j < p; j++) z[j + 1] = row[j]! / scale[j]!;
    const wi = w[i]!;
    for (let r = 0; r < d; r++) {
      const wr = wi * z[r]!;
      b[r]! += wr * y[i]!;
      for (let c = r; c < d; c++) A[r]![c]! += wr * z[c]!;
    }
  });
  for (let r = 0; r < d; r++) for (let c = 0; c < r; c++) A[r]![c] = A[c]![r]!;
  let diag = 0;
  for (let j = 1; j < d; j++) diag += A[j]![j]!;
  const lambda = ridge * (p > 0 ? diag / p : 0) + 1e-12 * wsum;
  for (let j = 1; j < d; j++) A[j]![j]! += lambda;
  A[0]![0]! += 1e-12 * wsum;
  const sol = solve(A, b);
  if (!sol) return fallback;
  return [sol[0]!, ...sol.slice(1).map((v, j) => v / scale[j]!)];
}

// The offset keeps zero features (zero-cost layers) finite: ln(0.001) = -6.9.
const logTerm = (x: number, s: number) => Math.log(Math.max(x, 0) / s + 1e-3);

/** Picks the named features out of a full feature vector ([flops, inputBytes, outputBytes, paramBytes]). */
export function select(x: readonly number[], features: readonly FeatureName[]): number[] {
  return features.map((f) => x[FEATURE_NAMES.indexOf(f)]!);
}

/** Fits a linear model on full feature vectors `X` and times `y` (ms). */
export function fitLinear(
  X: readonly number[][],
  y: readonly number[],
  features: readonly FeatureName[],
  opts: LinearFitOptions = DEFAULT_LINEAR_FIT,
  /** Per-sample weights (default 1), multiplied into the fitting weights. */
  sampleWeights?: readonly number[],
): LinearModel {
  const sw = (i: number) => sampleWeights?.[i] ?? 1;
  const cols = X.map((x) => select(x, features));
  if (opts.space === 'log') {
    // s_i: the median of the nonzero values, so a typical layer's term is ~0.
    const scale = features.map((_, j) => {
      const nz = cols
        .map((r) => r[j]!)
        .filter((v) => v > 0)
        .sort((a, b) => a - b);
      return nz.length ? nz[Math.floor(nz.length / 2)]! : 1;
    });
    const Z = cols.map((r) => r.map((v, j) => logTerm(v, scale[j]!)));
    const ly = y.map((v) => Math.log(Math.max(v, TIME_EPS)));
    const sol = ridgeFit(
      Z,
      ly,
      y.map((_, i) => sw(i)),
      opts.ridge,
    );
    return { space: 'log', features: [...features], intercept: sol[0]!, coef: sol.slice(1), scale };
  }
  const w = y.map((v, i) => sw(i) / Math.max(v, TIME_EPS) ** opts.weightPower);
  const sol = ridgeFit(cols, y, w, opts.ridge);
  return { space: 'time', features: [...features], intercept: sol[0]!, coef: sol.slice(1) };
}

/** Predicted ms of a linear model for a full feature vector: finite and >= 0. */
export function evalLinear(m: LinearModel, x: readonly number[]): number {
  const v = select(x, m.features);
  let s = m.intercept;
  if (m.space === 'log') {
    for (let j = 0; j < v.length; j++) s += m.coef[j]! * logTerm(v[j]!, m.scale?.[j] ?? 1);
    // exp of a finite number below 700 is finite; a model never legitimately predicts e^50 ms.
    const t = Math.exp(Math.min(s, 50));
    return Number.isFinite(t) ? t : 0;
  }
  for (let j = 0; j < v.length; j++) s += m.coef[j]! * v[j]!;
  return Number.isFinite(s) && s > 0 ? s : 0;
}

/** The fitting objective of a model on samples (weighted squared error in its space): what a tree split minimises. */
export function linearLoss(
  m: LinearModel,
  X: readonly number[][],
  y: readonly number[],
  opts: LinearFitOptions,
  sampleWeights?: readonly number[],
): number {
  let loss = 0;
  X.forEach((x, i) => {
    const p = evalLinear(m, x);
    const w = sampleWeights?.[i] ?? 1;
    if (m.space === 'log') {
      const r = Math.log(Math.max(p, TIME_EPS)) - Math.log(Math.max(y[i]!, TIME_EPS));
      loss += w * r * r;
    } else {
      const r = p - y[i]!;
      loss += (w * r * r) / Math.max(y[i]!, TIME_EPS) ** opts.weightPower;
    }
  });
  return loss;
}

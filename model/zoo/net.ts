// Shared machinery of the model zoo: a GraphBuilder plus a running estimate of every tensor's
// mean and mean square, so BatchNormalization layers get running variances that really
// normalise their input. Without it, random-weight residual nets (ResNet-50, MobileNetV2)
// double their activation variance at every residual Add and end with a one-hot softmax.
//
// Estimates assume Kaiming-uniform weights (Var w = 2 / fan_in, so a conv doubles the mean
// square of its input, less the share of taps that fall on zero padding, and is zero-mean)
// and Gaussian pre-activations (ReLU by the rectified-Gaussian formulas, which matter after a
// residual Add of a positive identity). They only need to be right within a small factor and
// must not drift: measured on a seeded input, actual/estimated mean square stays within
// 0.25..2.6 at every BN input of Inception-v3, MobileNetV2 and ResNet-50. Plain nets
// (SqueezeNet, AlexNet) have no BN, so their estimates are unused.

import type { Pair, Value, WindowOptions } from '../builder.ts';
import { GraphBuilder } from '../builder.ts';
import { avgPool, batchNorm, relu6 } from '../builder-ops.ts';
import type { OnnxModel } from '../onnx.ts';

/** ImageNet preprocessing (torchvision's mean/std on RGB in [0, 1]) for a square input `size`. */
export function imagenetPreprocess(size: number) {
  return {
    layout: 'NCHW',
    channels: 'RGB',
    size: [size, size],
    mean: [0.485, 0.456, 0.406],
    std: [0.229, 0.224, 0.225],
    scale: 1 / 255,
  };
}

const pair = (p: Pair | undefined, def: number): [number, number] =>
  p === undefined ? [def, def] : typeof p === 'number' ? [p, p] : p;

// Share of a window's taps that land inside the input (not on zero padding), averaged over outputs.
function insideShare(size: number, k: number, s: number, p: number, out: number): number {
  let inside = 0;
  for (let o = 0; o < out; o++)
    for (let i = 0; i < k; i++) {
      const at = o * s - p + i;
      if (at >= 0 && at < size) inside++;
    }
  return inside / (out * k);
}

/** Estimated element statistics of a tensor: mean and mean square (so variance = ms - mean^2). */
export interface Moments {
  mean: number;
  ms: number;
}

// Standard normal density and distribution (Abramowitz-Stegun 7.1.26 erf, |error| < 1.5e-7).
const phi = (t: number) => Math.exp((-t * t) / 2) / Math.sqrt(2 * Math.PI);
function Phi(t: number): number {
  const z = Math.abs(t) / Math.SQRT2;
  const k = 1 / (1 + 0.3275911 * z);
  const poly =
    k * (0.254829592 + k * (-0.284496736 + k * (1.421413741 + k * (-1.453152027 + k * 1.061405429))));
  const erf = 1 - poly * Math.exp(-z * z);
  return t >= 0 ? (1 + erf) / 2 : (1 - erf) / 2;
}

// Inverse of Phi (Acklam's rational approximation, relative error < 1.2e-9).
function probit(p: number): number {
  const a = [
    -39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716,
    2.506628277459239,
  ];
  const b = [
    -54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572,
  ];
  const c = [
    -0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968,
    2.938163982698783,
  ];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const poly = (k: number[], x: number) => k.reduce((s, v) => s * x + v, 0);
  if (p < 0.02425) {
    const q = Math.sqrt(-2 * Math.log(p));
    return poly(c, q) / (poly(d, q) * q + 1);
  }
  if (p > 1 - 0.02425) return -probit(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return (poly(a, r) * q) / (poly(b, r) * r + 1);
}

// Moments of relu(y) for y ~ N(mean, var): the rectified-Gaussian formulas.
function reluMoments({ mean, ms }: Moments): Moments {
  const sd = Math.sqrt(Math.max(ms - mean * mean, 1e-12));
  const t = mean / sd;
  return {
    mean: mean * Phi(t) + sd * phi(t),
    ms: ms * Phi(t) + mean * sd * phi(t),
  };
}

/** A GraphBuilder that tracks estimated activation statistics; the zoo's architectures are written on it. */
export class Net {
  readonly b: GraphBuilder;
  /** Estimated moments of every tensor built so far, by name. */
  readonly estimates = new Map<string, Moments>();

  constructor(name: string, seed: number) {
    this.b = new GraphBuilder({ name, opset: 13, seed });
  }

  /** Estimated moments of a tensor built here. */
  estimate(v: Value): Moments {
    return this.estimates.get(v.name) ?? { mean: 0, ms: 1 };
  }

  private track(v: Value, m: Moments): Value {
    this.estimates.set(v.name, m);
    return v;
  }

  private same(x: Value, y: Value): Value {
    return this.track(y, this.estimate(x));
  }

  /** The image input (ImageNet-normalised pixels: mean ~0, mean square ~1). */
  input(name: string, shape: number[]): Value {
    return this.track(this.b.input(name, shape), { mean: 0, ms: 1 });
  }

  /**
   * Conv2d (PyTorch layout and init); `bias: false` as before a BatchNorm. Symmetric random
   * weights make the output zero-mean overall (per-channel offsets count as variance).
   */
  conv(x: Value, out: number, o: WindowOptions & { group?: number; bias?: boolean }): Value {
    const y = this.b.conv(x, out, o);
    const [kh, kw] = pair(o.kernel, 1);
    const [sh, sw] = pair(o.stride, 1);
    const [ph, pw] = pair(o.pad, 0);
    const share =
      insideShare(x.shape[2]!, kh, sh, ph, y.shape[2]!) * insideShare(x.shape[3]!, kw, sw, pw, y.shape[3]!);
    const fanIn = (x.shape[1]! / (o.group ?? 1)) * kh * kw;
    const bias = o.bias === false ? 0 : 1 / (3 * fanIn);
    return this.track(y, { mean: 0, ms: 2 * share * this.estimate(x).ms + bias });
  }

  /** BatchNorm whose running variance is drawn around the estimated input mean square. */
  bn(x: Value, name: string, eps = 1e-5): Value {
    const y = batchNorm(this.b, x, { name, eps, inputVar: this.estimate(x).ms });
    return this.track(y, { mean: 0, ms: 1 });
  }

  relu(x: Value, name: string): Value {
    return this.track(this.b.relu(x, name), reluMoments(this.estimate(x)));
  }

  /** ReLU6 as Clip(0, 6) (the cap rarely bites at unit scale, so estimated as a ReLU). */
  relu6(x: Value, name: string): Value {
    return this.track(relu6(this.b, x, name), reluMoments(this.estimate(x)));
  }

  /** MaxPool, estimated as the maximum of k*k independent Gaussians. */
  maxpool(x: Value, o: WindowOptions & { ceil?: boolean }): Value {
    const [kh, kw] = pair(o.kernel, 1);
    const n = kh * kw;
    const { mean, ms } = this.estimate(x);
    const sd = Math.sqrt(Math.max(ms - mean * mean, 0));
    // Blom's approximation of the expected maximum of n standard normals; spread shrinks to ~0.45.
    const top = n > 1 ? -probit(0.625 / (n + 0.25)) : 0;
    const m = mean + sd * top;
    const v = sd * sd * (n > 1 ? 0.45 : 1);
    return this.track(this.b.maxpool(x, o), { mean: m, ms: m * m + v });
  }

  /** AveragePool with PyTorch's count_include_pad. */
  avgpool(x: Value, o: WindowOptions): Value {
    const [kh, kw] = pair(o.kernel, 1);
    const y = avgPool(this.b, x, { ...o, countIncludePad: true });
    if (kh * kw === 1) return this.same(x, y);
    const [sh, sw] = pair(o.stride, 1);
    const [ph, pw] = pair(o.pad, 0);
    const share =
      insideShare(x.shape[2]!, kh, sh, ph, y.shape[2]!) * insideShare(x.shape[3]!, kw, sw, pw, y.shape[3]!);
    const { mean, ms } = this.estimate(x);
    const m = mean * share;
    return this.track(y, { mean: m, ms: m * m + (ms - mean * mean) * 0.4 * share });
  }

  concat(xs: Value[], name: string): Value {
    const y = this.b.concat(xs, 1, name);
    const c = y.shape[1]!;
    const w = (f: (m: Moments) => number) =>
      xs.reduce((s, v) => s + f(this.estimate(v)) * v.shape[1]!, 0) / c;
    return this.track(y, { mean: w((m) => m.mean), ms: w((m) => m.ms) });
  }

  add(a: Value, b: Value, name: string): Value {
    const [ea, eb] = [this.estimate(a), this.estimate(b)];
    const y = this.b.add(a, b, name);
    return this.track(y, { mean: ea.mean + eb.mean, ms: ea.ms + eb.ms + 2 * ea.mean * eb.mean });
  }

  /** GlobalAveragePool: [N, C, H, W] -> [N, C, 1, 1] (PyTorch's AdaptiveAvgPool2d(1)). */
  gap(x: Value, name: string): Value {
    const { mean, ms } = this.estimate(x);
    return this.track(this.b.gap(x, name), { mean, ms: mean * mean + (ms - mean * mean) * 0.3 });
  }

  flatten(x: Value, name: string): Value {
    return this.same(x, this.b.flatten(x, name));
  }

  dropout(x: Value, name: string): Value {
    return this.same(x, this.b.dropout(x, name));
  }

  /** Linear layer (Gemm with transB). */
  linear(x: Value, out: number, name: string): Value {
    const y = this.b.gemm(x, out, name);
    return this.track(y, { mean: 0, ms: 2 * this.estimate(x).ms + 1 / (3 * x.shape[1]!) });
  }

  /** Adds Softmax `probs`, marks it the output, stamps the zoo metadata; returns the model. */
  finish(logits: Value, zoo: string, seed: number, size: number): OnnxModel {
    this.b.output(this.b.softmax(logits, 'probs'));
    this.b.metadata('edgecut.model', zoo);
    this.b.metadata('edgecut.zoo', zoo);
    this.b.metadata('edgecut.seed', String(seed));
    this.b.metadata('edgecut.preprocess', JSON.stringify(imagenetPreprocess(size)));
    return this.b.build();
  }
}

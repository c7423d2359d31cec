/**
 * Online fit of the link model from the uplink samples a device reports: (bytes, seconds) pairs, where seconds is the
 * time from when a QoS 1 PUBLISH could start on the link to its PUBACK (services/edge-head/uplink.ts). The fit is
 * robust (Theil-Sen: the median of pairwise slopes, each weighted by how far apart the pair's sizes are, and the
 * median intercept), so a few transfers delayed by a busy broker or a retransmission do not move it; it runs over
 * a sliding window so it follows a changing link.
 *
 * What it finds: T(D) = setup + b * D. With the paper's per-packet alpha and per-byte beta,
 * alpha * ceil(D / M) + beta * D = alpha * D / M + beta * D + (rounding), so the per-packet cost is folded into
 * the slope: beta' = b - alpha / M. When every sample has about the same size, the slope cannot be separated from
 * the intercept; the configured set-up is kept and only the per-byte cost is fitted.
 */

import { type LinkModel, transferMs } from './link.ts';
import { median } from './stats.ts';

/** One measured transfer. */
export interface TransferSample {
  bytes: number;
  seconds: number;
}

/** A fitted link, with what the fit rests on. */
export interface FittedLink {
  link: LinkModel;
  /** Estimated bandwidth, bits per second. */
  bandwidthBps: number;
  samples: number;
  /** `fitted` from samples, or `configured` (no samples yet). */
  source: 'fitted' | 'configured';
  /** A lower bound (a PUBLISH still waiting for its PUBACK) raised the per-byte cost above the fit's. */
  bounded?: string;
  /** The last change of the link the estimator detected, in words (it restarted its window then). */
  change?: string;
  /**
   * The samples pin the per-byte cost down: at least two, sizes at least {@link DETERMINED_SPREAD}x apart, the
   * largest taking at least {@link SIGNIFICANT_MS}. (A few small messages right after a change do not.)
   */
  determined?: boolean;
}

/** Sizes this far apart (largest / smallest) separate the per-byte cost from the set-up. */
export const DETERMINED_SPREAD = 4;

/** Robust fit of a window of samples; the configured link is the prior for what the samples cannot tell. */
export function fitLink(samples: readonly TransferSample[], configured: LinkModel): FittedLink {
  const pts = samples
    .filter((s) => s.bytes > 0 && Number.isFinite(s.seconds) && s.seconds >= 0)
    .map((s) => ({ d: s.bytes, t: s.seconds * 1000 }));
  if (pts.length === 0) {
    return {
      link: configured,
      bandwidthBps: bps(configured.betaMsPerByte),
      samples: 0,
      source: 'configured',
    };
  }
  const sizes = pts.map((p) => p.d);
  const spread = Math.max(...sizes) / Math.min(...sizes);
  let setup: number;
  let slope: number;
  if (pts.length >= 3 && spread >= 1.5) {
    // Each pair's slope weighs by how far apart its sizes are: two small messages of nearly the same size say
    // almost nothing about the per-byte cost (their difference is all timing noise), a small and a large one a lot.
    const slopes: Array<{ v: number; w: number }> = [];
    for (let i = 0; i < pts.length; i++) {
      for (let j = i + 1; j < pts.length; j++) {
        const a = pts[i]!;
        const b = pts[j]!;
        if (a.d !== b.d) slopes.push({ v: (b.t - a.t) / (b.d - a.d), w: Math.abs(b.d - a.d) });
      }
    }
    slope = Math.max(0, weightedMedian(slopes));
    setup = Math.max(0, median(pts.map((p) => p.t - slope * p.d)));
  } else {
    setup = configured.setupMs ?? 0;
    slope = Math.max(0, median(pts.map((p) => (p.t - setup) / p.d)));
  }
  // The per-packet alpha stays as configured; the rest of the slope is per byte.
  const beta = Math.max(0, slope - configured.alphaMs / configured.mtu);
  const link: LinkModel = {
    setupMs: setup,
    alphaMs: configured.alphaMs,
    mtu: configured.mtu,
    betaMsPerByte: beta,
  };
  return { link, bandwidthBps: bps(beta), samples: pts.length, source: 'fitted' };
}

function weightedMedian(xs: Array<{ v: number; w: number }>): number {
  xs.sort((a, b) => a.v - b.v);
  const total = xs.reduce((s, x) => s + x.w, 0);
  let acc = 0;
  for (const x of xs) {
    acc += x.w;
    if (acc >= total / 2) return x.v;
  }
  return xs[xs.length - 1]?.v ?? 0;
}

function bps(betaMsPerByte: number): number {
  return betaMsPerByte > 0 ? 8000 / betaMsPerByte : Number.POSITIVE_INFINITY;
}

/** A sliding window of the most recent samples. */
export class SampleWindow {
  private readonly items: TransferSample[] = [];

  constructor(private readonly size = 64) {}

  /** Adds samples, dropping the oldest beyond the window. */
  push(...samples: TransferSample[]): void {
    this.items.push(...samples);
    if (this.items.length > this.size) this.items.splice(0, this.items.length - this.size);
  }

  /** The samples in the window, oldest first. */
  get samples(): readonly TransferSample[] {
    return this.items;
  }
}

/** Evidence from one device telemetry message. */
export interface LinkEvidence {
  samples: readonly TransferSample[];
  /** Lower bounds: transfers still unfinished after this long. */
  censored?: readonly TransferSample[];
}

/** Change detection: this many significant samples in a row off the fit by more than {@link CHANGE_RATIO}. */
export const CHANGE_STREAK = 3;
/** Change detection: a sample is off the fit when measured / predicted exceeds this, or is below its inverse. */
export const CHANGE_RATIO = 1.5;
/** Change detection: two samples in a row off by more than this factor are enough (a link that changed by far). */
export const STRONG_RATIO = 4;
/** Change detection: one sample off by more than this factor, lasting at least {@link EXTREME_MS}, is enough. */
export const EXTREME_RATIO = 10;
/** See {@link EXTREME_RATIO} (ms). */
export const EXTREME_MS = 250;
/** Samples whose predicted and measured times are both below this (ms) are too short to judge a change by. */
export const SIGNIFICANT_MS = 20;

/**
 * The planner's knowledge of one device's uplink: a sliding window of samples fitted robustly ({@link fitLink}), a
 * change detector, and lower bounds.
 *
 * - Change: a link that changes (a robot that drives away from its access point) would take the robust fit half a
 *   window to follow. When {@link CHANGE_STREAK} significant samples in a row are off the fit by more than
 *   {@link CHANGE_RATIO} in the same direction, the window restarts from them, so the fit follows within three
 *   transfers (two when both are off by more than {@link STRONG_RATIO}, one when it is off by more than
 *   {@link EXTREME_RATIO} and lasted a quarter of a second or more: a link that changed by far), while single
 *   outliers (a retransmission, a busy broker) still move nothing. The window restarts after the first off sample,
 *   which was likely under way when the link changed.
 * - Lower bounds: a PUBLISH waiting for its PUBACK longer than the fit predicts is evidence, though unfinished: the
 *   fit's per-byte cost is raised until it predicts at least that wait. It does not count toward a change (the
 *   bound still grows); the PUBACK, when it comes, does.
 * - No prior: without samples and without a configured link there is no fit at all (undefined), and the planner
 *   says so rather than assume a fast link.
 */
export class LinkEstimator {
  private window: TransferSample[] = [];
  private fit: FittedLink | undefined;
  /** Off-fit samples in a row: positive slower than the fit, negative faster; with the samples. */
  private streak: { dir: number; from: number; ratios: number[] } = { dir: 0, from: 0, ratios: [] };
  private change: string | undefined;
  private prior: LinkModel | undefined;
  /** The transfer under way when the link became slower: a lower bound until the fit is determined again. */
  private straddler: TransferSample | undefined;
  private determined = false;

  constructor(
    private readonly size: number,
    /** Alpha and MTU of the link model, and optionally a configured link to assume until samples exist. */
    private readonly base: Pick<LinkModel, 'alphaMs' | 'mtu'>,
    private readonly configured?: LinkModel,
  ) {
    if (configured) this.fit = fitLink([], configured);
  }

  /** The current fit, or undefined when nothing is known. */
  get current(): FittedLink | undefined {
    return this.fit;
  }

  /** Takes one telemetry message's evidence; returns the fit. */
  update(e: LinkEvidence): FittedLink | undefined {
    for (const s of e.samples) this.add(s);
    let fit = this.refit();
    if (this.determined) this.straddler = undefined;
    // With nothing left after a change, the old fit stands in (raised by the bounds) until samples come.
    if (!fit && this.prior)
      fit = { link: this.prior, bandwidthBps: bps(this.prior.betaMsPerByte), samples: 0, source: 'fitted' };
    const bounds = this.straddler ? [...(e.censored ?? []), this.straddler] : (e.censored ?? []);
    for (const c of bounds) {
      if (!fit) break;
      const predicted = transferMs(fit.link, c.bytes);
      const waited = c.seconds * 1000;
      if (waited <= predicted) continue;
      // The per-byte cost that makes the fit predict at least the wait (alpha and set-up unchanged).
      const rest = waited - (fit.link.setupMs ?? 0) - fit.link.alphaMs * Math.ceil(c.bytes / fit.link.mtu);
      const beta = Math.max(fit.link.betaMsPerByte, rest / c.bytes);
      fit = {
        ...fit,
        link: { ...fit.link, betaMsPerByte: beta },
        bandwidthBps: bps(beta),
        bounded: `a message of ${c.bytes} bytes has waited ${waited.toFixed(0)} ms for its PUBACK (the fit predicted ${predicted.toFixed(0)} ms)`,
      };
    }
    if (fit && this.change) fit = { ...fit, change: this.change };
    if (fit?.source === 'fitted') fit = { ...fit, determined: this.determined };
    return fit;
  }

  private add(s: TransferSample): void {
    if (!(s.bytes > 0) || !Number.isFinite(s.seconds) || s.seconds < 0) return;
    const fit = this.fit?.source === 'fitted' ? this.fit : undefined;
    this.window.push(s);
    if (fit) {
      const predicted = transferMs(fit.link, s.bytes);
      const measured = s.seconds * 1000;
      if (Math.max(predicted, measured) >= SIGNIFICANT_MS)
        this.judge(measured / Math.max(predicted, 1e-9), measured, predicted);
    }
    if (this.window.length > this.size) {
      const dropped = this.window.length - this.size;
      this.window.splice(0, dropped);
      this.streak.from = Math.max(0, this.streak.from - dropped);
    }
  }

  /** Counts one significant sample toward a change; restarts the window when the streak is complete. */
  private judge(ratio: number, measured: number, predicted: number): void {
    const dir = ratio > CHANGE_RATIO ? 1 : ratio < 1 / CHANGE_RATIO ? -1 : 0;
    if (dir === 0 || dir !== this.streak.dir) {
      // The streak starts at this sample, the window's last.
      this.streak = { dir, from: this.window.length - 1, ratios: [] };
      if (dir === 0) return;
    }
    this.streak.ratios.push(ratio);
    const beyond = (f: number) => this.streak.ratios.every((r) => r > f || r < 1 / f);
    const extreme = beyond(EXTREME_RATIO) && Math.max(measured, predicted) >= EXTREME_MS;
    const needed = extreme ? 1 : beyond(STRONG_RATIO) ? 2 : CHANGE_STREAK;
    if (this.streak.ratios.length < needed) return;
    const r = median(this.streak.ratios);
    this.change =
      `the uplink became ${dir > 0 ? 'slower' : 'faster'}: ${this.streak.ratios.length} transfers in a row took ` +
      `${r.toFixed(2)}x the fitted time (last ${measured.toFixed(0)} ms vs ${predicted.toFixed(0)} ms predicted)`;
    // The window restarts after the first off sample: that transfer was likely under way when the link changed, so
    // it is part old link, part new. It shows the change but measures neither; for a slower link it is still a lower
    // bound, kept until the samples after it pin the link down.
    const first = this.window[this.streak.from];
    this.straddler = dir > 0 ? first : undefined;
    this.window = this.window.slice(this.streak.from + 1);
    // The old fit is kept only as the prior of what the new samples cannot tell (the set-up, for equal sizes).
    this.prior = this.fit?.link;
    this.fit = undefined;
    // Nothing pins the new link down yet (the old window's verdict does not carry over).
    this.determined = false;
    this.streak = { dir: 0, from: 0, ratios: [] };
  }

  private refit(): FittedLink | undefined {
    if (this.window.length === 0) return this.fit;
    this.determined = determined(this.window);
    const prior: LinkModel = this.fit?.link ??
      this.prior ??
      this.configured ?? { setupMs: 0, alphaMs: this.base.alphaMs, mtu: this.base.mtu, betaMsPerByte: 0 };
    this.fit = fitLink(this.window, { ...prior, alphaMs: this.base.alphaMs, mtu: this.base.mtu });
    return this.fit;
  }
}

function determined(window: readonly TransferSample[]): boolean {
  if (window.length < 2) return false;
  let small = Number.POSITIVE_INFINITY;
  let large = window[0]!;
  for (const w of window) {
    small = Math.min(small, w.bytes);
    if (w.bytes > large.bytes) large = w;
  }
  return large.bytes >= DETERMINED_SPREAD * small && large.seconds * 1000 >= SIGNIFICANT_MS;
}

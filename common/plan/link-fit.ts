/**
 * Online fit of the link model from the transfers a device reports: (bytes, seconds) pairs, where seconds is the
 * round trip minus the tail's own time. The fit is robust (Theil-Sen: the median of pairwise slopes, and the
 * median intercept), so a few transfers delayed by a busy broker or a retransmission do not move it; it runs over
 * a sliding window so it follows a changing link.
 *
 * What it finds: T(D) = setup + b * D. With the paper's per-packet alpha and per-byte beta,
 * alpha * ceil(D / M) + beta * D = alpha * D / M + beta * D + (rounding), so the per-packet cost is folded into
 * the slope: beta' = b - alpha / M. When every sample has about the same size, the slope cannot be separated from
 * the intercept; the configured set-up is kept and only the per-byte cost is fitted.
 */
import { median } from '../stats.ts';
import type { LinkModel } from './link.ts';

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
}

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
    const slopes: number[] = [];
    for (let i = 0; i < pts.length; i++) {
      for (let j = i + 1; j < pts.length; j++) {
        const a = pts[i]!;
        const b = pts[j]!;
        if (a.d !== b.d) slopes.push((b.t - a.t) / (b.d - a.d));
      }
    }
    slope = Math.max(0, median(slopes));
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

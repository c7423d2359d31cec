/**
 * Small statistics helpers (medians and percentiles over samples).
 */

/** The q-quantile (0..1) of the samples by linear interpolation; NaN for no samples. */
export function quantile(samples: readonly number[], q: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

/** The median of the samples; NaN for no samples. */
export function median(samples: readonly number[]): number {
  return quantile(samples, 0.5);
}

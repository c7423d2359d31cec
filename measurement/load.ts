/**
 * Load scaling of edge latency (paper Fig. 17): when the device is busy, each layer takes longer in proportion to
 * the run queue per core. The factor is the 1-minute load average per core when it exceeds 1, else 1.
 */

/** max(1, loadavg1 / cores): the factor edge latency is multiplied by. */
export function loadFactor(loadavg1: number, cores: number): number {
  if (!(cores >= 1) || !Number.isFinite(loadavg1) || loadavg1 < 0) {
    throw new RangeError(`load factor needs loadavg1 >= 0 and cores >= 1, got ${loadavg1} and ${cores}`);
  }
  return Math.max(1, loadavg1 / cores);
}

/** Per-layer edge latencies scaled by the load factor. */
export function scaleByLoad(layerMs: readonly number[], factor: number): number[] {
  return layerMs.map((ms) => ms * factor);
}

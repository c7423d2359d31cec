// Seeded pseudo-random numbers, so built models and test inputs are reproducible bit for bit
// on every machine (Math.random cannot be seeded).

/** mulberry32: a tiny 32-bit-state PRNG; returns a function giving floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `count` float32 values uniform in [lo, hi) from `seed` (deterministic). */
export function seededUniform(count: number, seed: number, lo = 0, hi = 1): Float32Array {
  const next = mulberry32(seed);
  const out = new Float32Array(count);
  const span = hi - lo;
  for (let i = 0; i < count; i++) out[i] = lo + span * next();
  return out;
}

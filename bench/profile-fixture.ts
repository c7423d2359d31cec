/**
 * A profile made from a model's static costs (FLOPs at a given GFLOPs), for benchmarks that need realistic
 * per-layer numbers without measuring them.
 */
import type { ModelHandle } from '../model/handle.ts';
import { predictedLayers } from '../planning/preset-profile.ts';
import type { Profile } from '../schemas/profile.ts';

/** Per-layer ms = FLOPs / gflops, plus a small fixed cost per layer. */
export function makeProfileFromCosts(handle: ModelHandle, gflops: number): Profile {
  const layers = predictedLayers(
    handle,
    handle.costs.map((c) => c.flops / (gflops * 1e6) + 0.01),
  );
  const total = layers.reduce((s, l) => s + l.ms, 0);
  return {
    version: 1,
    kind: 'predicted',
    device: { id: `${gflops}gflops`, description: 'from static costs', gflops },
    runtime: { name: 'onnxruntime-node', version: 'n/a', threads: 1, optimization: 'n/a' },
    model: { name: handle.name, id: handle.id, flops: handle.totals.flops, params: handle.totals.params },
    runs: 0,
    warmup: 0,
    wholeMs: { median: total, p90: total },
    scale: 1,
    layers,
    cuts: handle.cuts.map((c) => ({
      index: c.index,
      after: c.after,
      bytes: c.bytes,
      tensors: c.tensors.map((t) => t.name),
    })),
    createdAt: new Date(0).toISOString(),
  };
}

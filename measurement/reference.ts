/**
 * The host-speed reference: a small fixed model (convolutions, BatchNormalization, Relu, pooling and a 16 MB
 * Gemm, so both compute- and memory-bound kernels) timed with the production settings. On this shared 2-core VM the
 * same model's latency drifts over minutes (squeezenet1.1: 9.1 ms, then 10.7 ms 15 minutes later), so sweeps and
 * the prediction benchmark record the reference next to their measurements. They do not rescale samples by it:
 * measured 12 times over 3 minutes next to resnet-50 and squeezenet1.1, the reference varied by up to 20% between
 * back-to-back measurements, and dividing resnet-50's times by it raised their spread (coefficient of variation
 * 2.8% raw, 5.1% normalised); it only tells a reader how busy the host was.
 */

import { GraphBuilder } from '../model/builder.ts';
import { batchNorm } from '../model/builder-ops.ts';
import { writeModel } from '../model/onnx.ts';
import { createSession } from '../model/runtime.ts';
import { median } from '../planning/stats.ts';
import { sampleFeeds } from './node-timing.ts';

let cached: { bytes: Uint8Array; feeds: ReturnType<typeof sampleFeeds> } | undefined;

/** The reference model (built once per process, deterministic). */
export function referenceModel(): { bytes: Uint8Array; feeds: ReturnType<typeof sampleFeeds> } {
  if (cached) return cached;
  const b = new GraphBuilder({ name: 'edgecut_reference', seed: 7 });
  let x = b.input('x', [1, 64, 56, 56]);
  x = b.relu(batchNorm(b, b.conv(x, 64, { kernel: 3, pad: 1, bias: false }), {}));
  x = b.relu(b.conv(x, 128, { kernel: 1 }));
  x = b.maxpool(x, { kernel: 2, stride: 2 });
  x = b.relu(b.conv(x, 96, { kernel: 3, pad: 1, group: 1 }));
  x = b.flatten(b.gap(x));
  x = b.gemm(b.relu(b.gemm(x, 4096)), 1000);
  b.output(b.softmax(x));
  const model = b.build();
  cached = { bytes: writeModel(model), feeds: sampleFeeds(model) };
  return cached;
}

/**
 * Median CPU time (ms) of `runs` runs of the reference model with the production settings, 1 thread (with 1
 * intra-op thread onnxruntime-node runs inference on the calling thread, so the process's CPU time leaves out
 * preemption by other processes).
 */
export async function measureReference(runs = 15, warmup = 5): Promise<number> {
  const { bytes, feeds } = referenceModel();
  const session = await createSession(bytes, { threads: 1 });
  const times: number[] = [];
  try {
    for (let i = 0; i < warmup + runs; i++) {
      const c0 = process.cpuUsage();
      await session.run(feeds);
      const used = process.cpuUsage(c0);
      if (i >= warmup) times.push((used.user + used.system) / 1000);
    }
  } finally {
    await session.release();
  }
  return median(times);
}

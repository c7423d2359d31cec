/**
 * Frame sources of the edge-head. A frame is the set of graph inputs of one inference. This module has the
 * synthetic camera: seeded random pixels in the model's input shape, at a given rate.
 */

import { floatToHalf } from '../../common/half.ts';
import type { CrossingTensor } from '../../common/model-handle.ts';
import { mulberry32 } from '../../common/random.ts';
import { tensorFromTyped, type WireTensor } from '../../schemas/codec.ts';

/** One frame: the model's inputs and when the frame was captured. */
export interface Frame {
  index: number;
  capturedAt: number;
  inputs: WireTensor[];
}

/** Random input tensors in the model's input shapes (values in [0, 1)). */
export function randomInputs(specs: readonly CrossingTensor[], rand: () => number): WireTensor[] {
  return specs.map((spec) => {
    const shape = spec.shape.map((d) => (d < 0 ? 1 : d));
    const n = shape.reduce((a, b) => a * b, 1);
    switch (spec.dtype) {
      case 'float32':
        return tensorFromTyped(spec.name, 'float32', shape, Float32Array.from({ length: n }, rand));
      case 'float16':
        return tensorFromTyped(
          spec.name,
          'float16',
          shape,
          Uint16Array.from({ length: n }, () => floatToHalf(rand())),
        );
      case 'uint8':
        return tensorFromTyped(
          spec.name,
          'uint8',
          shape,
          Uint8Array.from({ length: n }, () => Math.floor(rand() * 256)),
        );
      default:
        throw new Error(`the synthetic camera cannot fill input ${spec.name} of dtype ${spec.dtype}`);
    }
  });
}

/** A synthetic camera: `count` frames (0 = endless) at `fps` (0 = as fast as they are taken). */
export async function* syntheticCamera(
  specs: readonly CrossingTensor[],
  opts: { count: number; fps: number; seed: number; now: () => number; signal?: AbortSignal },
): AsyncGenerator<Frame> {
  const rand = mulberry32(opts.seed);
  const period = opts.fps > 0 ? 1000 / opts.fps : 0;
  const start = opts.now();
  for (let i = 0; opts.count === 0 || i < opts.count; i++) {
    if (opts.signal?.aborted) return;
    if (period > 0) {
      const due = start + i * period;
      const wait = due - opts.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    yield { index: i, capturedAt: opts.now(), inputs: randomInputs(specs, rand) };
  }
}

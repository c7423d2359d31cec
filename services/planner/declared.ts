/**
 * A device profile predicted from a declaration (schemas/profile.ts `DeclaredProfile`): a device that cannot
 * measure per-layer latency (a robot written without edgecut's code) states only its whole-model latency, and the
 * planner spreads it over the layers in the proportions a tail worker measured for the same model. The proportions
 * of a CPU's layers carry over between CPUs far better than absolute times (the profiler scales per-node times to
 * the whole model the same way, measurement/profiler.ts); the `measured` edge-load mode then corrects the head
 * times from the device's telemetry. Pure.
 */
import type { DeclaredProfile, Profile } from '../../schemas/profile.ts';
import { serverLayers } from './inputs.ts';

/**
 * The device's predicted profile: the workers' layers (median per layer across `workerProfiles`, all of the
 * declared model), scaled so that they add up to the declared whole-model latency.
 */
export function profileFromDeclaration(
  declared: DeclaredProfile,
  workerProfiles: readonly Profile[],
): Profile {
  const base = workerProfiles[0];
  if (!base) throw new Error('profileFromDeclaration needs a worker profile of the model');
  const layerMs = serverLayers(workerProfiles);
  if (!layerMs) throw new Error('profileFromDeclaration needs worker profiles with the same layers');
  const sum = layerMs.reduce((a, b) => a + b, 0);
  const factor = sum > 0 ? declared.wholeMs / sum : 1;
  const { check: _check, measurement: _measurement, ...rest } = base;
  return {
    ...rest,
    kind: 'predicted',
    device: {
      id: declared.device.id,
      description: declared.device.description ?? 'declared by the device (whole-model latency only)',
      gflops: null,
    },
    layers: base.layers.map((l, i) => ({
      ...l,
      ms: layerMs[i]! * factor,
      p90: layerMs[i]! * factor * (l.ms > 0 ? l.p90 / l.ms : 1),
    })),
    wholeMs: { median: declared.wholeMs, p90: declared.wholeMs },
    runs: 0,
    warmup: 0,
    prediction: {
      method: 'declared whole-model latency spread over the tail workers’ per-layer proportions',
      declaredWholeMs: declared.wholeMs,
      workerWholeMs: sum,
      factor,
      workers: workerProfiles.length,
    },
    createdAt: declared.createdAt ?? new Date(0).toISOString(),
  };
}

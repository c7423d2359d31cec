/**
 * Predicted profiles for device presets. The regression models predict each layer's latency on the host they were
 * trained on; this module scales those predictions to a device.
 *
 * LINPACK GFLOPs (the paper's Tables I and II) overstate what a device reaches on real networks, and by how much
 * depends on the device and the network. So:
 * 1. When the preset has a measured whole-model time for this model (Table III for rpi3b and rpi3b-ncs), the
 *    profile is scaled so its total is exactly that time: s = T_measured / H, where H is the predicted host total.
 * 2. When the preset has measured times for other models only, its own efficiency is used: s is the geometric mean
 *    over those models m of T_m / H_m (how much slower than the host the device is on real networks).
 * 3. Otherwise the GFLOPs ratio is corrected by the table's average overstatement: s = (G_host / G_device) * kappa,
 *    where kappa is the geometric mean, over every preset d and model m with a measured time, of
 *    (T_dm / H_m) / (G_host / G_d): how much slower devices really were than their GFLOPs ratio to the host says.
 * The per-layer shape (which layers are heavy) always comes from the host prediction.
 */

import type { Preset } from '../measurement/device/presets.ts';
import type { ModelHandle } from '../model/handle.ts';
import { PROFILE_VERSION, type Profile } from '../schemas/profile.ts';

/** Per-layer host latencies of one model, and where they come from. */
export interface HostLayers {
  /** Milliseconds per layer on the host, topological order. */
  ms: number[];
  /** How they were obtained (predictor name, or `measured`). */
  source: string;
}

/** What scaling to devices needs from the host side. */
export interface HostModel {
  /** GFLOPs of the host the layer times are for (same benchmark as the presets: GEMM-like). */
  gflops: number;
  /** Per-layer host latencies of a model. */
  layers(handle: ModelHandle): Promise<HostLayers>;
  /** Predicted host total of a zoo model by name (for calibration), or undefined if unknown. */
  total(name: string): Promise<number | undefined>;
}

/** How a preset's scale was found. */
export interface PresetScale {
  scale: number;
  rule: 'measured' | 'device-efficiency' | 'gflops-kappa';
  detail: string;
}

const geomean = (xs: readonly number[]) => Math.exp(xs.reduce((s, x) => s + Math.log(x), 0) / xs.length);

/** The factor turning host milliseconds into the preset's milliseconds for the named model. */
export async function presetScale(
  host: HostModel,
  model: { name: string; hostTotal: number },
  preset: Preset,
  presets: readonly Preset[],
): Promise<PresetScale> {
  const own = preset.measured[model.name];
  if (own !== undefined) {
    return {
      scale: own / model.hostTotal,
      rule: 'measured',
      detail: `total set to the measured ${own} ms (${preset.source})`,
    };
  }
  const ratios: number[] = [];
  for (const [m, ms] of Object.entries(preset.measured)) {
    const h = await host.total(m);
    if (h) ratios.push(ms / h);
  }
  if (ratios.length > 0) {
    return {
      scale: geomean(ratios),
      rule: 'device-efficiency',
      detail: `${preset.name}'s measured slowdown on ${ratios.length} other model(s) (geometric mean)`,
    };
  }
  const overstatement: number[] = [];
  for (const d of presets) {
    for (const [m, ms] of Object.entries(d.measured)) {
      const h = await host.total(m);
      if (h) overstatement.push(ms / h / (host.gflops / d.gflops));
    }
  }
  const kappa = overstatement.length > 0 ? geomean(overstatement) : 1;
  return {
    scale: (host.gflops / preset.gflops) * kappa,
    rule: 'gflops-kappa',
    detail: `GFLOPs ratio ${host.gflops.toFixed(1)}/${preset.gflops} times kappa ${kappa.toFixed(2)} from ${overstatement.length} measured times`,
  };
}

/** Profile layers from per-layer milliseconds and the model's static costs (median = p90: a prediction). */
export function predictedLayers(handle: ModelHandle, ms: readonly number[]): Profile['layers'] {
  return handle.analysis.nodes.map((n, i) => {
    const c = handle.costs[i]!;
    const v = ms[i]!;
    return {
      index: n.index,
      name: n.name,
      op: n.op,
      ms: v,
      p90: v,
      flops: c.flops,
      inputBytes: c.inputBytes,
      outputBytes: c.outputBytes,
      paramBytes: c.paramBytes,
    };
  });
}

/** A predicted profile of the model on the preset device. */
export async function presetProfile(
  handle: ModelHandle,
  preset: Preset,
  presets: readonly Preset[],
  host: HostModel,
  runtimeVersion: string,
): Promise<Profile> {
  const hostLayers = await host.layers(handle);
  const hostTotal = hostLayers.ms.reduce((a, b) => a + b, 0);
  const s = await presetScale(host, { name: handle.name, hostTotal }, preset, presets);
  const layers = predictedLayers(
    handle,
    hostLayers.ms.map((ms) => ms * s.scale),
  );
  const total = layers.reduce((a, l) => a + l.ms, 0);
  return {
    version: PROFILE_VERSION,
    kind: 'predicted',
    device: { id: preset.name, description: preset.description, gflops: preset.gflops, preset: preset.name },
    runtime: {
      name: 'onnxruntime-node',
      version: runtimeVersion,
      threads: 1,
      optimization: 'all-minus-nchwc',
    },
    model: { name: handle.name, id: handle.id, flops: handle.totals.flops, params: handle.totals.params },
    runs: 0,
    warmup: 0,
    wholeMs: { median: total, p90: total },
    scale: s.scale,
    layers,
    cuts: handle.cuts.map((c) => ({
      index: c.index,
      after: c.after,
      bytes: c.bytes,
      tensors: c.tensors.map((t) => t.name),
    })),
    prediction: { hostLayers: hostLayers.source, hostGflops: host.gflops, rule: s.rule, detail: s.detail },
    createdAt: new Date().toISOString(),
  };
}

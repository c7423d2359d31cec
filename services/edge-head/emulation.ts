/**
 * Device emulation for experiments: this host plays a slower device. Each head (and each local fallback tail) runs
 * for real, and the device then stays busy until factor x the real time has passed, so a frame takes what it would
 * on the emulated device while the outputs stay the real ones. The published profile is scaled by the same factor,
 * so the planner plans for the emulated device.
 *
 * This is EMULATION: the host's speed profile (which layers are heavy) is kept and stretched uniformly; a real
 * device's per-layer shape (memory bandwidth, caches, SIMD) may differ.
 *
 * The factor (common/device/presets.ts):
 * - `x<f>`: f as given.
 * - a preset with a measured whole-model time for this model (the paper's Table III): measured / this host's
 *   whole-model time.
 * - otherwise a preset or `<g>gflops`: this host's sustained GFLOPs (common/device/host.ts) / the device's. The
 *   presets' LINPACK GFLOPs overstate what networks reach (see common/profile/preset.ts), so this rule tends to
 *   emulate a device somewhat faster than the real one.
 */
import { type Clock, systemClock } from '../../common/clock.ts';
import { findPreset, type Preset } from '../../common/device/presets.ts';
import { UserError } from '../../common/errors.ts';
import type { Profile } from '../../schemas/profile.ts';

/** The value of `EMULATE_DEVICE`. */
export type DeviceSpec =
  | { kind: 'none' }
  | { kind: 'factor'; factor: number }
  | { kind: 'gflops'; gflops: number }
  | { kind: 'preset'; name: string };

/** Parses `none`, `x<factor>`, `<GFLOPs>` / `<GFLOPs>gflops` or a preset name; undefined when it is none of them. */
export function parseDeviceSpec(text: string): DeviceSpec | undefined {
  const s = text.trim().toLowerCase();
  if (s === 'none' || s === 'off') return { kind: 'none' };
  const factor = /^x(\d+(?:\.\d+)?)$/.exec(s);
  if (factor) {
    const f = Number(factor[1]);
    return f >= 1 ? { kind: 'factor', factor: f } : undefined;
  }
  const gflops = /^(\d+(?:\.\d+)?)\s*(?:gflops)?$/.exec(s);
  if (gflops) {
    const g = Number(gflops[1]);
    return g > 0 ? { kind: 'gflops', gflops: g } : undefined;
  }
  if (/^[a-z0-9][a-z0-9._-]*$/.test(s)) return { kind: 'preset', name: s };
  return undefined;
}

/** A resolved device emulation. */
export interface DeviceEmulation {
  /** Heads and local tails take factor x their real time (>= 1). */
  factor: number;
  /** What is emulated, one line (goes into logs and the profile's device description). */
  description: string;
  /** GFLOPs of the emulated device, when known. */
  gflops: number | null;
  /** The preset emulated, if any. */
  preset?: string;
  /** How the factor was found. */
  rule: string;
}

/** What resolving a device needs from this host. */
export interface HostFacts {
  /** Names the model may carry in the presets' measured tables. */
  modelNames: readonly string[];
  /** This host's whole-model milliseconds (the profile's median). */
  wholeMs: number;
  /** This host's sustained GFLOPs (measured on demand: it takes a few seconds the first time). */
  gflops: () => Promise<number>;
  /** Known presets (built-in plus the user's). */
  presets: readonly Preset[];
}

/** Names under which a model can appear in a preset's measured times: zoo name, file name, without precision. */
export function modelNames(name: string, metadata: Record<string, string>): string[] {
  const names = [
    metadata['edgecut.zoo'],
    name,
    name.replace(/[-_.](fp16|fp32|float16|int8|uint8|qdq)$/i, ''),
  ];
  return [...new Set(names.filter((n): n is string => !!n))];
}

/** Turns a device spec into a factor; UserError (one line) when it cannot be emulated on this host. */
export async function resolveEmulation(
  spec: DeviceSpec,
  host: HostFacts,
): Promise<DeviceEmulation | undefined> {
  if (spec.kind === 'none') return undefined;
  if (spec.kind === 'factor')
    return {
      factor: spec.factor,
      description: `${spec.factor}x slower than this host`,
      gflops: null,
      rule: 'factor',
    };
  const preset = spec.kind === 'preset' ? findPreset(spec.name, host.presets) : undefined;
  if (preset) {
    const key = host.modelNames.find((n) => preset.measured[n] !== undefined);
    if (key !== undefined && host.wholeMs > 0) {
      const measured = preset.measured[key]!;
      return checked({
        factor: measured / host.wholeMs,
        description: `${preset.name} (${preset.description})`,
        gflops: preset.gflops,
        preset: preset.name,
        rule: `measured: ${key} takes ${measured} ms there (${preset.source}) and ${host.wholeMs.toFixed(2)} ms here`,
      });
    }
  }
  const deviceGflops = preset ? preset.gflops : (spec as { gflops: number }).gflops;
  const hostGflops = await host.gflops();
  return checked({
    factor: hostGflops / deviceGflops,
    description: preset ? `${preset.name} (${preset.description})` : `a ${deviceGflops} GFLOPs device`,
    gflops: deviceGflops,
    ...(preset ? { preset: preset.name } : {}),
    rule: `gflops: this host ${hostGflops.toFixed(1)} GFLOPs, the device ${deviceGflops} GFLOPs`,
  });
}

function checked(e: DeviceEmulation): DeviceEmulation {
  if (!(e.factor >= 1))
    throw new UserError(
      `cannot emulate ${e.description}: it is faster than this host (factor ${e.factor.toFixed(3)}; ${e.rule}); emulation can only slow down`,
    );
  return e;
}

/** The profile as the emulated device would have measured it: every time scaled by the factor. */
export function emulatedProfile(profile: Profile, e: DeviceEmulation): Profile {
  const f = e.factor;
  const scale = (ms: number) => ms * f;
  return {
    ...profile,
    device: {
      ...profile.device,
      description: `EMULATED ${e.description}: ${profile.device.description} stretched ${f.toFixed(2)}x`,
      gflops: e.gflops,
      ...(e.preset ? { preset: e.preset } : {}),
    },
    wholeMs: { median: scale(profile.wholeMs.median), p90: scale(profile.wholeMs.p90) },
    layers: profile.layers.map((l) => ({ ...l, ms: scale(l.ms), p90: scale(l.p90) })),
    ...(profile.check
      ? {
          check: {
            ...profile.check,
            cuts: profile.check.cuts.map((c) => ({
              ...c,
              measuredMs: scale(c.measuredMs),
              profiledMs: scale(c.profiledMs),
              ...(c.headMs !== undefined ? { headMs: scale(c.headMs) } : {}),
              ...(c.handoffMs !== undefined ? { handoffMs: scale(c.handoffMs) } : {}),
            })),
          },
        }
      : {}),
    ...(profile.measurement
      ? {
          measurement: {
            ...profile.measurement,
            layerSumMs: scale(profile.measurement.layerSumMs),
            wholeWallMs: {
              median: scale(profile.measurement.wholeWallMs.median),
              p90: scale(profile.measurement.wholeWallMs.p90),
            },
          },
        }
      : {}),
  };
}

/** Runs device computations and holds the device busy until factor x their real time has passed. */
export class ComputeStretch {
  constructor(
    private readonly factor: number,
    private readonly clock: Clock = systemClock,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {
    if (!(factor >= 1)) throw new RangeError(`compute factor must be >= 1, got ${factor}`);
  }

  /** Runs `fn`; returns its value, its start, its (stretched) duration and its real duration, on the injected clock. */
  async run<T>(fn: () => Promise<T>): Promise<{ value: T; start: number; ms: number; realMs: number }> {
    const start = this.clock.now();
    const value = await fn();
    const realMs = this.clock.now() - start;
    const until = start + realMs * this.factor;
    // Timers truncate to whole milliseconds and may fire a little early; wait again until the time has come.
    for (let left = until - this.clock.now(); left > 0; left = until - this.clock.now())
      await this.sleep(Math.ceil(left));
    return { value, start, ms: this.clock.now() - start, realMs };
  }
}

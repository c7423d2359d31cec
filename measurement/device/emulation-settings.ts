/**
 * The device-emulation settings shared by the edge and the tail workers (EMULATE_DEVICE, EMULATE_CONTENTION,
 * DEVICE_PRESETS), and the check of what one setting alone cannot tell: that a named preset exists.
 */
import { z } from 'zod';
import { ConfigError, schemas, setting } from '../../runtime/config.ts';
import { errorMessage } from '../../runtime/errors.ts';
import { type DeviceSpec, parseDeviceSpec } from './emulation.ts';
import { allPresets, findPreset, type Preset } from './presets.ts';

const deviceSpec = z.string().transform((v, ctx): DeviceSpec => {
  const out = parseDeviceSpec(v);
  if (out === undefined) {
    ctx.addIssue({
      code: 'custom',
      message: 'expected none, a device preset name, <GFLOPs>gflops, or x<factor >= 1>',
    });
    return z.NEVER;
  }
  return out;
});

/** The emulation settings of a service that computes (`who`: what is emulated, for the docs). */
export function emulationSettings(who: string) {
  return {
    emulateDevice: setting({
      env: 'EMULATE_DEVICE',
      flag: 'emulate-device',
      schema: deviceSpec,
      default: 'none',
      doc: `EMULATION for experiments: make ${who} as slow as a device: a preset (edgecut device presets), 2gflops, or x4`,
    }),
    emulateContention: setting({
      env: 'EMULATE_CONTENTION',
      flag: 'emulate-contention',
      schema: schemas.bool,
      default: 'false',
      doc: 'EMULATION for experiments: with EMULATE_DEVICE, time spent waiting for this host’s CPUs (busy processes on its cores) slows the emulated device in proportion',
    }),
    presets: setting({
      env: 'DEVICE_PRESETS',
      flag: 'presets',
      schema: schemas.path.optional(),
      doc: 'a JSON file of your own device presets, for EMULATE_DEVICE',
    }),
  };
}

/** The presets known (built-in and the user's), checked against EMULATE_DEVICE; ConfigError (one line) otherwise. */
export function resolvePresets(cfg: { presets?: string | undefined; emulateDevice: DeviceSpec }): Preset[] {
  let presets: Preset[];
  try {
    presets = allPresets(cfg.presets);
  } catch (err) {
    throw new ConfigError(
      `DEVICE_PRESETS=${JSON.stringify(cfg.presets)} is not allowed: ${errorMessage(err)}`,
    );
  }
  const device = cfg.emulateDevice;
  if (device.kind === 'preset') {
    try {
      findPreset(device.name, presets);
    } catch (err) {
      throw new ConfigError(`EMULATE_DEVICE="${device.name}" is not allowed: ${errorMessage(err)}`);
    }
  }
  return presets;
}

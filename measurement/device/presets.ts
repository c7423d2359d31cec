/**
 * Device presets: the paper's devices (Tables I and II) with their LINPACK GFLOPs and, where the paper measured
 * them, whole-model times on real networks (Table III). Edge devices also carry power figures for the energy
 * objective of Algorithm 1 (docs/planning.md, "Energy"). Users add their own presets in a JSON file.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { UserError } from '../../runtime/errors.ts';

const watts = (what: string) =>
  z.number({ message: `expected ${what} watts > 0` }).positive(`expected ${what} watts > 0`);

/**
 * Power draw of the whole device in three states, watts. The energy objective charges a frame's head at
 * `computeW`, its upload at `radioW` and the wait for the reply (server time and the result's way back) at `idleW`.
 */
export const PowerSchema = z.object({
  /** Whole device while it computes (busy), radio idle. */
  computeW: watts('compute'),
  /** Whole device while the radio sends (Wi-Fi transmitting), compute idle. */
  radioW: watts('radio'),
  /** Whole device while it waits for a reply: radio on, compute idle. */
  idleW: watts('idle'),
  /** Where each figure comes from, and which are estimates. */
  source: z.string().default('user'),
});
/** Power draw of a device, watts. */
export type Power = z.infer<typeof PowerSchema>;

/** A device preset. */
export const PresetSchema = z.object({
  /** Name used on the command line, e.g. `rpi3b`. */
  name: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, 'expected lower-case letters, digits, . _ -'),
  description: z.string(),
  /** Peak GFLOPs as benchmarked (LINPACK in the paper). */
  gflops: z.number().positive('expected GFLOPs > 0'),
  /** Measured whole-model milliseconds by model name (zoo names), used to calibrate predictions. */
  measured: z.record(z.string(), z.number().positive()).default({}),
  /** Where the figures come from. */
  source: z.string().default('user'),
  /** Power draw, for the energy objective; only the edge device's is used. */
  power: PowerSchema.optional(),
});
/** A device preset. */
export type Preset = z.infer<typeof PresetSchema>;

const paperI = 'paper Table I (LINPACK)';
const paperII = 'paper Table II (LINPACK)';

/**
 * Raspberry Pi 3 B, whole board at 5.1 V. Idle (about 1.4 W) and full load on all four cores (about 3.7 W) are the
 * commonly published measurements (RasPi.TV's Pi 3 B power measurements; the Raspberry Pi Foundation's power-supply
 * guidance is consistent with them). Wi-Fi transmit has no comparable published figure: the ~0.5 W it adds over
 * idle is an estimate.
 */
const rpi3bPower: Power = {
  computeW: 3.7,
  radioW: 1.9,
  idleW: 1.4,
  source:
    'Raspberry Pi 3 B at 5.1 V: idle 1.4 W and full CPU load 3.7 W as commonly published (RasPi.TV power ' +
    "measurements, consistent with the Raspberry Pi Foundation's power-supply guidance); radio 1.9 W is an " +
    'estimate (idle plus about 0.5 W for Wi-Fi transmit)',
};

/**
 * Raspberry Pi 3 B with a Movidius Neural Compute Stick doing the compute: the Pi mostly waits on USB while the
 * stick draws about 1 W busy (Intel's figure for the Myriad 2 VPU). The host core driving USB and the stick's idle
 * draw are estimates.
 */
const rpi3bNcsPower: Power = {
  computeW: 2.6,
  radioW: 2.2,
  idleW: 1.7,
  source:
    'Raspberry Pi 3 B figures as for rpi3b (idle 1.4 W published, Wi-Fi transmit +0.5 W estimate) plus the ' +
    "Movidius NCS: about 1 W busy (Intel's stated figure for the Myriad 2 VPU) and about 0.3 W idle (estimate); " +
    'compute 2.6 W = Pi idle 1.4 + NCS 1.0 + about 0.2 W for the host core driving USB (estimate)',
};

/** The built-in presets. */
export const BUILTIN_PRESETS: readonly Preset[] = [
  {
    name: 'rpi3b',
    description: 'Raspberry Pi 3 Model B (edge device, Config I)',
    gflops: 2,
    // Table III, Rpi-3b column. The paper's SqueezeNet has 1.24 M parameters: SqueezeNet 1.0.
    measured: { 'squeezenet1.0': 2032, alexnet: 3200, 'inception-v3': 7000 },
    source: `${paperI}; times from Table III`,
    power: rpi3bPower,
  },
  {
    name: 'iphone6',
    description: 'iPhone 6 (edge server, Config I)',
    gflops: 10,
    measured: {},
    source: paperI,
  },
  {
    name: 'xeon-e3-1246',
    description: 'Xeon E3-1246 PC (edge server, Config I)',
    gflops: 20,
    measured: {},
    source: paperI,
  },
  {
    name: 'jetson-tx2',
    description: 'NVIDIA Jetson TX2 (edge server, Config I)',
    gflops: 50,
    measured: {},
    source: paperI,
  },
  {
    name: 'rpi3b-ncs',
    description: 'Raspberry Pi 3 B with Intel Movidius Neural Compute Stick (edge device, Config II)',
    gflops: 36,
    measured: { 'squeezenet1.0': 48, alexnet: 91, 'inception-v3': 326 },
    source: `${paperII}; times from Table III`,
    power: rpi3bNcsPower,
  },
  {
    name: 'i7-7500u',
    description: 'Intel i7-7500U PC (edge server, Config II)',
    gflops: 44,
    measured: {},
    source: paperII,
  },
  {
    name: 'xeon-e5-2695',
    description: 'Xeon E5-2695 PC (edge server, Config II)',
    gflops: 130,
    measured: {},
    source: paperII,
  },
  {
    name: 'xeon-e5-2696',
    description: 'Xeon E5-2696 PC (edge server, Config II)',
    gflops: 330,
    measured: {},
    source: paperII,
  },
];

/** Reads a user presets file: a JSON array of presets. */
export function readPresetsFile(path: string): Preset[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new UserError(`${path}: cannot read presets (${(err as Error).message.split('\n')[0]})`);
  }
  const parsed = z.array(PresetSchema).safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new UserError(`${path}: ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data;
}

/** The built-in presets plus the user's (which override built-ins of the same name). */
export function allPresets(userFile?: string): Preset[] {
  const user = userFile ? readPresetsFile(userFile) : [];
  const names = new Set(user.map((p) => p.name));
  return [...BUILTIN_PRESETS.filter((p) => !names.has(p.name)), ...user];
}

/** Finds a preset by name; UserError listing the known ones otherwise. */
export function findPreset(name: string, presets: readonly Preset[] = BUILTIN_PRESETS): Preset {
  const p = presets.find((x) => x.name === name);
  if (!p)
    throw new UserError(
      `unknown device preset "${name}"; known presets: ${presets.map((x) => x.name).join(', ')}`,
    );
  return p;
}

/**
 * The power figures of the preset of that name, if it has any; undefined for no name, an unknown name or a preset
 * without them. The planner looks up an edge device's power by its profile's `device.preset`.
 */
export function presetPower(
  name: string | undefined,
  presets: readonly Preset[] = BUILTIN_PRESETS,
): Power | undefined {
  if (name === undefined) return undefined;
  return presets.find((p) => p.name === name)?.power;
}

/** Names of the presets that carry power figures. */
export function presetsWithPower(presets: readonly Preset[] = BUILTIN_PRESETS): string[] {
  return presets.filter((p) => p.power !== undefined).map((p) => p.name);
}

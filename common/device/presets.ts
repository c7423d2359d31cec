/**
 * Device presets: the paper's devices (Tables I and II) with their LINPACK GFLOPs and, where the paper measured
 * them, whole-model times on real networks (Table III). Users add their own presets in a JSON file.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { UserError } from '../errors.ts';

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
});
/** A device preset. */
export type Preset = z.infer<typeof PresetSchema>;

const paperI = 'paper Table I (LINPACK)';
const paperII = 'paper Table II (LINPACK)';

/** The built-in presets. */
export const BUILTIN_PRESETS: readonly Preset[] = [
  {
    name: 'rpi3b',
    description: 'Raspberry Pi 3 Model B (edge device, Config I)',
    gflops: 2,
    // Table III, Rpi-3b column. The paper's SqueezeNet has 1.24 M parameters: SqueezeNet 1.0.
    measured: { 'squeezenet1.0': 2032, alexnet: 3200, 'inception-v3': 7000 },
    source: `${paperI}; times from Table III`,
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

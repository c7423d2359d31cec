/**
 * The profile format: per-layer latency of one model on one device (paper section II-A, the P^e and P^c of
 * Algorithm 1). A profile is measured on this host by `edgecut profile`, or predicted for a device preset by the
 * regression models. It is versioned JSON: a reader refuses another version or a profile whose layers do not
 * match the model, with one message naming the problem. Services publish theirs, retained.
 */
import { z } from 'zod';
import { UserError } from '../runtime/errors.ts';

/** Current version of the profile format. */
export const PROFILE_VERSION = 1;

/** One layer (ONNX node) of a profile. */
export const ProfileLayerSchema = z.object({
  /** 1-based position in the topological order (the cut after it has this index). */
  index: z.number().int().min(1),
  name: z.string(),
  op: z.string(),
  /** Median latency in milliseconds. */
  ms: z.number().min(0),
  /** 90th percentile latency in milliseconds. */
  p90: z.number().min(0),
  flops: z.number().min(0),
  inputBytes: z.number().min(0),
  outputBytes: z.number().min(0),
  paramBytes: z.number().min(0),
});
/** One layer of a profile. */
export type ProfileLayer = z.infer<typeof ProfileLayerSchema>;

/** One cut of a profile: the bytes that cross it. */
export const ProfileCutSchema = z.object({
  index: z.number().int().min(0),
  after: z.string().nullable(),
  bytes: z.number().min(0),
  tensors: z.array(z.string()),
});

/** A profile. */
export const ProfileSchema = z.object({
  version: z.literal(PROFILE_VERSION, { message: `expected profile format version ${PROFILE_VERSION}` }),
  /** `measured` on this host, or `predicted` by the regression models (for a preset or an unprofiled model). */
  kind: z.enum(['measured', 'predicted']),
  device: z.object({
    id: z.string(),
    description: z.string(),
    /** Sustained GFLOPs of the device (measured by `edgecut device bench`, or the preset's). */
    gflops: z.number().positive().nullable(),
    /** The preset a predicted profile was made for. */
    preset: z.string().optional(),
  }),
  runtime: z.object({
    name: z.literal('onnxruntime-node'),
    version: z.string(),
    threads: z.number().int().min(1),
    /** Optimisation setting of the sessions whose whole-model time the profile is scaled to. */
    optimization: z.string(),
  }),
  model: z.object({
    name: z.string(),
    /** Hex sha256 of the model file. */
    id: z.string().regex(/^[0-9a-f]{64}$/, 'expected a hex sha256'),
    flops: z.number().min(0),
    params: z.number().min(0),
  }),
  /** Timed runs per layer (warm-up runs excluded). */
  runs: z.number().int().min(0),
  warmup: z.number().int().min(0),
  /** Whole-model latency with the production session settings. */
  wholeMs: z.object({ median: z.number().min(0), p90: z.number().min(0) }),
  /** Factor applied to the per-node times (measured without graph optimisations) to match `wholeMs.median`. */
  scale: z.number().positive(),
  layers: z.array(ProfileLayerSchema).min(1, 'a profile needs at least one layer'),
  cuts: z.array(ProfileCutSchema),
  /** The prefix-sum check: real head latencies at some cuts against the profile's prefix sums. */
  check: z
    .object({
      cuts: z.array(
        z.object({
          index: z.number().int(),
          measuredMs: z.number(),
          profiledMs: z.number(),
          error: z.number(),
          /** Median run time of the head, before `handoffMs` is taken off (measuredMs = headMs - handoffMs). */
          headMs: z.number().optional(),
          /** Extra cost of handing the cut's tensors to JavaScript, beyond handing over the model's outputs. */
          handoffMs: z.number().optional(),
        }),
      ),
      maxError: z.number(),
    })
    .optional(),
  /** How a measured profile's layer times were taken (measurement/profiler.ts). */
  measurement: z
    .object({
      /** Graph optimisation level of the session whose per-node times were taken. */
      layerOptimization: z.string(),
      /** Sum of the per-node medians before scaling, in ms (`scale` = `wholeMs.median` / this). */
      layerSumMs: z.number().min(0),
      /**
       * Clock of `wholeMs` and the check: `cpu` (the process's CPU time during a run; single-threaded runs only) or
       * `wall` (wall clock around the run).
       */
      clock: z.enum(['cpu', 'wall']),
      /** The whole model's wall-clock latency in the same runs (equals `wholeMs` when `clock` is `wall`). */
      wholeWallMs: z.object({ median: z.number().min(0), p90: z.number().min(0) }),
      /** Model nodes onnxruntime reported no time for (e.g. Constant, made an initializer at load): 0 ms. */
      unreported: z.array(z.string()),
      /** Nodes onnxruntime inserted (e.g. float16 Casts of activations), by name, and the layer given their time. */
      attributed: z.record(z.string(), z.string()),
      /** Inserted nodes on constants only (weight Casts), which the production settings fold: not counted. */
      excluded: z.array(z.string()),
    })
    .optional(),
  /** How a predicted profile was made (predictor per layer type, calibration). */
  prediction: z.record(z.string(), z.unknown()).optional(),
  createdAt: z.string(),
});
/** A profile. */
export type Profile = z.infer<typeof ProfileSchema>;

/**
 * What a device that cannot measure a per-layer profile publishes instead (a robot without edgecut's code): the
 * model it runs and its own whole-model latency, which any runtime can time. The planner predicts the device's
 * per-layer latency from a tail worker's profile of the same model, scaled to that whole-model latency
 * (services/planner/declared.ts); the `measured` edge-load mode then corrects it from the device's head times.
 */
export const DeclaredProfileSchema = z.object({
  version: z.literal(PROFILE_VERSION, { message: `expected profile format version ${PROFILE_VERSION}` }),
  kind: z.literal('declared'),
  device: z.object({
    /** The device's id (as in its topics). */
    id: z.string(),
    /** What the device is, for people reading plans. */
    description: z.string().optional(),
  }),
  model: z.object({
    /** Hex sha256 of the model file, as in requests. */
    id: z.string().regex(/^[0-9a-f]{64}$/, 'expected a hex sha256'),
    /** The model's name, for people reading plans. */
    name: z.string().optional(),
  }),
  /** The device's median latency of the whole model, ms, timed with its own runtime. */
  wholeMs: z.number().positive('expected a latency > 0 ms'),
  createdAt: z.string().optional(),
});
/** A declared profile. */
export type DeclaredProfile = z.infer<typeof DeclaredProfileSchema>;

/** What a device's profile topic carries: a measured or predicted profile, or a declaration. */
export type DeviceProfile = Profile | DeclaredProfile;

/** Thrown for a profile that cannot be used; its message is one line naming the problem. */
export class ProfileError extends UserError {}

/**
 * Checks raw JSON as a profile and, when a model's layer list is given, that the profile has exactly its layers
 * (same count, same names, in order). `source` names the file or topic in the message.
 */
export function parseProfile(raw: unknown, source: string, layers?: readonly { name: string }[]): Profile {
  const version = (raw as { version?: unknown } | null)?.version;
  if (version !== PROFILE_VERSION) {
    throw new ProfileError(
      `${source}: profile format version ${JSON.stringify(version)} is not supported; this edgecut reads version ${PROFILE_VERSION} (run edgecut profile again)`,
    );
  }
  const parsed = ProfileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ProfileError(`${source}: ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`);
  }
  const p = parsed.data;
  p.layers.forEach((l, i) => {
    if (l.index !== i + 1)
      throw new ProfileError(`${source}: layers[${i}] has index ${l.index}; expected ${i + 1}`);
  });
  if (layers) {
    if (p.layers.length !== layers.length) {
      throw new ProfileError(
        `${source}: the profile has ${p.layers.length} layers but model ${p.model.name} has ${layers.length}; missing or extra layers`,
      );
    }
    const bad = layers.findIndex((l, i) => p.layers[i]!.name !== l.name);
    if (bad >= 0) {
      throw new ProfileError(
        `${source}: layer ${bad + 1} is "${p.layers[bad]!.name}" in the profile but "${layers[bad]!.name}" in the model`,
      );
    }
  }
  return p;
}

/** Checks raw JSON from a device's profile topic: a declaration (`kind: declared`) or a full profile. */
export function parseDeviceProfile(raw: unknown, source: string): DeviceProfile {
  if ((raw as { kind?: unknown } | null)?.kind !== 'declared') return parseProfile(raw, source);
  const parsed = DeclaredProfileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ProfileError(`${source}: ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data;
}

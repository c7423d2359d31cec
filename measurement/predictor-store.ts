/**
 * Trained predictors as versioned JSON:
 * `{version: 1, host, trainedOn, groups, options, types: {<type>: {chosen, linear, tree, validationMdape, ...}},
 * global, createdAt}`. A reader refuses another version, or a file that does not validate, with one line naming
 * the file and the problem.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';
import { FEATURE_NAMES, SPLIT_FEATURE_NAMES } from '../planning/predict/features.ts';
import { PREDICTORS_VERSION, type Predictors } from '../planning/predict/predictors.ts';
import type { TreeNode } from '../planning/predict/tree.ts';
import { UserError } from '../runtime/errors.ts';
import { HostInfoSchema } from './host-info.ts';

/** Thrown for a predictors file that cannot be used; its message is one line. */
export class PredictorsError extends UserError {}

const finite = z.number().refine(Number.isFinite, 'expected a finite number');
const positive = finite.refine((v) => v > 0, 'expected a positive number');

const LinearModelSchema = z.object({
  space: z.enum(['time', 'log']),
  features: z.array(z.enum(FEATURE_NAMES)),
  intercept: finite,
  coef: z.array(finite),
  scale: z.array(finite.refine((v) => v > 0, 'expected a positive scale')).optional(),
});

const TreeNodeSchema: z.ZodType<TreeNode> = z.lazy(() =>
  z.union([
    z.object({ leaf: LinearModelSchema, n: z.number().int().min(0) }),
    z.object({
      split: z.enum(SPLIT_FEATURE_NAMES),
      threshold: finite,
      n: z.number().int().min(0),
      model: LinearModelSchema,
      left: TreeNodeSchema,
      right: TreeNodeSchema,
    }),
  ]),
);

const TypePredictorSchema = z.object({
  ops: z.array(z.string()),
  samples: z.number().int().min(1),
  chosen: z.enum(['linear', 'tree']),
  linear: LinearModelSchema,
  tree: z.object({
    features: z.array(z.enum(FEATURE_NAMES)),
    smoothing: z.number().min(0),
    root: TreeNodeSchema,
  }),
  validationMdape: z.object({ linear: z.number().nullable(), tree: z.number().nullable() }),
  scale: z.object({ linear: positive, tree: positive }),
});

const PredictorsSchema = z.object({
  version: z.literal(PREDICTORS_VERSION),
  host: HostInfoSchema.nullable(),
  referenceMs: z.number().positive().nullable(),
  trainedOn: z.array(z.object({ source: z.string(), samples: z.number().int().min(0) })),
  groups: z.record(z.string(), z.string()),
  options: z.object({
    linear: z.object({ space: z.enum(['time', 'log']), weightPower: z.number(), ridge: z.number().min(0) }),
    tree: z.object({
      space: z.enum(['time', 'log']),
      weightPower: z.number(),
      ridge: z.number().min(0),
      maxDepth: z.number().int().min(0),
      minLeaf: z.number().int().min(1),
      minGain: z.number(),
      thresholds: z.number().int().min(2),
      smoothing: z.number().min(0),
    }),
    folds: z.number().int().min(1),
    seed: z.number().int(),
    sourceWeights: z.record(z.string(), z.number().min(0)),
    calibrate: z.boolean(),
  }),
  types: z.record(z.string(), TypePredictorSchema),
  global: TypePredictorSchema,
  createdAt: z.string(),
});

/** Checks raw JSON as trained predictors; `source` names the file in the message. */
export function parsePredictors(raw: unknown, source: string): Predictors {
  const version = (raw as { version?: unknown } | null)?.version;
  if (version !== PREDICTORS_VERSION) {
    throw new PredictorsError(
      `${source}: predictors format version ${JSON.stringify(version)} is not supported; this edgecut reads version ${PREDICTORS_VERSION} (train the predictors again)`,
    );
  }
  const parsed = PredictorsSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new PredictorsError(
      `${source}: ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`,
    );
  }
  return parsed.data as Predictors;
}

/** Serialises predictors (validated first, so a file written is always readable). */
export function predictorsToJson(p: Predictors): string {
  parsePredictors(JSON.parse(JSON.stringify(p)), 'predictors');
  return `${JSON.stringify(p, null, 1)}\n`;
}

/** Reads a predictors file. */
export async function readPredictors(path: string): Promise<Predictors> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new PredictorsError(
      `${path}: cannot read the predictors file (${(err as NodeJS.ErrnoException).code})`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new PredictorsError(`${path}: not JSON`);
  }
  return parsePredictors(raw, path);
}

/** Writes a predictors file atomically (temp file + rename). */
export async function writePredictors(path: string, p: Predictors): Promise<void> {
  const json = predictorsToJson(p);
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, json);
  await rename(tmp, path);
}

/**
 * The reference host: predictors trained on the machine edgecut is developed and tested on (a 2-core x86-64 VM),
 * with its measured GFLOPs, committed as data/reference-host.json. `edgecut plan` and the paper reproduction use
 * it by default so their answers are the same on every machine; `edgecut profile --sweep` and
 * `edgecut predict train` make predictors for your own host.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import type { HostModel } from '../planning/preset-profile.ts';
import { UserError } from '../runtime/errors.ts';
import { predictorHost } from './host-model.ts';
import { parsePredictors } from './predictor-store.ts';

/** Path of the committed reference host. */
export const REFERENCE_HOST_PATH = fileURLToPath(new URL('../data/reference-host.json', import.meta.url));

const ReferenceSchema = z.object({
  version: z.literal(1),
  description: z.string(),
  /** Sustained GFLOPs of the host (edgecut device bench, 1 thread). */
  gflops: z.number().positive(),
  runtime: z.string(),
  predictors: z.unknown(),
});

/** A loaded reference host. */
export interface ReferenceHost {
  description: string;
  gflops: number;
  runtime: string;
  model: HostModel;
}

/** Loads a reference-host file (default: the committed one). */
export async function loadReferenceHost(path = REFERENCE_HOST_PATH): Promise<ReferenceHost> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new UserError(
      `${path}: cannot read the host predictors (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new UserError(`${path}: not a host predictors file: invalid JSON`);
  }
  const parsed = ReferenceSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new UserError(`${path}: ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`);
  }
  const raw = parsed.data;
  const predictors = parsePredictors(raw.predictors, path);
  return {
    description: raw.description,
    gflops: raw.gflops,
    runtime: raw.runtime,
    model: predictorHost(predictors, raw.gflops),
  };
}

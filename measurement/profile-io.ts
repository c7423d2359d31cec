/**
 * Profile files: versioned JSON (schemas/profile.ts). Reading checks the format and, given the model's layers, that
 * the profile is for exactly those layers; every problem is one ProfileError line naming the file.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { errorMessage } from '../runtime/errors.ts';
import { type Profile, ProfileError, parseProfile } from '../schemas/profile.ts';

const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim();

/**
 * Reads and checks a profile file. With `layers` (the model's nodes in topological order, e.g.
 * `handle.analysis.nodes`), the profile must have exactly those layers, in that order.
 */
export async function readProfileFile(path: string, layers?: readonly { name: string }[]): Promise<Profile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ProfileError(`${path}: cannot read the profile (${code ?? oneLine(errorMessage(err))})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ProfileError(`${path}: not a profile: invalid JSON (${oneLine(errorMessage(err))})`);
  }
  try {
    return parseProfile(raw, path, layers);
  } catch (err) {
    if (err instanceof ProfileError) throw new ProfileError(oneLine(err.message));
    throw err;
  }
}

/** Writes a profile as JSON; the file appears whole (temporary file, then rename). */
export async function writeProfileFile(path: string, profile: Profile): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, `${JSON.stringify(profile, null, 2)}\n`);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

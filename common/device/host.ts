/**
 * This host's measured speed, kept between runs: `edgecut device bench` saves it, and predicted profiles read it
 * to scale this host's predictions to a device preset. Without a saved measurement a short one is taken.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchDevice, type DeviceBench } from './bench.ts';

function cacheDir(): string {
  return process.env.EDGECUT_CACHE_DIR || fileURLToPath(new URL('../../.cache/', import.meta.url));
}

/** Where this host's bench result is kept. */
export function hostBenchPath(threads: number): string {
  return join(cacheDir(), `device-${hostname().replace(/[^A-Za-z0-9._-]/g, '-')}-t${threads}.json`);
}

/** Saves a bench result; returns the path. */
export async function saveHostBench(result: DeviceBench): Promise<string> {
  const path = hostBenchPath(result.threads);
  await mkdir(cacheDir(), { recursive: true });
  await writeFile(path, `${JSON.stringify(result, null, 2)}\n`);
  return path;
}

/** The saved bench result for this host, or a fresh short measurement (saved for next time). */
export async function hostBench(threads = 1): Promise<DeviceBench> {
  try {
    return JSON.parse(await readFile(hostBenchPath(threads), 'utf8')) as DeviceBench;
  } catch {
    const result = await benchDevice({ threads, seconds: 0.5 });
    await saveHostBench(result);
    return result;
  }
}

/**
 * This host's measured speed, kept between runs: `edgecut device bench` saves it, and predicted profiles read it
 * to scale this host's predictions to a device preset. Without a saved measurement a short one is taken.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { cpus, hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchDevice, type DeviceBench } from './bench.ts';
import { readProcsRunning } from './emulation.ts';

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

/**
 * The saved bench result for this host, or a fresh short measurement, saved for next time only when the host was
 * not busy meanwhile (a measurement under load, e.g. while a test suite runs, would make every later emulation and
 * prediction of this host wrong until the file is deleted).
 */
export async function hostBench(
  threads = 1,
  /** Threads runnable on this host now (tests inject it). */
  runnable: () => number | undefined = readProcsRunning,
): Promise<DeviceBench> {
  try {
    return JSON.parse(await readFile(hostBenchPath(threads), 'utf8')) as DeviceBench;
  } catch {
    const before = runnable();
    const result = await benchDevice({ threads, seconds: 0.5 });
    const after = runnable();
    // Runnable threads besides this one, at the start and the end.
    const others = before === undefined || after === undefined ? 0 : (before + after) / 2 - 1;
    if (others < BUSY_OTHERS * cpus().length) await saveHostBench(result);
    return result;
  }
}

/** Other runnable threads per core above which a fresh measurement is used but not saved. */
const BUSY_OTHERS = 0.5;

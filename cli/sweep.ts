/**
 * `edgecut profile --sweep [--out sweep.json] [--quick]`: times a grid of single-layer models on this host
 * (measurement/sweep/) and writes the samples, the training data of the latency predictors.
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { sweepConfigs } from '../measurement/sweep/configs.ts';
import { runSweep } from '../measurement/sweep/run.ts';
import { countFlag } from './profile.ts';
import { startProgress } from './progress.ts';

/** Flags of the sweep, as commander gives them. */
export interface SweepFlags {
  out?: string;
  quick?: boolean;
  seed?: string;
  passes?: string;
}

/** Runs the sweep and writes it (default `sweep.json`); progress on stderr when it is a terminal. */
export async function sweepCommand(flags: SweepFlags): Promise<void> {
  const out = flags.out ?? 'sweep.json';
  const size = flags.quick ? 'quick' : 'full';
  const seed = countFlag('seed', flags.seed, 1, 0, 2 ** 31 - 1);
  const passes = flags.passes === undefined ? undefined : countFlag('passes', flags.passes, 1, 1, 100);
  const total = sweepConfigs(size, seed).length;
  const progress = startProgress('edgecut profile --sweep', { since: performance.timeOrigin });
  let sweep: Awaited<ReturnType<typeof runSweep>>;
  try {
    sweep = await runSweep({
      size,
      seed,
      ...(passes === undefined ? {} : { passes }),
      onProgress: (done, all, c) => progress.step(`sweep: timing layer ${c.id}`, done, all),
    });
    progress.stop();
  } finally {
    progress.stop('failed');
  }
  await mkdir(dirname(out), { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(sweep, null, 1)}\n`);
  await rename(tmp, out);
  process.stdout.write(
    `wrote ${out}: ${sweep.samples.length} of ${total} layers (${size}, seed ${seed}, ${sweep.passes} pass${sweep.passes === 1 ? '' : 'es'}) ` +
      `in ${(sweep.elapsedMs / 1000).toFixed(1)} s; host load ${sweep.load[0].toFixed(1)} -> ${sweep.load[1].toFixed(1)}\n`,
  );
}

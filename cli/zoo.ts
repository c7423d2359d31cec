/**
 * `edgecut zoo list` and `edgecut zoo build`.
 */
import { copyFile, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { isZooName, ZOO, ZOO_NAMES, zooModelPath } from '../model/zoo/index.ts';
import { UserError } from '../runtime/errors.ts';
import { table } from './format.ts';
import { withProgress } from './progress.ts';

/** `edgecut zoo list`. */
export function zooListCommand(): void {
  const rows = ZOO_NAMES.map((n) => {
    const e = ZOO[n];
    return [n, e.title, `[${e.input.join('x')}]`, e.publishedParams.toLocaleString('en-US')];
  });
  process.stdout.write(table(['name', 'architecture', 'input', 'published params'], rows, [3]));
}

/** `edgecut zoo build <name> --out <file>`. */
export async function zooBuildCommand(name: string, opts: { out: string; seed?: string }): Promise<void> {
  if (!isZooName(name))
    throw new UserError(`unknown zoo model "${name}"; the zoo has: ${ZOO_NAMES.join(', ')}`);
  const seed = opts.seed === undefined ? 1 : Number(opts.seed);
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new UserError(`--seed=${JSON.stringify(opts.seed)} is not allowed: expected a whole number >= 0`);
  }
  const cached = await withProgress(
    'edgecut zoo build',
    async (p) => {
      p.step(`building zoo model ${name} (seed ${seed})`);
      return zooModelPath(name, { seed });
    },
    { since: performance.timeOrigin },
  );
  await mkdir(dirname(opts.out), { recursive: true });
  await copyFile(cached, opts.out);
  process.stdout.write(`wrote ${opts.out} (${ZOO[name].title}, seed ${seed})\n`);
}

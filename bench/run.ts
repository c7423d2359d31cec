/**
 * `npm run bench -- <name>`: the benchmarks. Each prints a table of medians measured in one run on this host
 * (2 noisy cores: compare ratios from the same run, not absolute figures across runs).
 */
import { UserError } from '../common/errors.ts';

const BENCHES: Record<string, () => Promise<{ run(args: string[]): Promise<void> }>> = {
  model: () => import('./model.ts'),
  predict: () => import('./predict.ts'),
  planner: () => import('./planner.ts'),
  pipeline: () => import('./pipeline.ts'),
  loop: () => import('./loop.ts'),
  emulation: () => import('./emulation.ts'),
  paper: () => import('./paper/run.ts'),
  soak: () => import('./soak.ts'),
  fairness: () => import('./fairness.ts'),
  broker: () => import('./broker.ts'),
};

const [name, ...args] = process.argv.slice(2);
const load = name ? BENCHES[name] : undefined;
if (!load) {
  process.stderr.write(`usage: npm run bench -- <${Object.keys(BENCHES).join('|')}> [options]\n`);
  process.exit(2);
}
try {
  await (await load()).run(args);
} catch (err) {
  // A bad flag is one line naming it, as the CLI's (common/errors.ts); anything else keeps its stack.
  if (!(err instanceof UserError)) throw err;
  process.stderr.write(`bench ${name}: ${err.message}\n`);
  process.exit(2);
}

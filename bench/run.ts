/**
 * `npm run bench -- <name>`: the benchmarks. Each prints a table of medians measured in one run on this host
 * (2 noisy cores: compare ratios from the same run, not absolute figures across runs).
 */
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
};

const [name, ...args] = process.argv.slice(2);
const load = name ? BENCHES[name] : undefined;
if (!load) {
  process.stderr.write(`usage: npm run bench -- <${Object.keys(BENCHES).join('|')}> [options]\n`);
  process.exit(2);
}
await (await load()).run(args);

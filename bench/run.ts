/**
 * `npm run bench -- <name>`: the benchmarks. Each prints a table of medians measured in one run on this host
 * (2 noisy cores: compare ratios from the same run, not absolute figures across runs).
 */
import { parseArgs } from 'node:util';
import { errorMessage, UserError } from '../runtime/errors.ts';

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

/** Each bench's own flags: `true` for a switch, a value's name for a flag that takes one. */
const FLAGS: Record<string, Record<string, true | string>> = {
  model: { runs: 'N', model: 'NAME' },
  predict: { quick: true, fresh: true, normalise: true, runs: 'N', rounds: 'N' },
  planner: { model: 'NAME', iterations: 'N' },
  pipeline: { quick: true, frames: 'N', window: 'N', rounds: 'N', cut: 'K|NODE' },
  loop: { quick: true, only: 'STEP', model: 'FILE' },
  emulation: { repeats: 'N', factor: 'X' },
  paper: {
    quick: true,
    out: 'FILE',
    doc: 'DIR',
    jobs: 'N',
    fresh: true,
    'render-only': true,
    only: 'ID',
    'auto-only': true,
    'pipelined-only': true,
    'refine-only': true,
  },
  soak: { minutes: 'N', out: 'FILE' },
  fairness: { burst: 'N' },
  broker: { quick: true, rounds: 'N', seconds: 'S', sizes: 'LIST', clients: 'LIST', processes: 'P' },
};

function usage(name: string): string {
  const flags = Object.entries(FLAGS[name] ?? {}).map(([f, v]) =>
    v === true ? `[--${f}]` : `[--${f} ${v}]`,
  );
  return `usage: npm run bench -- ${name} ${flags.join(' ')}`.trimEnd();
}

/** Checks a bench's arguments against its flags: an unknown flag or a missing value is one line naming it. */
function checkBenchArgs(name: string, args: string[]): void {
  const options = Object.fromEntries(
    Object.entries(FLAGS[name] ?? {}).map(
      ([f, v]) => [f, { type: v === true ? 'boolean' : 'string' }] as const,
    ),
  );
  try {
    parseArgs({ args, options, strict: true, allowPositionals: false });
  } catch (err) {
    throw new UserError(`${errorMessage(err).replace(/\. To specify .*$/s, '')}; ${usage(name)}`);
  }
}

const [name, ...args] = process.argv.slice(2);
const load = name ? BENCHES[name] : undefined;
if (!load || !name) {
  process.stderr.write(`usage: npm run bench -- <${Object.keys(BENCHES).join('|')}> [options]\n`);
  process.exit(2);
}
if (args.includes('--help') || args.includes('-h')) {
  process.stdout.write(`${usage(name)}\n`);
  process.exit(0);
}
try {
  checkBenchArgs(name, args);
  await (await load()).run(args);
} catch (err) {
  // A bad flag is one line naming it, as the CLI's (runtime/errors.ts); anything else keeps its stack.
  if (!(err instanceof UserError)) throw err;
  process.stderr.write(`bench ${name}: ${err.message}\n`);
  process.exit(2);
}

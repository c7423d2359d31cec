/**
 * `edgecut profile <file|zoo-name>`: measures the per-layer latency profile of a model on this host
 * (measurement/profiler.ts), prints it as a table with the prefix-sum check, and writes or prints it as JSON.
 */
import { writeProfileFile } from '../measurement/profile-io.ts';
import { CHECK_TOLERANCE, profileModel } from '../measurement/profiler.ts';
import { UserError } from '../runtime/errors.ts';
import type { Profile } from '../schemas/profile.ts';
import { table } from './format.ts';
import { loadModelRef } from './model-source.ts';
import { startProgress } from './progress.ts';

/** Flags of `edgecut profile`, as commander gives them. */
export interface ProfileFlags {
  runs?: string;
  warmup?: string;
  threads?: string;
  checkCuts?: string;
  json?: boolean;
  out?: string;
  // --- `edgecut profile --sweep` (cli/sweep.ts; the latency predictors' layer sweep) ---
  /** Run the layer sweep instead of profiling a model. */
  sweep?: boolean;
  /** With --sweep: the quick size (~30 layers, seconds). */
  quick?: boolean;
  /** With --sweep: seed of the configuration list. */
  seed?: string;
  /** With --sweep: timing passes. */
  passes?: string;
}

/** A whole-number flag within [min, max]; a UserError naming the flag, the value and the range otherwise. */
export function countFlag(
  flag: string,
  value: string | undefined,
  def: number,
  min: number,
  max: number,
): number {
  if (value === undefined) return def;
  const n = /^\s*\d+\s*$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw new UserError(
      `--${flag}=${JSON.stringify(value)} is not allowed: expected a whole number from ${min} to ${max}`,
    );
  return n;
}

// Whole-model wall clock over CPU time above which the host counts as busy (other processes took the CPU).
const BUSY_RATIO = 1.25;
// A scale outside [1 / SCALE_LIMIT, SCALE_LIMIT] means the per-node and whole-model runs disagree.
const SCALE_LIMIT = 1.5;

const ms = (x: number) => x.toFixed(3);
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** The human-readable report of a profile: layer table, summary, check table. */
export function formatProfile(p: Profile): string {
  const total = p.layers.reduce((s, l) => s + l.ms, 0);
  let cumulative = 0;
  const unreported = new Set(p.measurement?.unreported ?? []);
  const rows = p.layers.map((l) => {
    cumulative += l.ms;
    return [
      String(l.index),
      l.name,
      l.op,
      ms(l.ms),
      ms(l.p90),
      ms(cumulative),
      total > 0 ? pct(l.ms / total) : '-',
      unreported.has(l.name) ? 'not run by onnxruntime (0 ms)' : '',
    ];
  });
  const out: string[] = [];
  out.push(
    `${p.model.name}: ${p.layers.length} layers on ${p.device.id} (${p.device.description}), ` +
      `${p.runtime.name} ${p.runtime.version}, ${p.runtime.threads} thread${p.runtime.threads === 1 ? '' : 's'}\n\n`,
  );
  out.push(table(['#', 'name', 'op', 'ms', 'p90 ms', 'cumul. ms', 'share', ''], rows, [0, 3, 4, 5, 6]));
  out.push('\n');
  const clock = p.measurement?.clock === 'cpu' ? ', CPU time' : '';
  out.push(
    `whole model, production settings (${p.runtime.optimization}): median ${ms(p.wholeMs.median)} ms, ` +
      `p90 ${ms(p.wholeMs.p90)} ms${clock} (${p.runs} runs after ${p.warmup} warm-up)\n`,
  );
  if (p.measurement) {
    if (p.measurement.clock === 'cpu') {
      const busy = p.measurement.wholeWallMs.median / p.wholeMs.median;
      out.push(
        `  wall clock in the same runs: median ${ms(p.measurement.wholeWallMs.median)} ms, ` +
          `p90 ${ms(p.measurement.wholeWallMs.p90)} ms\n`,
      );
      if (busy > BUSY_RATIO)
        out.push(
          `  warning: the host was busy (wall clock ${busy.toFixed(1)}x the CPU time); per-layer shares come from ` +
            `wall-clock kernel times and may be off: profile again on a quiet host\n`,
        );
    }
    out.push(
      `per-node sum, optimisation ${p.measurement.layerOptimization}: ${ms(p.measurement.layerSumMs)} ms; ` +
        `scale ${p.scale.toFixed(3)} (layer times above are scaled by it)\n`,
    );
    if (p.scale < 1 / SCALE_LIMIT || p.scale > SCALE_LIMIT)
      out.push(
        `  warning: scale ${p.scale.toFixed(2)} is far from 1 (0.87 to 1.01 measured): the whole-model runs ` +
          `and the per-node runs saw different conditions (a busy host?); profile again on a quiet host\n`,
      );
    if (p.measurement.unreported.length > 0)
      out.push(`not run by onnxruntime (0 ms): ${p.measurement.unreported.join(', ')}\n`);
    const attributed = Object.entries(p.measurement.attributed);
    if (attributed.length > 0)
      out.push(
        `inserted by onnxruntime, time added to a layer: ${attributed.map(([n, to]) => `${n} -> ${to}`).join(', ')}\n`,
      );
    if (p.measurement.excluded.length > 0)
      out.push(
        `inserted by onnxruntime on constants only, folded in production, not counted: ${p.measurement.excluded.length}\n`,
      );
  } else {
    out.push(`scale ${p.scale.toFixed(3)}\n`);
  }
  if (p.check) {
    out.push('\nprefix-sum check: real head (nodes 1..k, production settings) against the profile\n\n');
    const checkRows = p.check.cuts.map((c) => [
      String(c.index),
      p.layers[c.index - 1]?.name ?? '',
      c.headMs === undefined ? '' : ms(c.headMs),
      c.handoffMs === undefined ? '' : ms(c.handoffMs),
      ms(c.measuredMs),
      ms(c.profiledMs),
      pct(c.error),
    ]);
    out.push(
      table(
        ['cut', 'after', 'head ms', 'hand-off ms', 'measured ms', 'profile ms', 'error'],
        checkRows,
        [0, 2, 3, 4, 5, 6],
      ),
    );
    out.push(
      `\nmeasured = head run time minus the extra cost of handing the cut's tensors to JavaScript.\n` +
        `within ${Math.round(CHECK_TOLERANCE * 100)}%: ${p.check.maxError <= CHECK_TOLERANCE ? 'yes' : 'no'} ` +
        `(max error ${pct(p.check.maxError)})\n`,
    );
  }
  return out.join('');
}

/** `edgecut profile <file|zoo-name> [--runs N] [--threads T] [--warmup W] [--check-cuts C] [--json] [--out F]`. */
export async function profileCommand(ref: string | undefined, flags: ProfileFlags): Promise<void> {
  // --- `edgecut profile --sweep [--out sweep.json] [--quick]`: a separate command sharing the name (cli/sweep.ts).
  if (flags.sweep) {
    if (ref !== undefined) throw new UserError('edgecut profile --sweep takes no model');
    const { sweepCommand } = await import('./sweep.ts');
    await sweepCommand(flags);
    return;
  }
  if (ref === undefined)
    throw new UserError('edgecut profile needs a model (a file or a zoo name), or --sweep');
  // --- end of the --sweep branch
  const runs = countFlag('runs', flags.runs, 20, 1, 100_000);
  const warmup = countFlag('warmup', flags.warmup, 3, 0, 100_000);
  const threads = countFlag('threads', flags.threads, 1, 1, 1024);
  const checkCuts = countFlag('check-cuts', flags.checkCuts, 5, 0, 1000);
  const progress = startProgress('edgecut profile', { since: performance.timeOrigin });
  let profile: Profile;
  try {
    progress.step(`loading the model ${ref}`);
    const handle = await loadModelRef(ref);
    profile = await profileModel(handle, {
      runs,
      warmup,
      threads,
      checkCuts,
      onProgress: (done, total, phase) =>
        progress.step(
          phase === 'preparing' ? 'profiling: opening the layer sessions' : 'profiling: timing round',
          done,
          total,
        ),
    });
    progress.stop();
  } finally {
    progress.stop('failed');
  }
  if (flags.out) await writeProfileFile(flags.out, profile);
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(profile, null, 2)}\n`);
    return;
  }
  process.stdout.write(formatProfile(profile));
  if (flags.out) process.stdout.write(`\nwrote ${flags.out}\n`);
}

/**
 * Progress of a CLI wait: once a wait has lasted 2 s, the current step and the elapsed time go to stderr, never to
 * stdout (where commands print their results and JSON). On a terminal it is a cli-progress line that redraws in place
 * and is cleared at the end; otherwise (logs, pipes, tests) plain lines such as `starting the broker ... 3.1 s` or
 * `profiling layer 12/58 ... 8.4 s`: one when the step changes (counted steps at most once a second), one every 5 s
 * while a step lasts, and `<what> done in 9.2 s` at the end when any was printed.
 *
 * `EDGECUT_PROGRESS_AFTER_MS` overrides the 2 s (0 shows every wait; a large value hides them).
 */
import cliProgress from 'cli-progress';
import type { HostModel } from '../planning/preset-profile.ts';
import { UserError } from '../runtime/errors.ts';

/** A wait in progress. */
export interface Progress {
  /** Names the current step; with `done` and `total`, a counted one (`profiling layer 12/58`). */
  step(name: string, done?: number, total?: number): void;
  /**
   * Ends the wait: clears the terminal line, or prints the closing line when any progress was shown; a `failed` wait
   * prints none (its error follows). Later calls do nothing, so `finally { p.stop('failed') }` is safe after `stop()`.
   */
  stop(outcome?: 'done' | 'failed'): void;
}

/** Where and when progress shows. */
export interface ProgressOptions {
  /** Where it goes (default process.stderr). */
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** Whether to draw a terminal line (default: the stream is a TTY). */
  tty?: boolean;
  /** Silence before the first output (default 2000 ms, or EDGECUT_PROGRESS_AFTER_MS). */
  afterMs?: number;
  /** Plain output: a line at least this often while a step lasts (default 5000 ms). */
  everyMs?: number;
  /** Plain output: counted steps at most this often (default 1000 ms). */
  countEveryMs?: number;
  /** When the wait began, in Date.now() terms (default now; `performance.timeOrigin` counts from the process start). */
  since?: number;
}

const DEFAULT_AFTER_MS = 2000;

/** The silence before progress shows: EDGECUT_PROGRESS_AFTER_MS, else 2 s. */
export function progressAfterMs(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.EDGECUT_PROGRESS_AFTER_MS;
  if (raw === undefined || raw === '') return DEFAULT_AFTER_MS;
  const n = /^\s*\d+\s*$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(n))
    throw new UserError(
      `EDGECUT_PROGRESS_AFTER_MS=${JSON.stringify(raw)} is not allowed: expected a whole number of milliseconds >= 0`,
    );
  return n;
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/**
 * Starts timing a wait named `what` (for the closing line, e.g. `demo start`); nothing shows before `afterMs`.
 */
export function startProgress(what: string, opts: ProgressOptions = {}): Progress {
  const stream = opts.stream ?? process.stderr;
  const tty = opts.tty ?? stream.isTTY === true;
  const afterMs = opts.afterMs ?? progressAfterMs();
  const everyMs = opts.everyMs ?? 5000;
  const countEveryMs = opts.countEveryMs ?? 1000;
  const started = opts.since ?? Date.now();
  let name = what;
  let done: number | undefined;
  let total: number | undefined;
  let shown = false;
  let stopped = false;
  let lastLine = Number.NEGATIVE_INFINITY;
  let lastName = '';
  let lastText = '';
  const label = () => (total === undefined ? name : `${name} ${done}/${total}`);

  const bar = tty
    ? new cliProgress.SingleBar(
        {
          stream: stream as NodeJS.WritableStream,
          hideCursor: true,
          clearOnComplete: true,
          fps: 5,
          format: (options, params) =>
            total === undefined
              ? `${name} ... ${seconds(Date.now() - started)}`
              : `${name} [${cliProgress.Format.BarFormat(params.progress, options)}] ${done}/${total} ... ${seconds(Date.now() - started)}`,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;

  const plainLine = (force: boolean) => {
    const now = Date.now();
    const text = label();
    const since = now - lastLine;
    const due =
      force ||
      since >= everyMs ||
      (text !== lastText && (total === undefined || name !== lastName || since >= countEveryMs));
    if (!due) return;
    lastLine = now;
    lastText = text;
    lastName = name;
    stream.write(`${text} ... ${seconds(now - started)}\n`);
  };

  const show = () => {
    if (stopped) return;
    if (!shown) {
      if (Date.now() - started < afterMs) return;
      shown = true;
      if (bar) {
        bar.start(total ?? 1, done ?? 0);
        return;
      }
      plainLine(true);
      return;
    }
    if (bar) bar.update(done ?? 0);
    else plainLine(false);
  };

  const timer = setInterval(show, Math.max(10, Math.min(250, afterMs || 250)));
  timer.unref();

  return {
    step(n, d, t) {
      if (stopped) return;
      name = n;
      done = d;
      total = t;
      if (bar && shown) bar.setTotal(t ?? 1);
      show();
    },
    stop(outcome = 'done') {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      if (!shown) return;
      if (bar) bar.stop();
      else if (outcome === 'done') stream.write(`${what} done in ${seconds(Date.now() - started)}\n`);
    },
  };
}

/** Runs `work` as a wait named `what`, stopping the progress however it ends (no closing line when it throws). */
export async function withProgress<T>(
  what: string,
  work: (p: Progress) => Promise<T>,
  opts?: ProgressOptions,
): Promise<T> {
  const p = startProgress(what, opts);
  try {
    const result = await work(p);
    p.stop();
    return result;
  } finally {
    p.stop('failed');
  }
}

/** The host model with each prediction named as a step of `progress` (the presets' calibration loads zoo models). */
export function trackHost(host: HostModel, progress: Progress): HostModel {
  const asked = new Set<string>();
  return {
    gflops: host.gflops,
    layers(handle) {
      progress.step(`predicting the layer times of ${handle.name}`);
      return host.layers(handle);
    },
    total(name) {
      // Each zoo model is loaded once (the host caches the totals): a step for the first asking only.
      if (!asked.has(name)) progress.step(`calibrating the device presets on zoo model ${name}`);
      asked.add(name);
      return host.total(name);
    },
  };
}

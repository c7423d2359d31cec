/**
 * A live scenario: the real services as separate processes (the embedded broker, a planner, tail workers and one
 * edge device streaming frames), run as a user runs them, with the outcome measured: every frame's report (the
 * edge's `REPORT=json` lines) and every plan the planner published (its log). The integration tests of the closed
 * loop and the paper benchmarks are built on it.
 */
import { type ServiceProcess, startBrokerProcess, startService } from '../cli/processes.ts';
import { median, quantile } from '../planning/stats.ts';

/** One frame as the edge reported it (services/edge-head/report.ts `frameJson`). */
export interface FrameLine {
  frame: number;
  at: number;
  cut: number;
  after: string | null;
  headMs: number;
  transferMs: number;
  tailMs: number;
  totalMs: number;
  waitMs: number;
  queueMs: number;
  requestBytes: number;
  tailBy: string;
  fallback: string | null;
  fps: number;
  hostMs?: { head: number; tail?: number };
}

/** One plan the planner published. */
export interface PlanLine {
  at: number;
  cut: number;
  reason: string;
}

/** What to run. */
export interface ScenarioOptions {
  /** `edgecut edge` arguments (model, source, emulation, window...); `--report json` and the broker are added. */
  edge: string[];
  /** `edgecut planner` arguments; `false` runs no planner (the caller publishes plans, e.g. in `drive`). */
  planner?: string[] | false;
  /** `edgecut tail` arguments of each worker (one entry per worker); the models directory must be among them. */
  tails: string[][];
  /** Environment of every service. */
  env?: Record<string, string>;
  /** Working directory of every service. */
  cwd?: string;
  /** Called for each frame as it is reported. */
  onFrame?: (f: FrameLine) => void;
  /** Called for each plan as it is published. */
  onPlan?: (p: PlanLine) => void;
  /** Called once the edge is up (connected, profile published), with its process and the time (ms). */
  onEdgeReady?: (edge: ServiceProcess, at: number) => void;
  /** Called once every service is up, before the edge starts, with their processes (e.g. to pin them to CPUs). */
  onServices?: (procs: { broker: ServiceProcess; planner: ServiceProcess; tails: ServiceProcess[] }) => void;
  /** Called with the broker's URL once it is up (e.g. to watch topics). */
  onBroker?: (url: string) => void;
  /**
   * Drives a running scenario (publishes plans, waits for frames): called once the edge is up, with the broker's
   * URL; when it resolves the edge is stopped and the scenario ends, when it rejects the scenario fails.
   */
  drive?: (ctx: { url: string; edge: ServiceProcess }) => Promise<void>;
  /** Gives up after this long (ms). Default 10 minutes. */
  timeoutMs?: number;
}

/** What happened. */
export interface ScenarioResult {
  frames: FrameLine[];
  plans: PlanLine[];
  /** The edge's exit code. */
  exitCode: number;
  /** When the edge was up (ms, Date.now()); emulated uplink schedules count from about then. */
  edgeReadyAt: number;
  /** The edge's stderr lines at warn level and above (JSON log lines), for diagnosis. */
  warnings: string[];
  /** Cuts whose tail the planner asked the workers to load (ahead of a plan, or while the link was measured). */
  prepared: number[];
}

/** Runs one scenario to the end of the edge's frames; every process is stopped afterwards. */
export async function runScenario(o: ScenarioOptions): Promise<ScenarioResult> {
  const procs: ServiceProcess[] = [];
  const frames: FrameLine[] = [];
  const plans: PlanLine[] = [];
  const warnings: string[] = [];
  const prepared: number[] = [];
  const quiet = { onStderr: () => undefined, onStdout: () => undefined };
  const base = { ...(o.cwd !== undefined ? { cwd: o.cwd } : {}) };
  try {
    const { proc: broker, url } = await startBrokerProcess({
      ...quiet,
      ...base,
      env: { LOG_LEVEL: 'error' },
    });
    procs.push(broker);
    o.onBroker?.(url);
    const env = { LOG_LEVEL: 'error', ...o.env, MQTT_URL: url };
    const tails = o.tails.map((args, i) =>
      startService(`tail-${i + 1}`, ['tail', '--worker-id', `tail-${i + 1}`, ...args], {
        ...quiet,
        ...base,
        env,
      }),
    );
    const planner =
      o.planner === false
        ? undefined
        : startService('planner', ['planner', ...(o.planner ?? [])], {
            ...quiet,
            ...base,
            env: { ...env, LOG_LEVEL: 'info' },
            onStderr: (line) => {
              if (line.includes('"asking the tail workers to load a tail')) {
                const cut = (JSON.parse(line) as { cut?: unknown }).cut;
                if (typeof cut === 'number') prepared.push(cut);
                return;
              }
              const p = parsePlanLog(line);
              if (!p) return;
              plans.push(p);
              o.onPlan?.(p);
            },
          });
    procs.push(...tails, ...(planner ? [planner] : []));
    await Promise.all([...tails.map((t) => t.ready), planner?.ready]);
    if (planner) o.onServices?.({ broker, planner, tails });
    const edge = startService('edge', ['edge', ...o.edge, '--report', 'json'], {
      ...base,
      env: { ...env, LOG_LEVEL: 'warn' },
      onStdout: (line) => {
        if (!line.startsWith('{"frame"')) return;
        const f = JSON.parse(line) as FrameLine;
        frames.push(f);
        o.onFrame?.(f);
      },
      onStderr: (line) => warnings.push(line),
    });
    procs.push(edge);
    let edgeReadyAt = Number.NaN;
    void edge.ready.then(
      () => {
        edgeReadyAt = Date.now();
        o.onEdgeReady?.(edge, edgeReadyAt);
      },
      () => undefined,
    );
    const timeoutMs = o.timeoutMs ?? 600_000;
    let timer: NodeJS.Timeout | undefined;
    let driven: Promise<number> | undefined;
    if (o.drive) {
      const drive = o.drive;
      const done = edge.ready.then(() => drive({ url, edge }));
      done.catch(() => undefined); // reported through the race below, or moot once the edge has exited
      let stopping = false;
      driven = Promise.race([
        done.then(() => {
          stopping = true;
          return edge.stop(10_000);
        }),
        edge.exited.then((code) => {
          if (stopping) return code;
          throw new Error(`the edge exited (code ${code}) while the scenario was driven`);
        }),
      ]);
    }
    const exitCode = await Promise.race([
      driven ?? edge.exited,
      new Promise<number>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`scenario did not finish within ${timeoutMs} ms (${frames.length} frames)`)),
          timeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    return { frames, plans, exitCode, warnings, edgeReadyAt, prepared };
  } finally {
    for (const p of procs.reverse()) await p.stop(5000);
  }
}

/** A `plan published` log line of the planner, or undefined. */
function parsePlanLog(line: string): PlanLine | undefined {
  if (!line.includes('"plan published"')) return undefined;
  try {
    const j = JSON.parse(line) as { time?: number; cut?: number; reason?: string };
    if (typeof j.cut !== 'number') return undefined;
    return { at: j.time ?? Date.now(), cut: j.cut, reason: j.reason ?? '' };
  } catch {
    return undefined;
  }
}

/** Figures of a run of frames. */
export interface FrameStats {
  frames: number;
  /** Frames whose tail a worker ran. */
  offloaded: number;
  fallbacks: number;
  /** Frames per second: frames / (last answer - first capture). */
  fps: number;
  medianMs: number;
  p95Ms: number;
  /** The cut used most. */
  cut: number;
}

/** Figures of `frames` (e.g. after a warm-up). */
export function frameStats(frames: readonly FrameLine[]): FrameStats {
  if (frames.length === 0)
    return { frames: 0, offloaded: 0, fallbacks: 0, fps: 0, medianMs: 0, p95Ms: 0, cut: -1 };
  const first = Math.min(...frames.map((f) => f.at - f.totalMs));
  const last = Math.max(...frames.map((f) => f.at));
  const totals = frames.map((f) => f.totalMs);
  const counts = new Map<number, number>();
  for (const f of frames) counts.set(f.cut, (counts.get(f.cut) ?? 0) + 1);
  const cut = [...counts].sort((a, b) => b[1] - a[1])[0]![0];
  return {
    frames: frames.length,
    offloaded: frames.filter((f) => !f.fallback && f.tailBy !== 'local').length,
    fallbacks: frames.filter((f) => f.fallback).length,
    fps: last > first ? (frames.length * 1000) / (last - first) : 0,
    medianMs: median(totals),
    p95Ms: quantile(totals, 0.95),
    cut,
  };
}

/** Plan changes: plans after the first whose cut differs from the one before. */
export function planChanges(plans: readonly PlanLine[]): number {
  let n = 0;
  for (let i = 1; i < plans.length; i++) if (plans[i]!.cut !== plans[i - 1]!.cut) n++;
  return n;
}

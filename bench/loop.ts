/**
 * `npm run bench -- loop`: the closed loop's behaviour, live, in the paper's scenario (SqueezeNet on an emulated
 * Raspberry Pi 3, one tail worker, the embedded broker, the planner with its defaults, one frame at a time): a cold
 * start, an uplink stepping 100 -> 1 -> 10 Mbit/s mid-stream, and CPU load switched on and off on the device. For
 * each: how long until the new plan, how many frames until the frames run on it, plan changes, fallbacks, and frames
 * lost (frames asked for but never answered).
 *
 * The model: the real SqueezeNet of ../shared when present (`--model FILE` for another), else the zoo's
 * SqueezeNet 1.0 built in code. The load step starts two busy processes per core (at nice 19) and turns on
 * EMULATE_CONTENTION, so the busy processes slow the emulated device as Fig. 17 says: (runnable others + 1) / cores.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { table } from '../cli/format.ts';
import { EDGECUT_BIN } from '../cli/processes.ts';
import type { StepRecord } from './paper/results.ts';
import { type FrameLine, type PlanLine, runScenario, type ScenarioResult } from './scenario.ts';

const exec = promisify(execFile);
const SHARED = resolve(fileURLToPath(new URL('..', import.meta.url)), '../shared');

interface Model {
  path: string;
  dir: string;
  source: string[];
}

async function model(args: string[]): Promise<Model> {
  const i = args.indexOf('--model');
  if (i >= 0 && args[i + 1]) {
    const path = resolve(args[i + 1]!);
    return { path, dir: resolve(path, '..'), source: ['--source', 'synthetic'] };
  }
  const real = join(SHARED, 'models/squeezenet1.0-fp16.onnx');
  const fish = join(SHARED, 'images/fish.png');
  if (existsSync(real) && existsSync(fish))
    return {
      path: real,
      dir: join(SHARED, 'models'),
      source: ['--source', `image:${fish}`, '--preprocess', '{"channels":"BGR"}'],
    };
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-bench-loop-'));
  const path = join(dir, 'squeezenet1.0.onnx');
  await exec(process.execPath, [EDGECUT_BIN, 'zoo', 'build', 'squeezenet1.0', '--out', path]);
  return { path, dir, source: ['--source', 'synthetic'] };
}

/** One step of a scenario: from `atMs` after the edge was up, until the next step. */
interface Step {
  name: string;
  atMs: number;
}

/** What one step did. */
interface StepRow {
  scenario: string;
  step: string;
  /** Time from the step to the first plan published after it (ms), or null when no plan came. */
  toPlanMs: number | null;
  /** Frames answered after the step before the first one that ran on the step's final cut. */
  framesUntilRight: number;
  planChanges: number;
  fallbacks: number;
  finalCut: number;
}

function analyse(name: string, r: ScenarioResult, steps: Step[], endAt: number): StepRow[] {
  return steps.map((step, i) => {
    const from = r.edgeReadyAt + step.atMs;
    const to = i + 1 < steps.length ? r.edgeReadyAt + steps[i + 1]!.atMs : endAt;
    const plans = r.plans.filter((p) => p.at >= from && p.at < to);
    const before = [...r.plans].reverse().find((p) => p.at < from);
    const frames = r.frames.filter((f) => f.at - f.totalMs >= from && f.at < to);
    const final = plans.length ? plans[plans.length - 1]!.cut : (before?.cut ?? -1);
    let changes = 0;
    let last = before?.cut;
    for (const p of plans) {
      if (last !== undefined && p.cut !== last) changes++;
      last = p.cut;
    }
    const right = frames.findIndex((f) => f.cut === final && !f.fallback);
    return {
      scenario: name,
      step: step.name,
      toPlanMs: plans.length ? plans[0]!.at - from : null,
      framesUntilRight: right < 0 ? frames.length : right,
      planChanges: changes,
      fallbacks: frames.filter((f) => f.fallback).length,
      finalCut: final,
    };
  });
}

function edgeArgs(m: Model, frames: number, uplink: string, extra: string[] = []): string[] {
  return [
    '--model',
    m.path,
    ...m.source,
    '--emulate-device',
    'rpi3b',
    '--emulate-uplink',
    uplink,
    '--window',
    '1',
    '--frames',
    String(frames),
    '--device-id',
    'robot',
    '--profile-runs',
    '5',
    ...extra,
  ];
}

function log(frames: FrameLine[], plans: PlanLine[], t0: () => number) {
  return {
    onFrame: (f: FrameLine) => {
      frames.push(f);
      process.stderr.write(
        `  ${((f.at - t0()) / 1000).toFixed(1).padStart(6)} s frame ${String(f.frame).padStart(3)} cut ${String(f.cut).padStart(2)} ` +
          `total ${f.totalMs.toFixed(0).padStart(5)} ms${f.fallback ? `  fallback: ${f.fallback}` : ''}\n`,
      );
    },
    onPlan: (p: PlanLine) => {
      plans.push(p);
      process.stderr.write(
        `  ${((p.at - t0()) / 1000).toFixed(1).padStart(6)} s PLAN cut ${p.cut}: ${p.reason}\n`,
      );
    },
  };
}

/** A scenario's steps as measured, with the frames and plans of the whole stream. */
interface StepRun {
  rows: StepRow[];
  lost: number;
  result: ScenarioResult;
  steps: Step[];
  t0: number;
}

type StepName = 'cold' | 'uplink' | 'load';

const TITLES: Record<StepName, string> = { cold: 'cold start', uplink: 'uplink step', load: 'device load' };

/**
 * Starts `n` busy processes standing in for a robot's navigation and video, at nice 19: they load the device's run
 * queue (which the emulation turns into Fig. 17's slowdown) without taking CPU from the broker and the workers,
 * which in a deployment run elsewhere. Returns what stops them (idempotent; also at this process's exit).
 */
export function busyProcesses(n: number): () => void {
  const hogs = Array.from({ length: n }, () =>
    spawn('nice', ['-n', '19', process.execPath, '-e', 'for(;;){}'], { stdio: 'ignore' }),
  );
  const stop = () => {
    for (const h of hogs) h.kill('SIGKILL');
    process.off('exit', stop);
  };
  process.once('exit', stop);
  return stop;
}

function stepDone(name: StepName, r: ScenarioResult, steps: Step[], frames: number, t0: number): StepRun {
  return {
    rows: analyse(TITLES[name], r, steps, Date.now()),
    lost: frames - r.frames.length,
    result: r,
    steps,
    t0,
  };
}

/** Runs one scenario of the loop benchmark. */
async function stepRun(name: StepName, m: Model, quick: boolean): Promise<StepRun> {
  const tails = [['--models-dir', m.dir, '--profile-runs', '5']];
  let t0 = Date.now();
  const track = {
    ...log([], [], () => t0),
    onEdgeReady: (_e: unknown, at: number) => {
      t0 = at;
    },
  };
  if (name === 'cold') {
    // Cold start: no bandwidth given, 1 Mbit/s.
    const frames = quick ? 6 : 16;
    process.stderr.write('cold start, 1 Mbit/s\n');
    const r = await runScenario({ edge: edgeArgs(m, frames, '1mbps'), tails, ...track });
    const steps = [{ name: 'start', atMs: 0 }];
    return stepDone('cold', r, steps, frames, t0);
  }
  if (name === 'uplink') {
    // A camera at 4 fps: at 100 Mbit/s the loop keeps up, at 1 Mbit/s frames are taken as the pipeline frees.
    const frames = 200;
    process.stderr.write('uplink 100 -> 1 -> 10 Mbit/s, camera at 4 fps\n');
    const r = await runScenario({
      edge: edgeArgs(m, frames, '100mbps,1mbps@20s,10mbps@45s', ['--fps', '4']),
      tails,
      ...track,
    });
    const steps = [
      { name: 'start at 100 Mbit/s', atMs: 0 },
      { name: '-> 1 Mbit/s', atMs: 20_000 },
      { name: '-> 10 Mbit/s', atMs: 45_000 },
    ];
    return stepDone('uplink', r, steps, frames, t0);
  }
  // Load on the device: busy processes (two per core, standing in for navigation and video) from 25 s to 55 s.
  const frames = 40;
  let stopBusy: () => void = () => {};
  const timers: NodeJS.Timeout[] = [];
  const n = 2 * cpus().length;
  process.stderr.write(`load on the device (${n} busy processes) from 25 s to 55 s, 1 Mbit/s\n`);
  try {
    const r = await runScenario({
      edge: edgeArgs(m, frames, '1mbps', ['--emulate-contention', 'true']),
      tails,
      ...track,
      onEdgeReady: (_edge, at) => {
        t0 = at;
        timers.push(
          setTimeout(() => {
            stopBusy = busyProcesses(n);
          }, 25_000),
          setTimeout(() => stopBusy(), 55_000),
        );
      },
    });
    const steps = [
      { name: 'start, idle', atMs: 0 },
      { name: 'load on', atMs: 25_000 },
      { name: 'load off', atMs: 55_000 },
    ];
    return stepDone('load', r, steps, frames, t0);
  } finally {
    for (const t of timers) clearTimeout(t);
    stopBusy();
  }
}

/** The step responses of `edgecut bench paper`: the uplink and the load changed mid-stream. */
export async function stepScenarios(which: Array<'uplink' | 'load'>): Promise<StepRecord[]> {
  const m = await model([]);
  const out: StepRecord[] = [];
  for (const name of which) {
    const s = await stepRun(name, m, false);
    const start = s.result.edgeReadyAt;
    out.push({
      name: TITLES[name],
      model: m.path.includes('/shared/') ? 'shared-squeezenet' : 'squeezenet1.0',
      emulated:
        name === 'uplink'
          ? 'edge rpi3b, one tail worker on this host, uplink 100 -> 1 -> 10 Mbit/s, camera at 4 fps, window 1'
          : `edge rpi3b with contention on (Fig. 17 from the run queue), ${2 * cpus().length} busy processes from 25 s to 55 s, uplink 1 Mbit/s, window 1`,
      steps: s.rows.map((r, i) => ({
        step: r.step,
        atMs: s.steps[i]!.atMs,
        toPlanMs: r.toPlanMs,
        planChanges: r.planChanges,
        framesUntilRight: r.framesUntilRight,
        fallbacks: r.fallbacks,
        finalCut: r.finalCut,
      })),
      lost: s.lost,
      frames: s.result.frames.map((f) => ({
        atMs: f.at - start,
        cut: f.cut,
        totalMs: f.totalMs,
        fallback: f.fallback !== null,
      })),
      plans: s.result.plans.map((p) => ({ atMs: p.at - start, cut: p.cut })),
      measuredAt: new Date().toISOString(),
    });
  }
  return out;
}

/** Runs the three scenarios and prints the table. */
export async function run(args: string[]): Promise<void> {
  const m = await model(args);
  const quick = args.includes('--quick');
  const i = args.indexOf('--only');
  const only = i >= 0 ? args[i + 1] : undefined;
  const runs = (name: StepName) => (only ? only === name : name === 'cold' || !quick);
  const rows: StepRow[] = [];
  const lost: Record<string, number> = {};
  for (const name of ['cold', 'uplink', 'load'] as const) {
    if (!runs(name)) continue;
    const s = await stepRun(name, m, quick);
    rows.push(...s.rows);
    lost[TITLES[name]] = s.lost;
  }

  process.stdout.write(
    `\n${table(
      [
        'scenario',
        'step',
        'to new plan',
        'frames until right',
        'plan changes',
        'fallbacks',
        'final cut',
        'frames lost',
      ],
      rows.map((r, i) => [
        r.scenario,
        r.step,
        r.toPlanMs === null ? '-' : `${(r.toPlanMs / 1000).toFixed(1)} s`,
        String(r.framesUntilRight),
        String(r.planChanges),
        String(r.fallbacks),
        String(r.finalCut),
        i === rows.findIndex((x) => x.scenario === r.scenario) ? String(lost[r.scenario]) : '',
      ]),
      [2, 3, 4, 5, 6, 7],
    )}`,
  );
}

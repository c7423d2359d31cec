/**
 * `edgecut demo`: the whole system on one machine, and what splitting gains. It writes the demo CNN (built in code)
 * to a temporary models directory and starts, as separate processes, the embedded broker, one tail worker, a
 * planner and an edge-head that emulates a slow device (by default the paper's edge device, a Raspberry Pi 3:
 * `--emulate-device rpi3b`). It runs two phases, measured in the same run:
 *
 * 1. device only: a planner fixing cut N, so the device runs every layer itself (`--device-frames`, default 20);
 * 2. split: a planner running Algorithm 1 (`--cut auto`, the default; or the fixed cut given), `--frames N` frames,
 *    each checked against the whole model run locally.
 *
 * The edge prints a line per frame; the demo ends with each phase's median frame time and frames per second and the
 * speedup of the split over the device alone. With `--frames N` it exits 0 only if the split phase's check passed.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { parseDeviceSpec } from '../measurement/device/emulation.ts';
import { allPresets, findPreset } from '../measurement/device/presets.ts';
import { ModelHandle } from '../model/handle.ts';
import { median } from '../planning/stats.ts';
import { UserError } from '../runtime/errors.ts';
import { writeDemoModel } from '../services/edge-head/main.ts';
import { type ServiceProcess, startBrokerProcess, startService } from './processes.ts';
import { type Progress, startProgress } from './progress.ts';

/** The device the demo's edge emulates unless told otherwise: the paper's edge device. */
export const DEMO_DEVICE = 'rpi3b';

/** Frames of the device-only phase unless told otherwise. */
export const DEMO_DEVICE_FRAMES = 20;

const count = (what: string) =>
  z.coerce
    .number({ message: `expected ${what}` })
    .int(`expected ${what}`)
    .min(0, `expected ${what}`);

const DemoOptions = z.object({
  frames: count('a whole number >= 0'),
  window: z.coerce
    .number({ message: 'expected a whole number >= 1' })
    .int('expected a whole number >= 1')
    .min(1, 'expected a whole number >= 1'),
  cut: z.string().regex(/^\S+$/, 'expected auto, middle, a cut index, or a node name'),
  deviceFrames: count('a whole number >= 0'),
  emulateDevice: z
    .string()
    .refine(
      (v) => parseDeviceSpec(v) !== undefined,
      'expected a preset name (e.g. rpi3b), <g>gflops, x<factor> or none',
    ),
});

/** The demo's options as the CLI passes them. */
export interface DemoFlags {
  frames: string;
  window: string;
  cut: string;
  deviceFrames: string;
  emulateDevice: string;
}

const FLAG_NAMES: Record<keyof DemoFlags, string> = {
  frames: 'frames',
  window: 'window',
  cut: 'cut',
  deviceFrames: 'device-frames',
  emulateDevice: 'emulate-device',
};

/** One frame line of the edge, as the demo reads it. */
export interface DemoFrame {
  cut: number;
  totalMs: number;
  tailBy: string;
  fallback: boolean;
  /** When the demo read the line (ms). */
  at: number;
}

/** Reads an edge frame line (`formatFrame`); undefined for other lines. */
export function parseFrameLine(line: string, at: number): DemoFrame | undefined {
  const m = /^frame\s+\d+\s+cut\s+(\d+)\b.*?\btotal\s+([\d.]+) ms.*?\btail by (local fallback|\S+)/.exec(
    line,
  );
  if (!m) return undefined;
  const fallback = m[3] === 'local fallback';
  return { cut: Number(m[1]), totalMs: Number(m[2]), tailBy: fallback ? 'local' : m[3]!, fallback, at };
}

/** Figures of a phase. */
export interface PhaseStats {
  /** Frames measured (after the warm-up ones left out). */
  frames: number;
  /** The cut they ran at. */
  cut: number;
  /** Whether a worker ran their tails. */
  offloaded: boolean;
  medianMs: number;
  /** Frames / (last answer - first capture). */
  fps: number;
}

/**
 * The steady part of a phase: the frames at the cut of the phase's last frame that ran as that cut intends
 * (offloaded, or on the device by plan; no fallbacks), without the first of them (it loads sessions).
 */
export function phaseStats(frames: readonly DemoFrame[], lastCut: number): PhaseStats | undefined {
  const last = frames.filter((f) => !f.fallback).at(-1);
  if (!last) return undefined;
  const offloaded = last.tailBy !== 'local';
  const steady = frames.filter(
    (f) => !f.fallback && f.cut === last.cut && (f.tailBy !== 'local') === offloaded,
  );
  const measured = steady.length > 2 ? steady.slice(1) : steady;
  const first = Math.min(...measured.map((f) => f.at - f.totalMs));
  const end = Math.max(...measured.map((f) => f.at));
  return {
    frames: measured.length,
    cut: last.cut,
    offloaded: offloaded && last.cut < lastCut,
    medianMs: median(measured.map((f) => f.totalMs)),
    fps: end > first ? (measured.length * 1000) / (end - first) : 0,
  };
}

/** The demo's closing lines: each phase's figures and the speedup of the split. */
export function speedupLines(
  device: PhaseStats,
  split: PhaseStats,
  opts: { layers: number; cut: string; splitFrames: number },
): string[] {
  const where = (s: PhaseStats) =>
    s.cut === opts.layers
      ? `cut ${s.cut} (everything on the device)`
      : !s.offloaded
        ? `cut ${s.cut}`
        : s.cut === 0
          ? 'cut 0 (everything on the worker)'
          : `cut ${s.cut} (head on the device, tail on the worker)`;
  const figures = (s: PhaseStats) => `median frame ${s.medianMs.toFixed(1)} ms, ${s.fps.toFixed(1)} fps`;
  const early = opts.splitFrames - split.frames;
  const by = opts.cut === 'auto' ? 'by Algorithm 1' : `fixed by --cut ${opts.cut}`;
  return [
    `demo: device only: ${device.frames} frames at ${where(device)}: ${figures(device)}`,
    `demo: split:       ${split.frames} frames at ${where(split)}: ${figures(split)}` +
      (early > 0
        ? ` (the ${early} other frame${early === 1 ? '' : 's'}: warm-up and frames before the plan settled)`
        : ''),
    `speedup: ${(split.fps / device.fps).toFixed(1)}x fps over running everything on the device ` +
      `(device only ${device.fps.toFixed(1)} fps, split ${split.fps.toFixed(1)} fps; cut ${split.cut} ${by})`,
  ];
}

/**
 * Starts `edgecut dashboard` for the demo's broker: on port 8080, or any free port when 8080 is taken (a dashboard of
 * a stack already running, another demo).
 */
async function startDashboard(
  wsPort: string,
  env: Record<string, string>,
): Promise<{ proc: ServiceProcess; url: string }> {
  const args = (port: string) => [
    'dashboard',
    '--host',
    '127.0.0.1',
    '--port',
    port,
    '--mqtt-ws-url',
    `ws://127.0.0.1:${wsPort}`,
  ];
  let proc = startService('dashboard', args('8080'), { env, onStderr: () => undefined });
  const ready = await proc.ready.catch(() => undefined);
  if (ready) return { proc, url: String(ready.url) };
  proc = startService('dashboard', args('0'), { env });
  return { proc, url: String((await proc.ready).url) };
}

/** Runs the demo; returns the exit code. */
export async function runDemo(raw: DemoFlags): Promise<number> {
  const parsed = DemoOptions.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const key = issue?.path[0] as keyof DemoFlags;
    throw new UserError(
      `--${FLAG_NAMES[key]}=${JSON.stringify(raw[key])} is not allowed: ${issue?.message ?? 'invalid'}`,
    );
  }
  const opts = parsed.data;
  const spec = parseDeviceSpec(opts.emulateDevice);
  if (spec?.kind === 'preset') {
    try {
      findPreset(spec.name, allPresets(process.env.DEVICE_PRESETS || undefined));
    } catch (err) {
      throw new UserError(
        `--emulate-device=${JSON.stringify(raw.emulateDevice)} is not allowed: ${(err as Error).message}`,
      );
    }
  }
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-demo-'));
  const started: ServiceProcess[] = [];
  const quiet = { LOG_LEVEL: 'warn' };
  let stopping = false;
  const onSignal = () => {
    stopping = true;
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // The reader of stdout went away (`npm run demo | head -3`): every process the demo started stops, and so does
  // the demo, instead of dying on the write and leaving the broker, the dashboard and the services running.
  const onStdoutError = (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    if (stopping) return;
    stopping = true;
    for (const p of started) void p.stop();
  };
  process.stdout.on('error', onStdoutError);
  /** Keeps a started process for the clean-up; one started after stdout went away is stopped at once. */
  const track = <P extends ServiceProcess>(p: P): P => {
    started.push(p);
    if (stopping) void p.stop();
    return p;
  };
  // Progress (cli/progress.ts) on stderr while nothing else shows: the services take seconds to start.
  let waiting: Progress | undefined;
  let firstWait = true;
  const wait = (step: string, what = 'demo start') => {
    // The first wait counts from the process start: that is how long the user has seen nothing.
    waiting ??= startProgress(what, firstWait ? { since: performance.timeOrigin } : {});
    firstWait = false;
    waiting.step(step);
  };
  const said = () => {
    waiting?.stop();
    waiting = undefined;
  };
  try {
    wait('writing the demo model');
    const modelPath = await writeDemoModel(dir);
    const layers = (await ModelHandle.fromFile(modelPath)).layers;
    said();
    wait('starting the broker');
    const { proc: broker, url } = await startBrokerProcess({ env: quiet });
    track(broker);
    // The live dashboard (docs/dashboard.md) on the broker's WebSocket listener: its URL before anything else runs.
    wait('starting the dashboard');
    const dashboard = await startDashboard(String((await broker.ready).wsPort), quiet);
    track(dashboard.proc);
    said();
    // The dashboard's URL is the demo's first line; what runs where comes next.
    process.stdout.write(`demo: dashboard ${dashboard.url} (open it to watch the split live)\n`);
    process.stdout.write(
      `demo: model ${modelPath}; the edge emulates ${opts.emulateDevice === DEMO_DEVICE ? 'a Raspberry Pi 3 (--emulate-device rpi3b, the paper’s edge device)' : `--emulate-device ${opts.emulateDevice}`}; the broker and the dashboard are up, starting the tail worker, the planner and the edge as separate processes\n`,
    );
    const env = { ...quiet, MQTT_URL: url };
    const tail = startService('tail', ['tail', '--worker-id', 'demo-tail-1', '--models-dir', dir], { env });
    track(tail);
    let tailUp = false;
    let emulationSaid = false;
    /** Runs one edge to its end; returns its exit code and frames. */
    const runEdge = async (frames: number, verify: boolean) => {
      const seen: DemoFrame[] = [];
      const edge = startService(
        'edge',
        [
          'edge',
          '--device-id',
          'demo-robot-1',
          '--model',
          modelPath,
          '--frames',
          String(frames),
          '--window',
          String(opts.window),
          '--emulate-device',
          opts.emulateDevice,
          '--verify',
          String(verify),
        ],
        {
          env,
          prefix: '',
          onStdout: (line) => {
            said();
            const f = parseFrameLine(line, performance.now());
            if (f) seen.push(f);
            process.stdout.write(`${line}\n`);
          },
          onStderr: (line) => {
            // The edge's emulation warning, once and in words; other lines as they are.
            const emulation = /"msg":"(EMULATION: compute is stretched [^"]*)"/.exec(line);
            if (emulation) {
              said();
              if (!emulationSaid) process.stdout.write(`demo: ${emulation[1]}\n`);
              emulationSaid = true;
              return;
            }
            process.stderr.write(`${line}\n`);
          },
        },
      );
      track(edge);
      wait('starting the edge (until its first frame)', 'edge start');
      const code = await edge.exited;
      said();
      started.splice(started.indexOf(edge), 1);
      return { code, frames: seen };
    };
    /** Starts a planner with the given cut and waits until it (and the tail worker) are up. */
    const startPlanner = async (cut: string) => {
      const planner = startService('planner', ['planner', '--planner-id', 'demo-planner', '--cut', cut], {
        env,
      });
      track(planner);
      if (tailUp) wait('starting the planner', 'planner start');
      else wait('starting the tail worker and the planner');
      await Promise.all([planner.ready, tail.ready]);
      tailUp = true;
      said();
      return planner;
    };

    let device: PhaseStats | undefined;
    if (opts.deviceFrames > 0) {
      const planner = await startPlanner(String(layers));
      process.stdout.write(
        `demo: 1/2 device only: ${opts.deviceFrames} frames with the planner fixing cut ${layers} (every layer on the device)\n`,
      );
      const alone = await runEdge(opts.deviceFrames, false);
      await planner.stop();
      started.splice(started.indexOf(planner), 1);
      if (stopping) return 0;
      if (alone.code !== 0) return alone.code;
      device = phaseStats(alone.frames, layers);
    }
    await startPlanner(opts.cut);
    process.stdout.write(
      `demo: ${device ? '2/2 ' : ''}split: ${opts.frames > 0 ? `${opts.frames} frames` : 'frames until Ctrl-C'} with the planner ` +
        `${opts.cut === 'auto' ? 'running Algorithm 1 (--cut auto)' : `fixing --cut ${opts.cut}`}\n`,
    );
    const split = await runEdge(opts.frames, opts.frames > 0);
    const splitStats = phaseStats(split.frames, layers);
    if (device && splitStats)
      for (const line of speedupLines(device, splitStats, {
        layers,
        cut: opts.cut,
        splitFrames: split.frames.length,
      }))
        process.stdout.write(`${line}\n`);
    return stopping && opts.frames === 0 ? 0 : split.code;
  } catch (err) {
    // Stopped on purpose (Ctrl-C, or stdout closed) while a service was starting: its early exit is no failure.
    if (stopping) return 0;
    throw err;
  } finally {
    waiting?.stop('failed');
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    // Edge first, broker last, so each service can still say goodbye through the broker.
    for (const p of started.reverse()) await p.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

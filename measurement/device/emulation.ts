/**
 * Device emulation for experiments: this host plays a slower device (an edge device, or a tail worker slower than
 * this host). Each computation runs for real, and the device then stays busy until the emulated device's time has
 * passed, so a frame takes what it would on the emulated device while the outputs stay the real ones. The emulated
 * time is factor x this host's profiled time of the computation (its calibrated per-layer profile), x the contention
 * for this host's CPUs, not factor x the wall time of each run, so host noise is not multiplied by the factor
 * ({@link ComputeStretch}). The published profile is scaled by the same factor, so the planner plans for the
 * emulated device.
 *
 * This is EMULATION: the host's speed profile (which layers are heavy) is kept and stretched uniformly; a real
 * device's per-layer shape (memory bandwidth, caches, SIMD) may differ.
 *
 * The factor (measurement/device/presets.ts):
 * - `x<f>`: f as given.
 * - a preset with a measured whole-model time for this model (the paper's Table III): measured / this host's
 *   whole-model time.
 * - otherwise a preset or `<g>gflops`: this host's sustained GFLOPs (measurement/device/host.ts) / the device's. The
 *   presets' LINPACK GFLOPs overstate what networks reach (see planning/preset-profile.ts), so this rule tends to
 *   emulate a device somewhat faster than the real one.
 */
import { readFileSync } from 'node:fs';
import { type Clock, systemClock } from '../../runtime/clock.ts';
import { UserError } from '../../runtime/errors.ts';
import type { Profile } from '../../schemas/profile.ts';
import { findPreset, type Preset } from './presets.ts';

/** The value of `EMULATE_DEVICE`. */
export type DeviceSpec =
  | { kind: 'none' }
  | { kind: 'factor'; factor: number }
  | { kind: 'gflops'; gflops: number }
  | { kind: 'preset'; name: string };

/** Parses `none`, `x<factor>`, `<GFLOPs>` / `<GFLOPs>gflops` or a preset name; undefined when it is none of them. */
export function parseDeviceSpec(text: string): DeviceSpec | undefined {
  const s = text.trim().toLowerCase();
  if (s === 'none' || s === 'off') return { kind: 'none' };
  const factor = /^x(\d+(?:\.\d+)?)$/.exec(s);
  if (factor) {
    const f = Number(factor[1]);
    return f >= 1 ? { kind: 'factor', factor: f } : undefined;
  }
  const gflops = /^(\d+(?:\.\d+)?)\s*(?:gflops)?$/.exec(s);
  if (gflops) {
    const g = Number(gflops[1]);
    return g > 0 ? { kind: 'gflops', gflops: g } : undefined;
  }
  if (/^[a-z0-9][a-z0-9._-]*$/.test(s)) return { kind: 'preset', name: s };
  return undefined;
}

/** A resolved device emulation. */
export interface DeviceEmulation {
  /** Heads and local tails take factor x their real time (>= 1). */
  factor: number;
  /** What is emulated, one line (goes into logs and the profile's device description). */
  description: string;
  /** GFLOPs of the emulated device, when known. */
  gflops: number | null;
  /** The preset emulated, if any. */
  preset?: string;
  /** How the factor was found. */
  rule: string;
  /** Contention for this host's CPUs slows the emulated device too (`EMULATE_CONTENTION=on`). */
  contention?: boolean;
}

/** What resolving a device needs from this host. */
export interface HostFacts {
  /** Names the model may carry in the presets' measured tables. */
  modelNames: readonly string[];
  /** This host's whole-model milliseconds (the profile's median). */
  wholeMs: number;
  /** This host's sustained GFLOPs (measured on demand: it takes a few seconds the first time). */
  gflops: () => Promise<number>;
  /** Known presets (built-in plus the user's). */
  presets: readonly Preset[];
}

/** Names under which a model can appear in a preset's measured times: zoo name, file name, without precision. */
export function modelNames(name: string, metadata: Record<string, string>): string[] {
  const names = [
    metadata['edgecut.zoo'],
    name,
    name.replace(/[-_.](fp16|fp32|float16|int8|uint8|qdq)$/i, ''),
  ];
  return [...new Set(names.filter((n): n is string => !!n))];
}

/** Turns a device spec into a factor; UserError (one line) when it cannot be emulated on this host. */
export async function resolveEmulation(
  spec: DeviceSpec,
  host: HostFacts,
): Promise<DeviceEmulation | undefined> {
  if (spec.kind === 'none') return undefined;
  if (spec.kind === 'factor')
    return {
      factor: spec.factor,
      description: `${spec.factor}x slower than this host`,
      gflops: null,
      rule: 'factor',
    };
  const preset = spec.kind === 'preset' ? findPreset(spec.name, host.presets) : undefined;
  if (preset) {
    const key = host.modelNames.find((n) => preset.measured[n] !== undefined);
    if (key !== undefined && host.wholeMs > 0) {
      const measured = preset.measured[key]!;
      return checked({
        factor: measured / host.wholeMs,
        description: `${preset.name} (${preset.description})`,
        gflops: preset.gflops,
        preset: preset.name,
        rule: `measured: ${key} takes ${measured} ms there (${preset.source}) and ${host.wholeMs.toFixed(2)} ms here`,
      });
    }
  }
  const deviceGflops = preset ? preset.gflops : (spec as { gflops: number }).gflops;
  const hostGflops = await host.gflops();
  return checked({
    factor: hostGflops / deviceGflops,
    description: preset ? `${preset.name} (${preset.description})` : `a ${deviceGflops} GFLOPs device`,
    gflops: deviceGflops,
    ...(preset ? { preset: preset.name } : {}),
    rule: `gflops: this host ${hostGflops.toFixed(1)} GFLOPs, the device ${deviceGflops} GFLOPs`,
  });
}

function checked(e: DeviceEmulation): DeviceEmulation {
  if (!(e.factor >= 1))
    throw new UserError(
      `cannot emulate ${e.description}: it is faster than this host (factor ${e.factor.toFixed(3)}; ${e.rule}); emulation can only slow down`,
    );
  return e;
}

/** The profile as the emulated device would have measured it: every time scaled by the factor. */
export function emulatedProfile(profile: Profile, e: DeviceEmulation): Profile {
  const f = e.factor;
  const scale = (ms: number) => ms * f;
  return {
    ...profile,
    device: {
      ...profile.device,
      description: `EMULATED ${e.description}: ${profile.device.description} stretched ${f.toFixed(2)}x`,
      gflops: e.gflops,
      ...(e.preset ? { preset: e.preset } : {}),
    },
    wholeMs: { median: scale(profile.wholeMs.median), p90: scale(profile.wholeMs.p90) },
    layers: profile.layers.map((l) => ({ ...l, ms: scale(l.ms), p90: scale(l.p90) })),
    ...(profile.check
      ? {
          check: {
            ...profile.check,
            cuts: profile.check.cuts.map((c) => ({
              ...c,
              measuredMs: scale(c.measuredMs),
              profiledMs: scale(c.profiledMs),
              ...(c.headMs !== undefined ? { headMs: scale(c.headMs) } : {}),
              ...(c.handoffMs !== undefined ? { handoffMs: scale(c.handoffMs) } : {}),
            })),
          },
        }
      : {}),
    ...(profile.measurement
      ? {
          measurement: {
            ...profile.measurement,
            layerSumMs: scale(profile.measurement.layerSumMs),
            wholeWallMs: {
              median: scale(profile.measurement.wholeWallMs.median),
              p90: scale(profile.measurement.wholeWallMs.p90),
            },
          },
        }
      : {}),
  };
}

/** What one emulated computation took. */
export interface Stretched<T> {
  value: T;
  /** When it started (the injected clock). */
  start: number;
  /** The emulated device's time: how long the device was held busy (ms). */
  ms: number;
  /** The real time on this host (ms). */
  realMs: number;
}

/** Source of the contention an emulated device sees: a factor >= 1 at the time of asking. */
export interface Contention {
  /** The slowdown a computation running now sees for want of a CPU (>= 1). */
  factor(): number;
  /** Marks the device computing (its own thread is then among the runnable ones) or not. */
  computing(on: boolean): void;
  /** Stops sampling. */
  stop(): void;
}

/**
 * How often the run queue is sampled, over how long the samples are averaged for the telemetry (ms), and over how
 * long for the slowdown an emulated computation sees at a moment.
 */
export const RUN_QUEUE = { everyMs: 50, overMs: 1000, recentMs: 200 } as const;

/** An emulated computation under contention re-reads the slowdown at least this often (ms). */
const CONTENTION_STEP_MS = 50;

/**
 * This host's run queue as the device sees it: Linux's `procs_running` (/proc/stat: threads runnable right now,
 * including the one reading it), sampled every {@link RUN_QUEUE}.everyMs; {@link RunQueue.others} is the average over
 * the last second less this process's own runnable threads (the reader, and the computing thread while the device
 * computes): the load of everything else, within a second, where the 1-minute load average takes a minute.
 */
export class RunQueue {
  private readonly samples: number[] = [];
  private busy = false;
  private sum = 0;
  private count = 0;
  private readonly timer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly read: () => number | undefined,
    timed: boolean,
  ) {
    if (!timed) return;
    this.timer = setInterval(() => this.sample(), RUN_QUEUE.everyMs);
    this.timer.unref();
  }

  /**
   * Starts sampling every {@link RUN_QUEUE}.everyMs; undefined on a host without /proc/stat. With `timed: false`
   * nothing samples but {@link RunQueue.sample} (tests drive it).
   */
  static start(read: () => number | undefined = readProcsRunning, timed = true): RunQueue | undefined {
    return read() === undefined ? undefined : new RunQueue(read, timed);
  }

  /** Reads the run queue once into the last second's window. */
  sample(): void {
    const n = this.read();
    if (n === undefined) return;
    const others = Math.max(0, n - 1 - (this.busy ? 1 : 0));
    this.samples.push(others);
    if (this.samples.length > RUN_QUEUE.overMs / RUN_QUEUE.everyMs) this.samples.shift();
    this.sum += others;
    this.count++;
  }

  /** A mark to average the other processes' load from (see {@link RunQueue.othersSince}). */
  mark(): { sum: number; count: number } {
    return { sum: this.sum, count: this.count };
  }

  /**
   * The other processes' runnable threads averaged over the samples since `mark` (e.g. over one head); the last
   * second's average when no sample was taken since.
   */
  othersSince(mark: { sum: number; count: number }): number {
    const n = this.count - mark.count;
    return n > 0 ? (this.sum - mark.sum) / n : this.others();
  }

  /** Marks the device computing (its computing thread is then runnable, and not load) or not. */
  computing(on: boolean): void {
    this.busy = on;
  }

  /** Runnable threads of other processes, averaged over the last second (0 before any sample). */
  others(): number {
    if (this.samples.length === 0) return 0;
    return this.samples.reduce((a, b) => a + b, 0) / this.samples.length;
  }

  /** Runnable threads of other processes, averaged over the last {@link RUN_QUEUE}.recentMs (0 before any sample). */
  recent(): number {
    const last = this.samples.slice(-Math.max(1, RUN_QUEUE.recentMs / RUN_QUEUE.everyMs));
    if (last.length === 0) return 0;
    return last.reduce((a, b) => a + b, 0) / last.length;
  }

  /** Stops sampling. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}

/**
 * Contention from this host's run queue: a computation sees the paper's Fig. 17 slowdown, max(1, (others + 1) /
 * cores), from {@link RunQueue.recent}, re-read as it runs. This does not depend on how long this host's own computation lasts (a 1 ms
 * head on this host is a 360 ms head on an emulated Raspberry Pi 3, and CFS lets a short burst that just woke run
 * before the busy processes, so timing it would see no load).
 */
export function runQueueContention(queue: RunQueue, cores: number): Contention {
  return {
    factor: () => Math.max(1, (queue.recent() + 1) / cores),
    computing: (on) => queue.computing(on),
    stop: () => queue.stop(),
  };
}

/** Threads runnable on this host now (/proc/stat `procs_running`), or undefined where it cannot be read. */
export function readProcsRunning(): number | undefined {
  try {
    const m = /^procs_running (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Holds the device busy for the emulated device's time of each computation.
 *
 * With this host's profiled time of the computation given (the sum of the profile's layers it runs), the emulated
 * time is factor x profiled, each moment of it slowed by the contention of that moment (so a head during which the
 * load came or went is slowed only for the part that ran under it). So the emulated time does not multiply host noise (a 1 ms hiccup of a 2 ms
 * head would otherwise cost an emulated Raspberry Pi 3 300 ms on a fast host, and onnxruntime's fixed cost per run
 * would make short heads look several times slower than the profile says). Contention is 1 unless a
 * {@link Contention} is given (`EMULATE_CONTENTION=on`): on one host the broker, the workers and the planner compete
 * for the same cores, which they would not on a real robot, so by default the emulated device has its CPU to
 * itself; an experiment that loads the device (busy processes) turns it on. Without a profiled time the real time
 * is stretched (factor x real). Factor 1 is no emulation: the real time, untouched.
 */
export class ComputeStretch {
  constructor(
    private readonly factor: number,
    private readonly clock: Clock = systemClock,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
    /** Contention for this host's CPUs; undefined: none (the emulated device has its CPU to itself). */
    readonly contention: Contention | undefined = undefined,
  ) {
    if (!(factor >= 1)) throw new RangeError(`compute factor must be >= 1, got ${factor}`);
  }

  /**
   * Runs `fn` and holds the device until the emulated time has passed. `profiledMs`: this host's profiled time of
   * the computation (undefined: stretch the real time; 0: nothing is computed, no stretch).
   */
  async run<T>(fn: () => Promise<T>, profiledMs?: number): Promise<Stretched<T>> {
    // Factor 1 is no emulation; a profiled time of 0 is no computation (a head that sends the input as it is).
    if (this.factor === 1 || profiledMs === 0) {
      const start = this.clock.now();
      const value = await fn();
      const realMs = this.clock.now() - start;
      return { value, start, ms: realMs, realMs };
    }
    const contention = this.contention;
    contention?.computing(true);
    const start = this.clock.now();
    let value: T;
    try {
      value = await fn();
    } finally {
      contention?.computing(false);
    }
    const realMs = this.clock.now() - start;
    // The work to do, in the emulated device's uncontended milliseconds.
    const work = profiledMs !== undefined ? profiledMs * this.factor : realMs * this.factor;
    if (!contention) {
      const until = start + Math.max(realMs, work);
      // Timers truncate to whole milliseconds and may fire a little early; wait again until the time has come.
      for (let left = until - this.clock.now(); left > 0; left = until - this.clock.now())
        await this.sleep(Math.ceil(left));
      return { value, start, ms: this.clock.now() - start, realMs };
    }
    // Under contention the device progresses at 1 / slowdown of the moment, as a CPU shared with busy processes
    // does: load that comes or goes during a long head slows only the part of it that ran under the load.
    let done = realMs / contention.factor();
    let last = this.clock.now();
    while (done < work) {
      const slowdown = contention.factor();
      await this.sleep(Math.min(CONTENTION_STEP_MS, Math.max(1, Math.ceil((work - done) * slowdown))));
      const now = this.clock.now();
      done += (now - last) / slowdown;
      last = now;
    }
    return { value, start, ms: this.clock.now() - start, realMs };
  }
}

/** This host's profiled time of layers [from, to) of a profile (0 when the profile has none of them). */
export function profiledSpan(profile: Pick<Profile, 'layers'>, from: number, to: number): number {
  let ms = 0;
  for (let i = from; i < to && i < profile.layers.length; i++) ms += profile.layers[i]!.ms;
  return ms;
}

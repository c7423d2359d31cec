/**
 * What the device reports about itself in its telemetry: head latency per cut, uplink samples (uplink.ts), frames that
 * missed their deadline, its own CPU use, whole-machine CPU use
 * (node-os-utils: two /proc/stat snapshots 200 ms apart on Linux, taken in the background so that telemetry never
 * waits for them), and the 1-minute load average and core count (the paper's load factor, Fig. 17).
 */
import { cpus, loadavg } from 'node:os';
import { OSUtils } from 'node-os-utils';
import type { RunQueue } from '../../measurement/device/emulation.ts';
import { errorMessage } from '../../runtime/errors.ts';
import type { Logger } from '../../runtime/log.ts';
import type { DeviceTelemetry } from '../../schemas/messages.ts';
import type { UplinkMeter } from './uplink.ts';

/** Host load as telemetry reports it. */
export interface HostLoad {
  /** Whole-machine CPU use in percent (0..100); 0 when it cannot be read. */
  cpuPercent: number;
  loadavg1: number;
  cores: number;
}

/**
 * Reads the host's load. Whole-machine CPU use takes a sampling window (200 ms on Linux): `read` returns the last
 * completed sample at once and starts the next one, so a telemetry message sent right after a probe burst is not
 * held back by it (it was, by 200 ms, which delayed the device's first plan by as much).
 */
export class LoadMeter {
  private osu: OSUtils | undefined;
  private warned = false;
  private last = 0;
  private sampling: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly logger: Logger) {}

  /** Starts sampling CPU use, so that the first telemetry has a figure. Idempotent. */
  start(): void {
    this.sample();
  }

  /** The last CPU use sampled (0 before the first sample ends), the load average and the core count; never waits. */
  read(): HostLoad {
    this.sample();
    return { cpuPercent: this.last, loadavg1: loadavg()[0] ?? 0, cores: Math.max(1, cpus().length) };
  }

  /** The sample running now, if any (for tests). */
  settled(): Promise<void> {
    return this.sampling ?? Promise.resolve();
  }

  private sample(): void {
    if (this.sampling || this.stopped) return;
    this.osu ??= new OSUtils({ cacheEnabled: false });
    this.sampling = this.osu.cpu
      .usage()
      .then(
        (r) => {
          if (r.success && Number.isFinite(r.data)) this.last = r.data;
          else this.warnOnce(r.success ? `not a number: ${r.data}` : r.error.message);
        },
        (err: unknown) => this.warnOnce(errorMessage(err)),
      )
      .finally(() => {
        this.sampling = undefined;
      });
  }

  /** Releases the monitor. Idempotent. */
  stop(): void {
    this.stopped = true;
    this.osu?.destroy();
    this.osu = undefined;
  }

  private warnOnce(why: string): void {
    if (this.warned) return;
    this.warned = true;
    this.logger.warn({ err: why }, 'CPU use cannot be read; telemetry reports 0');
  }
}

/**
 * Head samples kept per cut, from the frames run there since the device last came to that cut: the telemetry reports
 * their median, so it follows a change within two frames.
 */
export const HEAD_SAMPLES = 3;

/** One head as measured: its latency, and the other processes' load averaged over it. */
interface HeadSample {
  ms: number;
  others?: number;
}

/**
 * The median head of a few, with the other processes' load during that same head (the two middle heads averaged
 * when the count is even): a latency and the load it ran under must come from the same heads, or a head of before a
 * load change would be read with the load of after it.
 */
export function medianHead(list: readonly HeadSample[]): HeadSample {
  const sorted = [...list].sort((a, b) => a.ms - b.ms);
  const hi = sorted[Math.floor(sorted.length / 2)]!;
  const lo = sorted[Math.floor((sorted.length - 1) / 2)]!;
  const ms = (lo.ms + hi.ms) / 2;
  return lo.others !== undefined && hi.others !== undefined
    ? { ms, others: (lo.others + hi.others) / 2 }
    : { ms };
}

/** Time constant of the own-load average, as the kernel's 1-minute load average (ms). */
const LOAD_TAU_MS = 60_000;

/** This process's CPU use in cores, averaged with the 1-minute load average's time constant. */
export class OwnLoad {
  private last = process.cpuUsage();
  private lastAt: number;
  private avg = 0;

  constructor(private readonly now: () => number) {
    this.lastAt = now();
  }

  /** Updates and returns the average. */
  read(): number {
    const at = this.now();
    const usage = process.cpuUsage();
    const dt = at - this.lastAt;
    if (dt > 0) {
      const cpuMs = (usage.user - this.last.user + usage.system - this.last.system) / 1000;
      const w = Math.exp(-dt / LOAD_TAU_MS);
      this.avg = this.avg * w + (cpuMs / dt) * (1 - w);
    }
    this.last = usage;
    this.lastAt = at;
    return this.avg;
  }
}

/** Collects what the device's telemetry reports between two periods. */
export class TelemetryRecorder {
  /** The last heads per cut, each with the other processes' load during it (when the run queue is read). */
  private readonly heads = new Map<number, HeadSample[]>();
  private headCounts = new Map<number, number>();
  private lastCut: number | undefined;
  private late: NonNullable<DeviceTelemetry['late']> = [];
  private returns: number[] = [];
  private readonly own: OwnLoad;

  constructor(
    private readonly meter: LoadMeter,
    private readonly uplink: UplinkMeter,
    now: () => number,
    /**
     * The device is emulated with its CPU to itself (no contention): its load is its own, so the host's load
     * average and CPU use, which the broker, workers and tests make, are not reported as the device's.
     */
    private readonly isolated = false,
    /** The host's run queue, for the other processes' load within a second (absent: not reported). */
    private readonly runQueue?: RunQueue | undefined,
  ) {
    this.own = new OwnLoad(now);
  }

  /**
   * Records a head latency at a cut (the last {@link HEAD_SAMPLES} per cut are kept), with the other processes'
   * runnable threads averaged over the head when the run queue is read.
   */
  head(cut: number, ms: number, othersDuring?: number): void {
    // Heads at a cut the device left and came back to are of another time: they start over.
    if (this.lastCut !== cut) this.heads.delete(cut);
    this.lastCut = cut;
    const list = this.heads.get(cut) ?? [];
    list.push(othersDuring === undefined || this.isolated ? { ms } : { ms, others: othersDuring });
    if (list.length > HEAD_SAMPLES) list.shift();
    this.heads.set(cut, list);
    this.headCounts.set(cut, (this.headCounts.get(cut) ?? 0) + 1);
  }

  /** Records a frame that missed its deadline (the last 64 are kept until the next telemetry). */
  missed(cut: number, bytes: number, waitedMs: number): void {
    this.late.push({ cut, bytes, waitedMs });
    if (this.late.length > 64) this.late.shift();
  }

  /**
   * Records an answered request's way back: ms from its PUBACK to its answer, less the worker's span (the last 64
   * are kept until the next telemetry).
   */
  returned(ms: number): void {
    this.returns.push(Math.max(0, ms));
    if (this.returns.length > 64) this.returns.shift();
  }

  /** Reads the host's load and assembles a telemetry message; samples are handed over once. */
  collect(
    fields: Pick<DeviceTelemetry, 'device' | 'framesInFlight' | 'fallbacks' | 'window'>,
    now: () => number,
  ): DeviceTelemetry {
    const own = this.own.read();
    const host = this.meter.read();
    const load = this.isolated
      ? { cpuPercent: Math.min(100, (own * 100) / host.cores), loadavg1: own, cores: host.cores }
      : host;
    const headMs: Record<string, number> = {};
    const headOthers: Record<string, number> = {};
    for (const [cut, list] of this.heads) {
      const m = medianHead(list);
      headMs[String(cut)] = m.ms;
      if (m.others !== undefined) headOthers[String(cut)] = m.others;
    }
    const headCounts = Object.fromEntries([...this.headCounts].map(([k, n]) => [String(k), n]));
    this.headCounts = new Map();
    const { samples, censored } = this.uplink.take();
    const late = this.late.splice(0);
    const returns = this.returns.splice(0);
    return {
      ...fields,
      at: now(),
      ...load,
      ownLoad1: own,
      ...(this.isolated
        ? { othersRunnable: 0 }
        : this.runQueue
          ? { othersRunnable: this.runQueue.others() }
          : {}),
      headMs,
      ...(Object.keys(headOthers).length > 0 ? { headOthers } : {}),
      headCounts,
      transfers: samples,
      ...(censored.length > 0 ? { censored } : {}),
      ...(late.length > 0 ? { late } : {}),
      ...(returns.length > 0 ? { returns } : {}),
    };
  }
}

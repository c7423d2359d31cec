/**
 * What the device reports about itself in its telemetry: head latency per cut, transfer samples, CPU use
 * (node-os-utils: two /proc/stat snapshots 200 ms apart on Linux), and the 1-minute load average and core count
 * (the paper's load factor, Fig. 17).
 */
import { cpus, loadavg } from 'node:os';
import { OSUtils } from 'node-os-utils';
import { errorMessage } from '../../common/errors.ts';
import type { Logger } from '../../common/log.ts';
import { median } from '../../common/stats.ts';
import type { DeviceTelemetry } from '../../schemas/messages.ts';

/** Host load as telemetry reports it. */
export interface HostLoad {
  /** Whole-machine CPU use in percent (0..100); 0 when it cannot be read. */
  cpuPercent: number;
  loadavg1: number;
  cores: number;
}

/** Reads the host's load. */
export class LoadMeter {
  private osu: OSUtils | undefined;
  private warned = false;

  constructor(private readonly logger: Logger) {}

  /** Samples CPU use (takes ~200 ms on Linux) and reads the load average. */
  async read(): Promise<HostLoad> {
    this.osu ??= new OSUtils({ cacheEnabled: false });
    let cpuPercent = 0;
    try {
      const r = await this.osu.cpu.usage();
      if (r.success && Number.isFinite(r.data)) cpuPercent = r.data;
      else this.warnOnce(r.success ? `not a number: ${r.data}` : r.error.message);
    } catch (err) {
      this.warnOnce(errorMessage(err));
    }
    return { cpuPercent, loadavg1: loadavg()[0] ?? 0, cores: Math.max(1, cpus().length) };
  }

  /** Releases the monitor. Idempotent. */
  stop(): void {
    this.osu?.destroy();
    this.osu = undefined;
  }

  private warnOnce(why: string): void {
    if (this.warned) return;
    this.warned = true;
    this.logger.warn({ err: why }, 'CPU use cannot be read; telemetry reports 0');
  }
}

/** Collects what the device's telemetry reports between two periods. */
export class TelemetryRecorder {
  private readonly headSamples = new Map<number, number[]>();
  private transfers: Array<{ bytes: number; seconds: number }> = [];

  constructor(private readonly meter: LoadMeter) {}

  /** Records a head latency at a cut (the last 64 per cut are kept). */
  head(cut: number, ms: number): void {
    const list = this.headSamples.get(cut) ?? [];
    list.push(ms);
    if (list.length > 64) list.shift();
    this.headSamples.set(cut, list);
  }

  /** Records a transfer sample (the last 64 are kept until the next telemetry). */
  transfer(bytes: number, ms: number): void {
    this.transfers.push({ bytes, seconds: ms / 1000 });
    if (this.transfers.length > 64) this.transfers.shift();
  }

  /** Reads the host's load and assembles a telemetry message; the transfer samples are handed over once. */
  async collect(
    fields: Pick<DeviceTelemetry, 'device' | 'framesInFlight' | 'fallbacks'>,
    now: () => number,
  ): Promise<DeviceTelemetry> {
    const load = await this.meter.read();
    const headMs: Record<string, number> = {};
    for (const [cut, list] of this.headSamples) headMs[String(cut)] = median(list);
    return { ...fields, at: now(), ...load, headMs, transfers: this.transfers.splice(0) };
  }
}

/**
 * What the device learns about its uplink from what it sends, independent of the tail workers: every QoS 1 PUBLISH
 * is timed from the moment it could start on the link to its PUBACK. A broker acknowledges a QoS 1 PUBLISH once it
 * holds the whole packet (aedes writes the PUBACK before it forwards the message; Mosquitto likewise), so that span
 * is the upload of the packet plus one small acknowledgement back; the broker's constant part is left to the
 * planner's fit (the intercept of T(D) = setup + b D, planning/link-fit.ts).
 *
 * The link is a queue: a message written while an earlier one is still being sent starts when that one ends, so its
 * span starts at max(written, the previous PUBACK). A PUBLISH still unacknowledged is evidence too: a lower bound
 * (censored sample), reported again each time its wait has doubled, so a link that has become very slow is seen
 * before any PUBACK comes.
 *
 * A span during which the device's own event loop stood still (a session loaded or run synchronously, loop-stalls.ts)
 * is not a measurement of the link: its PUBACK may have come during the stall and been read after it. When the
 * stall is a fifth of the span or more, the span less the stall is reported as a lower bound instead (the upload
 * took at least the time before the stall), and a lower bound of an outstanding PUBLISH counts only the time the
 * loop was running.
 *
 * The probe: when nothing else is sent (no plan yet, or the plan keeps everything on the device), the device sends a
 * short burst of opaque messages of growing size to its probe topic, so the planner knows the link before it ever
 * offloads a frame, and keeps knowing it while it does not.
 */

import type { TransferSample } from '../../planning/link-fit.ts';
import type { Clock } from '../../runtime/clock.ts';
import { MIN_STALL_MS, type StallSource } from './loop-stalls.ts';

/** MQTT bytes of a PUBLISH with packet id: fixed header (up to 5), topic length (2), topic, packet id (2). */
export function publishPacketBytes(topic: string, payloadBytes: number): number {
  return payloadBytes + Buffer.byteLength(topic) + 9;
}

/** Outstanding PUBLISHes younger than this are not reported as lower bounds (they are ordinary). */
export const CENSOR_AFTER_MS = 250;
/** At most this many samples wait for the next telemetry (the oldest are dropped). */
export const MAX_SAMPLES = 64;
/** A sample whose span the loop was stalled for this share of it, or more, is dropped. */
export const SPOILED_SHARE = 0.2;

interface Outstanding {
  bytes: number;
  writtenAt: number;
  /** The wait last reported as a lower bound (ms), so a bound is reported again only once it has doubled. */
  reported?: number;
}

/** Times the device's QoS 1 PUBLISHes to their PUBACK. */
export class UplinkMeter {
  private lastAckAt = Number.NEGATIVE_INFINITY;
  private readonly outstanding = new Set<Outstanding>();
  private samples: TransferSample[] = [];
  /** Lower bounds from samples spoiled by a stall of the loop, for the next take(). */
  private bounds: TransferSample[] = [];
  private spoiledCount = 0;

  constructor(
    private readonly clock: Clock,
    private readonly stalls?: StallSource,
  ) {}

  /** Samples spoiled so far by a stall of the device's loop (reported as lower bounds, or not at all). */
  get spoiled(): number {
    return this.spoiledCount;
  }

  /** Tracks one PUBLISH of `bytes` (packet bytes) whose PUBACK settles `acked`. */
  track(bytes: number, acked: Promise<unknown>): void {
    const entry: Outstanding = { bytes, writtenAt: this.clock.now() };
    this.outstanding.add(entry);
    acked.then(
      () => {
        const at = this.clock.now();
        // Gone from the set: written before a reset() and resent after the reconnect, so its span includes the
        // outage. No sample, but the link was busy with it until now.
        const live = this.outstanding.delete(entry);
        const start = Math.max(entry.writtenAt, this.lastAckAt);
        this.lastAckAt = Math.max(this.lastAckAt, at);
        if (!live) return;
        const stalled = this.stalledMs(start, at);
        if (stalled >= MIN_STALL_MS && stalled >= SPOILED_SHARE * (at - start)) {
          this.spoiledCount++;
          const running = at - start - stalled;
          if (running >= CENSOR_AFTER_MS) {
            this.bounds.push({ bytes, seconds: running / 1000 });
            if (this.bounds.length > MAX_SAMPLES) this.bounds.shift();
          }
          return;
        }
        this.samples.push({ bytes, seconds: Math.max(0, at - start) / 1000 });
        if (this.samples.length > MAX_SAMPLES) this.samples.shift();
      },
      () => this.outstanding.delete(entry),
    );
  }

  /** How long the loop stood still within [start, end] (ms). */
  private stalledMs(start: number, end: number): number {
    if (!this.stalls) return 0;
    this.stalls.check();
    return this.stalls.stalledWithin(start, end);
  }

  /**
   * The connection was lost: outstanding PUBLISHes tell nothing more about the link (the client may resend them after
   * the reconnect; their PUBACKs then give no sample).
   */
  reset(): void {
    this.outstanding.clear();
    this.lastAckAt = Number.NEGATIVE_INFINITY;
  }

  /** PUBLISHes not yet acknowledged. */
  get pending(): number {
    return this.outstanding.size;
  }

  /**
   * How long the PUBLISH on the link now has been on it (ms), or 0 when the link is idle; time the device's loop
   * stood still does not count (its PUBACK may have come and not been read).
   */
  /** Bytes written and not yet acknowledged: what a message written now waits behind on the link. */
  outstandingBytes(): number {
    let bytes = 0;
    for (const o of this.outstanding) bytes += o.bytes;
    return bytes;
  }

  busyMs(): number {
    const oldest = this.oldest();
    return oldest ? this.runningSince(Math.max(oldest.writtenAt, this.lastAckAt)) : 0;
  }

  /** Milliseconds since `from` during which the device's loop was running. */
  private runningSince(from: number): number {
    const now = this.clock.now();
    if (!this.stalls) return now - from;
    this.stalls.check();
    return now - from - this.stalls.stalledWithin(from, now);
  }

  private oldest(): Outstanding | undefined {
    const [first] = this.outstanding;
    return first;
  }

  /**
   * Hands over the samples taken since the last call, and the lower bounds of the PUBLISHes that have waited longer
   * than {@link CENSOR_AFTER_MS} for their PUBACK (each from the time it could start on the link).
   */
  take(): { samples: TransferSample[]; censored: TransferSample[] } {
    const samples = this.samples;
    this.samples = [];
    const censored: TransferSample[] = this.bounds;
    this.bounds = [];
    // The oldest outstanding PUBLISH is the one on the link now (the ones behind it have not started): it started
    // when it was written or when the one before it was acknowledged, whichever came later.
    const oldest = this.oldest();
    if (oldest) {
      const waited = this.runningSince(Math.max(oldest.writtenAt, this.lastAckAt));
      if (waited >= CENSOR_AFTER_MS && waited >= 2 * (oldest.reported ?? 0)) {
        censored.push({ bytes: oldest.bytes, seconds: waited / 1000 });
        oldest.reported = waited;
      }
    }
    return { samples, censored };
  }
}

/**
 * Probe sizes: start here, double while a probe takes less than the target, at most the maximum. The target is long
 * enough for a probe to be timed by its bytes, not by the fixed cost of a message (a broker round trip on a busy host
 * is a few ms), and short because the device waits for the burst before its first plan: at 100 Mbit/s the burst
 * stops at 512 KiB (42 ms; 1 MiB more would add 84 ms, a frame or two of a fast device run all on its own), at
 * 10 Mbit/s at 64 KiB (52 ms), at 1 Mbit/s at 16 KiB. The maximum serves links faster still (1 MiB takes 8 ms at
 * 1 Gbit/s). At least three probes, so the largest is four times the smallest: sizes that far apart tell the
 * per-byte cost from the set-up (planning/link-fit.ts DETERMINED_SPREAD), and the planner may act on the burst
 * at once.
 */
export const PROBE = {
  firstBytes: 4096,
  maxBytes: 1024 * 1024,
  targetMs: 40,
  minProbes: 3,
  /** A probe slower than stallRatio x the previous one (half its size), plus stallMs, stalled: it is sent again. */
  stallRatio: 3,
  stallMs: 10,
  /** Stalled probes sent again per burst, at most. */
  maxRetries: 2,
} as const;

/**
 * Sends one probe burst through `send` (which resolves at the PUBACK): sizes 4 KiB, 8 KiB, ... until a probe takes
 * at least {@link PROBE}.targetMs (after at least three) or the maximum size is reached; a probe that stalled is sent
 * again (at most {@link PROBE}.maxRetries per burst). Returns the sizes sent.
 */
export async function probeBurst(
  send: (bytes: number) => Promise<void>,
  now: () => number,
  signal?: AbortSignal,
): Promise<number[]> {
  const sent: number[] = [];
  let previousMs: number | undefined;
  let retries = 0;
  for (let bytes = PROBE.firstBytes; bytes <= PROBE.maxBytes; bytes *= 2) {
    if (signal?.aborted) break;
    const t0 = now();
    await send(bytes);
    sent.push(bytes);
    const ms = now() - t0;
    if (sent.length >= PROBE.minProbes && ms >= PROBE.targetMs) {
      // On the link, twice the bytes take at most about twice the time. A jump beyond that is a stall (a busy
      // broker or host): the same size again, so that a hiccup neither ends the burst nor becomes its largest,
      // weightiest sample.
      const stalled = previousMs !== undefined && ms > PROBE.stallRatio * previousMs + PROBE.stallMs;
      if (!stalled || retries >= PROBE.maxRetries) break;
      retries++;
      bytes /= 2;
      continue;
    }
    previousMs = ms;
  }
  return sent;
}

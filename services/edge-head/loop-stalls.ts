/**
 * When the device's own event loop stood still. onnxruntime-node creates a session and runs it synchronously on the
 * main thread (a large model's session takes seconds), and a PUBACK that arrives meanwhile is read only when the loop
 * is free again: the upload it ends looks that much slower than the link. The uplink meter (uplink.ts) asks this
 * monitor how much of a transfer's span the loop was stalled and does not take such a span as evidence of the link.
 *
 * A timer ticks every {@link STALL_TICK_MS}; a tick later than its period by {@link MIN_STALL_MS} or more marks the
 * time since the previous tick as stalled. `check()` does the same at any moment, so a caller that runs right after
 * a stall (the PUBACK handler) sees it before the timer has ticked.
 */
import type { Clock } from '../../runtime/clock.ts';

/** The monitor's period (ms). */
export const STALL_TICK_MS = 10;
/** A loop late by at least this much (ms) beyond the period was stalled. */
export const MIN_STALL_MS = 30;
/** Stalls older than this (ms) are forgotten; at most {@link MAX_STALLS} are kept. */
export const STALL_MEMORY_MS = 120_000;
export const MAX_STALLS = 256;

/** Tells how long the loop was stalled within a span. */
export interface StallSource {
  /** Records a stall that ended just now, if any. */
  check(): void;
  /** Milliseconds of [from, to] (clock time) during which the loop was stalled. */
  stalledWithin(from: number, to: number): number;
}

export class LoopStalls implements StallSource {
  private lastTick: number;
  private readonly stalls: Array<{ from: number; to: number }> = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly clock: Clock) {
    this.lastTick = clock.now();
  }

  /** Starts ticking (unref'd: it never keeps the process alive). */
  start(): this {
    if (this.timer) return this;
    this.lastTick = this.clock.now();
    this.timer = setInterval(() => this.check(), STALL_TICK_MS);
    this.timer.unref();
    return this;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Without the timer ticking a late check tells nothing (the loop may have been idle): only `record` counts. */
  check(): void {
    if (!this.timer) return;
    const now = this.clock.now();
    if (now - this.lastTick >= STALL_TICK_MS + MIN_STALL_MS) this.record(this.lastTick + STALL_TICK_MS, now);
    this.lastTick = now;
  }

  /** Marks [from, to] as stalled (the timer does this; tests and callers that know may too). */
  record(from: number, to: number): void {
    if (to <= from) return;
    this.stalls.push({ from, to });
    const horizon = to - STALL_MEMORY_MS;
    while (this.stalls.length > MAX_STALLS || (this.stalls[0] && this.stalls[0].to < horizon))
      this.stalls.shift();
  }

  stalledWithin(from: number, to: number): number {
    let ms = 0;
    for (const s of this.stalls) ms += Math.max(0, Math.min(to, s.to) - Math.max(from, s.from));
    return ms;
  }
}

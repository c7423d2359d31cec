/**
 * Test helpers: timers driven by hand (CONTRIBUTING.md, convention 8). Nothing fires until `advance(ms)` moves the
 * virtual time; then every due `after` and `every` callback runs, in order of due time (ties in the order they were
 * set), each at its own due time, as real timers would over that span.
 */
import type { Timers } from '../../runtime/clock.ts';

interface Entry {
  at: number;
  /** The period of an `every`; undefined for an `after`. */
  period: number | undefined;
  fn: () => void;
}

/** {@link Timers} that fire only when the test advances them. */
export class ManualTimers implements Timers {
  private t = 0;
  private seq = 0;
  private readonly entries = new Map<number, Entry>();

  /** Virtual milliseconds advanced so far. */
  get now(): number {
    return this.t;
  }

  /** Timers set and not yet fired (an `after`) or cancelled. */
  get pending(): number {
    return this.entries.size;
  }

  after(ms: number, fn: () => void): () => void {
    return this.add({ at: this.t + Math.max(0, ms), period: undefined, fn });
  }

  every(ms: number, fn: () => void): () => void {
    // As setInterval: a period below 1 ms is 1 ms (and the loop in `advance` ends).
    const period = Math.max(1, ms);
    return this.add({ at: this.t + period, period, fn });
  }

  /** Moves the virtual time forward by `ms`, running each callback that falls due on the way, at its due time. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let next: [number, Entry] | undefined;
      for (const e of this.entries) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      const [id, entry] = next;
      this.t = entry.at;
      if (entry.period === undefined) this.entries.delete(id);
      else entry.at += entry.period;
      entry.fn();
    }
    this.t = end;
  }

  private add(entry: Entry): () => void {
    const id = ++this.seq;
    this.entries.set(id, entry);
    return () => void this.entries.delete(id);
  }
}

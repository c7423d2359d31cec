/**
 * Time as a dependency (CONTRIBUTING.md, convention 8): components take a clock and timers so tests control them.
 */

/** A source of wall-clock milliseconds. */
export interface Clock {
  /** Milliseconds since the Unix epoch, with sub-millisecond precision where available. */
  now(): number;
}

const origin = Date.now() - performance.now();

/** The real clock: monotonic `performance.now()` anchored to the epoch once, so stamps never go backwards. */
export const systemClock: Clock = { now: () => origin + performance.now() };

/** Timers as a dependency: deadline and periodic-work tests drive them instead of sleeping. */
export interface Timers {
  /** Calls `fn` after `ms`; returns a function that cancels it. */
  after(ms: number, fn: () => void): () => void;
  /** Calls `fn` every `ms` until cancelled; a periodic timer does not keep the process alive. */
  every(ms: number, fn: () => void): () => void;
}

/** Real timers. */
export const realTimers: Timers = {
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    return () => clearTimeout(t);
  },
  every(ms, fn) {
    const t = setInterval(fn, ms);
    t.unref();
    return () => clearInterval(t);
  },
};

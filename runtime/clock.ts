/**
 * Time as a dependency (CONTRIBUTING.md, convention 8): components take a clock so tests control it.
 */

/** A source of wall-clock milliseconds. */
export interface Clock {
  /** Milliseconds since the Unix epoch, with sub-millisecond precision where available. */
  now(): number;
}

const origin = Date.now() - performance.now();

/** The real clock: monotonic `performance.now()` anchored to the epoch once, so stamps never go backwards. */
export const systemClock: Clock = { now: () => origin + performance.now() };

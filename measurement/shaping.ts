/**
 * Uplink emulation for experiments: a slower, higher-latency link than the one the process really has. The shaped
 * side's socket is wrapped in a {@link ShapedStream}, so the broker sees the emulated timing (the bytes arrive when
 * the emulated link would have delivered them), and every service measures it as it would a real link.
 *
 * The link model is the paper's (section II-B, and Algorithm 1's link cost): sending a message of D bytes takes a
 * set-up time alpha plus D / rate. Bytes leave one after another at the rate (a token bucket of zero depth: no
 * burst credit builds up while the link is idle), and each MQTT PUBLISH packet additionally waits the set-up time
 * before its first byte. Only what this side writes is shaped; what it receives arrives at the real speed.
 *
 * This is EMULATION, not a real link: loopback or LAN bytes are held back in user space. Loss and jitter are not
 * emulated.
 */
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { type Clock, systemClock } from '../runtime/clock.ts';

/** An emulated uplink: `rateBps` bits per second (0 = unlimited) and a per-PUBLISH set-up time. */
export interface UplinkShape {
  rateBps: number;
  setupMs: number;
  /**
   * Later rates, for experiments on a changing link: from `afterMs` after {@link UplinkShape.origin} on, the link
   * runs at `rateBps` (in order of `afterMs`).
   */
  steps?: ReadonlyArray<{ afterMs: number; rateBps: number }>;
  /** When the schedule's time starts (the clock's ms); default: when the first stream is shaped. */
  origin?: number;
}

/** A rate schedule: `1mbps`, or `100mbps,1mbps@20s,10mbps@40s` (the rate from then on; s or ms). */
export function parseRateSchedule(
  text: string,
): { rateBps: number; steps: Array<{ afterMs: number; rateBps: number }> } | undefined {
  const [first, ...rest] = text.split(',');
  const rateBps = parseRate(first ?? '');
  if (rateBps === undefined) return undefined;
  const steps: Array<{ afterMs: number; rateBps: number }> = [];
  for (const part of rest) {
    const m = /^(.+)@(\d+(?:\.\d+)?)(s|ms)$/.exec(part.trim());
    const rate = m ? parseRate(m[1]!) : undefined;
    if (!m || rate === undefined) return undefined;
    const afterMs = Number(m[2]) * (m[3] === 's' ? 1000 : 1);
    if (steps.length > 0 && afterMs <= steps[steps.length - 1]!.afterMs) return undefined;
    steps.push({ afterMs, rateBps: rate });
  }
  return { rateBps, steps };
}

/** The rate in force at `now` under a shape's schedule. */
export function rateAt(shape: UplinkShape, now: number): number {
  let rate = shape.rateBps;
  for (const s of shape.steps ?? []) if (now - (shape.origin ?? now) >= s.afterMs) rate = s.rateBps;
  return rate;
}

const UNITS: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9 };

/**
 * Parses a bit rate: `10mbps`, `10Mbit`, `512kbps`, `1.5gbit/s`, `250000` (bits/s), `off` / `none` / `0` (no
 * limit, returned as 0). Decimal prefixes (k = 1000). Returns undefined when the text is not a rate (including
 * byte rates such as `10MB/s`).
 */
export function parseRate(text: string): number | undefined {
  // Capital B is bytes (MB/s, MBps); rates here are bits, so refuse rather than guess.
  if (/\dB|[kmgKMG]B/.test(text)) return undefined;
  const s = text.trim().toLowerCase();
  if (s === 'off' || s === 'none' || s === '0') return 0;
  const m = /^(\d+(?:\.\d+)?(?:e\d+)?)\s*([kmg]?)(?:bps|bit\/s|bits\/s|bit|b\/s)?$/.exec(s);
  if (!m) return undefined;
  const value = Number(m[1]) * UNITS[m[2] ?? '']!;
  return Number.isFinite(value) && value > 0 ? value : undefined;
}

/** Formats a bit rate for logs, e.g. `10 Mbit/s`. */
export function formatRate(bps: number): string {
  if (bps <= 0) return 'unlimited';
  for (const [unit, k] of [
    ['Gbit/s', 1e9],
    ['Mbit/s', 1e6],
    ['kbit/s', 1e3],
  ] as const) {
    if (bps >= k) return `${Number((bps / k).toPrecision(4))} ${unit}`;
  }
  return `${bps} bit/s`;
}

/**
 * The emulated link's schedule, in virtual time: bytes leave one after another at the rate, and a message start
 * first waits the set-up time. Pure: the caller passes the time.
 */
export class LinkSchedule {
  /** When the link has sent everything reserved so far (ms, the caller's clock). */
  private freeAt = Number.NEGATIVE_INFINITY;

  constructor(private readonly shape: UplinkShape) {
    if (!(shape.rateBps >= 0) || !(shape.setupMs >= 0))
      throw new RangeError(`link needs rate >= 0 and set-up >= 0, got ${shape.rateBps} and ${shape.setupMs}`);
  }

  /** Reserves `bytes` that include `messages` message starts; returns when their last byte has left (ms). */
  reserve(bytes: number, messages: number, now: number): number {
    const start = Math.max(now, this.freeAt);
    const rate = rateAt(this.shape, start);
    const sendMs = rate > 0 ? (bytes * 8 * 1000) / rate : 0;
    this.freeAt = start + messages * this.shape.setupMs + sendMs;
    return this.freeAt;
  }
}

const PUBLISH = 3;

/**
 * Finds MQTT packet boundaries in the byte stream a client writes (fixed header: type nibble and a variable-length
 * remaining length [MQTT-2.2], [MQTT-2.2.3]), so the shaper knows where each PUBLISH starts whatever the chunking.
 */
export class MqttFramer {
  private state: 'type' | 'length' | 'body' = 'type';
  private remaining = 0;
  private multiplier = 1;

  /** Feeds written bytes; returns how many PUBLISH packets start in them. */
  feed(chunk: Uint8Array): number {
    let publishes = 0;
    let i = 0;
    while (i < chunk.length) {
      if (this.state === 'type') {
        if (chunk[i]! >> 4 === PUBLISH) publishes++;
        this.state = 'length';
        this.remaining = 0;
        this.multiplier = 1;
        i++;
      } else if (this.state === 'length') {
        const b = chunk[i++]!;
        this.remaining += (b & 0x7f) * this.multiplier;
        this.multiplier *= 128;
        if ((b & 0x80) === 0) this.state = this.remaining > 0 ? 'body' : 'type';
      } else {
        const take = Math.min(this.remaining, chunk.length - i);
        i += take;
        this.remaining -= take;
        if (this.remaining === 0) this.state = 'type';
      }
    }
    return publishes;
  }
}

/** Largest piece released to the socket at once: a long message reaches the peer bit by bit, as over a real link. */
export const SLICE_BYTES = 64 * 1024;
/** Bytes waiting for the emulated link beyond which writes wait (the emulated device's socket send buffer). */
export const BACKLOG_BYTES = 1024 * 1024;

/**
 * A duplex stream over a real socket whose writes are released on the emulated link's schedule. Each written chunk
 * is scheduled when it is written, cut into slices of at most {@link SLICE_BYTES}, and each slice is written to the
 * socket when its last byte would have left the emulated link; so the peer receives a long message progressively,
 * not all at once at its end. The writer is told to go on (the write callback) as soon as the chunk is scheduled,
 * unless more than {@link BACKLOG_BYTES} wait for the emulated link or sit unsent in the real socket: the next chunk
 * is then scheduled as it arrives, and the emulated link does not idle while the real socket hands the previous one
 * over (on loopback a 750 KB message takes ms to drain into the broker; waiting for that before scheduling the next
 * message cost 4-6 ms of link time per message). Reads pass through. `setNoDelay` reaches the socket, so
 * TCP_NODELAY still applies to what is released.
 */
export class ShapedStream extends Duplex {
  private readonly framer = new MqttFramer();
  private readonly link: LinkSchedule;
  private timer: NodeJS.Timeout | undefined;
  /** Slices scheduled and not yet written to the socket, in order. */
  private readonly queue: Array<{ bytes: Buffer; due: number }> = [];
  private queuedBytes = 0;
  /** The callback of the last write, held while the backlog is too long. */
  private held: ((err?: Error | null) => void) | undefined;
  /** Ends the socket once the queue is empty (set by _final). */
  private ending: (() => void) | undefined;

  constructor(
    private readonly inner: Duplex,
    shape: UplinkShape,
    private readonly clock: Clock = systemClock,
  ) {
    super({ allowHalfOpen: false });
    this.link = new LinkSchedule(shape);
    inner.on('data', (d: Buffer) => {
      if (!this.push(d)) inner.pause();
    });
    inner.on('end', () => this.push(null));
    inner.on('error', (err) => this.destroy(err));
    inner.on('close', () => this.destroy());
    inner.on('connect', () => this.emit('connect'));
    inner.on('drain', () => this.admit());
  }

  /** Sets TCP_NODELAY on the underlying socket (mqtt.js and runtime/mqtt.ts call this on connect). */
  setNoDelay(noDelay = true): this {
    (this.inner as Partial<Socket>).setNoDelay?.(noDelay);
    return this;
  }

  override _read(): void {
    this.inner.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    const now = this.clock.now();
    for (let at = 0; at < chunk.length; at += SLICE_BYTES) {
      const bytes = chunk.subarray(at, at + SLICE_BYTES);
      this.queue.push({ bytes, due: this.link.reserve(bytes.length, this.framer.feed(bytes), now) });
      this.queuedBytes += bytes.length;
    }
    this.held = done;
    this.release();
  }

  /** Writes the slices whose time has come to the socket, and arms a timer for the next one. */
  private release(): void {
    while (!this.timer && this.queue.length > 0) {
      const next = this.queue[0]!;
      // Timers count whole milliseconds from the event loop's cached clock, which can lag up to 1 ms, so a timer
      // fires up to about 1 ms off its time either way. Waits are rounded to the nearest millisecond (under 0.5 ms:
      // released now), so the error averages out: rounding up instead made every message 0.9 to 1.1 ms late
      // (median, on this host), to nearest 0.3 to 0.6 ms. The schedule is virtual, so releasing early or late does
      // not accumulate error: the next slice is still scheduled after this one's due time.
      const wait = next.due - this.clock.now();
      if (wait >= 0.5) {
        this.timer = setTimeout(() => {
          this.timer = undefined;
          this.release();
        }, Math.round(wait));
        continue;
      }
      this.queue.shift();
      this.queuedBytes -= next.bytes.length;
      if (!this.inner.destroyed) this.inner.write(next.bytes);
    }
    if (this.queue.length === 0 && this.ending) {
      const end = this.ending;
      this.ending = undefined;
      end();
    }
    this.admit();
  }

  /** Lets the writer go on while the backlog is short. */
  private admit(): void {
    const done = this.held;
    if (!done || this.queuedBytes > BACKLOG_BYTES || this.inner.writableLength > BACKLOG_BYTES) return;
    this.held = undefined;
    done();
  }

  override _final(done: (err?: Error | null) => void): void {
    this.ending = () => this.inner.end(() => done());
    if (this.queue.length === 0) this.release();
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.inner.destroy();
    done(err);
  }
}

/** Wraps a connection's stream in the emulated uplink (for `ConnectionOptions.wrapStream`). */
export function shapeUplink(shape: UplinkShape, clock: Clock = systemClock): (stream: Duplex) => Duplex {
  // The schedule's time runs from the first connection, across reconnects.
  const scheduled = { ...shape, origin: shape.origin ?? clock.now() };
  return (stream) => new ShapedStream(stream, scheduled, clock);
}

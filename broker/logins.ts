/**
 * What a login may cost the broker. Each password check is a scrypt derivation (tens of milliseconds of CPU, off
 * the event loop in libuv's thread pool), so a flood of bogus CONNECTs would otherwise queue every real login
 * behind thousands of them.
 *
 * - Failed logins are throttled per client address and per user name: each key has a bucket of failures
 *   ({@link LOGIN_LIMITS}: 10 per address, 100 per user name), refilled one per `refillMs`; with a bucket empty, a
 *   CONNECT from that address or for that user is refused before any hashing. A correct login costs nothing from
 *   the buckets. A user's bucket is ten times an address's, so a flood from one address cannot lock a robot's user
 *   out (its own address stays clean); guessing one user's password from many addresses is still slowed.
 * - At most `concurrent` checks run at once and `queued` wait; a CONNECT beyond them is refused at once.
 * - Either refusal is CONNACK 0x03 (server unavailable, MQTT 3.1.1 §3.2.2.3): a client retries later, and a wrong
 *   password is not reported for a check that never ran.
 *
 * An unknown user costs one derivation like a known one (passwords.ts `verifyNothing`), so timing does not tell
 * which users exist.
 */
import { cpus } from 'node:os';

/** The throttle's settings. */
export interface LoginLimits {
  /** Failed logins a client address may have in a burst. */
  failures: number;
  /** Failed logins a user name may have in a burst (from all addresses). */
  userFailures: number;
  /** One failure is forgiven per this many ms. */
  refillMs: number;
  /** Password checks at once. */
  concurrent: number;
  /** Password checks waiting for a slot; beyond them a CONNECT is refused at once. */
  queued: number;
}

/** Defaults: 10 failures per address and 100 per user, then one per 2 s; one check per core, 16 waiting. */
export const LOGIN_LIMITS: LoginLimits = {
  failures: 10,
  userFailures: 100,
  refillMs: 2000,
  concurrent: Math.max(1, cpus().length),
  queued: 16,
};

/** Keys held before the full buckets are swept out. */
const SWEEP_AT = 4096;

interface Bucket {
  tokens: number;
  at: number;
}

/** Why a login was not checked. */
export type LoginThrottle = 'address' | 'user' | 'busy';

/** The login throttle of one broker. */
export class LoginGate {
  private readonly buckets = new Map<string, Bucket>();
  /** Checks under way (running or waiting) per key. */
  private readonly pending = new Map<string, number>();
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  /** Password checks run so far, and logins refused without one, per reason. */
  readonly counts = { checks: 0, address: 0, user: 0, busy: 0 };

  constructor(
    private readonly limits: LoginLimits = LOGIN_LIMITS,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /**
   * Runs `check` (the password check) unless the address or the user is throttled or too many checks wait;
   * then says why it did not. `check` resolves true for a correct login; a false one is counted against both keys.
   */
  async run(
    address: string,
    user: string,
    check: () => Promise<boolean>,
  ): Promise<{ ok: boolean } | { throttled: LoginThrottle }> {
    const a = `a:${address}`;
    const u = `u:${user}`;
    const throttled: LoginThrottle | undefined = this.empty(a)
      ? 'address'
      : this.empty(u)
        ? 'user'
        : this.running >= this.limits.concurrent && this.waiting.length >= this.limits.queued
          ? 'busy'
          : undefined;
    if (throttled) {
      this.counts[throttled]++;
      return { throttled };
    }
    // A check under way may fail: it holds a failure of its address and user until it ends, so one address
    // cannot fill the queue with more checks than it has failures left.
    this.hold(a, 1);
    this.hold(u, 1);
    try {
      if (this.running >= this.limits.concurrent) await new Promise<void>((r) => this.waiting.push(r));
      this.running++;
      this.counts.checks++;
      try {
        const ok = await check();
        if (!ok) {
          this.take(a);
          this.take(u);
        }
        return { ok };
      } finally {
        this.running--;
        this.waiting.shift()?.();
      }
    } finally {
      this.hold(a, -1);
      this.hold(u, -1);
    }
  }

  private hold(key: string, n: number): void {
    const held = (this.pending.get(key) ?? 0) + n;
    if (held > 0) this.pending.set(key, held);
    else this.pending.delete(key);
  }

  /** A key's bucket size: an address's or a user's. */
  private capacity(key: string): number {
    return key.startsWith('u:') ? this.limits.userFailures : this.limits.failures;
  }

  /** The bucket of a key refilled to now; undefined (full) when it has none. */
  private refill(key: string): Bucket | undefined {
    const b = this.buckets.get(key);
    if (!b) return undefined;
    const now = this.now();
    const full = this.capacity(key);
    b.tokens = Math.min(full, b.tokens + (now - b.at) / this.limits.refillMs);
    b.at = now;
    // Full again: forgotten, so memory is bounded by the keys failing now.
    if (b.tokens >= full) {
      this.buckets.delete(key);
      return undefined;
    }
    return b;
  }

  /** No failure left for this key, counting the checks under way as failures. */
  private empty(key: string): boolean {
    const tokens = this.refill(key)?.tokens ?? this.capacity(key);
    return tokens - (this.pending.get(key) ?? 0) < 1;
  }

  private take(key: string): void {
    if (this.buckets.size >= SWEEP_AT) for (const k of [...this.buckets.keys()]) this.refill(k);
    const b = this.refill(key) ?? { tokens: this.capacity(key), at: this.now() };
    b.tokens = Math.max(0, b.tokens - 1);
    this.buckets.set(key, b);
  }
}

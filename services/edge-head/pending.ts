/**
 * Requests waiting for their result. A result for a request that is no longer waiting (answered already, or taken
 * over by the local fallback) is a late duplicate and is dropped, so every frame is answered exactly once.
 */
import { realTimers, type Timers } from '../../runtime/clock.ts';
import type { Logger } from '../../runtime/log.ts';
import type { InferenceError, InferenceResult } from '../../schemas/codec.ts';

/** Why a frame's wait ended without a result, so its tail runs on the device (a metrics label). */
export type FallbackKind =
  | 'deadline'
  | 'error-reply'
  | 'unreachable'
  | 'connection-lost'
  | 'not-sent'
  | 'link-busy'
  | 'other';

/** Every {@link FallbackKind}. */
export const FALLBACK_KINDS: readonly FallbackKind[] = [
  'deadline',
  'error-reply',
  'unreachable',
  'connection-lost',
  'not-sent',
  'link-busy',
  'other',
];

/** The rejection of a frame's wait: the message says why in words, `kind` as a label. */
export class FallbackError extends Error {
  constructor(
    readonly kind: FallbackKind,
    message: string,
  ) {
    super(message);
  }
}

/** The kind of a fallback's cause (`other` for anything not raised as a FallbackError). */
export function fallbackKind(err: unknown): FallbackKind {
  return err instanceof FallbackError ? err.kind : 'other';
}

interface Waiter {
  resolve: (r: InferenceResult) => void;
  reject: (e: Error) => void;
  cancel: () => void;
}

/** The table of requests in flight. */
export class PendingResults {
  private readonly waiters = new Map<string, Waiter>();
  /** Results (or error replies) that arrived for no waiting request: late, after a fallback, or duplicate. */
  ignored = 0;

  constructor(
    private readonly logger: Logger,
    private readonly timers: Timers = realTimers,
  ) {}

  /** Requests in flight. */
  get size(): number {
    return this.waiters.size;
  }

  /** Registers a request; the promise rejects when no answer comes within `timeoutMs` (the frame's deadline). */
  expect(requestId: string, timeoutMs: number): Promise<InferenceResult> {
    return new Promise((resolve, reject) => {
      const cancel = this.timers.after(timeoutMs, () => {
        if (!this.waiters.delete(requestId)) return;
        reject(new FallbackError('deadline', `no result within the deadline of ${Math.round(timeoutMs)} ms`));
      });
      this.waiters.set(requestId, { resolve, reject, cancel });
    });
  }

  /** Delivers a result to its waiting request. */
  resolve(result: InferenceResult): void {
    const w = this.take(result.requestId);
    if (w) w.resolve(result);
  }

  /** Delivers an error reply to its waiting request. */
  fail(error: InferenceError): void {
    const w = this.take(error.requestId);
    if (w)
      w.reject(
        new FallbackError(
          'error-reply',
          `worker ${error.workerId || '?'} refused the request: ${error.code}: ${error.message}`,
        ),
      );
  }

  /** Gives up on one request (its publish failed); a later answer counts as ignored. */
  abandon(requestId: string, reason: Error): void {
    const w = this.waiters.get(requestId);
    if (!w) return;
    w.cancel();
    this.waiters.delete(requestId);
    w.reject(reason);
  }

  /** Gives up on every request in flight (the connection is lost); later answers count as ignored. */
  abandonAll(reason: Error): number {
    const ids = [...this.waiters.keys()];
    for (const id of ids) this.abandon(id, reason);
    return ids.length;
  }

  /** Forgets a request (its frame finished another way). */
  cancel(requestId: string): void {
    const w = this.waiters.get(requestId);
    if (w) w.cancel();
    this.waiters.delete(requestId);
  }

  private take(requestId: string): Waiter | undefined {
    const w = this.waiters.get(requestId);
    if (!w) {
      this.ignored++;
      this.logger.debug({ requestId }, 'result for no waiting request ignored (late or duplicate)');
      return undefined;
    }
    w.cancel();
    this.waiters.delete(requestId);
    return w;
  }
}

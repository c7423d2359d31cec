/**
 * Requests waiting for their result. A result for a request that is no longer waiting (answered already, or taken
 * over by the local fallback) is a late duplicate and is dropped, so every frame is answered exactly once.
 */
import type { Logger } from '../../common/log.ts';
import type { InferenceError, InferenceResult } from '../../schemas/codec.ts';

interface Waiter {
  resolve: (r: InferenceResult) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** The table of requests in flight. */
export class PendingResults {
  private readonly waiters = new Map<string, Waiter>();
  /** Results that arrived for no waiting request (late or duplicate). */
  ignored = 0;

  constructor(private readonly logger: Logger) {}

  /** Requests in flight. */
  get size(): number {
    return this.waiters.size;
  }

  /** Registers a request; the promise rejects when no answer comes within `timeoutMs`. */
  expect(requestId: string, timeoutMs: number): Promise<InferenceResult> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(requestId);
        reject(new Error(`no result within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.set(requestId, { resolve, reject, timer });
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
        new Error(`worker ${error.workerId || '?'} refused the request: ${error.code}: ${error.message}`),
      );
  }

  /** Forgets a request (its frame finished another way). */
  cancel(requestId: string): void {
    const w = this.waiters.get(requestId);
    if (w) clearTimeout(w.timer);
    this.waiters.delete(requestId);
  }

  private take(requestId: string): Waiter | undefined {
    const w = this.waiters.get(requestId);
    if (!w) {
      this.ignored++;
      this.logger.debug({ requestId }, 'result for no waiting request ignored (late or duplicate)');
      return undefined;
    }
    clearTimeout(w.timer);
    this.waiters.delete(requestId);
    return w;
  }
}

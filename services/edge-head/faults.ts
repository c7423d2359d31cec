/**
 * When the device stops waiting for a tail worker and runs the tail itself. No frame is lost: each one is answered
 * once, by a worker or locally.
 *
 * - Deadline: a frame offloaded under a plan with predicted stage times waits at most
 *   clamp(factor x (predicted transfer + predicted server ms), min, RESULT_TIMEOUT_MS); under a plan without a
 *   prediction (a fixed cut) it waits RESULT_TIMEOUT_MS. The prediction is the planner's (Algorithm 1), so the
 *   deadline follows the link and the cut: a frame expected back in 20 ms does not wait 5 s.
 * - Broker unreachable: while the connection is down nothing is published (mqtt.js would queue it); the tail runs
 *   locally at once. Offloading resumes by itself when mqtt.js has reconnected.
 * - Connection lost with frames in flight: they fall back at once, not at their deadline. The edge connects with a
 *   clean session (runtime/mqtt.ts), so the broker discards its subscription with the connection and a result
 *   published meanwhile is never delivered [MQTT-3.1.2-6]. (With a persistent session the results could still
 *   come after a reconnect; waiting for the deadline would then be the right choice.) mqtt.js may resend such a
 *   request after reconnecting; its result then arrives for no waiting request and is counted as ignored.
 * - An Error reply from a worker: the tail runs locally at once.
 * A result arriving after its frame fell back is ignored and counted (`EdgeHead.lateResults`).
 */

import { realTimers, type Timers } from '../../runtime/clock.ts';
import { errorMessage } from '../../runtime/errors.ts';
import type { Logger } from '../../runtime/log.ts';
import type { Connection } from '../../runtime/mqtt.ts';
import { decodeMessage, type ErrorCode, type InferenceResult } from '../../schemas/codec.ts';
import type { Plan } from '../../schemas/messages.ts';
import { topics } from '../../schemas/topics.ts';
import { FallbackError, PendingResults } from './pending.ts';

/** How deadlines are derived. */
export interface DeadlineOptions {
  /** Multiplies the predicted transfer + server time. */
  factor: number;
  /** Lower bound, ms. */
  minMs: number;
  /** Upper bound, and the deadline without a prediction (RESULT_TIMEOUT_MS), ms. */
  maxMs: number;
}

/**
 * The deadline, in ms after sending, of a frame offloaded under `plan`: factor x the predicted transfer + server
 * time, within [minMs, maxMs], plus the time the link needs for what is still queued ahead of it (`aheadBytes`
 * unacknowledged on the uplink, at the plan's predicted rate for `requestBytes`). With frames in flight (a window
 * above 1), a request waits for the ones before it on the link: without that part, four 1 Mbit/s AlexNet frames in
 * flight missed a deadline of 3 x one frame's time on every fourth frame, ran their tails on the device, and the
 * planner read the misses as a loaded server.
 */
export function frameDeadline(
  plan: Plan | undefined,
  o: DeadlineOptions,
  queue: { aheadBytes: number; requestBytes: number } = { aheadBytes: 0, requestBytes: 0 },
): number {
  const p = plan?.predicted;
  if (!p) return o.maxMs;
  const expected = p.transferMs + p.serverMs;
  if (!Number.isFinite(expected) || expected < 0) return o.maxMs;
  const own = Math.min(o.maxMs, Math.max(o.minMs, o.factor * expected));
  const ahead =
    queue.aheadBytes > 0 && queue.requestBytes > 0 && Number.isFinite(p.transferMs) && p.transferMs > 0
      ? (queue.aheadBytes / queue.requestBytes) * p.transferMs
      : 0;
  return own + ahead;
}

/** Reasons a frame's tail ran locally (FrameReport.fallback starts with one of these, or is a worker's error). */
export const FALLBACK = {
  unreachable: 'broker unreachable',
  lost: 'connection to the broker lost',
  notSent: 'request not sent',
} as const;

/**
 * The request/answer path of the data plane: publishes requests, matches answers, and rejects a frame's wait with
 * the reason whenever its tail has to run on the device.
 */
export class RequestChannel {
  private readonly pending: PendingResults;
  /** Called with the code of every Error reply a worker sends (for the metrics), before it is matched. */
  onErrorReply: ((code: ErrorCode) => void) | undefined;

  constructor(
    private readonly conn: Connection,
    private readonly deviceId: string,
    private readonly logger: Logger,
    timers: Timers = realTimers,
  ) {
    this.pending = new PendingResults(logger, timers);
  }

  /** Requests sent and not yet answered. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Answers that came for no waiting request (after a fallback, or duplicates); they were ignored. */
  get ignored(): number {
    return this.pending.ignored;
  }

  /**
   * Publishes a request and waits for its answer; rejects with the reason whenever the tail must run here.
   * `onAcked` is called when the broker has acknowledged the request (its PUBACK), whatever became of the frame.
   */
  send(
    requestId: string,
    payload: Uint8Array,
    deadlineMs: number,
    onAcked?: () => void,
  ): Promise<InferenceResult> {
    // While offline mqtt.js would queue the request until it reconnects; the frame cannot wait for that.
    if (!this.conn.connected) return Promise.reject(new FallbackError('unreachable', FALLBACK.unreachable));
    const answer = this.pending.expect(requestId, deadlineMs);
    this.conn
      .publish(topics.request.build({ device: this.deviceId }), payload, { qos: 1 })
      .then(onAcked)
      .catch((err: unknown) =>
        this.pending.abandon(
          requestId,
          new FallbackError('not-sent', `${FALLBACK.notSent}: ${errorMessage(err)}`),
        ),
      );
    return answer;
  }

  /** Handles a message on the device's result topic (a Result or an Error reply). */
  onAnswer(payload: Buffer): void {
    const msg = decodeMessage(payload);
    if (msg.kind === 'result') this.pending.resolve(msg.value);
    else if (msg.kind === 'error') {
      this.onErrorReply?.(msg.value.code);
      this.pending.fail(msg.value);
    }
  }

  /** The connection closed: every frame in flight falls back now (see the top of this file). */
  onConnectionLost(): void {
    const n = this.pending.abandonAll(new FallbackError('connection-lost', FALLBACK.lost));
    if (n > 0) this.logger.warn({ frames: n }, 'connection lost: frames in flight fall back to the device');
  }
}

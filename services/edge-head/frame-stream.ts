/**
 * The device's per-frame reports on its `frames` topic (schemas/topics.ts `deviceFrames`), for dashboards: one JSON
 * message per finished frame, QoS 0, never retained. The frame path never waits for them and they never queue:
 * a report is handed to the connection and forgotten, and is skipped, and counted, when it would exceed
 * {@link FRAME_REPORTS_PER_SECOND} in any second, when the broker is unreachable (mqtt.js would otherwise queue
 * QoS 0 messages while offline), or when earlier bytes still wait in the socket or requests still upload (a slow
 * broker or link): the frames go on, only their reports are missing. On a link shaped by EMULATE_UPLINK the reports
 * are part of what the device sends, as they would be on a real link; FRAME_REPORTS=false leaves them out of link
 * experiments.
 */
import type { Clock } from '../../runtime/clock.ts';
import { FRAME_REPORT_MAX_BYTES, type FrameReportMessage } from '../../schemas/messages.ts';
import { topics } from '../../schemas/topics.ts';
import type { FrameReport } from './frame-report.ts';

/** Frame reports a device publishes per second at most; the frames beyond that are not reported. */
export const FRAME_REPORTS_PER_SECOND = 20;
/** A report is skipped while more than this many bytes wait in the connection's socket. */
export const FRAME_REPORT_BACKLOG_BYTES = 64 * 1024;
/** Frames the published fps is averaged over. */
const FPS_FRAMES = 32;
/** Longest fallback reason carried (the rest cut, so the report stays small). */
const REASON_CHARS = 300;

/** At most `limit` events in any `spanMs`: the times of the last `limit` taken, oldest first. */
export class SlidingLimit {
  private readonly times: number[] = [];

  constructor(
    private readonly limit: number,
    private readonly spanMs = 1000,
  ) {}

  /** Takes one event at `now` if fewer than `limit` were taken in the span before it; false otherwise. */
  take(now: number): boolean {
    if (this.times.length >= this.limit) {
      if (now - this.times[0]! < this.spanMs) return false;
      this.times.shift();
    }
    this.times.push(now);
    return true;
  }
}

/** Where reports go: the device's connection. */
export interface FrameReportSink {
  /** True when a QoS 0 message written now would go out without queueing (connected, socket not backed up). */
  ready(): boolean;
  /** Publishes with QoS 0, not retained. */
  publish(topic: string, body: string): Promise<void>;
}

/** The report of one frame as published: every field of the frame's printed line that a dashboard draws. */
export function frameReportMessage(
  device: string,
  r: FrameReport,
  fps: number,
  at: number,
  skipped?: number,
): FrameReportMessage {
  const fallback = r.fallback === undefined ? null : r.fallback.slice(0, REASON_CHARS);
  const top1 = r.top1;
  return {
    device,
    frame: r.index + 1,
    at,
    cut: r.cut.index,
    after: r.cut.after,
    headMs: Math.max(0, r.headMs),
    transferMs: Math.max(0, r.transferMs),
    tailMs: Math.max(0, r.tailMs),
    totalMs: Math.max(0, r.totalMs),
    fps,
    tailBy: r.tailBy,
    fallback,
    ...(top1
      ? {
          top1: {
            index: top1.index,
            probability: top1.probability,
            ...(top1.label !== undefined ? { label: top1.label.slice(0, 200) } : {}),
          },
        }
      : {}),
    ...(skipped ? { skipped } : {}),
  };
}

/** Publishes the device's frame reports, rate-limited and without ever queueing. */
export class FrameReportStream {
  private readonly limit = new SlidingLimit(FRAME_REPORTS_PER_SECOND);
  private readonly topic: string;
  /** Capture times of the last frames, for the fps. */
  private readonly starts: number[] = [];
  private sinceLast = 0;
  /** Reports published. */
  published = 0;
  /** Reports not published: over the rate limit, or the link down or backed up. */
  skipped = 0;

  constructor(
    private readonly device: string,
    private readonly sink: FrameReportSink,
    private readonly clock: Clock,
  ) {
    this.topic = topics.deviceFrames.build({ device });
  }

  /** Reports one finished frame, or skips it; returns at once and never throws. */
  offer(r: FrameReport): void {
    const now = this.clock.now();
    this.starts.push(now - r.totalMs);
    if (this.starts.length > FPS_FRAMES) this.starts.shift();
    const span = now - Math.min(...this.starts);
    const fps = span > 0 ? (this.starts.length * 1000) / span : 0;
    try {
      if (!this.sink.ready() || !this.limit.take(now)) {
        this.skip();
        return;
      }
      const body = JSON.stringify(frameReportMessage(this.device, r, fps, now, this.sinceLast));
      if (Buffer.byteLength(body) > FRAME_REPORT_MAX_BYTES) {
        this.skip();
        return;
      }
      this.sinceLast = 0;
      this.published++;
      this.sink.publish(this.topic, body).catch(() => undefined);
    } catch {
      // A report is never worth a frame: whatever fails here (a connection torn down meanwhile) skips it.
      this.skip();
    }
  }

  private skip(): void {
    this.skipped++;
    this.sinceLast++;
  }
}

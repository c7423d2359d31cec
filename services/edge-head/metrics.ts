/**
 * The edge-head's metrics: frames by outcome, stage latencies, the cut in force, fallbacks by reason, error replies
 * by code, frames in flight. Observed where the values already exist: once per finished frame from its report
 * (main.ts), per Error reply in the request channel, and read from the component at each scrape. Label children
 * are made once here, so a frame costs only prom-client's increments and observations.
 */
import type { Counter, Gauge, Histogram } from 'prom-client';
import { MetricSet, WIRE_ERROR_CODES } from '../../runtime/metrics.ts';
import type { ErrorCode } from '../../schemas/codec.ts';
import type { FrameReport } from './frame-report.ts';
import { FALLBACK_KINDS, type FallbackKind } from './pending.ts';

/** What happened to a frame: its tail ran on a worker, on the device by plan, or on the device as a fallback. */
export type FrameOutcome = 'offloaded' | 'local' | 'fallback';

const OUTCOMES: readonly FrameOutcome[] = ['offloaded', 'local', 'fallback'];
const STAGES = ['head', 'transfer', 'tail', 'total'] as const;
type Stage = (typeof STAGES)[number];
/** `handler`: a message to the device (a plan) that its handler could not process. */
type EdgeErrorCode = ErrorCode | 'handler';

/** Values read from the running edge at each scrape. */
export interface EdgeSources {
  /** Frames sent and not yet answered. */
  inFlight: () => number;
  /** The cut in force (the number of layers when the device runs everything). */
  cut: () => number;
}

const perLabel = <K extends string, V>(keys: readonly K[], make: (k: K) => V): Record<K, V> =>
  Object.fromEntries(keys.map((k) => [k, make(k)])) as Record<K, V>;

/** The metrics of one edge device. */
export class EdgeMetrics {
  /** The registry and the definitions. */
  readonly set = new MetricSet();
  private sources: EdgeSources | undefined;
  private readonly frames: Record<FrameOutcome, Counter.Internal>;
  private readonly stages: Record<Stage, Histogram.Internal<'device' | 'stage'>>;
  private readonly fallbacks: Record<FallbackKind, Counter.Internal>;
  private readonly errors: Record<EdgeErrorCode, Counter.Internal>;
  private readonly sent: Counter.Internal;
  private readonly fps: Gauge.Internal<'device'>;

  constructor(readonly device: string) {
    const s = this.set;
    const frames = s.counter(
      'edgecut_edge_frames_total',
      'frames finished, by outcome: offloaded (tail on a worker), local (the plan runs everything on the device), fallback (tail run on the device after an error, deadline or lost broker)',
      ['device', 'outcome'],
    );
    this.frames = perLabel(OUTCOMES, (outcome) => zeroed(frames, { device, outcome }));
    const stage = s.histogram(
      'edgecut_edge_stage_seconds',
      'latency per stage of each frame: head (on the device), transfer (round trip minus the worker’s time; offloaded frames), tail (worker or local fallback), total (capture to result)',
      ['device', 'stage'],
    );
    this.stages = perLabel(STAGES, (st) => {
      stage.zero({ device, stage: st });
      return stage.labels({ device, stage: st });
    });
    this.fps = s
      .gauge(
        'edgecut_edge_fps',
        'frames per second since the first frame (the figure of the per-frame line); for a window use rate(edgecut_edge_frames_total[1m])',
        ['device'],
      )
      .labels({ device });
    s.gauge(
      'edgecut_edge_cut',
      'cut in force: layers run on the device (k; 0 = full offload)',
      ['device'],
      (g) => {
        if (this.sources) g.set({ device }, this.sources.cut());
      },
    );
    const fallbacks = s.counter(
      'edgecut_edge_fallbacks_total',
      'frames whose tail ran on the device although offloaded, by reason',
      ['device', 'reason'],
    );
    this.fallbacks = perLabel(FALLBACK_KINDS, (reason) => zeroed(fallbacks, { device, reason }));
    const errors = s.counter(
      'edgecut_edge_errors_total',
      'Error replies from tail workers by wire code, and messages to the device its handler rejected (code handler)',
      ['device', 'code'],
    );
    this.errors = perLabel<EdgeErrorCode, Counter.Internal>([...WIRE_ERROR_CODES, 'handler'], (code) =>
      zeroed(errors, { device, code }),
    );
    s.gauge('edgecut_edge_frames_in_flight', 'frames sent and not yet answered', ['device'], (g) => {
      if (this.sources) g.set({ device }, this.sources.inFlight());
    });
    this.sent = zeroed(
      s.counter('edgecut_edge_request_bytes_total', 'bytes of the requests published', ['device']),
      { device },
    );
  }

  /** Where the scrape-time gauges read from. */
  watch(sources: EdgeSources): void {
    this.sources = sources;
  }

  /** Records a finished frame and the running frames per second. */
  frame(r: FrameReport, fps: number): void {
    const outcome: FrameOutcome =
      r.fallback !== undefined ? 'fallback' : r.tailBy === 'local' ? 'local' : 'offloaded';
    this.frames[outcome].inc();
    this.stages.head.observe(r.headMs / 1000);
    if (outcome === 'offloaded') this.stages.transfer.observe(r.transferMs / 1000);
    if (outcome !== 'local') this.stages.tail.observe(r.tailMs / 1000);
    this.stages.total.observe(r.totalMs / 1000);
    if (r.requestBytes > 0) this.sent.inc(r.requestBytes);
    if (r.fallbackKind !== undefined) this.fallbacks[r.fallbackKind].inc();
    this.fps.set(fps);
  }

  /** Counts an Error reply from a worker. */
  errorReply(code: ErrorCode): void {
    this.errors[code].inc();
  }

  /** Counts a message the device's handler rejected. */
  handlerError(): void {
    this.errors.handler.inc();
  }
}

/** The child of a label set, shown as 0 before its first increment. */
function zeroed<L extends string>(c: Counter<L>, labels: Partial<Record<L, string>>): Counter.Internal {
  c.inc(labels, 0);
  return c.labels(labels);
}

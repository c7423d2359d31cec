/**
 * A tail worker's metrics: requests by model and outcome, errors by code, queue depth, tail inference time and
 * bytes received. Models are labelled by name, and only models of the worker's directory get their own label: a
 * request naming an unknown model counts under `unknown`, so senders cannot grow the label set.
 */
import type { Counter, Histogram } from 'prom-client';
import { MetricSet, WIRE_ERROR_CODES } from '../../runtime/metrics.ts';
import type { ErrorCode } from '../../schemas/codec.ts';

/** `handler`: a failure outside the request path's own error replies (e.g. the error reply could not be sent). */
type TailErrorCode = ErrorCode | 'handler';

/** Values read from the running worker at each scrape. */
export interface TailSources {
  /** Requests waiting for a slot plus those running. */
  queueDepth: () => number;
  /** Requests waiting per device (devices with none absent). */
  deviceQueues?: () => Record<string, number>;
}

interface ModelChildren {
  ok: Counter.Internal;
  error: Counter.Internal;
  seconds: Histogram.Internal<'worker' | 'model'>;
}

/** The metrics of one tail worker. */
export class TailMetrics {
  /** The registry and the definitions. */
  readonly set = new MetricSet();
  private sources: TailSources | undefined;
  private readonly requests: Counter<'worker' | 'model' | 'outcome'>;
  private readonly seconds: Histogram<'worker' | 'model'>;
  private readonly errors = new Map<TailErrorCode, Counter.Internal>();
  private readonly received: Counter.Internal;
  /** Model names by content hash, for the models this worker has served. */
  private readonly names = new Map<string, string>();
  private readonly byModel = new Map<string, ModelChildren>();

  constructor(readonly worker: string) {
    const s = this.set;
    this.requests = s.counter(
      'edgecut_tail_requests_total',
      'requests handled, by model name and outcome (ok: result published; error: Error reply)',
      ['worker', 'model', 'outcome'],
    );
    const errors = s.counter(
      'edgecut_tail_errors_total',
      'Error replies by wire code, and handler failures (code handler)',
      ['worker', 'code'],
    );
    for (const code of [...WIRE_ERROR_CODES, 'handler' as const]) {
      errors.inc({ worker, code }, 0);
      this.errors.set(code, errors.labels({ worker, code }));
    }
    s.gauge(
      'edgecut_tail_queue_depth',
      'requests waiting for a slot plus those running',
      ['worker'],
      (g) => this.sources && g.set({ worker }, this.sources.queueDepth()),
    );
    s.gauge(
      'edgecut_tail_device_queue_depth',
      'requests waiting per device (devices with none waiting have no series)',
      ['worker', 'device'],
      (g) => {
        g.reset();
        for (const [device, n] of Object.entries(this.sources?.deviceQueues?.() ?? {}))
          g.set({ worker, device }, n);
      },
    );
    this.seconds = s.histogram(
      'edgecut_tail_inference_seconds',
      'time of one tail inference (nodes k+1..N), by model name',
      ['worker', 'model'],
    );
    const received = s.counter('edgecut_tail_received_bytes_total', 'bytes of the requests received', [
      'worker',
    ]);
    received.inc({ worker }, 0);
    this.received = received.labels({ worker });
  }

  /** Where the scrape-time gauges read from. */
  watch(sources: TailSources): void {
    this.sources = sources;
  }

  /** Counts a request's bytes as it arrives. */
  receivedBytes(n: number): void {
    this.received.inc(n);
  }

  /** Learns the name of a model of the directory (before its request is checked further). */
  model(modelId: string, name: string): void {
    if (!this.names.has(modelId)) this.names.set(modelId, name);
  }

  /** Records a served request and its inference time. */
  served(modelId: string, seconds: number): void {
    const m = this.children(modelId);
    m.ok.inc();
    m.seconds.observe(seconds);
  }

  /** Records a request answered with an Error reply (`modelId` empty when the request could not be read). */
  failed(code: ErrorCode, modelId: string): void {
    this.children(modelId).error.inc();
    this.errors.get(code)?.inc();
  }

  /** Counts a handler failure. */
  handlerError(): void {
    this.errors.get('handler')?.inc();
  }

  private children(modelId: string): ModelChildren {
    const model = this.names.get(modelId) ?? 'unknown';
    let m = this.byModel.get(model);
    if (!m) {
      const { worker } = this;
      for (const outcome of ['ok', 'error']) this.requests.inc({ worker, model, outcome }, 0);
      m = {
        ok: this.requests.labels({ worker, model, outcome: 'ok' }),
        error: this.requests.labels({ worker, model, outcome: 'error' }),
        seconds: this.seconds.labels({ worker, model }),
      };
      this.byModel.set(model, m);
    }
    return m;
  }
}

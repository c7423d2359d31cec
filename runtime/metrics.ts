/**
 * Metrics and health over HTTP, the same for every service: `GET /metrics` (Prometheus text format, prom-client)
 * and `GET /healthz` (200 with a small JSON body when the component is started and connected, 503 with the reason
 * otherwise); anything else is 404. Each service instance has its own registry (no global default registry that
 * tests would have to reset); its metric definitions live in its `metrics.ts` and are listed here so
 * docs/observability.md is generated from them. The listener opens in `start()` and closes in `stop()` (CONTRIBUTING.md,
 * convention 1); with `METRICS_PORT=off` nothing listens.
 */

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { ErrorCode } from '../schemas/codec.ts';
import type { Component } from './component.ts';
import { errorMessage, UserError } from './errors.ts';
import type { Logger } from './log.ts';
import type { MetricsPort } from './metrics-setting.ts';

/** Latency buckets from 1 ms to 10 s, in seconds (Prometheus base units). */
export const LATENCY_BUCKETS: readonly number[] = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** The kinds of metric edgecut defines. */
export type MetricKind = 'counter' | 'gauge' | 'histogram';

/** One metric as docs/observability.md lists it. */
export interface MetricDefinition {
  name: string;
  kind: MetricKind;
  labels: readonly string[];
  help: string;
}

/** prom-client's `collect` option, which it calls with the metric as `this`, from a plain callback. */
function collector<M>(collect?: (metric: M) => void): { collect?: (this: M) => void } {
  return collect
    ? {
        collect(this: M) {
          collect(this);
        },
      }
    : {};
}

/** A service's registry plus the definitions of the metrics it holds (for the docs). */
export class MetricSet {
  /** The registry `/metrics` serves; one per service instance. */
  readonly registry = new Registry();
  /** Every metric defined through this set, in definition order. */
  readonly definitions: MetricDefinition[] = [];

  /** Defines a counter; `collect`, if given, runs at each scrape (for totals a component keeps itself). */
  counter<L extends string>(
    name: string,
    help: string,
    labels: readonly L[],
    collect?: (counter: Counter<L>) => void,
  ): Counter<L> {
    this.define(name, 'counter', labels, help);
    return new Counter({
      name,
      help,
      labelNames: labels,
      registers: [this.registry],
      ...collector(collect),
    });
  }

  /** Defines a gauge; `collect` runs at each scrape, for values read from the component (queue depth, cut). */
  gauge<L extends string>(
    name: string,
    help: string,
    labels: readonly L[],
    collect?: (gauge: Gauge<L>) => void,
  ): Gauge<L> {
    this.define(name, 'gauge', labels, help);
    return new Gauge({
      name,
      help,
      labelNames: labels,
      registers: [this.registry],
      ...collector(collect),
    });
  }

  /** Defines a histogram of seconds (buckets 1 ms..10 s unless given). */
  histogram<L extends string>(
    name: string,
    help: string,
    labels: readonly L[],
    buckets: readonly number[] = LATENCY_BUCKETS,
  ): Histogram<L> {
    this.define(name, 'histogram', labels, help);
    return new Histogram({
      name,
      help,
      labelNames: labels,
      buckets: [...buckets],
      registers: [this.registry],
    });
  }

  private define(name: string, kind: MetricKind, labels: readonly string[], help: string): void {
    this.definitions.push({ name, kind, labels, help });
  }
}

/** Markdown table of metric definitions (the table of docs/observability.md). */
export function metricsTable(service: string, defs: readonly MetricDefinition[]): string {
  const rows = defs.map(
    (d) => `| \`${d.name}\` | ${d.kind} | ${d.labels.map((l) => `\`${l}\``).join(', ') || '-'} | ${d.help} |`,
  );
  return [`### ${service}`, '', '| metric | type | labels | meaning |', '|---|---|---|---|', ...rows].join(
    '\n',
  );
}

/** What `/healthz` answers: healthy, or why not. */
export type Health = { ok: true } | { ok: false; reason: string };

/** What a metrics server needs. */
export interface MetricsServerOptions {
  /** `off`, 0 (any free port) or a port. */
  port: MetricsPort;
  /** Interface to bind; default 0.0.0.0 (scraped from other hosts and containers). */
  host?: string;
  /** The service's registry. */
  registry: Registry;
  /** Service name written in `/healthz` bodies. */
  service: string;
  /** Current health, asked at every `/healthz`. */
  health: () => Health;
  logger: Logger;
}

/** Adds the standard process metrics (process_cpu_seconds_total, nodejs_heap_size_used_bytes, ...) once. */
function withProcessMetrics(registry: Registry): void {
  if (registry.getSingleMetric('process_cpu_seconds_total') === undefined)
    collectDefaultMetrics({ register: registry });
}

/** The HTTP listener of `/metrics` and `/healthz`. */
export class MetricsServer {
  private server: Server | undefined;
  private boundPort: number | undefined;

  constructor(private readonly opts: MetricsServerOptions) {}

  /** The bound port (after start), or undefined when off. */
  get port(): number | undefined {
    return this.boundPort;
  }

  /** `{ metricsPort }` for the ready line when serving, else nothing. */
  readyDetails(): { metricsPort?: number } {
    return this.boundPort === undefined ? {} : { metricsPort: this.boundPort };
  }

  /** Opens the listener, unless the port is `off`. */
  async start(): Promise<void> {
    const { port, host = '0.0.0.0', registry, logger } = this.opts;
    if (port === 'off' || this.server) return;
    withProcessMetrics(registry);
    const server = createServer((req, res) => void this.handle(req, res));
    this.boundPort = await new Promise<number>((resolve, reject) => {
      server.once('error', (err) =>
        // A port in use is a setting to change, not a bug: one line, no stack (cli/main.ts).
        reject(new UserError(`METRICS_PORT=${port}: cannot listen on ${host}:${port}: ${errorMessage(err)}`)),
      );
      server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
    });
    server.removeAllListeners('error');
    server.on('error', (err) => logger.warn({ err: errorMessage(err) }, 'metrics listener error'));
    this.server = server;
    logger.info({ metricsPort: this.boundPort, host }, 'serving /metrics and /healthz');
  }

  /** Closes the listener and its connections. Idempotent. */
  async stop(): Promise<void> {
    const { server } = this;
    this.server = undefined;
    this.boundPort = undefined;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/metrics') {
      try {
        const body = await this.opts.registry.metrics();
        res.writeHead(200, { 'content-type': this.opts.registry.contentType }).end(body);
      } catch (err) {
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`${errorMessage(err)}\n`);
      }
    } else if (req.method === 'GET' && path === '/healthz') {
      const h = this.opts.health();
      const body = h.ok
        ? { status: 'ok', service: this.opts.service }
        : { status: 'unavailable', service: this.opts.service, reason: h.reason };
      res
        .writeHead(h.ok ? 200 : 503, { 'content-type': 'application/json' })
        .end(`${JSON.stringify(body)}\n`);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: GET /metrics or /healthz\n');
    }
  }
}

/** What {@link Monitored} needs besides the component. */
export interface MonitoredOptions extends Omit<MetricsServerOptions, 'health'> {
  /** Why the running component is unhealthy (e.g. not connected to the broker), or undefined when it is healthy. */
  check?: () => string | undefined;
}

/**
 * A component served with its metrics endpoint: the endpoint opens first (so `/healthz` says `starting` while the
 * component connects) and closes last. Healthy only between the component's start and stop, and while `check`
 * finds nothing wrong.
 */
export class Monitored implements Component {
  /** The endpoint (its port, for the ready line). */
  readonly server: MetricsServer;
  private phase: 'starting' | 'running' | 'stopping' = 'starting';
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly component: Component,
    opts: MonitoredOptions,
  ) {
    const check = opts.check ?? (() => undefined);
    this.server = new MetricsServer({
      ...opts,
      health: () => {
        if (this.phase !== 'running') return { ok: false, reason: this.phase };
        const reason = check();
        return reason === undefined ? { ok: true } : { ok: false, reason };
      },
    });
  }

  /** Opens the endpoint, then starts the component. */
  async start(): Promise<void> {
    await this.server.start();
    try {
      await this.component.start();
    } catch (err) {
      // A component that cannot start must not leave the listener holding the process open.
      await this.server.stop();
      throw err;
    }
    if (this.stopping === undefined) this.phase = 'running';
  }

  /** Stops the component, then closes the endpoint. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.phase = 'stopping';
      try {
        await this.component.stop();
      } finally {
        await this.server.stop();
      }
    })();
    return this.stopping;
  }
}

/** Every code of the wire's Error message (schemas/edgecut.fbs), as the `code` label of the errors counters. */
export const WIRE_ERROR_CODES: readonly ErrorCode[] = Object.keys({
  malformed: true,
  'unknown-model': true,
  'bad-tensor': true,
  'too-large': true,
  internal: true,
  overloaded: true,
  expired: true,
} satisfies Record<ErrorCode, true>) as ErrorCode[];

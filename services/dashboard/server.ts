/**
 * The dashboard's HTTP server (node:http, no framework): the page, `/config.json` (where the browser finds the broker)
 * and the page's assets. It keeps no state of the system: the page reads everything from the broker itself, over
 * MQTT over WebSocket. Every file it serves is read into memory at start from a fixed list (the page's own files in
 * `public/`, uPlot and mqtt.js's browser bundle from node_modules), so a request can only name one of those: no path
 * reaches the file system, and anything else is 404 (CONTRIBUTING.md, convention 5).
 */
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Component } from '../../runtime/component.ts';
import { errorMessage, UserError } from '../../runtime/errors.ts';
import type { Logger } from '../../runtime/log.ts';
import { DASHBOARD_READS, TOPIC_ROOT, topics } from '../../schemas/topics.ts';
import { DEFAULT_BROKER_WS_PORT } from './config.ts';

const PUBLIC_DIR = fileURLToPath(new URL('./public/', import.meta.url));
const require = createRequire(import.meta.url);

/** Root directory of an installed package (its package.json's directory). */
function packageDir(name: string): string {
  return dirname(require.resolve(`${name}/package.json`));
}

/** URL path -> file and content type; the only paths the server answers besides `/config.json`. */
function assetTable(): Map<string, { file: string; type: string }> {
  const js = 'text/javascript; charset=utf-8';
  const css = 'text/css; charset=utf-8';
  const uplot = packageDir('uplot');
  const mqtt = packageDir('mqtt');
  return new Map([
    ['/', { file: join(PUBLIC_DIR, 'index.html'), type: 'text/html; charset=utf-8' }],
    ['/assets/app.js', { file: join(PUBLIC_DIR, 'app.js'), type: js }],
    ['/assets/state.js', { file: join(PUBLIC_DIR, 'state.js'), type: js }],
    ['/assets/view.js', { file: join(PUBLIC_DIR, 'view.js'), type: js }],
    ['/assets/charts.js', { file: join(PUBLIC_DIR, 'charts.js'), type: js }],
    ['/assets/style.css', { file: join(PUBLIC_DIR, 'style.css'), type: css }],
    ['/assets/vendor/uPlot.esm.js', { file: join(uplot, 'dist', 'uPlot.esm.js'), type: js }],
    ['/assets/vendor/uPlot.min.css', { file: join(uplot, 'dist', 'uPlot.min.css'), type: css }],
    // mqtt 5 ships a browser build as an ES module (dist/mqtt.esm.js): no bundler needed.
    ['/assets/vendor/mqtt.esm.js', { file: join(mqtt, 'dist', 'mqtt.esm.js'), type: js }],
  ]);
}

/**
 * The topics the page reads (its subscriptions, handed out in /config.json): schemas/topics.ts `DASHBOARD_READS`,
 * which the broker's `viewer` role may read (broker/acl.ts).
 */
export const PAGE_READS = DASHBOARD_READS;

/** Longest request target accepted (a path of the table is far shorter). */
const MAX_URL_LENGTH = 2048;

/** What the browser gets from `/config.json`. */
export interface BrowserConfig {
  mqttUrl: string;
  username?: string;
  password?: string;
  root: string;
  /** The topics the page reads, name -> pattern below `root` (the viewer role's reads, schemas/topics.ts). */
  topics: Record<string, string>;
}

/** Options of {@link DashboardServer}. */
export interface DashboardOptions {
  port: number;
  host: string;
  /** The broker URL for the browser; undefined = derived from the Host header of each request. */
  mqttWsUrl?: string | undefined;
  /** The broker's WebSocket port on the page's host, when `mqttWsUrl` is undefined (default 8083). */
  brokerWsPort?: number;
  username?: string | undefined;
  password?: string | undefined;
  logger: Logger;
  /** Called once per answered request with its status (metrics). */
  onRequest?: (status: number) => void;
}

/** The host name of a Host header (`name`, `name:port`, `[v6]:port`), or undefined when it is not one. */
export function hostOf(header: string | undefined): string | undefined {
  if (header === undefined || header.length > 255) return undefined;
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::\d{1,5})?$/.exec(header);
  return m?.[1];
}

/** The broker URL the browser should use: the configured one, or the page's host at the broker's WS port. */
export function browserMqttUrl(
  configured: string | undefined,
  hostHeader: string | undefined,
  wsPort = DEFAULT_BROKER_WS_PORT,
): string {
  if (configured !== undefined) return configured;
  return `ws://${hostOf(hostHeader) ?? 'localhost'}:${wsPort}`;
}

/** The dashboard's HTTP server as a component. */
export class DashboardServer implements Component {
  private server: Server | undefined;
  private boundPort: number | undefined;
  private files = new Map<string, { body: Buffer; type: string }>();

  constructor(private readonly opts: DashboardOptions) {}

  /** The bound port (after start). */
  get port(): number | undefined {
    return this.boundPort;
  }

  /** Reads the assets, then listens. */
  async start(): Promise<void> {
    if (this.server) return;
    const { username, password, host, port, logger } = this.opts;
    if (password !== undefined && username === undefined)
      throw new UserError(
        'DASHBOARD_PASSWORD is set but DASHBOARD_USERNAME is not: give both (a user of role viewer) or neither',
      );
    const files = new Map<string, { body: Buffer; type: string }>();
    for (const [path, { file, type }] of assetTable()) {
      try {
        files.set(path, { body: await readFile(file), type });
      } catch (err) {
        throw new UserError(
          `dashboard: cannot read ${file} (${errorMessage(err)}); reinstall edgecut (npm ci)`,
        );
      }
    }
    this.files = files;
    const server = createServer((req, res) => this.handle(req, res));
    // Bounded request handling: small headers, short timeouts, no request bodies are read.
    server.maxHeadersCount = 50;
    server.headersTimeout = 10_000;
    server.requestTimeout = 15_000;
    server.keepAliveTimeout = 5_000;
    this.boundPort = await new Promise<number>((resolve, reject) => {
      server.once('error', (err) =>
        reject(
          new UserError(`DASHBOARD_PORT=${port}: cannot listen on ${host}:${port}: ${errorMessage(err)}`),
        ),
      );
      server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
    });
    server.removeAllListeners('error');
    server.on('error', (err) => logger.warn({ err: errorMessage(err) }, 'dashboard listener error'));
    this.server = server;
    logger.info({ port: this.boundPort, host }, 'serving the dashboard');
  }

  /** Closes the listener and its connections. Idempotent. */
  async stop(): Promise<void> {
    const { server } = this;
    this.server = undefined;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  /** The configuration the page asks for. */
  browserConfig(hostHeader: string | undefined): BrowserConfig {
    const { username, password } = this.opts;
    return {
      mqttUrl: browserMqttUrl(this.opts.mqttWsUrl, hostHeader, this.opts.brokerWsPort),
      ...(username !== undefined ? { username } : {}),
      ...(password !== undefined ? { password } : {}),
      root: TOPIC_ROOT,
      topics: Object.fromEntries(PAGE_READS.map((name) => [name, topics[name].pattern])),
    };
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const send = (
      status: number,
      type: string,
      body: string | Buffer,
      extra: Record<string, string> = {},
    ) => {
      this.opts.onRequest?.(status);
      res
        .writeHead(status, {
          'content-type': type,
          'content-length': String(Buffer.byteLength(body)),
          'x-content-type-options': 'nosniff',
          'cache-control': 'no-cache',
          ...extra,
        })
        .end(req.method === 'HEAD' ? undefined : body);
    };
    const url = req.url ?? '/';
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(405, 'text/plain; charset=utf-8', 'method not allowed: only GET\n', { allow: 'GET, HEAD' });
      return;
    }
    if (url.length > MAX_URL_LENGTH) {
      send(414, 'text/plain; charset=utf-8', 'request target too long\n');
      return;
    }
    // The path as sent, without the query: it is only ever compared with the table's keys, never joined to a
    // directory, so `..`, `%2e%2e` or any other spelling of a file path is just an unknown path.
    const path = url.split('?')[0]!;
    if (path === '/config.json') {
      send(200, 'application/json', `${JSON.stringify(this.browserConfig(req.headers.host))}\n`);
      return;
    }
    const file = this.files.get(path === '/index.html' ? '/' : path);
    if (file) {
      send(200, file.type, file.body);
      return;
    }
    send(404, 'text/plain; charset=utf-8', 'not found: GET /, /config.json or /assets/...\n');
  }
}

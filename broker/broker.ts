/**
 * The embedded MQTT broker: aedes behind a TCP listener and an MQTT-over-WebSocket listener. It is the default
 * broker of a single gateway; beyond one gateway every service points at an existing MQTT cluster instead.
 *
 * On top of aedes it adds shared subscriptions (shared.ts), which the tail workers compete through, and corrects
 * the MQTT 3.1.1 deviations of aedes listed in conformance.ts, all through aedes' hooks.
 */
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import { createWebSocketStream, WebSocketServer } from 'ws';
import type { Logger } from '../common/log.ts';
import { Conformance } from './conformance.ts';
import { type GroupStats, type SharedOptions, SharedSubscriptions } from './shared.ts';

/** Where the broker listens. */
export interface BrokerOptions {
  /** Interface to bind, default 0.0.0.0. */
  host?: string;
  /** MQTT TCP port; 0 picks a free one. */
  port: number;
  /** MQTT-over-WebSocket port; 0 picks a free one, undefined disables the listener. */
  wsPort?: number;
  /** Component logger. */
  logger: Logger;
  /** Bounds of the shared subscriptions' queues (defaults in shared.ts). */
  shared?: Omit<SharedOptions, 'logger'>;
}

function listen(server: Server | HttpServer, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function close(server: Server | HttpServer): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** The embedded broker component. */
export class EmbeddedBroker {
  private aedes: Aedes | undefined;
  private shared: SharedSubscriptions | undefined;
  private tcp: Server | undefined;
  private http: HttpServer | undefined;
  private wss: WebSocketServer | undefined;
  private readonly sockets = new Set<Socket>();
  private tcpPort = 0;
  private webSocketPort: number | undefined;

  constructor(private readonly opts: BrokerOptions) {}

  /** The bound TCP port (after start). */
  get port(): number {
    return this.tcpPort;
  }

  /** The bound WebSocket port (after start), if enabled. */
  get wsPort(): number | undefined {
    return this.webSocketPort;
  }

  /** `mqtt://host:port` of the TCP listener, for clients on this host. */
  get url(): string {
    return `mqtt://127.0.0.1:${this.tcpPort}`;
  }

  /** State of the shared-subscription groups (empty before start). */
  sharedStats(): GroupStats[] {
    return this.shared?.stats() ?? [];
  }

  /** Creates aedes and opens the listeners. */
  async start(): Promise<void> {
    const { logger } = this.opts;
    const host = this.opts.host ?? '0.0.0.0';
    const conformance = new Conformance();
    let shared: SharedSubscriptions | undefined;
    const aedes = await Aedes.createBroker({
      id: 'edgecut-broker',
      preConnect: (client, packet, done) => {
        conformance.preConnect(client, packet);
        done(null, true);
      },
      authenticate: (client, _username, _password, done) => {
        const refused = conformance.authenticate(client);
        if (refused) done(refused as AuthenticateError, false);
        else done(null, true);
      },
      authorizePublish: (_client, packet, done) => done(conformance.authorizePublish(packet)),
      authorizeSubscribe: (client, sub, done) => {
        const asShared = shared?.authorizeSubscribe(client, sub);
        done(null, asShared !== undefined ? asShared : conformance.authorizeSubscribe(client, sub));
      },
      authorizeForward: (client, packet) => conformance.authorizeForward(client, packet),
    });
    conformance.install(aedes);
    shared = new SharedSubscriptions(aedes, { ...this.opts.shared, logger });
    this.shared = shared;
    this.aedes = aedes;
    const handle = (stream: Parameters<Aedes['handle']>[0], req?: Parameters<Aedes['handle']>[1]): Client => {
      const client = aedes.handle(stream, req);
      shared?.attach(client);
      return client;
    };
    aedes.on('clientError', (client, err) =>
      logger.debug({ client: client.id, err: err.message }, 'client error'),
    );
    aedes.on('connectionError', (client, err) =>
      logger.debug({ client: client.id, err: err.message }, 'connection error'),
    );
    this.tcp = createServer((socket) => {
      // Nagle's algorithm would hold small QoS 1 acknowledgements back ~40 ms on loopback.
      socket.setNoDelay(true);
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      handle(socket);
    });
    this.tcpPort = await listen(this.tcp, this.opts.port, host);
    if (this.opts.wsPort !== undefined) {
      this.http = createHttpServer((_req, res) => {
        res.writeHead(426, { 'content-type': 'text/plain' }).end('MQTT over WebSocket only\n');
      });
      this.wss = new WebSocketServer({ server: this.http });
      this.wss.on('connection', (ws, req) => {
        (req.socket as Socket).setNoDelay(true);
        handle(createWebSocketStream(ws), req);
      });
      this.webSocketPort = await listen(this.http, this.opts.wsPort, host);
    }
    logger.info({ port: this.tcpPort, wsPort: this.webSocketPort }, 'broker listening');
  }

  /** Closes the listeners, disconnects every client and closes aedes. Idempotent. */
  async stop(): Promise<void> {
    const { aedes, tcp, http, wss } = this;
    this.shared?.close();
    this.shared = undefined;
    this.aedes = undefined;
    this.tcp = undefined;
    this.http = undefined;
    this.wss = undefined;
    if (!aedes) return;
    const closing = [tcp && close(tcp), http && close(http)];
    for (const client of wss?.clients ?? []) client.terminate();
    wss?.close();
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    await Promise.all(closing);
    this.opts.logger.info('broker stopped');
  }
}

/**
 * The embedded MQTT broker: aedes behind a TCP listener and an MQTT-over-WebSocket listener. It is the default
 * broker of a single gateway; beyond one gateway every service points at an existing MQTT cluster instead.
 *
 * On top of aedes it adds shared subscriptions (shared.ts), which the tail workers compete through, corrects the
 * MQTT 3.1.1 deviations of aedes listed in conformance.ts, and, with a users file, enforces passwords and per-role
 * topic access (auth.ts), all through aedes' hooks. An optional third listener speaks MQTT over TLS (tls.ts).
 */
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import { createWebSocketStream, WebSocketServer } from 'ws';
import { ConfigError } from '../runtime/config.ts';
import { errorMessage } from '../runtime/errors.ts';
import type { Logger } from '../runtime/log.ts';
import { AccessControl, type AccessStats } from './auth.ts';
import { Conformance } from './conformance.ts';
import { type DirectReadStats, directReadSocket } from './direct-read.ts';
import { type LargePublishStats, largePublishPath } from './large-publish.ts';
import { type BrokerLimits, DEFAULT_LIMITS, type LimitName, Limits } from './limits.ts';
import { LOGIN_LIMITS, type LoginLimits } from './logins.ts';
import { PacketPool, type PacketPoolStats } from './packet-pool.ts';
import { openRetainedStore, type RetainedStore } from './retained-store.ts';
import { type GroupStats, type SharedOptions, SharedSubscriptions } from './shared.ts';
import { loadTls, type TlsSettings } from './tls.ts';
import { loadUsers } from './users.ts';

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
  shared?: Omit<SharedOptions, 'logger' | 'pool'>;
  /** Users file (users.ts); undefined lets anonymous clients do everything. */
  usersFile?: string | undefined;
  /** MQTT-over-TLS listener; off unless a port is given (tls.ts). */
  tls?: TlsSettings | undefined;
  /** Only the TLS listener: no plain TCP or WebSocket one (needs `tls`). */
  tlsOnly?: boolean;
  /** Login throttling (logins.ts); each unset one has its default. */
  logins?: Partial<LoginLimits>;
  /** Resource limits (limits.ts); each unset one has its default. */
  limits?: Partial<BrokerLimits>;
  /** Directory of the retained-message store (retained-store.ts); undefined keeps them in memory only. */
  dataDir?: string | undefined;
}

/** Listens; a port that cannot be had is one line naming the setting (its variable and flag). */
function listen(
  server: Server | HttpServer,
  port: number,
  host: string,
  [env, flag]: [string, string],
): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new ConfigError(
          `${env}=${port} (${flag}): cannot listen on ${host}:${port}: ${
            err.code === 'EADDRINUSE'
              ? 'the port is in use (another broker?); choose another, or 0 for any free port'
              : err.code === 'EACCES'
                ? 'permission denied (ports below 1024 need privileges)'
                : errorMessage(err)
          }`,
        ),
      ),
    );
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
  private tlsServer: TlsServer | undefined;
  private access: AccessControl | undefined;
  private limits: Limits | undefined;
  /** PUBLISH packets assembled in one buffer by the cheap path (large-publish.ts). */
  readonly largePublishes: LargePublishStats = { packets: 0 };
  /** PUBLISH packets read straight into a buffer of their own (direct-read.ts, TCP connections). */
  readonly directReads: DirectReadStats = { packets: 0, directBytes: 0 };
  /** Buffers of large packets, reused once only shared subscriptions read them and they are done (packet-pool.ts). */
  readonly packetPool = new PacketPool();
  private store: RetainedStore | undefined;
  private readonly sockets = new Set<Socket>();
  private tcpPort = 0;
  private webSocketPort: number | undefined;
  private tlsListenPort: number | undefined;

  constructor(private readonly opts: BrokerOptions) {}

  /** The bound TCP port (after start). */
  get port(): number {
    return this.tcpPort;
  }

  /** The bound WebSocket port (after start), if enabled. */
  get wsPort(): number | undefined {
    return this.webSocketPort;
  }

  /** The bound TLS port (after start), if enabled. */
  get tlsPort(): number | undefined {
    return this.tlsListenPort;
  }

  /** `mqtt://host:port` of the TCP listener (`mqtts://` of the TLS one with `tlsOnly`), for clients on this host. */
  get url(): string {
    return this.opts.tlsOnly ? `mqtts://127.0.0.1:${this.tlsListenPort}` : `mqtt://127.0.0.1:${this.tcpPort}`;
  }

  /** The aedes instance while started, for observers of its events ('publish', 'client', ...), e.g. metrics. */
  get events(): Aedes | undefined {
    return this.aedes;
  }

  /** State of the shared-subscription groups (empty before start). */
  sharedStats(): GroupStats[] {
    return this.shared?.stats() ?? [];
  }

  /** Password checks run, and logins refused without one (throttled), so far. */
  loginStats(): { checks: number; address: number; user: number; busy: number } {
    return { ...(this.access?.logins.counts ?? { checks: 0, address: 0, user: 0, busy: 0 }) };
  }

  /** The large packets' buffer pool so far. */
  poolStats(): PacketPoolStats {
    return { ...this.packetPool.stats };
  }

  /** Refusals of access control so far (all zero without a users file). */
  accessStats(): AccessStats {
    return this.access?.stats() ?? { refusedPublishes: 0, refusedSubscribes: 0, refusedConnects: 0 };
  }

  /** Refusals of the resource limits so far, per limit (all zero before start). */
  limitStats(): Record<LimitName, number> {
    return (
      this.limits?.stats() ?? {
        packet: 0,
        'pre-connect packet': 0,
        retained: 0,
        connections: 0,
        'connect rate': 0,
      }
    );
  }

  /** Checks the users file and TLS files (ConfigError, before any socket opens), creates aedes, opens the listeners. */
  async start(): Promise<void> {
    const { logger } = this.opts;
    const host = this.opts.host ?? '0.0.0.0';
    const users = this.opts.usersFile === undefined ? undefined : await loadUsers(this.opts.usersFile);
    const tls = await loadTls(this.opts.tls);
    const tlsOnly = this.opts.tlsOnly === true;
    if (tlsOnly && !tls)
      throw new ConfigError(
        'BROKER_TLS_ONLY (--tls-only) turns the plain listeners off and needs the TLS one: set BROKER_TLS_PORT, BROKER_TLS_CERT and BROKER_TLS_KEY',
      );
    const conformance = new Conformance();
    // Each client's network address, for the per-address limits of logins.
    const addresses = new WeakMap<Client, string>();
    const access = new AccessControl(users?.users, logger, (client) => addresses.get(client), {
      ...LOGIN_LIMITS,
      ...this.opts.logins,
    });
    const limits = new Limits({ ...DEFAULT_LIMITS, ...this.opts.limits }, logger);
    this.limits = limits;
    let shared: SharedSubscriptions | undefined;
    const dataDir = this.opts.dataDir;
    const store =
      dataDir === undefined
        ? undefined
        : await openRetainedStore(dataDir, (count) =>
            logger.info({ dataDir, retained: count }, 'retained messages loaded from disk'),
          );
    this.store = store;
    const aedes = await Aedes.createBroker({
      id: 'edgecut-broker',
      ...(store ? { persistence: store.persistence as never } : {}),
      connectTimeout: limits.limits.connectTimeoutMs,
      preConnect: (client, packet, done) => {
        conformance.preConnect(client, packet);
        access.preConnect(client, packet);
        done(null, true);
      },
      authenticate: (client, username, password, done) => {
        const refused = conformance.authenticate(client);
        if (refused) return done(refused as AuthenticateError, false);
        access.authenticate(client, username, password).then(
          (denied) => (denied ? done(denied, false) : done(null, true)),
          (err: unknown) => {
            logger.error({ client: client.id, err: errorMessage(err) }, 'authentication failed');
            done(Object.assign(new Error('server unavailable'), { returnCode: 3 as const }), false);
          },
        );
      },
      authorizePublish: (client, packet, done) => {
        const err = conformance.authorizePublish(packet);
        if (!err) access.authorizePublish(client, packet);
        if (!err && limits.retained(client, packet)) access.drop(packet);
        done(err);
      },
      authorizeSubscribe: (client, sub, done) => {
        if (!access.authorizeSubscribe(client, sub)) return done(null, null);
        const asShared = shared?.authorizeSubscribe(client, sub);
        done(null, asShared !== undefined ? asShared : conformance.authorizeSubscribe(client, sub));
      },
      authorizeForward: (client, packet) =>
        access.authorizeForward(client, packet.topic) ? conformance.authorizeForward(client, packet) : null,
    });
    conformance.install(aedes);
    access.install(aedes);
    this.access = access;
    shared = new SharedSubscriptions(aedes, { ...this.opts.shared, logger, pool: this.packetPool });
    this.shared = shared;
    this.aedes = aedes;
    // Every connection, whatever its listener: admitted per client address, its packets gated by size.
    const handle = (
      stream: Parameters<Aedes['handle']>[0],
      socket: Socket,
      req?: Parameters<Aedes['handle']>[1],
    ): Client | undefined => {
      const address = socket.remoteAddress ?? 'unknown';
      if (limits.admit(address)) {
        socket.destroy();
        return undefined;
      }
      socket.once('close', () => limits.release(address));
      const client = aedes.handle(stream, req);
      addresses.set(client, address);
      limits.gate(client, address);
      largePublishPath(client, this.largePublishes);
      conformance.attach(client);
      shared?.attach(client);
      return client;
    };
    aedes.on('clientError', (client, err) =>
      logger.debug({ client: client.id, err: err.message }, 'client error'),
    );
    aedes.on('connectionError', (client, err) =>
      logger.debug({ client: client.id, err: err.message }, 'connection error'),
    );
    const accept = (accepted: Socket, server?: Server) => {
      // A plain TCP connection reads large packets straight into their own buffers (direct-read.ts).
      const direct = server ? directReadSocket(accepted, server) : undefined;
      const socket = direct?.socket ?? accepted;
      // Nagle's algorithm would hold small QoS 1 acknowledgements back ~40 ms on loopback.
      socket.setNoDelay(true);
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      const client = handle(socket, socket);
      if (client && direct) {
        direct.attach({
          client,
          maxPacketBytes: () =>
            client.connected ? limits.limits.maxPacketBytes : limits.limits.preConnectBytes,
          stats: this.directReads,
          pool: this.packetPool,
        });
      }
    };
    try {
      await this.listenAll(accept, handle, host, tls, tlsOnly, limits);
    } catch (err) {
      // A port that cannot be had: close what opened (and aedes' timers), so the process can exit.
      await this.stop();
      throw err;
    }
    logger.info(
      {
        port: this.tcpPort,
        wsPort: this.webSocketPort,
        tlsPort: this.tlsListenPort,
        users: users?.users.size,
      },
      'broker listening',
    );
  }

  /** Opens the TCP, TLS and WebSocket listeners that are configured. */
  private async listenAll(
    accept: (socket: Socket, server?: Server) => void,
    handle: (
      stream: Parameters<Aedes['handle']>[0],
      socket: Socket,
      req?: Parameters<Aedes['handle']>[1],
    ) => unknown,
    host: string,
    tls: Awaited<ReturnType<typeof loadTls>>,
    tlsOnly: boolean,
    limits: Limits,
  ): Promise<void> {
    const { logger } = this.opts;
    if (!tlsOnly) {
      // Paused until direct-read.ts has taken the connection over.
      const tcp = createServer({ pauseOnConnect: true }, (socket) => accept(socket, tcp));
      this.tcp = tcp;
      this.tcpPort = await listen(this.tcp, this.opts.port, host, ['BROKER_PORT', '--port']);
    }
    if (tls) {
      // 'secureConnection': the handshake is done; the TLS socket is a net.Socket (setNoDelay reaches the TCP one).
      this.tlsServer = createTlsServer({ cert: tls.cert, key: tls.key }, (socket) => accept(socket));
      this.tlsServer.on('tlsClientError', (err) =>
        logger.debug({ err: err.message }, 'TLS handshake failed'),
      );
      this.tlsListenPort = await listen(this.tlsServer, tls.port, host, ['BROKER_TLS_PORT', '--tls-port']);
    }
    if (this.opts.wsPort !== undefined && !tlsOnly) {
      this.http = createHttpServer((_req, res) => {
        res.writeHead(426, { 'content-type': 'text/plain' }).end('MQTT over WebSocket only\n');
      });
      this.wss = new WebSocketServer({ server: this.http, maxPayload: limits.limits.maxPacketBytes + 16 });
      this.wss.on('connection', (ws, req) => {
        const socket = req.socket as Socket;
        socket.setNoDelay(true);
        // A WebSocket message is buffered whole before MQTT sees it: the frame limit bounds it first.
        handle(createWebSocketStream(ws), socket, req);
      });
      this.webSocketPort = await listen(this.http, this.opts.wsPort, host, ['BROKER_WS_PORT', '--ws-port']);
    }
  }

  /** Closes the listeners, disconnects every client and closes aedes. Idempotent. */
  async stop(): Promise<void> {
    const { aedes, tcp, http, wss, tlsServer } = this;
    this.shared?.close();
    this.shared = undefined;
    this.packetPool.clear();
    this.aedes = undefined;
    this.tcp = undefined;
    this.http = undefined;
    this.wss = undefined;
    this.tlsServer = undefined;
    if (!aedes) return;
    const closing = [tcp && close(tcp), http && close(http), tlsServer && close(tlsServer)];
    for (const client of wss?.clients ?? []) client.terminate();
    wss?.close();
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    await Promise.all(closing);
    const store = this.store;
    this.store = undefined;
    await store?.close();
    this.opts.logger.info('broker stopped');
  }
}

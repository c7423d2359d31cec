/**
 * One MQTT connection per service, with the conventions every service shares: a retained Last Will saying
 * `offline` and a retained `online` after each connect (CONTRIBUTING.md, convention 3), TCP_NODELAY on the socket, and one
 * wrapper around every subscription handler that catches, logs and counts errors so a bad message never stops a
 * service (convention 4).
 */

import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import type { Status } from '../schemas/messages.ts';
import { topics } from '../schemas/topics.ts';
import { errorMessage, UserError } from './errors.ts';
import type { Logger } from './log.ts';
import { type AckControl, controlAcks, storeWithoutClone } from './mqtt-patches.ts';
import { filterMatches, SHARE_PREFIX } from './mqtt-topics.ts';
import { readPem } from './pem.ts';

/** Handler of one subscription. Throwing or rejecting is contained by the connection. */
export type MessageHandler = (topic: string, payload: Buffer, packet: IPublishPacket) => void | Promise<void>;

/** Called when a handler fails, so the service can count it and answer the sender. */
export type HandlerErrorHook = (err: unknown, topic: string, payload: Buffer) => void;

/** What a service needs to connect. */
export interface ConnectionOptions {
  /** Broker URL, e.g. `mqtt://127.0.0.1:1883`. */
  url: string;
  /** MQTT client id; also used in logs. */
  clientId: string;
  /** Role written into the status payloads. */
  role: string;
  /** Retained availability topic of this service. */
  statusTopic: string;
  /** Logger of the owning component. */
  logger: Logger;
  /** Optional credentials. */
  username?: string;
  /** Optional credentials. */
  password?: string;
  /** PEM file of the CA to trust for `mqtts://` and `wss://` (mqtt.js `ca`); default: Node's CAs. */
  caFile?: string | undefined;
  /** Keep the session across reconnects so QoS 1 messages are not lost while away [MQTT-3.1.2-4]. */
  persistentSession?: boolean;
  /** Reconnect period in ms (mqtt.js default 1000). */
  reconnectPeriodMs?: number;
  /** Give up the first connection after this long (ms), with one line naming the URL; default: keep trying. */
  connectTimeoutMs?: number | undefined;
  /** Extra mqtt.js options. */
  extra?: Partial<IClientOptions>;
  /**
   * Wraps each new transport stream (first connect and every reconnect) before MQTT runs over it, e.g. the uplink
   * emulation of measurement/shaping.ts. The wrapper must forward `setNoDelay` to the socket.
   */
  wrapStream?: (stream: Duplex) => Duplex;
}

/** The broker settings of a service (runtime/service-settings.ts), with its first connection's timeout. */
export interface BrokerSettings {
  mqttUrl: string;
  username?: string | undefined;
  password?: string | undefined;
  mqttCaFile?: string | undefined;
  /** Give up the first connection after this long (ms); undefined: keep trying (the edge never gives up). */
  connectTimeoutMs?: number | undefined;
}

/** The retained status topic of each kind of service (schemas/topics.ts). */
const STATUS_TOPICS = {
  device: (id: string) => topics.deviceStatus.build({ device: id }),
  worker: (id: string) => topics.workerStatus.build({ worker: id }),
  planner: (id: string) => topics.plannerStatus.build({ planner: id }),
} as const;

/** The kinds of service, as their status payloads name them. */
export type ServiceRole = keyof typeof STATUS_TOPICS;

/**
 * The connection of a service: its id is its MQTT client id, its role names its status topic, and its broker
 * settings give the URL, credentials, CA and connect timeout. Every service connects through this.
 */
export function serviceConnection(
  role: ServiceRole,
  id: string,
  settings: BrokerSettings,
  logger: Logger,
  more: Pick<ConnectionOptions, 'wrapStream'> = {},
): Connection {
  return new Connection({
    url: settings.mqttUrl,
    clientId: id,
    role,
    statusTopic: STATUS_TOPICS[role](id),
    logger,
    ...(settings.username !== undefined ? { username: settings.username } : {}),
    ...(settings.password !== undefined ? { password: settings.password } : {}),
    caFile: settings.mqttCaFile,
    connectTimeoutMs: settings.connectTimeoutMs,
    ...more,
  });
}

interface Subscription {
  filter: string;
  match: (topic: string) => boolean;
  handler: MessageHandler;
  qos: 0 | 1;
  /** Acknowledge a QoS 1 message only when the handler has finished (see mqtt-patches.ts). */
  ackAfter: boolean;
}

/** Does a concrete topic match an MQTT filter (`+`, `#`, and a `$share/<group>/` prefix)? [MQTT-4.7.1] */
export function topicMatches(filter: string, topic: string): boolean {
  return filterMatches(
    filter.startsWith(SHARE_PREFIX) ? filter.split('/').slice(2).join('/') : filter,
    topic,
  );
}

/**
 * Routes a not yet connected client's transport through `wrap`. mqtt.js (5.x) builds the stream of every
 * (re)connect with the builder `mqtt.connect` chose from the URL, kept in the client's `streamBuilder` field; the
 * client must have been created with `manualConnect`, so nothing is built before the builder is wrapped here.
 */
function wrapTransport(client: MqttClient, wrap: (stream: Duplex) => Duplex): void {
  const holder = client as unknown as { streamBuilder?: (...args: unknown[]) => Duplex };
  const build = holder.streamBuilder;
  if (typeof build !== 'function')
    throw new Error('this mqtt.js version keeps no streamBuilder; the transport cannot be wrapped');
  holder.streamBuilder = (...args: unknown[]) => wrap(build(...args));
}

/** A service's MQTT connection. */
export class Connection {
  private client: MqttClient | undefined;
  private readonly subs: Subscription[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private stopped = false;
  private acks: AckControl | undefined;
  /** This service's retained messages by topic, published again after every reconnect. */
  private readonly retained = new Map<string, { body: string | Buffer; qos: 0 | 1 }>();
  private connects = 0;
  /** Called for each handler failure (after logging). */
  onHandlerError: HandlerErrorHook | undefined;
  /** Called for each QoS 1 PUBLISH as it is handed to the client, with the promise its PUBACK settles. */
  onPublish: ((topic: string, payloadBytes: number, acked: Promise<unknown>) => void) | undefined;

  constructor(private readonly opts: ConnectionOptions) {}

  /** The underlying client (after start). */
  get mqtt(): MqttClient {
    if (!this.client) throw new Error('connection not started');
    return this.client;
  }

  /** True while connected to the broker. */
  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  /** Connects (waiting for the first CONNACK) and publishes the retained `online` status. */
  async start(): Promise<void> {
    const { opts } = this;
    const offline: Status = { state: 'offline', role: opts.role, id: opts.clientId };
    // Read once, before connecting: a missing or non-PEM file stops the service with one line.
    const ca =
      opts.caFile === undefined ? undefined : await readPem(opts.caFile, 'certificate', 'MQTT_CA_FILE');
    const client = mqtt.connect(opts.url, {
      clientId: opts.clientId,
      clean: !opts.persistentSession,
      reconnectPeriod: opts.reconnectPeriodMs ?? 1000,
      connectTimeout: 10_000,
      username: opts.username,
      password: opts.password,
      ...(ca ? { ca } : {}),
      will: { topic: opts.statusTopic, payload: Buffer.from(JSON.stringify(offline)), qos: 1, retain: true },
      ...opts.extra,
      ...(opts.wrapStream ? { manualConnect: true } : {}),
    });
    if (opts.wrapStream) wrapTransport(client, opts.wrapStream);
    this.client = client;
    storeWithoutClone(client);
    this.acks = controlAcks(client);
    client.on('connect', () => {
      // Nagle's algorithm adds ~40 ms to every small QoS 1 round trip on loopback.
      (client.stream as Partial<Socket>).setNoDelay?.(true);
      this.publishStatus('online').catch((err: unknown) =>
        opts.logger.warn({ err: errorMessage(err) }, 'status publish failed'),
      );
      for (const s of this.subs) client.subscribe(s.filter, { qos: s.qos });
      // A broker that restarted may have lost its retained messages (profiles, plans): the service's own go out
      // again, so a planner or worker started after the restart finds them.
      if (this.connects++ > 0) this.republish();
    });
    client.on('message', (topic, payload, packet) => this.dispatch(topic, payload, packet));
    client.on('error', (err) => opts.logger.warn({ err: errorMessage(err) }, 'mqtt error'));
    client.on('offline', () => opts.logger.info('broker unreachable'));
    // With a wrapped transport the client was created without connecting; connect now that it is set up.
    if (opts.wrapStream) client.connect();
    await new Promise<void>((resolve, reject) => {
      const onConnect = () => {
        client.off('error', onError);
        resolve();
      };
      const onError = (err: Error) => {
        // Refusals (bad credentials) are final; transport errors, and a broker that says it is unavailable
        // (CONNACK 0x03: busy, or throttling logins), are retried by mqtt.js.
        if ('code' in err && typeof err.code === 'number' && err.code !== 3) {
          client.off('connect', onConnect);
          client.end(true);
          // A refusal is the user's configuration (credentials, client id): one line, not a stack trace.
          reject(new UserError(`broker ${opts.url} refused the connection: ${err.message}`));
        }
      };
      client.once('connect', onConnect);
      client.on('error', onError);
      const limit = opts.connectTimeoutMs;
      if (limit === undefined) return;
      const timer = setTimeout(() => {
        if (client.connected) return;
        client.off('connect', onConnect);
        client.off('error', onError);
        client.end(true);
        reject(
          new UserError(
            `cannot reach the broker at ${opts.url}: no connection within ${limit / 1000} s (MQTT_CONNECT_TIMEOUT_MS); is it running, and is MQTT_URL right?`,
          ),
        );
      }, limit);
      client.once('connect', () => clearTimeout(timer));
      // Stopped before it ever connected: the timer must not hold the process.
      client.once('end', () => clearTimeout(timer));
    });
  }

  /** Publishes this service's retained status. */
  async publishStatus(state: Status['state']): Promise<void> {
    const status: Status = { state, role: this.opts.role, id: this.opts.clientId, at: Date.now() };
    await this.publish(this.opts.statusTopic, JSON.stringify(status), { qos: 1, retain: true });
  }

  /** Subscribes with a contained handler; re-subscribed after every reconnect. */
  async subscribe(
    filter: string,
    handler: MessageHandler,
    qos: 0 | 1 = 1,
    opts: { ackAfterHandler?: boolean } = {},
  ): Promise<void> {
    this.subs.push({
      filter,
      handler,
      qos,
      match: (t) => topicMatches(filter, t),
      ackAfter: opts.ackAfterHandler ?? false,
    });
    if (this.client?.connected) await this.client.subscribeAsync(filter, { qos });
  }

  /** Publishes and resolves when the broker has it (PUBACK for QoS 1). */
  async publish(
    topic: string,
    payload: string | Buffer | Uint8Array,
    opts: { qos?: 0 | 1; retain?: boolean } = {},
  ): Promise<void> {
    const body =
      typeof payload === 'string' || Buffer.isBuffer(payload)
        ? payload
        : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
    const qos = opts.qos ?? 1;
    if (opts.retain && topic !== this.opts.statusTopic) {
      // A zero-byte retained message clears the topic [MQTT-3.3.1-10]: nothing to publish again.
      if (Buffer.byteLength(body) === 0) this.retained.delete(topic);
      else this.retained.set(topic, { body, qos });
    }
    const acked = this.mqtt.publishAsync(topic, body, { qos, retain: opts.retain ?? false });
    if (qos === 1 && this.onPublish) this.onPublish(topic, Buffer.byteLength(body), acked);
    await acked;
  }

  /** Stops publishing a retained topic again after reconnects (its subject is gone, e.g. a forgotten device). */
  forgetRetained(topic: string): void {
    this.retained.delete(topic);
  }

  private republish(): void {
    for (const [topic, { body, qos }] of this.retained)
      this.mqtt
        .publishAsync(topic, body, { qos, retain: true })
        .catch((err: unknown) =>
          this.opts.logger.warn({ topic, err: errorMessage(err) }, 'retained message not published again'),
        );
    if (this.retained.size > 0)
      this.opts.logger.info(
        { topics: this.retained.size },
        'retained messages published again after reconnecting',
      );
  }

  private dispatch(topic: string, payload: Buffer, packet: IPublishPacket): void {
    const subs = this.subs.filter((s) => s.match(topic));
    const deferAck =
      packet.qos > 0 && packet.messageId !== undefined && subs.some((s) => s.ackAfter) && this.acks;
    if (deferAck) {
      this.acks!.defer(packet.messageId!);
      const acks = this.acks!;
      let left = subs.length;
      const done = () => {
        if (--left === 0) acks.release(packet.messageId!);
      };
      this.runHandlers(subs, topic, payload, packet, done);
    } else {
      this.runHandlers(subs, topic, payload, packet, () => undefined);
    }
  }

  private runHandlers(
    subs: readonly Subscription[],
    topic: string,
    payload: Buffer,
    packet: IPublishPacket,
    done: () => void,
  ): void {
    for (const s of subs) {
      const run = (async () => {
        try {
          await s.handler(topic, payload, packet);
        } catch (err) {
          this.opts.logger.error({ topic, err: errorMessage(err) }, 'message handler failed');
          this.onHandlerError?.(err, topic, payload);
        } finally {
          done();
        }
      })();
      this.inFlight.add(run);
      void run.finally(() => this.inFlight.delete(run));
    }
  }

  /** Waits for running handlers, publishes `offline`, and disconnects. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await Promise.allSettled([...this.inFlight]);
    const client = this.client;
    if (!client) return;
    if (client.connected) {
      await Promise.race([
        this.publishStatus('offline').catch(() => undefined),
        new Promise((r) => setTimeout(r, 1000)),
      ]);
    }
    await client.endAsync(!client.connected);
  }
}

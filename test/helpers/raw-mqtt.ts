/**
 * Test helpers: a raw MQTT 3.1.1 client over one TCP socket, for what mqtt.js will not do: hold PUBACKs back, read
 * the DUP and RETAIN flags and packet identifiers as sent, send malformed or forbidden packets, stay silent past
 * its keep-alive, or vanish without DISCONNECT.
 */
import { connect as connectTcp, type Socket } from 'node:net';
import type { ExecutionContext } from 'ava';
import { encodeId, encodePacket, encodePublish, encodeString, PacketType } from '../../broker/wire.ts';

/** A decoded packet from the broker. */
export interface RawPacket {
  type: number;
  flags: number;
  body: Buffer;
}

/** A decoded PUBLISH. */
export interface RawPublish {
  topic: string;
  payload: Buffer;
  qos: number;
  dup: boolean;
  retain: boolean;
  messageId: number | undefined;
}

/** CONNECT options. */
export interface RawConnectOptions {
  clientId: string;
  clean?: boolean;
  /** Keep alive in seconds; 0 (default) turns it off. */
  keepalive?: number;
  will?: { topic: string; payload: string | Buffer; qos?: 0 | 1; retain?: boolean };
  /** Acknowledge QoS 1 messages as they arrive (default true). */
  autoAck?: boolean;
  /** Resolve on any CONNACK instead of throwing on a refusal. */
  allowRefusal?: boolean;
  /** Protocol level of the CONNECT (default 4, MQTT 3.1.1). */
  level?: number;
}

/** Decodes a PUBLISH body. */
export function decodePublish(p: RawPacket): RawPublish {
  const qos = (p.flags >> 1) & 3;
  const topicLength = p.body.readUInt16BE(0);
  const topic = p.body.subarray(2, 2 + topicLength).toString('utf8');
  let offset = 2 + topicLength;
  let messageId: number | undefined;
  if (qos > 0) {
    messageId = p.body.readUInt16BE(offset);
    offset += 2;
  }
  return {
    topic,
    payload: p.body.subarray(offset),
    qos,
    dup: (p.flags & 0x08) !== 0,
    retain: (p.flags & 0x01) !== 0,
    messageId,
  };
}

/** One raw connection. */
export class RawClient {
  /** Every PUBLISH received, in order. */
  readonly messages: RawPublish[] = [];
  /** Return code and session-present flag of the CONNACK. */
  connack = { returnCode: -1, sessionPresent: false };
  autoAck: boolean;
  private buffer = Buffer.alloc(0);
  private readonly queue: RawPacket[] = [];
  private readonly waiters: Array<{ match: (p: RawPacket) => boolean; resolve: (p: RawPacket) => void }> = [];
  private readonly publishWaiters: Array<() => void> = [];
  private nextId = 1;
  /** Resolves when the socket is closed (by either side). */
  readonly closed: Promise<void>;
  isClosed = false;

  private constructor(
    readonly socket: Socket,
    autoAck: boolean,
  ) {
    this.autoAck = autoAck;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.isClosed = true;
        resolve();
      }),
    );
  }

  /** Connects, sends CONNECT and waits for the CONNACK; throws on a refusal unless `allowRefusal`. */
  static async connect(t: ExecutionContext, url: string, opts: RawConnectOptions): Promise<RawClient> {
    const { hostname, port } = new URL(url);
    const socket = connectTcp({ host: hostname, port: Number(port), noDelay: true });
    const client = new RawClient(socket, opts.autoAck ?? true);
    t.teardown(() => client.kill());
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    client.send(RawClient.connectPacket(opts));
    const connack = await client.next(PacketType.connack);
    client.connack = { sessionPresent: (connack.body[0]! & 1) === 1, returnCode: connack.body[1]! };
    if (client.connack.returnCode !== 0 && !opts.allowRefusal) {
      throw new Error(`CONNACK return code ${client.connack.returnCode}`);
    }
    return client;
  }

  /** A CONNECT packet [MQTT-3.1]. */
  static connectPacket(opts: RawConnectOptions): Buffer {
    const will = opts.will;
    let flags = opts.clean === false ? 0 : 0x02;
    if (will) flags |= 0x04 | ((will.qos ?? 0) << 3) | (will.retain ? 0x20 : 0);
    const keepalive = Buffer.alloc(2);
    keepalive.writeUInt16BE(opts.keepalive ?? 0, 0);
    const parts = [
      encodeString('MQTT'),
      Buffer.from([opts.level ?? 4, flags]),
      keepalive,
      encodeString(opts.clientId),
    ];
    if (will) {
      parts.push(encodeString(will.topic), encodeString(Buffer.from(will.payload)));
    }
    return encodePacket(PacketType.connect, 0, ...parts);
  }

  /** Writes raw bytes. */
  send(bytes: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(bytes);
  }

  /** The next packet of a type (any type when omitted), from the queue or the wire. */
  next(type?: number, timeoutMs = 5000): Promise<RawPacket> {
    const match = (p: RawPacket) => type === undefined || p.type === type;
    const index = this.queue.findIndex(match);
    if (index >= 0) return Promise.resolve(this.queue.splice(index, 1)[0]!);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`no packet of type ${type ?? 'any'} within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = {
        match,
        resolve: (p: RawPacket) => {
          clearTimeout(timer);
          resolve(p);
        },
      };
      this.waiters.push(waiter);
    });
  }

  /** Waits until `count` PUBLISH packets have arrived in total. */
  async waitMessages(count: number, timeoutMs = 5000): Promise<RawPublish[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.messages.length < count) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.messages.length} of ${count} messages within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.publishWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.messages;
  }

  /** SUBSCRIBE; resolves with the granted QoS (or 0x80) per filter. */
  async subscribe(...subs: Array<[string, number]>): Promise<number[]> {
    const id = this.takeId();
    const payload = subs.flatMap(([topic, qos]) => [encodeString(topic), Buffer.from([qos])]);
    this.send(encodePacket(PacketType.subscribe, 0x02, encodeId(id), ...payload));
    const suback = await this.next(PacketType.suback);
    return [...suback.body.subarray(2)];
  }

  /** UNSUBSCRIBE; resolves at the UNSUBACK. */
  async unsubscribe(...topics: string[]): Promise<void> {
    const id = this.takeId();
    this.send(
      encodePacket(PacketType.unsubscribe, 0x02, encodeId(id), ...topics.map((s) => encodeString(s))),
    );
    await this.next(PacketType.unsuback);
  }

  /** PUBLISH; resolves at the PUBACK (QoS 1) or after PUBREC, PUBREL, PUBCOMP (QoS 2). */
  async publish(
    topic: string,
    payload: string | Buffer,
    opts: { qos?: 0 | 1 | 2; retain?: boolean; dup?: boolean } = {},
  ): Promise<void> {
    const qos = opts.qos ?? 0;
    const messageId = qos > 0 ? this.takeId() : undefined;
    this.send(
      encodePublish({
        topic,
        payload: Buffer.from(payload),
        qos,
        retain: opts.retain,
        dup: opts.dup,
        messageId,
      }),
    );
    if (qos === 1) await this.next(PacketType.puback);
    if (qos === 2 && messageId !== undefined) {
      await this.next(PacketType.pubrec);
      this.send(encodePacket(PacketType.pubrel, 0x02, encodeId(messageId)));
      await this.next(PacketType.pubcomp);
    }
  }

  /** Acknowledges a QoS 1 message. */
  puback(messageId: number): void {
    this.send(encodePacket(PacketType.puback, 0, encodeId(messageId)));
  }

  /** Sends DISCONNECT and closes the socket [MQTT-3.14]. */
  async disconnect(): Promise<void> {
    this.send(encodePacket(PacketType.disconnect, 0));
    this.socket.end();
    await this.closed;
  }

  /** Drops the connection without DISCONNECT. */
  kill(): void {
    this.socket.destroy();
  }

  private takeId(): number {
    const id = this.nextId;
    this.nextId = id >= 0xffff ? 1 : id + 1;
    return id;
  }

  private onData(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    for (;;) {
      let multiplier = 1;
      let length = 0;
      let i = 1;
      let complete = false;
      while (i < this.buffer.length && i <= 4) {
        const byte = this.buffer[i]!;
        length += (byte & 0x7f) * multiplier;
        multiplier *= 128;
        i++;
        if ((byte & 0x80) === 0) {
          complete = true;
          break;
        }
      }
      if (!complete || this.buffer.length < i + length) return;
      const first = this.buffer[0]!;
      const packet = { type: first >> 4, flags: first & 0x0f, body: this.buffer.subarray(i, i + length) };
      this.buffer = this.buffer.subarray(i + length);
      this.onPacket(packet);
    }
  }

  private onPacket(packet: RawPacket): void {
    if (packet.type === PacketType.publish) {
      const message = decodePublish(packet);
      this.messages.push(message);
      if (this.autoAck && message.qos === 1 && message.messageId !== undefined)
        this.puback(message.messageId);
      for (const wake of this.publishWaiters.splice(0)) wake();
      return;
    }
    const index = this.waiters.findIndex((w) => w.match(packet));
    if (index >= 0) this.waiters.splice(index, 1)[0]!.resolve(packet);
    else this.queue.push(packet);
  }
}

let markers = 0;

/**
 * The positive signal an absence assertion waits for: `pub` publishes a marker on `topic`, which `sub` receives, so
 * whatever the broker would have delivered to `sub` before it has arrived (one broker, in order) by the time the
 * marker has. Returns `sub`'s messages before the marker.
 */
export async function receivedBefore(sub: RawClient, pub: RawClient, topic: string): Promise<RawPublish[]> {
  const marker = `marker-${process.pid}-${++markers}`;
  const from = sub.messages.length;
  await pub.publish(topic, marker, { qos: 1 });
  for (let k = from + 1; ; k++) {
    const got = await sub.waitMessages(k);
    const i = got.findIndex((m, j) => j >= from && m.topic === topic && m.payload.toString() === marker);
    if (i >= 0) return got.slice(0, i);
  }
}

/** Topics of the markers `fence` sends; a test's message lists leave them out with `isFence`. */
const FENCE_PREFIX = 'fence/';
export const isFence = (m: RawPublish) => m.topic.startsWith(FENCE_PREFIX);

/**
 * Waits until whatever the broker has on its way to each of `clients` has arrived: each subscribes to a topic of its
 * own and receives a marker `pub` publishes there after everything else. For clients whose other subscriptions are
 * shared (a marker on the group's topic would reach only one of them).
 */
export async function fence(clients: readonly RawClient[], pub: RawClient): Promise<void> {
  for (const c of clients) {
    const topic = `${FENCE_PREFIX}${process.pid}-${++markers}`;
    await c.subscribe([topic, 1]);
    await receivedBefore(c, pub, topic);
  }
}

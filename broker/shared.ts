/**
 * Shared subscriptions (`$share/<group>/<filter>`, MQTT 5 §4.8.2) on aedes, which acknowledges them and then
 * delivers nothing (aedes issue #228). edgecut's tail workers compete for inference requests through one.
 *
 * aedes keeps handling the SUBSCRIBE, SUBACK, UNSUBSCRIBE and session storage of a `$share/...` filter as a literal
 * filter that matches no topic (publishing to `$share/...` is refused, see conformance.ts), so persistent sessions
 * restore their shared subscriptions through the same `authorizeSubscribe` hook. This module keeps the groups:
 *
 * - the broker subscribes once per shared subscription (group and filter) to the real filter on aedes' emitter, and
 *   gives each matching message to exactly one connected member, the one with the fewest unacknowledged QoS 1
 *   messages in flight, round-robin among equals (a member whose socket buffer is full comes last); several shared
 *   subscriptions on overlapping filters get one copy each, and plain subscribers are not involved;
 * - the PUBLISH is written by this module with a packet identifier from the client's own sequence, at
 *   min(message QoS, subscription QoS) [MQTT-3.8.4-6]; a shared subscription is granted at most QoS 1;
 * - the member's PUBACK is read off its packet stream; when a member's connection ends, the QoS 1 messages it never
 *   acknowledged go, with DUP=1, to the other members (at-least-once: a member that processed a message but died
 *   before its PUBACK left makes it arrive twice);
 * - a member has at most `maxInflight` QoS 1 messages of one topic unacknowledged (default
 *   {@link DEFAULT_MAX_INFLIGHT}); beyond that, messages wait in the group, one queue per topic, and are sent in
 *   turns, one topic after the other, as PUBACKs free room. Each device publishes its requests on its own topic (the
 *   ACL sees to it), so a robot that sends a burst queues behind itself: another robot's request goes to a worker at
 *   once, instead of behind the whole burst in the worker's socket (the worker's own queues per device then serve
 *   it next);
 * - a publisher whose topic has more than {@link PAUSE_AFTER} x `maxInflight` messages waiting while the group has a
 *   connected member is not read from (pause.ts: TCP pushes back on it) until its queue is down to
 *   `maxInflight`, so a robot's burst waits in its own socket and process, not in the broker's memory, and is not
 *   dropped; its uploads then take as long as the workers take to serve it, which its link estimate sees;
 * - a member leaves on UNSUBSCRIBE and when its clean session ends; a persistent session's member stays in the group
 *   while disconnected. QoS 1 messages wait (for a member, or for room) in the group's queues, bounded by
 *   `maxQueued` messages and `maxQueuedBytes` payload bytes; over the bound the oldest message of the longest queue
 *   is dropped, so the topic that floods the group loses its own messages; QoS 0 ones are dropped when they would
 *   wait, and are not written to a member whose socket holds {@link QOS0_BACKLOG_BYTES} unsent (a member that stops
 *   reading holds a bounded backlog, not every message);
 * - retained messages are not sent to a new shared subscription (MQTT 5 §4.8.2);
 * - a large packet only groups read goes back to the broker's buffer pool once every delivery of it is complete
 *   (packet-pool.ts: written whole and acknowledged); anything else that may read it pins it.
 *
 * A malformed `$share/` filter (empty group, `+` or `#` in the group, no or an invalid filter) gets SUBACK 0x80.
 */
import { randomBytes } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import type { Aedes, AedesPublishPacket, Client, Subscription } from 'aedes';
import type { Logger } from '../runtime/log.ts';
import { parseSharedFilter, SHARE_PREFIX } from '../runtime/mqtt-topics.ts';
import type { Lease, PacketPool } from './packet-pool.ts';
import { installPause, pauseReading, resumeReading } from './pause.ts';
import { encodePublishHeader } from './wire.ts';

/** Limits of the shared subscriptions. */
export interface SharedOptions {
  /** QoS 1 messages a group holds while no member is connected; default {@link DEFAULT_MAX_QUEUED}. */
  maxQueued?: number;
  /** Payload bytes a group holds so; default {@link DEFAULT_MAX_QUEUED_BYTES}. */
  maxQueuedBytes?: number;
  /** QoS 1 messages of the groups a member may have unacknowledged; default {@link DEFAULT_MAX_INFLIGHT}. */
  maxInflight?: number;
  logger?: Logger;
  /**
   * The pool large packets are read into (packet-pool.ts): a packet only groups read goes back to it once its every
   * delivery is complete. Without it, packets are left to the collector.
   */
  pool?: PacketPool;
}

/** Default bound of a group's queue, in messages. */
export const DEFAULT_MAX_QUEUED = 1000;
/** Default bound of a group's queue, in payload bytes (64 MiB). */
export const DEFAULT_MAX_QUEUED_BYTES = 64 * 1024 * 1024;
/**
 * Default of the messages a member may have unacknowledged. A tail worker acknowledges a request as it reads it
 * (its own queues order the work), so this bounds what waits in its socket, not its queues: enough to keep a
 * worker busy across a LAN round trip, few enough that a request from another device is a few messages behind.
 */
export const DEFAULT_MAX_INFLIGHT = 8;
/** Packet identifiers a session may have in flight from the groups (aedes' own deliveries use the rest). */
const MAX_PACKET_IDS = 0xffff - 1024;

/**
 * Bytes a member's socket may hold unsent before it takes no more QoS 0 messages (they are dropped, as at-most-once
 * allows and Mosquitto does for a slow subscriber). QoS 1 messages are bounded by the in-flight limits instead, so a
 * member that stops reading holds at most `maxInflight` of them per topic in its socket, and the rest wait in the
 * group's bounded queues.
 */
export const QOS0_BACKLOG_BYTES = 4 * 1024 * 1024;
/** A publisher is paused when its topic has more than this many times `maxInflight` messages waiting. */
export const PAUSE_AFTER = 4;
/** Drops are logged at most this often per group (ms); the count is in the stats. */
const DROP_LOG_MS = 5000;

interface Message {
  topic: string;
  payload: Buffer;
  qos: 0 | 1;
  dup: boolean;
  /**
   * The message holds its packet's pool lease open (packet-pool.ts) until one delivery of it completes: written
   * whole to the member's socket and, at QoS 1, acknowledged. A message dropped or returned by a member that left
   * keeps it open (its copy for the next member holds it on), so such a buffer is never reused.
   */
  holds?: Lease;
}

/** One delivery of a message that holds a lease: the steps (socket write, PUBACK) it still waits for. */
interface Delivery {
  message: Message;
  pending: number;
}

interface Member {
  /** The member's connection; undefined while a persistent session is disconnected. */
  client: Client | undefined;
  qos: 0 | 1;
}

/** Messages waiting in a group: one queue per topic, served in turns (a topic's turn ends with one message). */
class TopicQueues {
  /** In turn order: the next turn is the first entry; a topic that still has messages moves to the end. */
  private readonly byTopic = new Map<string, { messages: Message[]; bytes: number }>();
  length = 0;
  bytes = 0;

  push(message: Message, front: boolean): void {
    let q = this.byTopic.get(message.topic);
    if (!q) {
      q = { messages: [], bytes: 0 };
      this.byTopic.set(message.topic, q);
    }
    if (front) q.messages.unshift(message);
    else q.messages.push(message);
    q.bytes += message.payload.length;
    this.length++;
    this.bytes += message.payload.length;
  }

  /** Messages waiting on one topic. */
  lengthOf(topic: string): number {
    return this.byTopic.get(topic)?.messages.length ?? 0;
  }

  /** The first message of each topic, in turn order (a snapshot: taking from it is safe). */
  heads(): Message[] {
    return [...this.byTopic.values()].map((q) => q.messages[0]!);
  }

  /** Takes the first message of `topic`; its turn passes (it goes to the end of the order). */
  take(topic: string): Message | undefined {
    const q = this.byTopic.get(topic);
    if (!q) return undefined;
    this.byTopic.delete(topic);
    const m = this.takeFrom(q);
    if (q.messages.length > 0) this.byTopic.set(topic, q);
    return m;
  }

  /** Drops the oldest message of the topic with the most waiting bytes. */
  dropFromLongest(): void {
    let longest: [string, { messages: Message[]; bytes: number }] | undefined;
    for (const entry of this.byTopic) if (!longest || entry[1].bytes > longest[1].bytes) longest = entry;
    if (!longest) return;
    const [topic, q] = longest;
    this.takeFrom(q);
    if (q.messages.length === 0) this.byTopic.delete(topic);
  }

  clear(): void {
    this.byTopic.clear();
    this.length = 0;
    this.bytes = 0;
  }

  private takeFrom(q: { messages: Message[]; bytes: number }): Message {
    const m = q.messages.shift()!;
    q.bytes -= m.payload.length;
    this.length--;
    this.bytes -= m.payload.length;
    return m;
  }
}

class Group {
  readonly members = new Map<string, Member>();
  readonly queue = new TopicQueues();
  lastDropLogAt = Number.NEGATIVE_INFINITY;
  droppedSinceLog = 0;
  /** Round-robin cursor into the members. */
  next = 0;
  dropped = 0;
  delivered = 0;
  deliver: (packet: AedesPublishPacket, cb: () => void) => void = (_p, cb) => cb();

  constructor(
    readonly key: string,
    readonly filter: string,
  ) {}
}

/** Per-connection state: the shared messages in flight, by packet identifier. */
interface Session {
  client: Client;
  inflight: Map<number, { group: Group; message: Message; delivery?: Delivery }>;
  /** Of them, how many per topic. */
  perTopic: Map<string, number>;
  groups: Set<Group>;
  ended: boolean;
}

/** aedes' client internals this module relies on (checked in {@link SharedSubscriptions.attach}). */
interface ClientInternals {
  _parser?: EventEmitter;
  _nextId?: number;
}

interface ParsedSubscribe {
  cmd: string;
  messageId?: number;
  subscriptions?: Subscription[];
}

/** A group's state, for tests and diagnostics. */
export interface GroupStats {
  key: string;
  members: number;
  connected: number;
  queued: number;
  inflight: number;
  delivered: number;
  dropped: number;
}

/** Load added while a member's socket buffer is full, so that it is chosen only when every member's is. */
const BACKED_UP = 0x10000;

/** The shared-subscription groups of one broker. */
export class SharedSubscriptions {
  private readonly groups = new Map<string, Group>();
  private readonly sessions = new WeakMap<Client, Session>();
  /** SUBSCRIBE entries rewritten because their `$share/` filter is malformed; answered with 0x80. */
  private readonly malformed = new WeakSet<Subscription>();
  /** Random part of the placeholder filter of malformed entries. */
  private readonly token = randomBytes(6).toString('hex');
  private readonly maxQueued: number;
  private readonly maxQueuedBytes: number;
  private readonly maxInflight: number;
  /** Publishers not read from while their topic's queue is long, by topic. */
  private readonly paused = new Map<string, Client>();
  /** Connections whose read loop can be paused (broker/pause.ts installed). */
  private readonly pausable = new WeakSet<Client>();
  /** The groups' handlers on aedes' emitter. */
  private readonly handlers = new WeakSet<object>();
  private closed = false;

  constructor(
    private readonly aedes: Aedes,
    private readonly opts: SharedOptions = {},
  ) {
    this.maxQueued = opts.maxQueued ?? DEFAULT_MAX_QUEUED;
    this.maxQueuedBytes = opts.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    // Packet identifiers are 16 bits, shared with aedes' own deliveries to the client.
    this.maxInflight = Math.min(opts.maxInflight ?? DEFAULT_MAX_INFLIGHT, MAX_PACKET_IDS);
    aedes.on('unsubscribe', (topics, client) => {
      for (const topic of topics) if (topic.startsWith(SHARE_PREFIX)) this.leave(client, topic);
    });
    aedes.on('clientReady', (client) => this.ready(client));
    aedes.on('publish', (packet, client) => {
      if (client) this.throttle(client, packet.topic);
      const pool = this.opts.pool;
      if (pool && typeof packet.payload !== 'string') {
        const lease = pool.lease(packet.payload);
        if (lease) {
          lease.published = true;
          pool.settle(packet.payload);
        }
      }
    });
    if (opts.pool) this.pinStored(opts.pool);
  }

  /**
   * A packet stored (a retained message, a persistent session's queue, a plain subscription's delivery in flight, a
   * QoS 2 publish until its PUBREL) may be read after the groups are done with it: its buffer is pinned as it is
   * stored. The persistence's storing methods are wrapped (aedes calls them
   * as methods of `aedes.persistence`).
   */
  private pinStored(pool: PacketPool): void {
    const persistence = (this.aedes as unknown as { persistence: Record<string, unknown> }).persistence;
    const pin = (packet: { payload?: unknown } | undefined) => {
      if (packet?.payload instanceof Uint8Array) pool.pin(packet.payload);
    };
    const wrap = (name: string, packetOf: (args: unknown[]) => { payload?: unknown } | undefined) => {
      const original = persistence[name];
      if (typeof original !== 'function') return;
      persistence[name] = function (this: unknown, ...args: unknown[]) {
        pin(packetOf(args));
        return (original as (...a: unknown[]) => unknown).apply(this, args);
      };
    };
    wrap('storeRetained', (a) => a[0] as { payload?: unknown });
    wrap('outgoingEnqueue', (a) => a[1] as { payload?: unknown });
    // A plain subscription's QoS 1 delivery (already pinned by groupsOnly) and a QoS 2 publish held until PUBREL.
    wrap('outgoingUpdate', (a) => a[1] as { payload?: unknown });
    wrap('incomingStorePacket', (a) => a[1] as { payload?: unknown });
    wrap('outgoingEnqueueCombi', (a) =>
      (a[0] as unknown[] | undefined)?.length ? (a[1] as { payload?: unknown }) : undefined,
    );
  }

  /**
   * Whether the groups are the only readers of `packet`: not retained, and every subscriber's handler aedes' emitter
   * matches its topic to is a group's. Called from a group's handler, in the same synchronous pass in which the
   * emitter matched the topic (mqemitter removes handlers on a later tick), so a plain subscription that received the
   * packet is among the handlers seen. Without the emitter's internals, false.
   */
  private groupsOnly(packet: AedesPublishPacket): boolean {
    if (packet.retain) return false;
    const matcher = (this.aedes as unknown as { mq?: { _matcher?: { match?(t: string): unknown[] } } }).mq
      ?._matcher;
    if (typeof matcher?.match !== 'function') return false;
    for (const handler of matcher.match(packet.topic))
      if (!this.handlers.has(handler as object)) return false;
    return true;
  }

  /** Pauses a publisher whose topic has a long queue in a group that has a connected member to serve it. */
  private throttle(client: Client, topic: string): void {
    if (this.paused.has(topic) || client.closed) return;
    const high = PAUSE_AFTER * this.maxInflight;
    for (const group of this.groups.values()) {
      if (group.queue.lengthOf(topic) <= high) continue;
      if (![...group.members.values()].some((m) => this.eligible(m))) continue;
      if (!this.pausable.has(client) || !pauseReading(client)) return;
      this.paused.set(topic, client);
      client.conn.once('close', () => {
        if (this.paused.get(topic) === client) this.paused.delete(topic);
      });
      this.opts.logger?.debug(
        { client: client.id, topic, queued: group.queue.lengthOf(topic) },
        'publisher paused: its messages wait for the group',
      );
      return;
    }
  }

  /** Resumes the publisher of `topic` once no group holds more than `maxInflight` of its messages. */
  private unthrottle(topic: string, force = false): void {
    const client = this.paused.get(topic);
    if (!client) return;
    if (!force) for (const g of this.groups.values()) if (g.queue.lengthOf(topic) > this.maxInflight) return;
    this.paused.delete(topic);
    resumeReading(client);
  }

  /** Resumes the publishers whose messages no connected member is left to take (they would never resume). */
  private releaseStranded(): void {
    for (const topic of [...this.paused.keys()]) {
      const served = [...this.groups.values()].some(
        (g) => g.queue.lengthOf(topic) > 0 && [...g.members.values()].some((m) => this.eligible(m)),
      );
      if (!served) this.unthrottle(topic, true);
    }
  }

  /**
   * Taps a new connection (call right after `aedes.handle`): its SUBSCRIBE packets are adjusted before aedes sees
   * them, its PUBACKs are matched against the shared messages in flight, and its end releases them.
   */
  attach(client: Client): void {
    const internals = client as unknown as ClientInternals;
    if (!internals._parser || typeof internals._parser.prependListener !== 'function') {
      throw new Error(
        'aedes client has no packet parser to tap: shared subscriptions need aedes 1.x internals',
      );
    }
    internals._parser.prependListener('packet', (packet: ParsedSubscribe) => {
      if (packet.cmd === 'puback' && packet.messageId !== undefined) this.acked(client, packet.messageId);
      else if (packet.cmd === 'subscribe') this.adjustSubscribe(packet);
    });
    client.conn.once('close', () => this.ended(client));
    if (installPause(client)) this.pausable.add(client);
  }

  /**
   * `authorizeSubscribe` for `$share/` filters: undefined when the filter is not shared, null (SUBACK 0x80) when it
   * is malformed, else the subscription after the client joined the group.
   */
  authorizeSubscribe(client: Client, sub: Subscription): Subscription | null | undefined {
    if (this.malformed.has(sub)) return null;
    const parsed = parseSharedFilter(sub.topic);
    if (parsed === undefined) return undefined;
    if (parsed === null) return null;
    if (client.closed || this.closed) return sub;
    let group = this.groups.get(sub.topic);
    if (!group) {
      const created = new Group(sub.topic, parsed.filter);
      created.deliver = (packet, cb) => {
        this.published(created, packet);
        cb();
      };
      this.handlers.add(created.deliver);
      this.groups.set(sub.topic, created);
      this.aedes.subscribe(parsed.filter, created.deliver, () => undefined);
      group = created;
    }
    group.members.set(client.id, { client, qos: sub.qos > 0 ? 1 : 0 });
    this.session(client).groups.add(group);
    if (client.connected) this.drain(group);
    return sub;
  }

  /** State of every group. */
  stats(): GroupStats[] {
    return [...this.groups.values()].map((g) => {
      let connected = 0;
      let inflight = 0;
      for (const m of g.members.values()) {
        if (!m.client || !this.eligible(m)) continue;
        connected++;
        for (const f of this.sessions.get(m.client)?.inflight.values() ?? []) if (f.group === g) inflight++;
      }
      return {
        key: g.key,
        members: g.members.size,
        connected,
        queued: g.queue.length,
        inflight,
        delivered: g.delivered,
        dropped: g.dropped,
      };
    });
  }

  /** Stops delivering (before aedes closes). */
  close(): void {
    this.closed = true;
    for (const topic of [...this.paused.keys()]) this.unthrottle(topic, true);
    for (const group of this.groups.values()) group.queue.clear();
    this.groups.clear();
  }

  private session(client: Client): Session {
    let s = this.sessions.get(client);
    if (!s) {
      s = { client, inflight: new Map(), perTopic: new Map(), groups: new Set(), ended: false };
      this.sessions.set(client, s);
    }
    return s;
  }

  /** Caps a shared subscription at QoS 1 and turns a malformed one into a placeholder aedes accepts. */
  private adjustSubscribe(packet: ParsedSubscribe): void {
    for (const [i, sub] of (packet.subscriptions ?? []).entries()) {
      const parsed = parseSharedFilter(sub.topic);
      if (parsed === undefined) continue;
      if (parsed === null) {
        // aedes would close the connection over a filter it finds malformed; MQTT 5 answers 0x80 for this one.
        // The placeholder is unique in the packet (aedes merges equal filters) and never a valid shared filter.
        this.malformed.add(sub);
        sub.topic = `${SHARE_PREFIX}+/${this.token}/${i}`;
      } else if (sub.qos > 1) {
        sub.qos = 1;
      }
    }
  }

  private published(group: Group, packet: AedesPublishPacket): void {
    if (this.closed || this.groups.get(group.key) !== group) return;
    // [MQTT-4.7.2-1]: a filter starting with a wildcard does not match a topic starting with '$'.
    if (packet.topic.startsWith('$') && /^[+#]/.test(group.filter)) return;
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    const message: Message = { topic: packet.topic, payload, qos: packet.qos > 0 ? 1 : 0, dup: false };
    const lease = this.opts.pool?.lease(payload);
    if (lease && !lease.pinned) {
      if (!lease.checked) {
        if (this.groupsOnly(packet)) lease.checked = true;
        else lease.pinned = true;
      }
      if (!lease.pinned) {
        lease.open++;
        message.holds = lease;
      }
    }
    // A QoS 0 message does not wait: it goes now or is dropped (enqueue counts it). A QoS 1 one goes behind the
    // messages of its topic already waiting.
    if ((message.qos === 0 || group.queue.lengthOf(message.topic) === 0) && this.send(group, message)) return;
    this.enqueue(group, [message], false);
    this.drain(group);
  }

  /**
   * Connected and able to take a message now: of QoS 1 on `topic`, only below the bound of that topic's messages in
   * flight (and of all of them: packet identifiers are 16 bits).
   */
  private eligible(member: Member, message?: Message): boolean {
    const client = member.client;
    if (!client?.connected || client.closed || client.conn.destroyed) return false;
    const s = this.sessions.get(client);
    if (s === undefined || s.ended) return false;
    if (!message) return true;
    if (message.qos === 0 || member.qos === 0) return client.conn.writableLength < QOS0_BACKLOG_BYTES;
    return (s.perTopic.get(message.topic) ?? 0) < this.maxInflight && s.inflight.size < MAX_PACKET_IDS;
  }

  /** A member's load: its QoS 1 messages in flight, and a penalty while its socket's buffer is full. */
  private load(client: Client): number {
    const backedUp = (client.conn as { writableNeedDrain?: boolean }).writableNeedDrain === true;
    return this.sessions.get(client)!.inflight.size + (backedUp ? BACKED_UP : 0);
  }

  /** The member with room for a message of `qos` with the fewest messages in flight, round-robin among equals. */
  private pick(group: Group, message: Message): Member | undefined {
    const members = [...group.members.values()];
    const n = members.length;
    let best: Member | undefined;
    let bestLoad = Number.POSITIVE_INFINITY;
    let bestIndex = 0;
    for (let k = 0; k < n; k++) {
      const i = (group.next + k) % n;
      const m = members[i]!;
      if (!this.eligible(m, message)) continue;
      const load = this.load(m.client!);
      if (load < bestLoad) {
        best = m;
        bestLoad = load;
        bestIndex = i;
      }
    }
    if (best) group.next = bestIndex + 1;
    return best;
  }

  /** Writes the message to one member; false when no member is connected or none has room. */
  private send(group: Group, message: Message): boolean {
    const member = this.pick(group, message);
    if (!member) return false;
    const client = member.client!;
    const s = this.sessions.get(client)!;
    const qos = Math.min(message.qos, member.qos) as 0 | 1;
    let messageId: number | undefined;
    const delivery: Delivery | undefined = message.holds
      ? { message, pending: qos === 1 ? 2 : 1 }
      : undefined;
    if (qos === 1) {
      messageId = this.nextId(s);
      s.inflight.set(messageId, { group, message, delivery });
      s.perTopic.set(message.topic, (s.perTopic.get(message.topic) ?? 0) + 1);
    }
    // [MQTT-3.3.1-9]: RETAIN=0 on a message for an established subscription; DUP=1 on a re-delivery [MQTT-3.3.1-1].
    // The header, then the payload itself (not a copy: it may be megabytes), in one corked write, as aedes writes its
    // own deliveries (mqtt-packet).
    const header = encodePublishHeader({
      topic: message.topic,
      qos,
      dup: qos === 1 && message.dup,
      retain: false,
      messageId,
      payloadBytes: message.payload.length,
    });
    const conn = client.conn as Client['conn'] & { cork?(): void; uncork?(): void };
    conn.cork?.();
    conn.write(header);
    if (delivery) conn.write(message.payload, (err) => err || this.progress(delivery));
    else conn.write(message.payload);
    conn.uncork?.();
    group.delivered++;
    return true;
  }

  /** One step of a delivery is done; the last one releases the message's hold on its packet's buffer. */
  private progress(delivery: Delivery): void {
    if (--delivery.pending > 0) return;
    const lease = delivery.message.holds;
    if (!lease) return;
    delivery.message.holds = undefined;
    lease.open--;
    this.opts.pool?.settle(delivery.message.payload);
  }

  /** A packet identifier from the client's own sequence (shared with aedes' deliveries), not in flight here. */
  private nextId(s: Session): number {
    const internals = s.client as unknown as ClientInternals;
    for (;;) {
      const id = internals._nextId ?? 1;
      internals._nextId = id >= 0xffff ? 1 : id + 1;
      if (!s.inflight.has(id)) return id;
    }
  }

  private enqueue(group: Group, messages: Message[], front: boolean): void {
    const kept = messages.filter((m) => m.qos === 1);
    let dropped = messages.length - kept.length;
    // Returned messages go to the front of their topic's queue, in their order.
    for (const m of front ? [...kept].reverse() : kept) group.queue.push(m, front);
    while (group.queue.length > this.maxQueued || group.queue.bytes > this.maxQueuedBytes) {
      group.queue.dropFromLongest();
      dropped++;
    }
    if (dropped === 0) return;
    group.dropped += dropped;
    group.droppedSinceLog += dropped;
    const now = performance.now();
    if (now - group.lastDropLogAt < DROP_LOG_MS) return;
    group.lastDropLogAt = now;
    const connected = [...group.members.values()].some((m) => this.eligible(m));
    this.opts.logger?.warn(
      { group: group.key, dropped: group.droppedSinceLog, queued: group.queue.length },
      connected
        ? 'shared subscription queue full (every member has its in-flight bound): messages dropped, oldest of the longest topic queue first'
        : 'shared subscription without connected member: messages dropped',
    );
    group.droppedSinceLog = 0;
  }

  /** Sends waiting messages in turns while members have room; a topic at its bound everywhere waits its turn. */
  private drain(group: Group): void {
    for (;;) {
      let sent = false;
      for (const m of group.queue.heads()) {
        if (!this.send(group, m)) continue;
        group.queue.take(m.topic);
        sent = true;
        if (this.paused.has(m.topic)) this.unthrottle(m.topic);
      }
      if (!sent) return;
    }
  }

  /** A PUBACK frees room at the member: the group whose message it was sends its next one. */
  private acked(client: Client, messageId: number): void {
    const s = this.sessions.get(client);
    const f = s?.inflight.get(messageId);
    if (!f) return;
    s!.inflight.delete(messageId);
    if (f.delivery) this.progress(f.delivery);
    const n = (s!.perTopic.get(f.message.topic) ?? 1) - 1;
    if (n > 0) s!.perTopic.set(f.message.topic, n);
    else s!.perTopic.delete(f.message.topic);
    if (f.group.queue.length > 0 && this.groups.get(f.group.key) === f.group) this.drain(f.group);
  }

  private leave(client: Client, key: string): void {
    const group = this.groups.get(key);
    if (!group) return;
    const member = group.members.get(client.id);
    if (member && (member.client === client || member.client === undefined)) this.remove(group, client.id);
    this.sessions.get(client)?.groups.delete(group);
    this.releaseStranded();
  }

  private remove(group: Group, clientId: string): void {
    group.members.delete(clientId);
    if (group.members.size > 0) return;
    this.groups.delete(group.key);
    this.aedes.unsubscribe(group.filter, group.deliver, () => undefined);
    if (group.queue.length > 0) {
      this.opts.logger?.warn({ group: group.key, dropped: group.queue.length }, 'shared subscription ended');
    }
  }

  /** A connection is ready: its groups may have waiting messages. A new clean session ends old memberships. */
  private ready(client: Client): void {
    if (client.clean) {
      for (const group of [...this.groups.values()]) {
        const m = group.members.get(client.id);
        if (m && m.client === undefined) this.remove(group, client.id);
      }
    }
    for (const group of this.sessions.get(client)?.groups ?? []) {
      if (this.groups.get(group.key) === group) this.drain(group);
    }
  }

  /** A connection ended: its clean memberships end, and its unacknowledged messages go to other members. */
  private ended(client: Client): void {
    const s = this.sessions.get(client);
    if (!s || s.ended) return;
    s.ended = true;
    if (this.closed) {
      s.inflight.clear();
      s.perTopic.clear();
      return;
    }
    for (const group of s.groups) {
      const m = group.members.get(client.id);
      if (!m || m.client !== client) continue;
      if (client.clean) this.remove(group, client.id);
      else m.client = undefined;
    }
    const returned = new Map<Group, Message[]>();
    for (const { group, message } of s.inflight.values()) {
      const list = returned.get(group) ?? [];
      list.push({ ...message, dup: true });
      returned.set(group, list);
    }
    s.inflight.clear();
    s.perTopic.clear();
    this.releaseStranded();
    for (const [group, messages] of returned) {
      if (this.groups.get(group.key) !== group) {
        this.opts.logger?.debug({ group: group.key, lost: messages.length }, 'shared subscription gone');
        continue;
      }
      this.enqueue(group, messages, true);
      this.drain(group);
    }
  }
}

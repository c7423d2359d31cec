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
 * - a member leaves on UNSUBSCRIBE and when its clean session ends; a persistent session's member stays in the group
 *   while disconnected. QoS 1 messages for a group without a connected member wait in a queue bounded by
 *   `maxQueued` messages and `maxQueuedBytes` payload bytes (the oldest are dropped first); QoS 0 ones are dropped;
 * - retained messages are not sent to a new shared subscription (MQTT 5 §4.8.2).
 *
 * A malformed `$share/` filter (empty group, `+` or `#` in the group, no or an invalid filter) gets SUBACK 0x80.
 */
import { randomBytes } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import type { Aedes, AedesPublishPacket, Client, Subscription } from 'aedes';
import type { Logger } from '../common/log.ts';
import { parseSharedFilter, SHARE_PREFIX } from '../common/mqtt-topics.ts';
import { encodePublish } from './wire.ts';

/** Limits of the shared subscriptions. */
export interface SharedOptions {
  /** QoS 1 messages a group holds while no member is connected; default {@link DEFAULT_MAX_QUEUED}. */
  maxQueued?: number;
  /** Payload bytes a group holds so; default {@link DEFAULT_MAX_QUEUED_BYTES}. */
  maxQueuedBytes?: number;
  logger?: Logger;
}

/** Default bound of a group's queue, in messages. */
export const DEFAULT_MAX_QUEUED = 1000;
/** Default bound of a group's queue, in payload bytes (64 MiB). */
export const DEFAULT_MAX_QUEUED_BYTES = 64 * 1024 * 1024;

interface Message {
  topic: string;
  payload: Buffer;
  qos: 0 | 1;
  dup: boolean;
}

interface Member {
  /** The member's connection; undefined while a persistent session is disconnected. */
  client: Client | undefined;
  qos: 0 | 1;
}

class Group {
  readonly members = new Map<string, Member>();
  readonly queue: Message[] = [];
  queuedBytes = 0;
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
  inflight: Map<number, { group: Group; message: Message }>;
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

/** Packet identifiers a session may have in flight before the member counts as full. */
const MAX_INFLIGHT = 0xffff - 1024;
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
  private closed = false;

  constructor(
    private readonly aedes: Aedes,
    private readonly opts: SharedOptions = {},
  ) {
    this.maxQueued = opts.maxQueued ?? DEFAULT_MAX_QUEUED;
    this.maxQueuedBytes = opts.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    aedes.on('unsubscribe', (topics, client) => {
      for (const topic of topics) if (topic.startsWith(SHARE_PREFIX)) this.leave(client, topic);
    });
    aedes.on('clientReady', (client) => this.ready(client));
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
    for (const group of this.groups.values()) group.queue.length = 0;
    this.groups.clear();
  }

  private session(client: Client): Session {
    let s = this.sessions.get(client);
    if (!s) {
      s = { client, inflight: new Map(), groups: new Set(), ended: false };
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
    if (group.queue.length > 0) {
      this.enqueue(group, [message], false);
      this.drain(group);
    } else if (!this.send(group, message)) {
      this.enqueue(group, [message], false);
    }
  }

  private eligible(member: Member): boolean {
    const client = member.client;
    if (!client?.connected || client.closed || client.conn.destroyed) return false;
    const s = this.sessions.get(client);
    return s !== undefined && !s.ended && s.inflight.size < MAX_INFLIGHT;
  }

  /** A member's load: its QoS 1 messages in flight, and a penalty while its socket's buffer is full. */
  private load(client: Client): number {
    const backedUp = (client.conn as { writableNeedDrain?: boolean }).writableNeedDrain === true;
    return this.sessions.get(client)!.inflight.size + (backedUp ? BACKED_UP : 0);
  }

  /** The connected member with the fewest messages in flight, round-robin among equals. */
  private pick(group: Group): Member | undefined {
    const members = [...group.members.values()];
    const n = members.length;
    let best: Member | undefined;
    let bestLoad = Number.POSITIVE_INFINITY;
    let bestIndex = 0;
    for (let k = 0; k < n; k++) {
      const i = (group.next + k) % n;
      const m = members[i]!;
      if (!this.eligible(m)) continue;
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

  /** Writes the message to one member; false when no member is connected. */
  private send(group: Group, message: Message): boolean {
    const member = this.pick(group);
    if (!member) return false;
    const client = member.client!;
    const s = this.sessions.get(client)!;
    const qos = Math.min(message.qos, member.qos) as 0 | 1;
    let messageId: number | undefined;
    if (qos === 1) {
      messageId = this.nextId(s);
      s.inflight.set(messageId, { group, message });
    }
    // [MQTT-3.3.1-9]: RETAIN=0 on a message for an established subscription; DUP=1 on a re-delivery [MQTT-3.3.1-1].
    client.conn.write(
      encodePublish({ ...message, qos, dup: qos === 1 && message.dup, retain: false, messageId }),
    );
    group.delivered++;
    return true;
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
    group.dropped += messages.length - kept.length;
    if (front) group.queue.unshift(...kept);
    else group.queue.push(...kept);
    for (const m of kept) group.queuedBytes += m.payload.length;
    let dropped = 0;
    while (group.queue.length > this.maxQueued || group.queuedBytes > this.maxQueuedBytes) {
      const old = group.queue.shift()!;
      group.queuedBytes -= old.payload.length;
      dropped++;
    }
    group.dropped += dropped;
    if (dropped > 0 || kept.length < messages.length) {
      this.opts.logger?.warn(
        { group: group.key, dropped: dropped + messages.length - kept.length, queued: group.queue.length },
        'shared subscription without connected member: messages dropped',
      );
    }
  }

  private drain(group: Group): void {
    while (group.queue.length > 0 && this.send(group, group.queue[0]!)) {
      const sent = group.queue.shift()!;
      group.queuedBytes -= sent.payload.length;
    }
  }

  private acked(client: Client, messageId: number): void {
    this.sessions.get(client)?.inflight.delete(messageId);
  }

  private leave(client: Client, key: string): void {
    const group = this.groups.get(key);
    if (!group) return;
    const member = group.members.get(client.id);
    if (member && (member.client === client || member.client === undefined)) this.remove(group, client.id);
    this.sessions.get(client)?.groups.delete(group);
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

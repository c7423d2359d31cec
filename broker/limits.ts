/**
 * The broker's resource limits: what one connection, one client address and one retained topic may cost.
 *
 * - Packet size: each packet's size is known from its fixed header's remaining length before its body arrives, so
 *   an oversized packet is refused before it is buffered: the connection is closed (MQTT 3.1.1 has no way to refuse
 *   one PUBLISH by size). Until its CONNECT is accepted a connection may send far less (a CONNECT carries a client
 *   id, credentials and a will, not tensors), so an anonymous socket cannot make the broker hold megabytes.
 * - Retained payloads: a retained PUBLISH over the limit is acknowledged and dropped, like a refused publish
 *   (auth.ts), so one client cannot fill the broker's memory through retained topics.
 * - Per client address: connections open at once, and new connections per second (a token bucket), so a flood of
 *   sockets or logins from one address is turned away before any CONNECT is parsed or any password hashed.
 * - CONNECT timeout: a socket that sends no CONNECT within this time is closed (aedes' `connectTimeout`).
 *
 * Every refusal is one log line naming the client (or its address before CONNECT) and the limit, and counted.
 *
 * The size gate wraps the `_parseLength` step of the connection's mqtt-packet parser (aedes 1.x, mqtt-packet 9.x
 * have no maximum packet size of their own): after the remaining length is read, a length over the limit ends the
 * parse with an error, which aedes turns into closing the connection.
 */
import type { Client, PublishPacket } from 'aedes';
import type { Logger } from '../runtime/log.ts';

/** The limits, with the defaults of {@link DEFAULT_LIMITS}. */
export interface BrokerLimits {
  /** Largest packet (remaining length, bytes) of a connection whose CONNECT was accepted. */
  maxPacketBytes: number;
  /** Largest packet before that: the CONNECT itself. */
  preConnectBytes: number;
  /** Largest retained payload per topic (bytes). */
  maxRetainedBytes: number;
  /** A socket that has sent no CONNECT after this long is closed (ms). */
  connectTimeoutMs: number;
  /** Connections open at once from one client address. */
  maxConnectionsPerAddress: number;
  /** New connections per second from one client address, sustained; bursts of twice as many pass. */
  connectsPerSecond: number;
}

/**
 * Defaults sized for tensors: the largest tensor crossing a cut of the zoo's Inception-v3 is 5,531,904 bytes
 * (`edgecut model inspect inception-v3`), so a request of 8 MiB holds it with room for the header; the largest
 * retained message is a profile (Inception-v3's, 315 layers: tens of kilobytes).
 */
export const DEFAULT_LIMITS: BrokerLimits = {
  maxPacketBytes: 8 * 1024 * 1024,
  preConnectBytes: 64 * 1024,
  maxRetainedBytes: 1024 * 1024,
  connectTimeoutMs: 10_000,
  maxConnectionsPerAddress: 256,
  connectsPerSecond: 50,
};

/** Addresses tracked before idle ones are swept out. */
const SWEEP_AT = 1024;

/** Which limit refused something. */
export type LimitName = 'packet' | 'pre-connect packet' | 'retained' | 'connections' | 'connect rate';

const NAMES: readonly LimitName[] = [
  'packet',
  'pre-connect packet',
  'retained',
  'connections',
  'connect rate',
];

/** The parser state the size gate reads (mqtt-packet 9.x). */
interface ParserInternals {
  packet: { length: number };
  _parseLength(): boolean;
  _emitError(err: Error): void;
}

interface Bucket {
  tokens: number;
  at: number;
  open: number;
}

/** The limits of one broker, with the counts of what they refused. */
export class Limits {
  private readonly addresses = new Map<string, Bucket>();
  private readonly refused = new Map<LimitName, number>(NAMES.map((n) => [n, 0]));
  private readonly logged = new Map<LimitName, { at: number; quiet: number }>();

  constructor(
    readonly limits: BrokerLimits,
    private readonly logger: Logger,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Refusals so far, per limit. */
  stats(): Record<LimitName, number> {
    return Object.fromEntries(this.refused) as Record<LimitName, number>;
  }

  /**
   * Admits a new connection from `address`, or says which limit refuses it (the caller closes the socket). An
   * admitted connection is released with {@link Limits.release} when it closes.
   */
  admit(address: string): LimitName | undefined {
    const l = this.limits;
    const now = this.now();
    if (this.addresses.size >= SWEEP_AT) this.sweep(now);
    const b = this.addresses.get(address) ?? { tokens: 2 * l.connectsPerSecond, at: now, open: 0 };
    b.tokens = Math.min(2 * l.connectsPerSecond, b.tokens + ((now - b.at) / 1000) * l.connectsPerSecond);
    b.at = now;
    this.addresses.set(address, b);
    let refused: LimitName | undefined;
    if (b.open >= l.maxConnectionsPerAddress) refused = 'connections';
    else if (b.tokens < 1) refused = 'connect rate';
    if (refused) {
      this.refuse(
        refused,
        { address },
        refused === 'connections' ? l.maxConnectionsPerAddress : l.connectsPerSecond,
      );
      this.forgetIdle(address, b);
      return refused;
    }
    b.tokens -= 1;
    b.open++;
    return undefined;
  }

  /** A connection admitted from `address` closed. */
  release(address: string): void {
    const b = this.addresses.get(address);
    if (!b) return;
    b.open = Math.max(0, b.open - 1);
    this.forgetIdle(address, b);
  }

  /** Installs the packet size gate on a new client's parser. */
  gate(client: Client, address: string): void {
    const parser = (client as unknown as { _parser: ParserInternals })._parser;
    const parseLength = parser._parseLength;
    const l = this.limits;
    parser._parseLength = function (this: ParserInternals): boolean {
      const done = parseLength.call(this);
      if (!done) return done;
      const before = !client.connected;
      const limit = before ? l.preConnectBytes : l.maxPacketBytes;
      if (this.packet.length > limit) {
        gateRefused(before ? 'pre-connect packet' : 'packet', this.packet.length, limit);
        this._emitError(
          new Error(`packet of ${this.packet.length} bytes is over the limit of ${limit} bytes`),
        );
        return false;
      }
      return done;
    };
    const gateRefused = (name: LimitName, bytes: number, limit: number) =>
      this.refuse(name, { client: client.id ?? undefined, address, bytes }, limit);
  }

  /** Null, or why a retained PUBLISH is dropped. */
  retained(client: Client | null, packet: PublishPacket): LimitName | null {
    if (!packet.retain) return null;
    const bytes = packet.payload.length;
    if (bytes <= this.limits.maxRetainedBytes) return null;
    this.refuse('retained', { client: client?.id, topic: packet.topic, bytes }, this.limits.maxRetainedBytes);
    return 'retained';
  }

  /** Counts a refusal and logs it: at most one line per limit and second, with how many it stands for. */
  private refuse(name: LimitName, what: Record<string, unknown>, limit: number): void {
    this.refused.set(name, (this.refused.get(name) ?? 0) + 1);
    const now = this.now();
    const log = this.logged.get(name) ?? { at: Number.NEGATIVE_INFINITY, quiet: 0 };
    if (now - log.at < 1000) {
      log.quiet++;
      this.logged.set(name, log);
      return;
    }
    this.logger.warn(
      { ...what, limit: name, max: limit, ...(log.quiet > 0 ? { alsoRefusedSince: log.quiet } : {}) },
      `refused: over the ${name} limit of ${limit}`,
    );
    this.logged.set(name, { at: now, quiet: 0 });
  }

  /** Drops an address with no open connection once its bucket is full again (memory bounded by live addresses). */
  private forgetIdle(address: string, b: Bucket): void {
    if (b.open === 0 && b.tokens >= 2 * this.limits.connectsPerSecond - 1) this.addresses.delete(address);
  }

  /** Drops every idle address whose bucket has filled up since it was last used. */
  private sweep(now: number): void {
    const full = 2 * this.limits.connectsPerSecond;
    for (const [address, b] of this.addresses)
      if (b.open === 0 && b.tokens + ((now - b.at) / 1000) * this.limits.connectsPerSecond >= full - 1)
        this.addresses.delete(address);
  }
}

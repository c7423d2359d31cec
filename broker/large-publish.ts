/**
 * The cheap path for large PUBLISH packets (tensors of up to megabytes), as a wrapper of one connection's
 * mqtt-packet 9.x parser that could go upstream as a parser option.
 *
 * The parser appends every chunk the socket gives it to a BufferList and, once the packet is whole, slices the
 * payload out of the list: a copy of the whole payload when it spans several chunks, which a large one always does
 * (loopback hands over 64 KiB at a time, a network less), and a list of chunks that grows with the packet. Here,
 * once the fixed header of a PUBLISH gives a remaining length of at least {@link LARGE_PUBLISH_BYTES} and the
 * packet is not yet whole, its bytes go straight into one buffer of that length as they arrive; when it is full,
 * the parser gets it as one chunk, and its slice of the payload is a view of that buffer, not a copy. The payload
 * is then forwarded to every subscriber as that view (mqtt-packet writes the fixed header and the payload as
 * separate buffers of one corked write), so a large message is copied once on its way through the broker, from
 * the socket's chunks into its buffer.
 *
 * The size gate of limits.ts runs first: a packet over the limit is refused before any buffer is allocated.
 */
import type { Client } from 'aedes';

/** PUBLISH packets with at least this remaining length take the cheap path (smaller ones gain nothing). */
export const LARGE_PUBLISH_BYTES = 16 * 1024;

/** The parser state this wrapper reads and sets (mqtt-packet 9.x). */
interface ParserInternals {
  packet: { cmd?: string; length: number };
  _list: { length: number; copy(dst: Buffer, dstStart?: number): Buffer; consume(bytes: number): void };
  _parseLength(): boolean;
  parse(buf: Buffer): number;
}

/** Counts of the cheap path, for tests and metrics. */
export interface LargePublishStats {
  /** PUBLISH packets assembled in one buffer. */
  packets: number;
}

/**
 * Puts the cheap path in front of a connection's parser. Returns its counts (shared by every connection it is
 * given, when `stats` is passed).
 */
export function largePublishPath(
  client: Client,
  stats: LargePublishStats = { packets: 0 },
  threshold = LARGE_PUBLISH_BYTES,
): LargePublishStats {
  const parser = (client as unknown as { _parser: ParserInternals })._parser;
  const parseLength = parser._parseLength;
  const parse = parser.parse;
  /** The packet being assembled: its buffer (the remaining length, from the variable header on) and bytes so far. */
  let pending: { buf: Buffer; filled: number } | undefined;

  parser._parseLength = function (this: ParserInternals): boolean {
    const done = parseLength.call(this);
    if (!done || this.packet.cmd !== 'publish') return done;
    const length = this.packet.length;
    if (length < threshold || this._list.length >= length) return done;
    // Not whole yet: what the list holds of it (all of the list, which is shorter) moves into the packet's buffer,
    // and the list is left empty, so that the parser waits (its payload step finds too few bytes and returns).
    const buf = Buffer.allocUnsafeSlow(length);
    const have = this._list.length;
    if (have > 0) {
      this._list.copy(buf, 0);
      this._list.consume(have);
    }
    pending = { buf, filled: have };
    return done;
  };

  parser.parse = function (this: ParserInternals, chunk: Buffer): number {
    if (pending === undefined) return parse.call(this, chunk);
    const p = pending;
    const take = Math.min(chunk.length, p.buf.length - p.filled);
    chunk.copy(p.buf, p.filled, 0, take);
    p.filled += take;
    if (p.filled < p.buf.length) return this._list.length;
    pending = undefined;
    stats.packets++;
    // The whole packet as one chunk: the parser's payload step runs at once and slices a view of it.
    parse.call(this, p.buf);
    // The rest of the chunk belongs to the packets after it (one of which may take this path again).
    return take < chunk.length ? this.parse(chunk.subarray(take)) : this._list.length;
  };
  return stats;
}

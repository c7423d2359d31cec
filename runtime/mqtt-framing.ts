/**
 * Reading an MQTT byte stream the way a C broker or client does: a large PUBLISH goes from the kernel straight into
 * one buffer of its size, which the parser then slices its payload from, with no other copy.
 *
 * A net.Socket in its default mode reads into a new 64 KiB buffer per read and hands the chunks on; a 1 MiB payload
 * then arrives as 16 or more chunks, which mqtt-packet's parser concatenates into the payload (a copy), and every
 * chunk and payload is fresh memory that the garbage collector has to account for. Node reads into a buffer of the
 * caller's choosing when a socket is created with `onread` (public API, Node >= 12); {@link PacketFramer} is what
 * picks, before each read, where its bytes go, and cuts what was read into chunks for the parser:
 *
 * - while no large PUBLISH is under way, into one scratch buffer shared by every connection of the process (the
 *   read callback runs synchronously after each read, so the bytes are copied out of it before any other read can
 *   land there), copied out into a buffer of their length;
 * - once the fixed header of a PUBLISH gives a remaining length of at least {@link DIRECT_READ_BYTES} (and at most
 *   what the connection may take now: a larger packet goes on in chunks, for a size gate to refuse), into one
 *   buffer holding the whole packet: what the last read held of it is copied there, and every following read lands
 *   directly in its unfilled part, never beyond the packet's end. When it is full it is handed on as one chunk, and
 *   the parser slices the payload out of it as a view.
 *
 * The chunks are the stream's bytes, unchanged and in order; only where they are cut differs. Used by the broker
 * for every plain TCP connection it accepts (broker/direct-read.ts) and by the subscribers of the broker benchmark
 * (bench/in-place-reader.ts).
 */

/** PUBLISH packets with at least this remaining length are read into a buffer of their own. */
export const DIRECT_READ_BYTES = 16 * 1024;

/** Largest read into the shared scratch buffer. */
const SCRATCH_BYTES = 64 * 1024;

/** The one scratch buffer every connection of the process reads into outside large packets. */
let scratch: Buffer | undefined;

/** What a {@link PacketFramer} needs from its connection. */
export interface FramerOptions {
  /** Largest remaining length to assemble now (0: none); a larger packet goes on in chunks. */
  maxPacketBytes(): number;
  /** A buffer of exactly `total` bytes for a large packet; without one (or given none) a fresh buffer. */
  take?(total: number): Buffer | undefined;
  /** Hands on the next chunk of the stream (memory of its own: the receiver may keep it). */
  deliver(chunk: Buffer): void;
  /** Where the framer counts what it read in place (read at each count, so it may change). */
  readonly stats?: FramerStats | undefined;
}

/** Counts of the in-place path. */
export interface FramerStats {
  /** PUBLISH packets read into a buffer of their own. */
  packets: number;
  /** Bytes read straight into those buffers (not copied out of the scratch buffer). */
  directBytes: number;
}

/** Cuts one connection's reads into chunks, reading large PUBLISH packets in place (see the module comment). */
export class PacketFramer {
  /** Bytes left of the current packet's body (0: at a fixed header). */
  private body = 0;
  /** Bytes of a fixed header cut by the end of a read, kept for the next one. */
  private carry: Buffer | undefined;
  /** The large packet being read in place, and how much of it is there. */
  private large: { buf: Buffer; filled: number } | undefined;
  /** A malformed fixed header was seen: boundaries are no longer tracked, the parser will refuse the stream. */
  private lost = false;

  constructor(private readonly o: FramerOptions) {
    scratch ??= Buffer.allocUnsafeSlow(SCRATCH_BYTES);
  }

  /** Where the next read goes (the socket's `onread.buffer`). */
  nextBuffer(): Uint8Array {
    const l = this.large;
    return l ? l.buf.subarray(l.filled) : scratch!;
  }

  /** A read of `n` bytes into `buf` (what {@link nextBuffer} gave): hands on what it completes. */
  onRead(n: number, buf: Uint8Array): void {
    const l = this.large;
    if (l && buf.buffer === l.buf.buffer) {
      l.filled += n;
      const stats = this.o.stats;
      if (stats) stats.directBytes += n;
      if (l.filled === l.buf.length) {
        this.large = undefined;
        if (stats) stats.packets++;
        this.o.deliver(l.buf);
      }
      return;
    }
    let src = Buffer.from(buf.buffer, buf.byteOffset, n);
    if (this.carry) {
      src = Buffer.concat([this.carry, src]);
      this.carry = undefined;
    }
    this.scan(src);
  }

  /** Finds the packets of `src` (scratch bytes, valid until this returns) and hands them on, copied out. */
  private scan(src: Buffer): void {
    let pos = 0;
    while (pos < src.length && !this.lost) {
      if (this.body > 0) {
        const take = Math.min(this.body, src.length - pos);
        this.body -= take;
        pos += take;
        continue;
      }
      // A fixed header: one byte of type and flags, then the remaining length in 1 to 4 bytes of 7 bits each.
      const start = pos;
      let length = 0;
      let i = start + 1;
      let done = false;
      for (let mul = 1; i < src.length && i <= start + 4; mul *= 128) {
        const b = src[i++]!;
        length += (b & 0x7f) * mul;
        if ((b & 0x80) === 0) {
          done = true;
          break;
        }
      }
      if (!done) {
        if (i <= start + 4) {
          // Cut by the end of the read: keep its bytes for the next one.
          this.emit(src, 0, start);
          this.carry = Buffer.from(src.subarray(start));
          return;
        }
        this.lost = true;
        break;
      }
      const total = i - start + length;
      const isPublish = src[start]! >> 4 === 3;
      if (
        isPublish &&
        length >= DIRECT_READ_BYTES &&
        length <= this.o.maxPacketBytes() &&
        start + total > src.length
      ) {
        this.emit(src, 0, start);
        const buf = this.o.take?.(total) ?? Buffer.allocUnsafeSlow(total);
        src.copy(buf, 0, start);
        this.large = { buf, filled: src.length - start };
        return;
      }
      this.body = length;
      pos = i;
    }
    this.emit(src, 0, src.length);
  }

  /** Hands a copy of `src[from, to)` on. */
  private emit(src: Buffer, from: number, to: number): void {
    if (to <= from) return;
    const out = Buffer.allocUnsafe(to - from);
    src.copy(out, 0, from, to);
    this.o.deliver(out);
  }
}

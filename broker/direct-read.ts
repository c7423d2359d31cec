/**
 * Reading a TCP connection the way a C broker does: a large PUBLISH goes from the kernel straight into one buffer
 * of its size, which the parser then slices its payload from and aedes forwards as it is.
 *
 * A net.Socket in its default mode reads into a new 64 KiB buffer per read and hands the chunks on; a 1 MiB
 * payload then arrives as 16 or more chunks, which are copied once more into the packet (broker/large-publish.ts,
 * or the parser's own concatenation), and every chunk and packet is fresh memory that the garbage collector has to
 * account for (at 1 MiB QoS 1 this was as much CPU as the kernel's copies). Node reads into a buffer of the
 * caller's choosing when a socket is created with `onread` (public API, Node >= 12); this module takes the accepted
 * connection's handle into such a socket and picks, before each read, where its bytes go:
 *
 * - while no large PUBLISH is under way, into one scratch buffer shared by every connection (the read callback
 *   runs synchronously after each read, so the bytes are copied out of it before any other read can land there),
 *   copied out into a buffer of their length;
 * - once the fixed header of a PUBLISH gives a remaining length of at least {@link DIRECT_READ_BYTES} (and at most
 *   what the connection may send: an oversized packet goes on to the size gate, which refuses it before anything is
 *   allocated), into one buffer holding the whole packet: what the last read held of it is copied there, and every
 *   following read lands directly in its unfilled part, never beyond the packet's end. When it is full it is handed
 *   on as one chunk. The buffer comes from the broker's pool (packet-pool.ts), which reuses those that only shared
 *   subscriptions read once they are done with them.
 *
 * The chunks reach aedes unchanged in order: aedes reads a connection with `read()` on each `readable` event; here
 * `read()` gives the queued chunks without concatenating them (every chunk but the last goes to the parser
 * directly, which is what parsing their concatenation does), and the socket stops reading while more than
 * {@link READ_AHEAD_BYTES} wait, as a socket does past its high-water mark. End of stream and errors are the
 * socket's own.
 */
import { type Server, Socket } from 'node:net';
import type { Client } from 'aedes';
import type { PacketPool } from './packet-pool.ts';
import type { ReadLoop } from './pause.ts';

/** PUBLISH packets with at least this remaining length are read into a buffer of their own. */
export const DIRECT_READ_BYTES = 16 * 1024;

/**
 * A connection stops reading while this many bytes it has read wait for aedes (a socket's high-water mark). Room for
 * several tensors of tens of KiB: aedes then takes them in one batch, where a bound of one read's worth would stop
 * and start the socket for every message.
 */
export const READ_AHEAD_BYTES = 1024 * 1024;

/**
 * Bytes a connection may have unsent before a delivery to it waits for its socket to drain (its writable high-water
 * mark; aedes holds the publish, and so the publisher's connection, until then). A socket's default of 16 KiB
 * would make every delivery of a tensor wait for the one before it to leave.
 */
export const WRITE_WINDOW_BYTES = 4 * 1024 * 1024;

/** Largest read into the shared scratch buffer. */
const SCRATCH_BYTES = 64 * 1024;

/** Counts of the direct path, for tests and metrics. */
export interface DirectReadStats {
  /** PUBLISH packets read into a buffer of their own. */
  packets: number;
  /** Bytes read straight into those buffers (not copied out of the scratch buffer). */
  directBytes: number;
}

/** What the direct path needs to know about the connection's MQTT client. */
export interface DirectReadOptions {
  /** The connection's aedes client: its parser, and its count of packets being handled and its pause. */
  client: Client;
  /** Largest remaining length the connection may send now (the size gate's limit); larger packets are not assembled. */
  maxPacketBytes(): number;
  stats: DirectReadStats;
  /** Where large packets' buffers come from (reused once their shared deliveries are done); default: fresh ones. */
  pool?: PacketPool;
}

/** The one scratch buffer every connection reads into outside large packets (see the module comment). */
let scratch: Buffer | undefined;

/**
 * Moves a connection accepted by `server` (created with `pauseOnConnect: true`, so it has not read yet) into a
 * socket that reads as described above, and returns that socket; `socket` itself is released. `attach` gives the
 * reader what it needs of the connection's MQTT client once aedes has made it (at once, before any read lands).
 */
export function directReadSocket(
  socket: Socket,
  server: Server,
): { socket: Socket; attach(o: DirectReadOptions): void } {
  const internals = socket as unknown as { _handle: unknown; _server?: Server };
  scratch ??= Buffer.allocUnsafeSlow(SCRATCH_BYTES);
  let reader: Reader | undefined;
  const direct = new Socket({
    handle: internals._handle,
    readable: true,
    writable: true,
    writableHighWaterMark: WRITE_WINDOW_BYTES,
    onread: {
      buffer: () => reader?.nextBuffer() ?? scratch!,
      callback: (n: number, buf: Uint8Array) => reader!.onRead(n, buf),
    },
  } as ConstructorParameters<typeof Socket>[0]);
  reader = new Reader(direct);
  // The accepted socket gives its handle up: destroyed without a handle it closes nothing and leaves the server's
  // count of connections, which the new socket (not the server's) does not join.
  internals._handle = null;
  if (internals._server === server) socket.destroy();
  return { socket: direct, attach: (o) => reader.attach(o) };
}

/** The reading state of one connection. */
class Reader {
  /** Chunks read and not yet given to aedes, and their bytes. */
  private readonly queue: Buffer[] = [];
  private queued = 0;
  private readableScheduled = false;
  /** aedes has read from this connection. */
  private readOnce = false;
  /** Bytes left of the current packet's body (0: at a fixed header). */
  private body = 0;
  /** Bytes of a fixed header cut by the end of a read, kept for the next one. */
  private carry: Buffer | undefined;
  /** The large packet being read in place, and how much of it is there. */
  private large: { buf: Buffer; filled: number } | undefined;
  /** A malformed fixed header was seen: boundaries are no longer tracked, the parser will refuse the stream. */
  private lost = false;

  private o: DirectReadOptions | undefined;
  /** The client's read loop (aedes internals), once attached. */
  private loop: ReadLoop | undefined;

  constructor(private readonly socket: Socket) {
    const read = Socket.prototype.read;
    const self = this;
    socket.read = function (this: Socket, size?: number) {
      // read(0) starts reading and takes nothing (the stream calls it so when a 'readable' listener is added).
      if (self.queue.length === 0 || size === 0) {
        if (self.queue.length > 0) self.scheduleReadable();
        return read.call(this, size);
      }
      const chunks = self.queue.splice(0);
      self.queued = 0;
      self.readOnce = true;
      // Read on (a stopped handle starts again), and let the stream see its end once nothing is queued.
      read.call(this, 0);
      for (let i = 0; i < chunks.length - 1; i++) self.loop!._parser!.parse(chunks[i]!);
      return chunks[chunks.length - 1]!;
    };
  }

  attach(o: DirectReadOptions): void {
    this.o = o;
    this.loop = o.client as unknown as ReadLoop;
  }

  /** Where the next read goes. */
  nextBuffer(): Uint8Array {
    const l = this.large;
    return l ? l.buf.subarray(l.filled) : scratch!;
  }

  /** A read of `n` bytes into `buf` (what {@link nextBuffer} gave). Returns false to stop reading for now. */
  onRead(n: number, buf: Uint8Array): boolean {
    const l = this.large;
    if (l && buf.buffer === l.buf.buffer) {
      l.filled += n;
      this.o!.stats.directBytes += n;
      if (l.filled === l.buf.length) {
        this.large = undefined;
        this.o!.stats.packets++;
        this.deliver(l.buf);
      }
    } else {
      let src = Buffer.from(buf.buffer, buf.byteOffset, n);
      if (this.carry) {
        src = Buffer.concat([this.carry, src]);
        this.carry = undefined;
      }
      this.scan(src);
    }
    return this.queued < READ_AHEAD_BYTES;
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
        this.o !== undefined &&
        length <= this.o.maxPacketBytes() &&
        start + total > src.length
      ) {
        this.emit(src, 0, start);
        const buf = this.o.pool ? this.o.pool.take(total) : Buffer.allocUnsafeSlow(total);
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
    this.deliver(out);
  }

  private deliver(chunk: Buffer): void {
    this.queue.push(chunk);
    this.queued += chunk.length;
    this.scheduleReadable();
  }

  /** Tells aedes there is something to read, as a socket does: once, on the next tick. */
  private scheduleReadable(): void {
    if (this.readableScheduled) return;
    this.readableScheduled = true;
    process.nextTick(() => {
      this.readableScheduled = false;
      // While aedes handles a batch (a publish waiting for its subscribers' sockets to drain, say) it reads again
      // when the batch is done: telling it now would make it read at once (its 'readable' handler counts the batch
      // down), so a publisher would never be held back by a slow subscriber.
      // (aedes counts its first read down from 1.)
      const c = this.loop;
      const busy = c !== undefined && this.readOnce && ((c._parsingBatch ?? 0) > 0 || c._paused === true);
      if (this.queue.length > 0 && !busy) this.socket.emit('readable');
    });
  }
}

/**
 * Reading a TCP connection the way a C broker does: a large PUBLISH goes from the kernel straight into one buffer
 * of its size, which the parser then slices its payload from and aedes forwards as it is.
 *
 * The cutting of reads into chunks is runtime/mqtt-framing.ts (a large PUBLISH read in place, everything else
 * copied out of one scratch buffer); this module takes the accepted connection's handle into a socket created with
 * `onread` and hands the chunks to aedes. A large packet's buffer comes from the broker's pool (packet-pool.ts),
 * which reuses those that only shared subscriptions read once they are done with them; a packet over the
 * connection's size limit is not assembled (the size gate refuses it before anything is allocated for it).
 *
 * The chunks reach aedes unchanged in order: aedes reads a connection with `read()` on each `readable` event; here
 * `read()` gives the queued chunks without concatenating them (every chunk but the last goes to the parser
 * directly, which is what parsing their concatenation does), and the socket stops reading while more than
 * {@link READ_AHEAD_BYTES} wait, as a socket does past its high-water mark. End of stream and errors are the
 * socket's own.
 */
import { type Server, Socket } from 'node:net';
import type { Client } from 'aedes';
import { type FramerStats, PacketFramer } from '../runtime/mqtt-framing.ts';
import type { PacketPool } from './packet-pool.ts';
import type { ReadLoop } from './pause.ts';

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

/** Counts of the direct path, for tests and metrics. */
export type DirectReadStats = FramerStats;

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
  const reader = new Reader();
  const direct = new Socket({
    handle: internals._handle,
    readable: true,
    writable: true,
    writableHighWaterMark: WRITE_WINDOW_BYTES,
    onread: {
      buffer: () => reader.framer.nextBuffer(),
      callback: (n: number, buf: Uint8Array) => reader.onRead(n, buf),
    },
  } as ConstructorParameters<typeof Socket>[0]);
  reader.bind(direct);
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
  private o: DirectReadOptions | undefined;
  /** The client's read loop (aedes internals), once attached. */
  private loop: ReadLoop | undefined;
  readonly framer: PacketFramer;

  private socket: Socket | undefined;

  constructor() {
    const self = this;
    this.framer = new PacketFramer({
      maxPacketBytes: () => self.o?.maxPacketBytes() ?? 0,
      take: (total) => self.o?.pool?.take(total),
      deliver: (chunk) => self.deliver(chunk),
      get stats() {
        return self.o?.stats;
      },
    });
  }

  /** Serves `socket`'s reads (its `read()` gives what the framer cut). */
  bind(socket: Socket): void {
    this.socket = socket;
    const self = this;
    const read = Socket.prototype.read;
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

  /** A read of `n` bytes into `buf` (what the framer gave). Returns false to stop reading for now. */
  onRead(n: number, buf: Uint8Array): boolean {
    this.framer.onRead(n, buf);
    return this.queued < READ_AHEAD_BYTES;
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
      if (this.queue.length > 0 && !busy) this.socket?.emit('readable');
    });
  }
}

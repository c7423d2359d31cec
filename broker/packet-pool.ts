/**
 * Reusing the buffers of large PUBLISH packets that went to shared subscriptions only.
 *
 * direct-read.ts reads each large PUBLISH into one buffer of its own. In Node a buffer is freed only when the
 * garbage collector finds it unreachable; a message that waits for its member's PUBACK lives long enough to reach
 * the old generation, which is collected rarely, so under a `$share` group's load the broker kept hundreds of
 * megabytes of dead packets, and malloc gave each new packet fresh pages (1 MiB QoS 1, three publishers to a group
 * of three: 20-30 minor page faults per MB moved, against 3 one to one; docs/broker-performance.md). A C broker
 * frees a message when its last delivery is acknowledged; this pool does the same for the packets whose every
 * reader the broker can account for, and leaves every other packet to the collector:
 *
 * - {@link PacketPool.take} gives direct-read.ts a buffer for a packet, a kept one of the same size class when
 *   there is one, and starts its {@link Lease};
 * - a lease is **pinned** (the buffer is never reused) as soon as anything but a shared subscription may read the
 *   packet later: a retained message, a persistent session's queue (broker/shared.ts wraps the persistence), a plain
 *   subscription matching its topic, or any path not accounted for (a member that left with the message in flight,
 *   a message dropped from a group's queue, a broker closing: those deliveries never complete);
 * - shared.ts counts each delivery to a member and completes it when the member's socket has written the whole
 *   packet **and**, for QoS 1, the member has acknowledged it (a PUBACK alone is not enough: a client could send it
 *   before reading, while the bytes still wait in the broker's socket buffer);
 * - once aedes has finished publishing the packet (its `publish` event) and every delivery is complete, the buffer
 *   goes back to the pool for the next packet of its size class.
 *
 * The pool keeps at most {@link DEFAULT_POOL_BYTES} of idle buffers: to keep a returned buffer beyond that, it lets
 * the size classes returned to longest ago go (the collector frees them), and leaves the buffer itself to the
 * collector when its own class fills the pool. A buffer that is never returned costs nothing: it is freed as before.
 */

/** Idle bytes the pool keeps at most (in the malloc settings' trim threshold's range: memory the broker keeps anyway). */
export const DEFAULT_POOL_BYTES = 64 * 1024 * 1024;

/** Buffers are kept in size classes of this many bytes (a packet's size depends on its topic too). */
export const POOL_CLASS_BYTES = 4096;

/** A packet's buffer, from {@link PacketPool.take} until it is returned or left to the collector. */
export interface Lease {
  /** Something other than a completed delivery to a shared subscription may read the buffer: never reuse it. */
  pinned: boolean;
  /** aedes finished publishing the packet (every subscriber's handler and every hook has seen it). */
  published: boolean;
  /** A shared subscription took the packet and its every reader was accounted for (see the module comment). */
  checked: boolean;
  /** Deliveries to members started and not yet complete. */
  open: number;
}

/** Counts of the pool, for tests and metrics. */
export interface PacketPoolStats {
  /** Buffers handed out. */
  taken: number;
  /** Of them, kept buffers reused. */
  reused: number;
  /** Buffers returned for reuse. */
  returned: number;
  /** Idle bytes kept now. */
  idleBytes: number;
}

export class PacketPool {
  /** Idle buffers by size class (byteLength), most recently returned last. */
  private readonly idle = new Map<number, ArrayBuffer[]>();
  private readonly leases = new WeakMap<ArrayBuffer, Lease>();
  readonly stats: PacketPoolStats = { taken: 0, reused: 0, returned: 0, idleBytes: 0 };

  constructor(private readonly maxIdleBytes = DEFAULT_POOL_BYTES) {}

  /** A buffer of exactly `size` bytes (a view of its size class's buffer), leased until returned. */
  take(size: number): Buffer {
    const cls = Math.ceil(size / POOL_CLASS_BYTES) * POOL_CLASS_BYTES;
    let ab = this.idle.get(cls)?.pop();
    if (ab) {
      this.stats.idleBytes -= cls;
      this.stats.reused++;
    } else {
      ab = Buffer.allocUnsafeSlow(cls).buffer as ArrayBuffer;
    }
    this.stats.taken++;
    this.leases.set(ab, { pinned: false, published: false, checked: false, open: 0 });
    return Buffer.from(ab, 0, size);
  }

  /** The lease of the buffer `view` (a packet or its payload) lies in; undefined when it is not the pool's. */
  lease(view: Uint8Array): Lease | undefined {
    return this.leases.get(view.buffer as ArrayBuffer);
  }

  /** Never reuse the buffer `view` lies in. */
  pin(view: Uint8Array): void {
    const l = this.lease(view);
    if (l) l.pinned = true;
  }

  /** Returns the buffer `view` lies in when its lease allows: published, checked, not pinned, no open delivery. */
  settle(view: Uint8Array): void {
    const ab = view.buffer as ArrayBuffer;
    const l = this.leases.get(ab);
    if (!l || l.pinned || !l.published || !l.checked || l.open > 0) return;
    // Settled once: the buffer's next lease starts when it is taken again.
    this.leases.delete(ab);
    if (ab.byteLength > this.maxIdleBytes) return;
    // Room first: the idle buffers of the size classes used longest ago go to the collector (a model's cut moved).
    for (const [cls, list] of this.idle) {
      if (this.stats.idleBytes + ab.byteLength <= this.maxIdleBytes) break;
      if (cls === ab.byteLength) continue;
      this.stats.idleBytes -= cls * list.length;
      this.idle.delete(cls);
    }
    if (this.stats.idleBytes + ab.byteLength > this.maxIdleBytes) return;
    let list = this.idle.get(ab.byteLength);
    if (!list) {
      list = [];
      this.idle.set(ab.byteLength, list);
    }
    list.push(ab);
    this.stats.idleBytes += ab.byteLength;
    this.stats.returned++;
  }

  /** Drops every idle buffer (to the collector). */
  clear(): void {
    this.idle.clear();
    this.stats.idleBytes = 0;
  }
}

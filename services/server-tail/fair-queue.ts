/**
 * The tail worker's admission and scheduling: one bounded FIFO queue per device, served in turn (round robin
 * across the devices with requests waiting), `concurrency` tails at once. A burst from one robot fills its own
 * queue only: the next free slot goes to the next device in turn, so another robot waits for at most one tail per
 * slot ahead of it, not for the burst. A request for a device whose queue is full is refused at once (the worker
 * replies `overloaded` and the device runs the tail itself); the queue never grows past its bound.
 */

/** A place in a device's queue: resolves when it is this request's turn. */
export interface Turn {
  /** Resolves with the function that gives the slot back (call it exactly once). */
  started: Promise<() => void>;
}

/** Round-robin queues per device in front of `concurrency` slots. */
export class FairQueue {
  private readonly queues = new Map<string, Array<() => void>>();
  private active = 0;

  constructor(
    private readonly concurrency: number,
    /** Requests a device may have waiting; beyond them {@link FairQueue.enter} refuses. */
    private readonly perDevice: number,
  ) {
    if (!(concurrency >= 1)) throw new RangeError(`concurrency must be >= 1, got ${concurrency}`);
    if (!(perDevice >= 1)) throw new RangeError(`the queue per device must be >= 1, got ${perDevice}`);
  }

  /** Tails running. */
  get running(): number {
    return this.active;
  }

  /** Requests waiting, all devices. */
  get waiting(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.length;
    return n;
  }

  /** Requests waiting per device (devices with none are absent). */
  depths(): Record<string, number> {
    return Object.fromEntries([...this.queues].map(([d, q]) => [d, q.length]));
  }

  /** Queues a request of `device`; undefined when its queue is full (refuse it). */
  enter(device: string): Turn | undefined {
    const queue = this.queues.get(device) ?? [];
    if (queue.length >= this.perDevice) return undefined;
    const started = new Promise<() => void>((resolve) => {
      queue.push(() => resolve(this.releaser()));
    });
    // A device that had nothing waiting joins the end of the turn order.
    if (!this.queues.has(device)) this.queues.set(device, queue);
    this.dispatch();
    return { started };
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.active--;
      this.dispatch();
    };
  }

  /** Starts waiting requests while slots are free, one per device in turn. */
  private dispatch(): void {
    while (this.active < this.concurrency) {
      const next = this.queues.entries().next();
      if (next.done) return;
      const [device, queue] = next.value;
      const start = queue.shift()!;
      // The device goes to the end of the order, or leaves it with nothing waiting.
      this.queues.delete(device);
      if (queue.length > 0) this.queues.set(device, queue);
      this.active++;
      start();
    }
  }
}

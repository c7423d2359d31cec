/**
 * onnxruntime sessions loaded and run in runtime threads, off the service's event loop. onnxruntime-node loads and
 * runs a session synchronously on the calling thread: a tail worker loading AlexNet's fully connected tail (3-4 s)
 * answered nothing else meanwhile, so the frames in flight at the device's current cut missed their deadline and ran
 * again on the device; an edge loading or running a head could not read its PUBACKs. Here the service's loop only
 * passes tensors and stays free for MQTT, telemetry and timers.
 *
 * A process has a small pool of runtime threads ({@link POOL_SIZE}), started when a service starts (a thread takes
 * 0.1 s to start and load onnxruntime-node on an idle host, several times that on a busy one). A session lives in
 * the thread that loaded it, and each thread does one thing at a time, so a new session goes to a thread that is not
 * loading one already and holds the fewest: a tail being loaded does not hold up the runs of the tail in use, and
 * two sessions can run side by side on two cores.
 *
 * Protocol (the thread is model/session-thread.worker.js): a thread says `idle` once it has loaded
 * onnxruntime-node; `load` (a session id, the model bytes, the session options) is answered by `ready` (with the
 * session's input and output names) or `failed`; `run` (a run id, the session id, wire tensors) by `done` with the
 * output tensors, or `error`; `release` by `released`. Tensor bytes cross by transfer, not copy: a request's tensors
 * are copied once into buffers of their own (they are views over an MQTT payload), the outputs are the thread's own
 * buffers, handed over.
 */
import { Worker } from 'node:worker_threads';
import type { WireTensor } from '../schemas/codec.ts';
import { type RuntimeOptions, sessionOptions } from './runtime.ts';

const ENTRY = new URL('./session-thread.worker.js', import.meta.url);

/** Runtime threads per process, unless the service asks for more ({@link SessionThread.prestart}). */
export const POOL_SIZE = 2;
/** A session that has not loaded after this long (ms) is an error (AlexNet's largest tail loads in 2-4 s here). */
export const LOAD_TIMEOUT_MS = 120_000;

type Reply =
  | { type: 'idle' }
  | { type: 'ready'; sid: number; inputNames: string[]; outputNames: string[] }
  | { type: 'failed'; sid: number; message: string }
  | { type: 'released'; sid: number }
  | { type: 'done'; id: number; outputs: WireTensor[] }
  | { type: 'error'; id: number; message: string };

interface Waiter<T> {
  resolve(v: T): void;
  reject(e: Error): void;
}

/** One runtime thread and what waits on it. */
class RuntimeThread {
  /** The thread; set once the threads started before it are up (use it after {@link up}). */
  worker!: Worker;
  /** Resolves once the thread has loaded and initialised onnxruntime-node (or has died: see {@link dead}). */
  readonly up: Promise<void>;
  sessions = 0;
  loading = 0;
  dead: Error | undefined;
  readonly loads = new Map<number, Waiter<{ inputNames: string[]; outputNames: string[] }>>();
  readonly runs = new Map<number, Waiter<WireTensor[]>>();
  readonly releases = new Map<number, Waiter<void>>();
  /** Loads, runs and releases outstanding: the thread keeps the process alive only while some are. */
  private outstanding = 0;

  /**
   * Sends a request whose answer comes back under `key` in `waiting`; the thread keeps the process alive until it
   * does. After `timeoutMs`, the request is given up with `late` as the error.
   */
  ask<T>(
    waiting: Map<number, Waiter<T>>,
    key: number,
    message: unknown,
    transfer: ArrayBuffer[] = [],
    timeout?: { ms: number; late: string },
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.outstanding++ === 0) this.worker.ref();
      let timer: NodeJS.Timeout | undefined;
      if (timeout) {
        timer = setTimeout(() => this.answer(waiting, key)?.reject(new Error(timeout.late)), timeout.ms);
        timer.unref();
      }
      const done = () => clearTimeout(timer);
      waiting.set(key, {
        resolve: (v) => {
          done();
          resolve(v);
        },
        reject: (e) => {
          done();
          reject(e);
        },
      });
      this.worker.postMessage(message, transfer);
    });
  }

  /** The waiter of `key`, taken out of `waiting` (the last one outstanding unrefs the thread), if any. */
  answer<T>(waiting: Map<number, Waiter<T>>, key: number): Waiter<T> | undefined {
    const w = waiting.get(key);
    if (!w) return undefined;
    waiting.delete(key);
    if (--this.outstanding === 0 && this.isUp) this.worker.unref();
    return w;
  }

  private isUp = false;

  constructor() {
    let up: () => void = () => undefined;
    this.up = new Promise((resolve) => {
      up = resolve;
    });
    // One thread starts at a time, after the one before it is up (see model/session-thread.worker.js).
    const previous = starting;
    starting = this.up;
    void previous.then(() => this.start(up));
  }

  private start(up: () => void): void {
    this.worker = new Worker(ENTRY);
    this.worker.on('message', (m: Reply) => {
      switch (m.type) {
        case 'idle':
          this.isUp = true;
          if (this.outstanding === 0) this.worker.unref();
          up();
          break;
        case 'ready':
          this.answer(this.loads, m.sid)?.resolve(m);
          break;
        case 'failed':
          this.answer(this.loads, m.sid)?.reject(new Error(m.message));
          break;
        case 'released':
          this.answer(this.releases, m.sid)?.resolve();
          break;
        case 'done':
          this.answer(this.runs, m.id)?.resolve(m.outputs);
          break;
        case 'error':
          this.answer(this.runs, m.id)?.reject(new Error(m.message));
          break;
      }
    });
    const end = (why: Error) => {
      this.dead ??= why;
      const i = pool.indexOf(this);
      if (i >= 0) pool.splice(i, 1);
      for (const w of [...this.loads.values(), ...this.runs.values()]) w.reject(this.dead);
      for (const r of this.releases.values()) r.resolve();
      this.loads.clear();
      this.runs.clear();
      this.releases.clear();
      up();
    };
    this.worker.on('error', (err) => end(new Error(`the runtime thread failed: ${err.message}`)));
    this.worker.on('exit', (code) => end(new Error(`the runtime thread ended (exit code ${code})`)));
    // A thread keeps the process alive while it starts (the next one waits for it) and afterwards only while
    // something waits on it (ask/answer; unref comes with `idle`, after the listeners: adding one refs again).
  }
}

const pool: RuntimeThread[] = [];
/** The pool's size: {@link POOL_SIZE}, or what a service asked for when it started. */
let poolSize = POOL_SIZE;
/** Resolves when the thread started last is up: the next one starts then. */
let starting: Promise<void> = Promise.resolve();
let nextSid = 1;
let nextRun = 1;

/** The thread for a new session: a new one while the pool has room, else the least busy (not loading, fewest). */
function pickThread(): RuntimeThread {
  const idle = pool.filter((t) => t.loading === 0);
  if (pool.length < poolSize && (idle.length === 0 || idle.every((t) => t.sessions > 0))) {
    const t = new RuntimeThread();
    pool.push(t);
    return t;
  }
  const candidates = idle.length > 0 ? idle : pool;
  return candidates.reduce((a, b) =>
    b.sessions < a.sessions || (b.sessions === a.sessions && b.loading < a.loading) ? b : a,
  );
}

/** A session loaded in a runtime thread. */
export class SessionThread {
  private released: Promise<void> | undefined;

  private constructor(
    private readonly thread: RuntimeThread,
    private readonly sid: number,
    readonly inputNames: readonly string[],
    readonly outputNames: readonly string[],
  ) {}

  /**
   * Starts the runtime threads now, so that the first session does not wait for one; resolves when they are up (or
   * have failed: the first load then says why). Services await it when they start. `threads`: the pool's size, at
   * least {@link POOL_SIZE} (a tail worker loads two guessed tails while a third thread stays free for a plan's).
   */
  static prestart(threads = POOL_SIZE): Promise<void> {
    poolSize = Math.max(poolSize, threads);
    while (pool.length < poolSize) pool.push(new RuntimeThread());
    return Promise.all(pool.map((t) => t.up)).then(() => undefined);
  }

  /**
   * Loads a model into a session in a runtime thread. `owned`: the caller hands the bytes over (they are transferred,
   * and unusable here afterwards); otherwise they are copied.
   */
  static async create(model: Uint8Array, opts: RuntimeOptions = {}, owned = false): Promise<SessionThread> {
    const whole = model.byteOffset === 0 && model.byteLength === model.buffer.byteLength;
    // `new Uint8Array(view)` copies into a buffer of its own (a Buffer's `slice` is a view of the same memory).
    const bytes = owned && whole ? model : new Uint8Array(model);
    const thread = pickThread();
    const sid = nextSid++;
    thread.loading++;
    thread.sessions++;
    try {
      await thread.up;
      if (thread.dead) throw thread.dead;
      const names = await thread.ask(
        thread.loads,
        sid,
        { type: 'load', sid, model: bytes, options: sessionOptions(opts) },
        [bytes.buffer as ArrayBuffer],
        // A load that never answers is an error, not a service waiting forever.
        { ms: LOAD_TIMEOUT_MS, late: `no answer from its runtime thread within ${LOAD_TIMEOUT_MS / 1000} s` },
      );
      return new SessionThread(thread, sid, names.inputNames, names.outputNames);
    } catch (err) {
      thread.sessions--;
      throw new Error(`the session could not be loaded: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      thread.loading--;
    }
  }

  /** The runtime threads of this process, and how many of them are loading a session now. */
  static threads(): { threads: number; loading: number } {
    return { threads: pool.length, loading: pool.filter((t) => t.loading > 0).length };
  }

  /** Runs the session on wire tensors; resolves with its outputs, in the session's output order. */
  run(inputs: readonly WireTensor[]): Promise<WireTensor[]> {
    if (this.released !== undefined) return Promise.reject(new Error('the session was released'));
    if (this.thread.dead) return Promise.reject(this.thread.dead);
    const id = nextRun++;
    // Each tensor's bytes in a buffer of its own (a request's are views over its MQTT payload), handed over.
    const own = inputs.map((t) => ({
      name: t.name,
      dtype: t.dtype,
      shape: [...t.shape],
      data: new Uint8Array(t.data),
    }));
    return this.thread.ask(
      this.thread.runs,
      id,
      { type: 'run', id, sid: this.sid, inputs: own },
      own.map((t) => t.data.buffer as ArrayBuffer),
    );
  }

  /** Releases the session (runs sent before are answered first). Idempotent. */
  release(): Promise<void> {
    this.released ??= (async () => {
      if (this.thread.dead) return;
      await this.thread.ask(this.thread.releases, this.sid, { type: 'release', sid: this.sid });
      this.thread.sessions--;
    })();
    return this.released;
  }
}

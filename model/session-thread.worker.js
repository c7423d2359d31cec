// A runtime thread: onnxruntime sessions loaded and run off the service's event loop (model/session-thread.ts holds
// the other end and documents the protocol). Plain JavaScript: a worker thread does not inherit the tsx loader the
// services start with, and this side needs nothing but onnxruntime-node.
import { parentPort } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';

/** @type {Record<string, (buffer: ArrayBuffer, offset: number, length: number) => ArrayBufferView>} */
const VIEWS = {
  float32: (b, o, n) => new Float32Array(b, o, n),
  float16: (b, o, n) => new Uint16Array(b, o, n),
  int8: (b, o, n) => new Int8Array(b, o, n),
  uint8: (b, o, n) => new Uint8Array(b, o, n),
  int32: (b, o, n) => new Int32Array(b, o, n),
  int64: (b, o, n) => new BigInt64Array(b, o, n),
};
const BYTES = { float32: 4, float16: 2, int8: 1, uint8: 1, int32: 4, int64: 8 };

/** @param {{ name: string, dtype: string, shape: number[], data: Uint8Array }} t */
function toOrt(t) {
  const view = VIEWS[t.dtype];
  if (!view)
    throw new Error(`tensor ${t.name} has dtype ${t.dtype}, which the session thread does not carry`);
  const data = view(t.data.buffer, t.data.byteOffset, t.data.byteLength / BYTES[t.dtype]);
  return new ort.Tensor(/** @type {never} */ (t.dtype), /** @type {never} */ (data), t.shape);
}

/** @param {string} name @param {ort.Tensor} t */
function fromOrt(name, t) {
  const d = /** @type {ArrayBufferView} */ (t.data);
  return {
    name,
    dtype: t.type,
    shape: [...t.dims],
    data: new Uint8Array(d.buffer, d.byteOffset, d.byteLength),
  };
}

const port = parentPort;
if (!port) throw new Error('model/session-thread.worker.js runs as a worker thread only');

/** @type {Map<number, ort.InferenceSession>} */
const sessions = new Map();

const message = (err) => (err instanceof Error ? err.message : String(err));

async function handle(m) {
  if (m.type === 'load') {
    try {
      const session = await ort.InferenceSession.create(m.model, m.options);
      sessions.set(m.sid, session);
      port.postMessage({
        type: 'ready',
        sid: m.sid,
        inputNames: session.inputNames,
        outputNames: session.outputNames,
      });
    } catch (err) {
      port.postMessage({ type: 'failed', sid: m.sid, message: message(err) });
    }
    return;
  }
  if (m.type === 'release') {
    const session = sessions.get(m.sid);
    sessions.delete(m.sid);
    await session?.release().catch(() => undefined);
    port.postMessage({ type: 'released', sid: m.sid });
    return;
  }
  if (m.type !== 'run') return;
  try {
    const session = sessions.get(m.sid);
    if (!session) throw new Error('the session was released');
    const feeds = {};
    for (const t of m.inputs) feeds[t.name] = toOrt(t);
    const out = await session.run(feeds);
    const outputs = session.outputNames.map((name) => fromOrt(name, out[name]));
    const reply = { type: 'done', id: m.id, outputs };
    try {
      // The outputs' buffers are this thread's own: handed over, not copied.
      port.postMessage(reply, [...new Set(outputs.map((o) => o.data.buffer))]);
    } catch {
      port.postMessage(reply);
    }
  } catch (err) {
    port.postMessage({ type: 'error', id: m.id, message: message(err) });
  }
}

/** One message at a time, in order: a release waits for the runs sent before it. */
let queue = Promise.resolve();
port.on('message', (m) => {
  // A failed step must not stop the queue: every message after it would wait forever.
  queue = queue.then(() => handle(m)).catch(() => undefined);
});

// onnxruntime-node initialises itself with a thread's first session (its process-wide environment with the first
// of all): one tiny model (an Identity of one float) here, before the thread says it is ready, and the threads of a
// process start one after the other (model/session-thread.ts), so no two initialise at once.
const TINY = Buffer.from(
  'CAcSDGVkZ2VjdXQtdGVzdDo8ChIKAXgSAXkaACIISWRlbnRpdHkSBHRlc3RaDwoBeBIKCggIARIECgIIAWIPCgF5EgoKCAgBEgQKAggBQgQKABANcgYKAWsSAXY=',
  'base64',
);
try {
  await (await ort.InferenceSession.create(TINY)).release();
} catch {
  // A runtime that cannot load this cannot load any model either: the first real load says why.
}
port.postMessage({ type: 'idle' });

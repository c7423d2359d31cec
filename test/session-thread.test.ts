/**
 * A session in a thread of its own (model/session-thread.ts): the same outputs, bit for bit, as a session on the
 * calling thread; the calling thread's event loop keeps running while a large model loads; a failed load and a bad
 * run are one clear error each, and the session serves the next valid run; release ends the thread.
 */
import test from 'ava';
import { writeModel } from '../model/onnx.ts';
import { mulberry32 } from '../model/random.ts';
import { createSession, runWire } from '../model/runtime.ts';
import { SessionThread } from '../model/session-thread.ts';
import { tensorFromTyped } from '../schemas/codec.ts';
import { randomInputs } from '../services/edge-head/frames.ts';
import { model, node, vi, weight } from './helpers/graphs.ts';
import { demoModelDir } from './helpers/models.ts';

/** x [1, n] -> MatMul(W1 [n, n]) -> Relu -> MatMul(W2 [n, 10]): n = 2048 is 16 MiB of weights. */
function mlp(n: number): Uint8Array {
  return writeModel(
    model({
      node: [
        node('MatMul', ['x', 'W1'], ['a']),
        node('Relu', ['a'], ['b']),
        node('MatMul', ['b', 'W2'], ['y']),
      ],
      input: [vi('x', [1, n])],
      output: [vi('y', [1, 10])],
      initializer: [weight('W1', [n, n], 1), weight('W2', [n, 10], 2)],
    }),
  );
}

test('a session thread gives the same outputs, bit for bit, as a session on this thread', async (t) => {
  const { model: demo } = await demoModelDir(t);
  const here = await createSession(demo.bytes);
  const thread = await SessionThread.create(demo.bytes);
  t.teardown(() => thread.release());
  t.deepEqual([...thread.outputNames], [...here.outputNames]);
  const rand = mulberry32(7);
  for (let i = 0; i < 3; i++) {
    const inputs = randomInputs(demo.inputs, rand);
    // Inputs as a request holds them: views over a larger (MQTT payload) buffer.
    const payload = Buffer.alloc(16 + inputs.reduce((n, x) => n + x.data.byteLength, 0));
    let at = 16;
    for (const x of inputs) {
      payload.set(x.data, at);
      x.data = payload.subarray(at, at + x.data.byteLength);
      at += x.data.byteLength;
    }
    const copy = Buffer.from(payload);
    const [a, b] = await Promise.all([runWire(here, inputs), thread.run(inputs)]);
    // The caller's bytes were copied for the thread, not handed over: the payload is intact.
    t.true(payload.equals(copy));
    t.is(b.length, a.length);
    for (const [j, out] of a.entries()) {
      t.deepEqual(b[j]!.shape, out.shape);
      t.true(Buffer.from(b[j]!.data).equals(Buffer.from(out.data)), `output ${out.name}, frame ${i}`);
    }
  }
  // The caller's bytes were copied, not handed over: still usable here.
  t.true(demo.bytes.byteLength > 0);
});

test("this thread's event loop keeps running while a large model loads in its thread", async (t) => {
  const bytes = mlp(2048);
  let last = performance.now();
  let worst = 0;
  const tick = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last);
    last = now;
  }, 5);
  const started = performance.now();
  const session = await SessionThread.create(bytes, {}, true);
  const loadMs = performance.now() - started;
  clearInterval(tick);
  t.teardown(() => session.release());
  t.log(`load ${loadMs.toFixed(0)} ms, longest gap between 5 ms ticks ${worst.toFixed(0)} ms`);
  // The bytes were handed over (owned): nothing copied here.
  t.is(bytes.byteLength, 0);
  // The load takes the thread tens of milliseconds or more; the loop here never stood still for long. (A session on
  // this thread stalls it for the whole load.)
  t.true(
    worst < Math.max(50, loadMs / 2),
    `longest gap ${worst.toFixed(0)} ms during a ${loadMs.toFixed(0)} ms load`,
  );
  const x = tensorFromTyped('x', 'float32', [1, 2048], new Float32Array(2048).fill(0.5));
  const [y] = await session.run([x]);
  t.deepEqual(y!.shape, [1, 10]);
});

test('a bad model is one error naming it; a bad run is one error, and the next valid run is served', async (t) => {
  const err = await t.throwsAsync(SessionThread.create(new Uint8Array([1, 2, 3, 4])));
  t.regex(err!.message, /^the session could not be loaded: ./);
  const { model: demo } = await demoModelDir(t);
  const session = await SessionThread.create(demo.bytes);
  t.teardown(() => session.release());
  const wrong = await t.throwsAsync(
    session.run([tensorFromTyped('not-an-input', 'float32', [1], new Float32Array(1))]),
  );
  t.true(wrong!.message.length > 0);
  const ok = await session.run(randomInputs(demo.inputs, mulberry32(1)));
  t.true(ok.length > 0);
  await session.release();
  await t.throwsAsync(session.run(randomInputs(demo.inputs, mulberry32(1))), {
    message: 'the session was released',
  });
});

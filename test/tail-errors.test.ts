/**
 * A tail worker answers every malformed request with an Error reply naming the problem, and then serves the next
 * valid request. Real broker, real worker, raw MQTT client as the misbehaving device.
 */
import test from 'ava';
import { mulberry32 } from '../model/random.ts';
import { createSession, runWire } from '../model/runtime.ts';
import { silentLogger } from '../runtime/log.ts';
import {
  decodeMessage,
  type ErrorCode,
  emptyTimes,
  encodeRequest,
  type InferenceRequest,
  tensorFromTyped,
} from '../schemas/codec.ts';
import { topics } from '../schemas/topics.ts';
import { randomInputs } from '../services/edge-head/frames.ts';
import { TailWorker } from '../services/server-tail/worker.ts';
import { collect, connectClient, startBroker } from './helpers/broker.ts';
import { demoModelDir } from './helpers/models.ts';
import { tailOptions } from './helpers/services.ts';

test('malformed requests get error replies and the worker goes on', async (t) => {
  const broker = await startBroker(t);
  const { dir, model } = await demoModelDir(t);
  const worker = new TailWorker(
    tailOptions({
      mqttUrl: broker.url,
      workerId: 'tail-x',
      modelsDir: dir,
      maxRequestBytes: 4 << 20,
      concurrency: 1,
    }),
    silentLogger,
  );
  await worker.start();
  t.teardown(() => worker.stop());
  const device = 'bad-robot';
  const client = await connectClient(t, broker.url);
  const results = await collect(client, topics.result.build({ device }));
  const send = (payload: Uint8Array) =>
    client.publishAsync(topics.request.build({ device }), Buffer.from(payload), { qos: 1 });
  const reply = async () => decodeMessage((await results.next()).payload);

  // A valid request at the cut after node 1.
  const k = 1;
  const cut = model.cuts[k]!;
  const head = await createSession(model.part(k, 'head'));
  const inputs = randomInputs(model.inputs, mulberry32(3));
  const crossing = await runWire(head, inputs);
  const valid: InferenceRequest = {
    requestId: 'ok-1',
    deviceId: device,
    modelId: model.id,
    cutId: k,
    tensors: crossing,
    times: emptyTimes(),
    deadlineMs: 0,
  };
  const good = encodeRequest(valid);

  const cases: Array<{ name: string; payload: Uint8Array; code: ErrorCode; mentions: RegExp }> = [
    {
      name: 'random bytes',
      payload: Uint8Array.from({ length: 300 }, (_, i) => (i * 7919) % 251),
      code: 'malformed',
      mentions: /./,
    },
    {
      name: 'truncated FlatBuffer',
      payload: good.subarray(0, Math.floor(good.length / 2)),
      code: 'malformed',
      mentions: /./,
    },
    {
      name: 'wrong dtype',
      payload: encodeRequest({
        ...valid,
        requestId: 'dtype',
        tensors: [
          tensorFromTyped(
            cut.tensors[0]!.name,
            'int8',
            crossing[0]!.shape,
            new Int8Array(crossing[0]!.data.length / 4),
          ),
        ],
      }),
      code: 'bad-tensor',
      mentions: /int8.*float32|dtype/,
    },
    {
      name: 'wrong shape',
      payload: encodeRequest({
        ...valid,
        requestId: 'shape',
        tensors: [tensorFromTyped(cut.tensors[0]!.name, 'float32', [1, 2, 3], new Float32Array(6))],
      }),
      code: 'bad-tensor',
      mentions: /shape \[1,2,3\]/,
    },
    {
      name: 'unknown model',
      payload: encodeRequest({ ...valid, requestId: 'model', modelId: 'f'.repeat(64) }),
      code: 'unknown-model',
      mentions: /f{64}/,
    },
    {
      name: 'unknown cut',
      payload: encodeRequest({ ...valid, requestId: 'cut', cutId: 999 }),
      code: 'bad-tensor',
      mentions: /cut 999/,
    },
    {
      name: 'another device in the payload',
      payload: encodeRequest({ ...valid, requestId: 'dev', deviceId: 'other' }),
      code: 'malformed',
      mentions: /other/,
    },
    { name: 'oversized', payload: new Uint8Array(5 << 20), code: 'too-large', mentions: /limit/ },
  ];
  for (const c of cases) {
    await send(c.payload);
    const msg = await reply();
    t.is(msg.kind, 'error', c.name);
    if (msg.kind !== 'error') continue;
    t.is(msg.value.code, c.code, `${c.name}: ${msg.value.message}`);
    t.regex(msg.value.message, c.mentions, c.name);
    t.is(msg.value.workerId, 'tail-x');
  }
  // The worker still serves a valid request, and its answer is the whole model's.
  await send(good);
  const ok = await reply();
  t.is(ok.kind, 'result');
  if (ok.kind === 'result') {
    t.is(ok.value.requestId, 'ok-1');
    const whole = await runWire(await createSession(model.bytes), inputs);
    t.deepEqual(Buffer.from(ok.value.tensors[0]!.data), Buffer.from(whole[0]!.data));
  }
});

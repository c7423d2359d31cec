/**
 * The tail worker's telemetry tells a dashboard its queue and its throughput (schemas/messages.ts WorkerTelemetry):
 * `queueDepth` and `running` now, `served` so far and `servedPerSecond` over the last telemetry period. Injected
 * timers and clock (CONTRIBUTING.md, convention 8), so the period is exact; real embedded broker and onnxruntime.
 */
import test, { type ExecutionContext } from 'ava';
import type { ModelHandle } from '../model/handle.ts';
import { mulberry32 } from '../model/random.ts';
import { silentLogger } from '../runtime/log.ts';
import { decodeMessage, emptyTimes, encodeRequest } from '../schemas/codec.ts';
import { WorkerTelemetrySchema } from '../schemas/messages.ts';
import { topics } from '../schemas/topics.ts';
import { randomInputs } from '../services/edge-head/frames.ts';
import { TailWorker } from '../services/server-tail/worker.ts';
import { collect, connectClient, startBroker } from './helpers/broker.ts';
import { ManualTimers } from './helpers/manual-timers.ts';
import { demoModelDir } from './helpers/models.ts';
import { tailOptions } from './helpers/services.ts';
import { waitFor } from './helpers/wait.ts';

const MINUTE = 60_000;

/** Sends whole-model requests (cut 0) as one device; each resolves with the reply. */
async function requester(t: ExecutionContext, url: string, device: string) {
  const client = await connectClient(t, url);
  const replies = await collect(client, topics.result.build({ device }));
  return async (model: ModelHandle, n: number) => {
    const request = encodeRequest({
      requestId: `r${n}`,
      deviceId: device,
      modelId: model.id,
      cutId: 0,
      tensors: randomInputs(model.inputs, mulberry32(n)),
      times: emptyTimes(),
      deadlineMs: 0,
    });
    await client.publishAsync(topics.request.build({ device }), Buffer.from(request), { qos: 1 });
    return decodeMessage((await replies.next()).payload);
  };
}

test('worker telemetry carries queue depth, requests running and the throughput of its last period', async (t) => {
  const broker = await startBroker(t);
  const { dir, model } = await demoModelDir(t);
  const timers = new ManualTimers();
  const origin = Date.now();
  const clock = { now: () => origin + timers.now };
  const workerId = 'tail-throughput';
  const worker = new TailWorker(
    tailOptions({ mqttUrl: broker.url, workerId, modelsDir: dir, telemetryMs: MINUTE, timers }),
    silentLogger,
    clock,
  );
  await worker.start();
  t.teardown(() => worker.stop());
  const client = await connectClient(t, broker.url);
  const telemetry = await collect(client, topics.workerTelemetry.build({ worker: workerId }));
  const next = async () =>
    WorkerTelemetrySchema.parse(JSON.parse((await telemetry.next(5000)).payload.toString()));
  const request = await requester(t, broker.url, 'robot-throughput');
  let sent = 0;
  const serve = async (n: number) => {
    for (let i = 0; i < n; i++) t.is((await request(model, ++sent)).kind, 'result');
    await waitFor(() => worker.servedCount === sent, `${sent} requests to be counted`);
  };

  await serve(3);
  timers.advance(MINUTE);
  const first = await next();
  t.is(first.served, 3);
  t.is(first.servedPerSecond, 3 / 60, 'three results in the first minute');
  t.is(first.queueDepth, 0, 'nothing waits once every reply has come');
  t.is(first.running, 0);
  t.is(first.at, origin + MINUTE);

  timers.advance(MINUTE);
  const idle = await next();
  t.is(idle.served, 3, 'the count is cumulative');
  t.is(idle.servedPerSecond, 0, 'a minute without requests has no throughput');

  await serve(6);
  timers.advance(MINUTE);
  t.is((await next()).servedPerSecond, 6 / 60);
});

/**
 * Fairness in the tail worker (services/server-tail/fair-queue.ts): one bounded queue per device, served in turn.
 * A burst from one robot cannot make another wait behind it; the burst beyond its queue is refused with
 * `overloaded`; a request whose deadline passed while it waited is not run (`expired`). Real broker, real worker
 * with an emulated slow server, raw MQTT clients as the robots.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import type { MqttClient } from 'mqtt';
import { writeProfileFile } from '../measurement/profile-io.ts';
import { profileModel } from '../measurement/profiler.ts';
import { mulberry32 } from '../model/random.ts';
import { createSession, runWire } from '../model/runtime.ts';
import { silentLogger } from '../runtime/log.ts';
import { decodeMessage, emptyTimes, encodeRequest, type InferenceRequest } from '../schemas/codec.ts';
import { topics } from '../schemas/topics.ts';
import { randomInputs } from '../services/edge-head/frames.ts';
import { FairQueue } from '../services/server-tail/fair-queue.ts';
import { TailWorker } from '../services/server-tail/worker.ts';
import { connectClient } from './helpers/broker.ts';
import { waitFor } from './helpers/edge.ts';
import { demoModelDir } from './helpers/models.ts';
import { startMosquitto } from './helpers/mosquitto.ts';
import { tailOptions } from './helpers/services.ts';

test('the fair queue: devices in turn, a bound per device, slots given back', async (t) => {
  const q = new FairQueue(1, 2);
  const order: string[] = [];
  const run = async (device: string, name: string): Promise<void> => {
    const turn = q.enter(device);
    if (!turn) {
      order.push(`${name} refused`);
      return;
    }
    const release = await turn.started;
    order.push(name);
    await Promise.resolve();
    release();
  };
  // A queues a1 (runs at once), a2, a3; a4 is over A's bound of 2 waiting. B's b1 comes after and runs second.
  const all = [
    run('A', 'a1'),
    run('A', 'a2'),
    run('A', 'a3'),
    run('A', 'a4'),
    run('B', 'b1'),
    run('B', 'b2'),
  ];
  t.deepEqual(q.depths(), { A: 2, B: 2 });
  await Promise.all(all);
  t.deepEqual(order, ['a4 refused', 'a1', 'a2', 'b1', 'a3', 'b2']);
  t.is(q.running, 0);
  t.is(q.waiting, 0);
});

/** The emulation factor of the rig's worker: its tails take this many times the profile's time of their layers. */
const FACTOR = 10;

/**
 * Mosquitto, a worker with one slot serving the demo CNN's tail at cut 1 in `tailMs` (emulated: a given profile of
 * the model times FACTOR, so the time does not depend on this host's speed or load), its session warm, and every
 * reply it sends in order.
 */
async function rig(t: ExecutionContext, tailMs: number) {
  // A broker that passes a burst on as fast as it comes, Mosquitto: the embedded broker holds a burst back (a
  // publisher is read at the pace its messages are handled, and at most BROKER_SHARED_INFLIGHT of a device's
  // requests wait at a worker, broker/shared.ts), so that the worker's own bounds would not be what is tested.
  const broker = await startMosquitto(t);
  const { dir, model } = await demoModelDir(t);
  const k = 1;
  // The worker's profile of the model, given: every layer of the tail at cut k takes tailMs / FACTOR in all.
  const profiles = await mkdtemp(join(tmpdir(), 'edgecut-fair-profiles-'));
  t.teardown(() => rm(profiles, { recursive: true, force: true }));
  const measured = await profileModel(model, { runs: 1, warmup: 0, checkCuts: 0 });
  const layerMs = tailMs / FACTOR / (model.layers - k);
  await writeProfileFile(join(profiles, 'demo-cnn.json'), {
    ...measured,
    layers: measured.layers.map((l) => ({ ...l, ms: layerMs, p90: layerMs })),
  });
  // One slot, tails stretched to a slow server's (far longer than a message's way through the broker), 8 requests
  // per device at most waiting.
  const worker = new TailWorker(
    tailOptions({
      mqttUrl: broker.url,
      workerId: 'tail-fair',
      modelsDir: dir,
      concurrency: 1,
      deviceQueue: 8,
      emulateDevice: { kind: 'factor', factor: FACTOR },
      // The stretch needs the worker's profile of the model (here the given one); requests wait until it has it.
      profileRuns: 1,
      profilesDir: profiles,
    }),
    silentLogger,
  );
  await worker.start();
  t.teardown(() => worker.stop());
  const head = await createSession(model.part(k, 'head'));
  const crossing = await runWire(head, randomInputs(model.inputs, mulberry32(3)));
  const request = (device: string, id: string, deadlineMs = 0): Uint8Array => {
    const times = { ...emptyTimes(), sent: Date.now() };
    const r: InferenceRequest = {
      requestId: id,
      deviceId: device,
      modelId: model.id,
      cutId: k,
      tensors: crossing,
      times,
      deadlineMs: deadlineMs > 0 ? times.sent + deadlineMs : 0,
    };
    return encodeRequest(r);
  };
  // Every reply, in the order the worker sent them; results with their times on the worker's clock.
  const replies: Array<{
    device: string;
    id: string;
    kind: string;
    code?: string;
    received?: number;
    started?: number;
    ended?: number;
  }> = [];
  const observer = await connectClient(t, broker.url);
  observer.on('message', (topic, payload) => {
    const device = topics.result.match(topic)?.device ?? '?';
    const m = decodeMessage(payload);
    if (m.kind === 'error')
      replies.push({ device, id: m.value.requestId, kind: 'error', code: m.value.code });
    else if (m.kind === 'result')
      replies.push({
        device,
        id: m.value.requestId,
        kind: 'result',
        received: m.value.times.tailReceived,
        started: m.value.times.tailStart,
        ended: m.value.times.tailEnd,
      });
  });
  await observer.subscribeAsync(topics.result.filter(), { qos: 1 });
  const send = (client: MqttClient, device: string, id: string, deadlineMs = 0) =>
    client.publishAsync(topics.request.build({ device }), Buffer.from(request(device, id, deadlineMs)), {
      qos: 1,
    });
  // The session for the cut, loaded once before timing matters; its reply comes after the worker's profile.
  const warm = await connectClient(t, broker.url);
  await send(warm, 'warm', 'w0');
  await waitFor(() => replies.some((r) => r.id === 'w0'), 'the warm-up reply');
  const w0 = replies.find((r) => r.id === 'w0');
  t.is(w0?.kind, 'result');
  t.true(
    w0!.ended! - w0!.started! >= tailMs,
    `the tail took ${w0!.ended! - w0!.started!} ms, at least ${tailMs}`,
  );

  return { broker, send, replies };
}

test('a burst from one robot: the other robot is served in turn, the burst beyond its queue is refused', async (t) => {
  const { broker, send, replies } = await rig(t, 100);
  const a = await connectClient(t, broker.url);
  const b = await connectClient(t, broker.url);
  // Robot A: a burst of 200 requests at once. Its queue takes 8 (and the slot one); the rest are refused at once.
  await Promise.all(Array.from({ length: 200 }, (_, i) => send(a, 'robot-a', `a${i}`)));
  // Read all of it: every request of A answered but the 8 waiting and the one running.
  await waitFor(
    () => replies.filter((r) => r.device === 'robot-a').length >= 200 - 9,
    "the worker to have read A's burst",
  );
  // Robot B then asks for 5, one at a time, while A's queue is still full of waiting requests.
  for (let i = 0; i < 5; i++) {
    await send(b, 'robot-b', `b${i}`);
    await waitFor(() => replies.some((r) => r.id === `b${i}`), `b${i}'s reply`);
  }
  await waitFor(
    () => replies.filter((r) => r.device === 'robot-a').length === 200,
    "every reply to A's burst",
  );
  // On the worker's clock: the tails of A that started after a request of B arrived and before its own started.
  // In turn, at most one (A was ahead in the order); first come, first served, it would be A's whole queue.
  for (const r of replies.filter((x) => x.device === 'robot-b')) {
    t.is(r.kind, 'result');
    const ahead = replies.filter(
      (x) =>
        x.device === 'robot-a' && x.kind === 'result' && x.started! > r.received! && x.started! < r.started!,
    ).length;
    t.true(ahead <= 1, `${r.id} waited for ${ahead} of A's tails`);
  }
  const aReplies = replies.filter((r) => r.device === 'robot-a');
  const overloaded = aReplies.filter((r) => r.code === 'overloaded').length;
  const served = aReplies.filter((r) => r.kind === 'result').length;
  t.log(`A's burst of 200: ${served} served, ${overloaded} refused as overloaded`);
  t.true(overloaded >= 150, `${overloaded} overloaded`);
  t.is(served + overloaded, 200);
});

test('a request whose deadline passed while it waited for a slot is not run', async (t) => {
  const { broker, send, replies } = await rig(t, 500);
  // Robot C: 6 requests with a deadline of 1 ms, sent after 2 of A: in turn, each waits for a tail of A, past its
  // deadline, so it is not run. Tails of half a second: C's requests arrive while A's first is running even on a
  // loaded host.
  const a = await connectClient(t, broker.url);
  const c = await connectClient(t, broker.url);
  await Promise.all(Array.from({ length: 2 }, (_, i) => send(a, 'robot-a', `a-busy${i}`)));
  await Promise.all(Array.from({ length: 6 }, (_, i) => send(c, 'robot-c', `c${i}`, 1)));
  await waitFor(
    () => replies.filter((r) => r.device === 'robot-c').length === 6,
    "every reply to C's requests",
  );
  // A's tails may all have finished before C's first request arrives on a busy host (the requests cross the broker
  // and the worker's socket one by one): that one then starts at once, within its deadline, and is run. Every other
  // request of C waits behind a tail, past its deadline, and is not run.
  const codes = replies.filter((r) => r.device === 'robot-c').map((r) => r.code);
  const expired = codes.filter((code) => code === 'expired').length;
  t.true(expired >= 5, `C's replies: ${codes.map(String).join(', ')}`);
  t.true(
    codes.every((code) => code === 'expired' || code === undefined),
    `C's replies: ${codes.map(String).join(', ')}`,
  );
});

/**
 * The tail workers' use of a shared subscription, through the services' own `Connection` (mqtt.js, re-subscribing
 * after every reconnect), on the embedded broker and on Mosquitto: every request is taken by exactly one worker,
 * also while a worker's connection breaks and comes back.
 */
import type { Socket } from 'node:net';
import type { ExecutionContext } from 'ava';
import { silentLogger } from '../runtime/log.ts';
import { Connection } from '../runtime/mqtt.ts';
import { sharedFilter, TAIL_GROUP, topics } from '../schemas/topics.ts';
import { forEachBroker } from './helpers/mosquitto.ts';
import { waitFor } from './helpers/wait.ts';

async function worker(
  t: ExecutionContext,
  url: string,
  id: string,
  taken: Map<string, string[]>,
  reconnectPeriodMs = 100,
) {
  const conn = new Connection({
    url,
    clientId: id,
    role: 'worker',
    statusTopic: topics.workerStatus.build({ worker: id }),
    logger: silentLogger,
    reconnectPeriodMs,
  });
  await conn.start();
  t.teardown(() => conn.stop());
  const mine: string[] = [];
  taken.set(id, mine);
  await conn.subscribe(sharedFilter(TAIL_GROUP, topics.request.filter()), (_topic, payload) => {
    mine.push(payload.toString());
  });
  // A topic of its own, subscribed after the group's (also on every reconnect): a marker it receives there shows
  // the broker has its group subscription, and has delivered what it sent the worker before.
  const markers = new Set<string>();
  await conn.subscribe(`fence/${id}`, (_topic, payload) => void markers.add(payload.toString()));
  return Object.assign(conn, { fenceTopic: `fence/${id}`, markers });
}

let marks = 0;

/** Publishes markers to each worker's own topic, one every 200 ms, until it has received one. */
async function reach(robot: Connection, workers: Array<Awaited<ReturnType<typeof worker>>>) {
  for (const w of workers) {
    const marker = `marker-${++marks}`;
    const deadline = Date.now() + 5000;
    while (!w.markers.has(marker)) {
      if (Date.now() > deadline) throw new Error(`${w.fenceTopic} got no marker within 5 s`);
      await robot.publish(w.fenceTopic, marker, { qos: 1 });
      await waitFor(() => w.markers.has(marker), 'a marker', 200).catch(() => undefined);
    }
  }
}

async function device(t: ExecutionContext, url: string) {
  const conn = new Connection({
    url,
    clientId: 'robot-1',
    role: 'device',
    statusTopic: topics.deviceStatus.build({ device: 'robot-1' }),
    logger: silentLogger,
  });
  await conn.start();
  t.teardown(() => conn.stop());
  return conn;
}

forEachBroker('tail workers in TAIL_GROUP take each request once', async (t, url) => {
  const taken = new Map<string, string[]>();
  const workers = [];
  for (const id of ['tail-a', 'tail-b', 'tail-c']) workers.push(await worker(t, url, id, taken));
  const robot = await device(t, url);
  const topic = topics.request.build({ device: 'robot-1' });
  for (let i = 0; i < 90; i++) await robot.publish(topic, `req-${i}`);
  const all = () => [...taken.values()].flat();
  await waitFor(() => all().length >= 90, '90 requests taken', 5000);
  await reach(robot, workers);
  t.is(all().length, 90);
  t.is(new Set(all()).size, 90);
  for (const [id, got] of taken) t.true(got.length > 0, id);
});

forEachBroker('a worker whose connection breaks rejoins the group when it reconnects', async (t, url) => {
  const taken = new Map<string, string[]>();
  // It reconnects after 600 ms, the requests of the meantime go to the other worker.
  const a = await worker(t, url, 'tail-a', taken, 600);
  const b = await worker(t, url, 'tail-b', taken);
  const robot = await device(t, url);
  const topic = topics.request.build({ device: 'robot-1' });
  // The broker has seen the connection end, so that no request goes to it (Mosquitto would drop that one), when
  // a's will arrives.
  let gone = false;
  await robot.subscribe(topics.workerStatus.build({ worker: 'tail-a' }), (_topic, payload, packet) => {
    if (!packet.retain && JSON.parse(payload.toString()).state === 'offline') gone = true;
  });
  (a.mqtt.stream as Socket).destroy();
  await waitFor(() => gone, "worker a's will", 5000);
  for (let i = 0; i < 10; i++) await robot.publish(topic, `away-${i}`);
  await waitFor(() => a.connected, 'worker a to reconnect', 5000);
  await reach(robot, [a]);
  for (let i = 0; i < 40; i++) await robot.publish(topic, `back-${i}`);
  const all = () => [...taken.values()].flat();
  await waitFor(() => all().length >= 50, '50 requests taken', 5000);
  await reach(robot, [a, b]);
  t.is(new Set(all()).size, 50);
  t.is(all().length, 50);
  t.true(taken.get('tail-a')!.some((p) => p.startsWith('back-')));
  t.is(taken.get('tail-b')!.filter((p) => p.startsWith('away-')).length, 10);
});

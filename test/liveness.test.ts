/**
 * Availability through the broker: each service publishes a retained `online` after connecting, a retained
 * `offline` when it stops cleanly, and its Last Will says `offline` when it vanishes.
 */
import test from 'ava';
import { silentLogger } from '../runtime/log.ts';
import { Connection } from '../runtime/mqtt.ts';
import { StatusSchema } from '../schemas/messages.ts';
import { topics } from '../schemas/topics.ts';
import { collect, connectClient, startBroker } from './helpers/broker.ts';

const status = (payload: Buffer) => StatusSchema.parse(JSON.parse(payload.toString()));

test('online after connect, offline after a clean stop (both retained)', async (t) => {
  const broker = await startBroker(t);
  const topic = topics.workerStatus.build({ worker: 'w1' });
  const conn = new Connection({
    url: broker.url,
    clientId: 'w1',
    role: 'worker',
    statusTopic: topic,
    logger: silentLogger,
  });
  await conn.start();
  t.teardown(() => conn.stop());
  const watcher = await connectClient(t, broker.url);
  const seen = await collect(watcher, topic);
  const first = await seen.next();
  t.true(first.payload.length > 0);
  t.like(status(first.payload), { state: 'online', role: 'worker', id: 'w1' });
  await conn.stop();
  t.like(status((await seen.next()).payload), { state: 'offline' });
  // A late subscriber still learns it (retained).
  const late = await connectClient(t, broker.url);
  t.like(status((await (await collect(late, topic)).next()).payload), { state: 'offline' });
});

test('the Last Will says offline when a service dies without a goodbye', async (t) => {
  const broker = await startBroker(t);
  const topic = topics.deviceStatus.build({ device: 'r9' });
  const conn = new Connection({
    url: broker.url,
    clientId: 'r9',
    role: 'device',
    statusTopic: topic,
    logger: silentLogger,
  });
  await conn.start();
  const watcher = await connectClient(t, broker.url);
  const seen = await collect(watcher, topic);
  t.like(status((await seen.next()).payload), { state: 'online' });
  // Kill the socket without DISCONNECT: the broker must publish the will [MQTT-3.1.2-8].
  conn.mqtt.stream.destroy();
  conn.mqtt.end(true);
  t.like(status((await seen.next()).payload), { state: 'offline', id: 'r9' });
});

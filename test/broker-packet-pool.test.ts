/**
 * Reusing large packets' buffers (broker/packet-pool.ts): a buffer goes back to the pool only when shared
 * subscriptions were its only readers and every delivery of it is complete, so no reader ever sees another
 * message's bytes: a plain subscriber that reads slowly, a persistent session's queue, a retained message, and a
 * member that acknowledges messages before reading them all get their payloads byte-exact while the pool reuses
 * buffers around them.
 */
import { createHash } from 'node:crypto';
import test from 'ava';
import type { MqttClient } from 'mqtt';
import { PacketPool, POOL_CLASS_BYTES } from '../broker/packet-pool.ts';
import { collect, connectClient, startBroker } from './helpers/broker.ts';
import { RawClient } from './helpers/raw-mqtt.ts';
import { waitFor } from './helpers/wait.ts';

const SIZE = 256 * 1024;

/** Message `i`'s payload: its index, then a pattern only it has. */
function payloadOf(i: number, size = SIZE): Buffer {
  const b = Buffer.alloc(size, createHash('sha256').update(`message ${i}`).digest());
  b.writeUInt32BE(i, 0);
  return b;
}

/** Checks that every payload is the message its index names; returns the indexes. */
function indexesOf(t: import('ava').ExecutionContext, payloads: Buffer[]): number[] {
  return payloads.map((p) => {
    const i = p.readUInt32BE(0);
    t.true(p.equals(payloadOf(i, p.length)), `message ${i} arrived byte-exact`);
    return i;
  });
}

/** Publishes messages `from` .. `to - 1` at QoS 1, up to 4 unacknowledged at once. */
async function publishRange(client: MqttClient, topic: string, from: number, to: number): Promise<void> {
  for (let i = from; i < to; i += 4) {
    const batch = [];
    for (let j = i; j < Math.min(to, i + 4); j++)
      batch.push(client.publishAsync(topic, payloadOf(j), { qos: 1 }));
    await Promise.all(batch);
  }
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, k) => from + k);
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);

test('the pool returns a buffer only when published, checked, not pinned and no delivery is open', (t) => {
  const pool = new PacketPool(4 * POOL_CLASS_BYTES);
  const a = pool.take(5000);
  t.is(a.length, 5000);
  t.is(a.buffer.byteLength, 2 * POOL_CLASS_BYTES);
  const lease = pool.lease(a.subarray(100))!;
  lease.open = 1;
  lease.checked = true;
  pool.settle(a);
  t.is(pool.stats.returned, 0, 'not yet published');
  lease.published = true;
  pool.settle(a);
  t.is(pool.stats.returned, 0, 'a delivery is open');
  lease.open = 0;
  pool.settle(a);
  t.is(pool.stats.returned, 1);
  const b = pool.take(6000);
  t.is(b.buffer, a.buffer, 'the same size class reuses it');
  t.is(pool.stats.reused, 1);
  // Pinned, or never checked by a group: left to the collector.
  const c = pool.take(6000);
  Object.assign(pool.lease(c)!, { published: true, checked: true });
  pool.pin(c);
  pool.settle(c);
  const d = pool.take(6000);
  Object.assign(pool.lease(d)!, { published: true });
  pool.settle(d);
  t.is(pool.stats.returned, 1);
  t.is(pool.lease(Buffer.alloc(10)), undefined, 'a buffer not from the pool has no lease');
});

test('the pool keeps at most its idle bytes, letting the size classes returned longest ago go', (t) => {
  const pool = new PacketPool(4 * POOL_CLASS_BYTES);
  const give = (b: Buffer) => {
    Object.assign(pool.lease(b)!, { published: true, checked: true });
    pool.settle(b);
  };
  const small = [pool.take(100), pool.take(100)];
  const big = pool.take(3 * POOL_CLASS_BYTES);
  for (const b of small) give(b);
  t.is(pool.stats.idleBytes, 2 * POOL_CLASS_BYTES);
  give(big);
  t.is(pool.stats.idleBytes, 3 * POOL_CLASS_BYTES, 'the small class went to make room');
  t.is(pool.take(3 * POOL_CLASS_BYTES).buffer, big.buffer);
  const huge = pool.take(5 * POOL_CLASS_BYTES);
  give(huge);
  t.is(pool.stats.idleBytes, 0, 'a buffer larger than the pool is not kept');
});

test('through a $share group, buffers are reused and every message arrives byte-exact', async (t) => {
  const broker = await startBroker(t);
  const members = await Promise.all([connectClient(t, broker.url), connectClient(t, broker.url)]);
  const got = await Promise.all(members.map((m) => collect(m, '$share/g/pool/#')));
  const pub = await connectClient(t, broker.url);
  await publishRange(pub, 'pool/a', 0, 60);
  await waitFor(() => got[0]!.all.length + got[1]!.all.length === 60, '60 messages at the members');
  const indexes = indexesOf(
    t,
    [...got[0]!.all, ...got[1]!.all].map((m) => m.payload),
  );
  t.deepEqual(sorted(indexes), range(0, 60));
  t.true(broker.packetPool.stats.reused >= 30, JSON.stringify(broker.packetPool.stats));
});

test('a plain subscriber that reads slowly gets every message intact: its packets are pinned', async (t) => {
  const broker = await startBroker(t);
  const member = await connectClient(t, broker.url);
  const group = await collect(member, '$share/g/pool/#');
  const plain = await RawClient.connect(t, broker.url, { clientId: 'slow-plain' });
  await plain.subscribe(['pool/#', 1]);
  plain.socket.pause();
  const pub = await connectClient(t, broker.url);
  // The plain subscriber's 4 MiB window holds the publisher back; publishing goes on as it reads.
  const published = publishRange(pub, 'pool/a', 0, 40);
  await waitFor(() => group.all.length >= 10, 'the group to take messages');
  plain.socket.resume();
  await published;
  await plain.waitMessages(40, 20_000);
  await waitFor(() => group.all.length === 40, 'the group to take all');
  t.deepEqual(
    indexesOf(
      t,
      plain.messages.map((m) => m.payload),
    ),
    range(0, 40),
  );
  t.deepEqual(
    sorted(
      indexesOf(
        t,
        group.all.map((m) => m.payload),
      ),
    ),
    range(0, 40),
  );
  t.is(broker.packetPool.stats.returned, 0, 'no packet a plain subscription read was reused');
});

test('a persistent session queue and a retained message keep their payloads while the pool reuses buffers', async (t) => {
  const broker = await startBroker(t);
  const offline = await connectClient(t, broker.url, { clientId: 'offline-sub', clean: false });
  await offline.subscribeAsync('pool/queued', { qos: 1 });
  await offline.endAsync();
  const member = await connectClient(t, broker.url);
  const group = await collect(member, '$share/g/pool/#');
  const pub = await connectClient(t, broker.url);
  await pub.publishAsync('pool/retained', payloadOf(1000), { qos: 1, retain: true });
  await publishRange(pub, 'pool/queued', 0, 10);
  // Then traffic only the group reads, whose buffers are reused.
  await publishRange(pub, 'pool/other', 10, 50);
  await waitFor(() => group.all.length === 51, 'the group to take all');
  t.true(broker.packetPool.stats.reused >= 20, JSON.stringify(broker.packetPool.stats));
  const back = await connectClient(t, broker.url, { clientId: 'offline-sub', clean: false });
  const queued: Buffer[] = [];
  back.on('message', (_topic, payload) => queued.push(payload));
  await waitFor(() => queued.length === 10, 'the queued messages');
  t.deepEqual(indexesOf(t, queued), range(0, 10));
  const late = await connectClient(t, broker.url);
  const retained = await collect(late, 'pool/retained');
  t.deepEqual(indexesOf(t, [(await retained.next()).payload]), [1000]);
  t.deepEqual(
    sorted(
      indexesOf(
        t,
        group.all.map((m) => m.payload),
      ),
    ),
    [...range(0, 50), 1000].sort((a, b) => a - b),
  );
});

test('a member that acknowledges messages before reading them gets them intact: a delivery completes only once written', async (t) => {
  const broker = await startBroker(t);
  const early = await RawClient.connect(t, broker.url, { clientId: 'early-acker', autoAck: false });
  t.deepEqual(await early.subscribe(['$share/g/pool/#', 1]), [1]);
  early.socket.pause();
  // Acknowledges the identifiers the broker will use, without reading a byte. (An attacker would guess them; the
  // test reads where aedes starts the connection's sequence.)
  const aedes = (broker as unknown as { aedes: { clients: Record<string, { _nextId: number }> } }).aedes;
  const first = aedes.clients['early-acker']!._nextId;
  const acker = setInterval(() => {
    for (let k = 0; k < 130; k++) early.puback(((first - 1 + k) % 0xffff) + 1);
  }, 5);
  t.teardown(() => clearInterval(acker));
  const pub = await connectClient(t, broker.url);
  await publishRange(pub, 'pool/a', 0, 120);
  clearInterval(acker);
  t.true(broker.packetPool.stats.reused > 0, JSON.stringify(broker.packetPool.stats));
  early.socket.resume();
  await early.waitMessages(120, 20_000);
  t.deepEqual(
    indexesOf(
      t,
      early.messages.map((m) => m.payload),
    ),
    range(0, 120),
  );
});

/**
 * Shared subscriptions (`$share/<group>/<filter>`) of the embedded broker, which the tail workers compete through.
 * Standard behaviour runs on the embedded broker and on Mosquitto; where Mosquitto 2.0.11 differs, its test is a
 * `test.failing` naming the difference. The distribution strategy (fewest messages in flight, round-robin among
 * equals) and the queue of a group without connected members are the embedded broker's own.
 */
import test, { type ExecutionContext } from 'ava';
import mqtt from 'mqtt';
import { PAUSE_AFTER } from '../broker/shared.ts';
import { encodePublish } from '../broker/wire.ts';
import { sharedFilter } from '../schemas/topics.ts';
import { startBroker } from './helpers/broker.ts';
import { connectNoDelay, forEachBroker } from './helpers/mosquitto.ts';
import { fence, isFence, RawClient, type RawConnectOptions, receivedBefore } from './helpers/raw-mqtt.ts';
import { sleep, waitFor } from './helpers/wait.ts';

let ids = 0;
const cid = (name: string) => `${name}-${process.pid}-${++ids}`;

/** A raw client subscribed to `filter` at `qos`. */
async function member(
  t: ExecutionContext,
  url: string,
  filter: string,
  qos = 1,
  opts: Partial<RawConnectOptions> = {},
): Promise<RawClient> {
  const c = await RawClient.connect(t, url, { clientId: cid('member'), ...opts });
  t.deepEqual(await c.subscribe([filter, qos]), [Math.min(qos, 1)]);
  return c;
}

async function publisher(t: ExecutionContext, url: string): Promise<RawClient> {
  return RawClient.connect(t, url, { clientId: cid('pub') });
}

/** Publishes `m0`..`m<n-1>` (numbered from `from`) at QoS `qos`, each after the previous one's PUBACK. */
async function publishMany(
  pub: RawClient,
  topic: string,
  n: number,
  qos: 0 | 1 = 1,
  from = 0,
): Promise<void> {
  for (let i = from; i < from + n; i++) await pub.publish(topic, `m${i}`, { qos });
}

/** Waits until the clients together hold `count` messages. */
async function waitTotal(clients: RawClient[], count: number, timeoutMs = 5000): Promise<void> {
  const total = () => clients.reduce((n, c) => n + payloads(c).length, 0);
  await waitFor(
    () => total() >= count,
    `${count} messages (${clients.map((c) => payloads(c).length).join('+')})`,
    timeoutMs,
  );
}

/** A client's payloads, without the markers `fence` sent it. */
const payloads = (c: RawClient) => c.messages.filter((m) => !isFence(m)).map((m) => m.payload.toString());
const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => `m${from + i}`);

/** An embedded broker with the given shared-subscription options. */
const brokerWith = (t: ExecutionContext, shared: Parameters<typeof startBroker>[3]) =>
  startBroker(t, false, 0, shared);

forEachBroker(
  'three members share 300 messages: each gets some, none twice, all delivered',
  async (t, url) => {
    const filter = sharedFilter('tails', 'edgecut/v1/devices/+/request');
    const members = [
      await member(t, url, filter),
      await member(t, url, filter),
      await member(t, url, filter),
    ];
    const pub = await publisher(t, url);
    await publishMany(pub, 'edgecut/v1/devices/d1/request', 300);
    await waitTotal(members, 300);
    await fence(members, pub);
    const all = members.flatMap(payloads);
    t.is(all.length, 300);
    t.deepEqual([...new Set(all)].sort(), range(300).sort());
    for (const m of members) t.true(m.messages.length > 0);
    t.true(
      members.every((m) =>
        m.messages
          .filter((x) => !isFence(x))
          .every((x) => x.topic === 'edgecut/v1/devices/d1/request' && !x.retain),
      ),
    );
  },
);

forEachBroker('plain subscribers still get every message', async (t, url) => {
  const plain = await member(t, url, 'p/+/x');
  const shared = [await member(t, url, '$share/g/p/+/x'), await member(t, url, '$share/g/p/+/x')];
  const pub = await publisher(t, url);
  await publishMany(pub, 'p/a/x', 50);
  await plain.waitMessages(50);
  await waitTotal(shared, 50);
  t.deepEqual(payloads(plain), range(50));
});

forEachBroker('each shared subscription on overlapping filters gets one copy', async (t, url) => {
  const g1 = [await member(t, url, '$share/g1/o/+/x'), await member(t, url, '$share/g1/o/+/x')];
  const g1all = [await member(t, url, '$share/g1/o/#'), await member(t, url, '$share/g1/o/#')];
  const g2 = [await member(t, url, '$share/g2/o/#'), await member(t, url, '$share/g2/o/#')];
  const pub = await publisher(t, url);
  await publishMany(pub, 'o/a/x', 20);
  for (const group of [g1, g1all, g2]) await waitTotal(group, 20);
  await fence([...g1, ...g1all, ...g2], pub);
  for (const group of [g1, g1all, g2]) t.deepEqual(group.flatMap(payloads).sort(), range(20).sort());
});

forEachBroker('a member that disconnects, cleanly or not, leaves the group', async (t, url) => {
  // The killed member's will tells when the broker has seen it go.
  const will = { topic: `l/will/${cid('b')}`, payload: 'gone', qos: 1 as const };
  const [a, b, c] = [
    await member(t, url, '$share/g/l/x'),
    await member(t, url, '$share/g/l/x', 1, { will }),
    await member(t, url, '$share/g/l/x'),
  ];
  const pub = await publisher(t, url);
  t.deepEqual(await pub.subscribe([will.topic, 1]), [1]);
  await a!.disconnect();
  b!.kill();
  await pub.waitMessages(1);
  await publishMany(pub, 'l/x', 10);
  await c!.waitMessages(10);
  t.deepEqual(payloads(c!), range(10));
});

forEachBroker('a member that unsubscribes leaves the group', async (t, url) => {
  const [a, b] = [await member(t, url, '$share/g/u/x'), await member(t, url, '$share/g/u/x')];
  await a!.unsubscribe('$share/g/u/x');
  const pub = await publisher(t, url);
  await publishMany(pub, 'u/x', 10);
  await b!.waitMessages(10);
  await fence([a!], pub);
  t.deepEqual(payloads(a!), []);
});

forEachBroker('a shared subscription delivers at min(published QoS, subscription QoS)', async (t, url) => {
  const q0 = await member(t, url, '$share/g0/q/x', 0);
  const q1 = await member(t, url, '$share/g1/q/x', 1);
  const pub = await publisher(t, url);
  await pub.publish('q/x', 'one', { qos: 1 });
  await pub.publish('q/x', 'zero', { qos: 0 });
  t.deepEqual(
    (await q0.waitMessages(2)).map((m) => m.qos),
    [0, 0],
  );
  t.deepEqual(
    (await q1.waitMessages(2)).map((m) => m.qos),
    [1, 0],
  );
});

forEachBroker(
  'QoS 1 messages a killed member never acknowledged go to another member',
  async (t, url, broker) => {
    const holder = await member(t, url, '$share/g/r/x', 1, { autoAck: false });
    const other = await member(t, url, '$share/g/r/x');
    const pub = await publisher(t, url);
    await publishMany(pub, 'r/x', 10);
    await waitTotal([holder, other], 10);
    const held = payloads(holder);
    t.true(held.length > 0);
    holder.kill();
    await other.waitMessages(10, 3000);
    await fence([other], pub);
    // Every message reached the surviving member exactly once; the held ones again, marked as re-deliveries.
    t.deepEqual(payloads(other).sort(), range(10).sort());
    const again = other.messages.filter((m) => held.includes(m.payload.toString()));
    t.is(again.length, held.length);
    if (broker === 'aedes') t.true(again.every((m) => m.dup && m.qos === 1));
  },
  { deviates: { mosquitto: 'Mosquitto 2.0.11 drops the in-flight messages of a clean session that ends' } },
);

forEachBroker(
  'retained messages are not sent to a new shared subscription (MQTT 5 §4.8.2)',
  async (t, url) => {
    const pub = await publisher(t, url);
    await pub.publish('ret/x', 'state', { qos: 1, retain: true });
    const m = await member(t, url, '$share/g/ret/+');
    // A retained message would have been sent with the SUBACK, before a message published after it.
    t.deepEqual(await receivedBefore(m, pub, 'ret/x'), []);
    t.like(m.messages[0], { retain: false });
  },
  { deviates: { mosquitto: 'Mosquitto 2.0.11 sends retained messages to 3.1.1 shared subscriptions' } },
);

forEachBroker(
  'a persistent member that reconnects gets the QoS 1 messages published while it was away',
  async (t, url) => {
    const id = cid('durable');
    const first = await member(t, url, '$share/g/d/x', 1, { clientId: id, clean: false });
    await first.disconnect();
    const pub = await publisher(t, url);
    await publishMany(pub, 'd/x', 5);
    const again = await RawClient.connect(t, url, { clientId: id, clean: false });
    t.true(again.connack.sessionPresent);
    await again.waitMessages(5);
    t.deepEqual(payloads(again), range(5));
    await again.disconnect();
    await (await RawClient.connect(t, url, { clientId: id, clean: true })).disconnect();
  },
);

test('a slow member that holds its acknowledgements gets fewer messages', async (t) => {
  const broker = await startBroker(t);
  const slow = await member(t, broker.url, '$share/g/s/x', 1, { autoAck: false });
  const fast = await member(t, broker.url, '$share/g/s/x');
  const pub = await publisher(t, broker.url);
  await publishMany(pub, 's/x', 100);
  await waitTotal([slow, fast], 100);
  t.log(`slow ${slow.messages.length}, fast ${fast.messages.length}`);
  t.true(slow.messages.length <= 5);
  t.true(fast.messages.length >= 95);
  // It catches up once it acknowledges: the next messages go to it until it is level with the fast one.
  for (const m of slow.messages) slow.puback(m.messageId!);
  await waitFor(() => broker.sharedStats()[0]?.inflight === 0, 'the PUBACKs to be handled');
  const [stats] = broker.sharedStats();
  t.like(stats, { key: '$share/g/s/x', members: 2, connected: 2, inflight: 0, queued: 0, delivered: 100 });
});

test('equal members take turns', async (t) => {
  // Room for all 30 unacknowledged: the in-flight bound is not what this is about.
  const broker = await brokerWith(t, { maxInflight: 10 });
  // QoS 0 members never have anything in flight; QoS 1 members that hold their acknowledgements stay level.
  for (const qos of [0, 1]) {
    const filter = `$share/turns${qos}/t/x`;
    const members = [
      await member(t, broker.url, filter, qos, { autoAck: false }),
      await member(t, broker.url, filter, qos, { autoAck: false }),
      await member(t, broker.url, filter, qos, { autoAck: false }),
    ];
    const pub = await publisher(t, broker.url);
    await publishMany(pub, 't/x', 30, 1, 0);
    await waitTotal(members, 30);
    members.forEach((m, k) => {
      t.deepEqual(
        payloads(m),
        range(30).filter((_, i) => i % 3 === k),
        `qos ${qos}`,
      );
    });
  }
});

test('QoS 1 messages for a group without connected members wait for the next member, within the bound', async (t) => {
  const broker = await brokerWith(t, { maxQueued: 5 });
  const away = await member(t, broker.url, '$share/g/w/x', 1, { clientId: cid('away'), clean: false });
  await away.disconnect();
  const pub = await publisher(t, broker.url);
  await publishMany(pub, 'w/x', 3, 0);
  await publishMany(pub, 'w/x', 8, 1, 3);
  t.like(broker.sharedStats()[0], { members: 1, connected: 0, queued: 5, dropped: 6 });
  // The oldest QoS 1 messages were dropped for the bound, the QoS 0 ones at once.
  const next = await member(t, broker.url, '$share/g/w/x');
  t.deepEqual(
    (await receivedBefore(next, pub, 'w/x')).map((m) => m.payload.toString()),
    range(5, 6),
  );
  t.true(next.messages.every((m) => !m.dup));
});

test('a member has at most maxInflight unacknowledged per topic; the rest wait in queues per topic, in turns', async (t) => {
  const broker = await brokerWith(t, { maxInflight: 2 });
  const m = await member(t, broker.url, '$share/g/req/+', 1, { autoAck: false });
  const a = await publisher(t, broker.url);
  const b = await publisher(t, broker.url);
  const c = await publisher(t, broker.url);
  await publishMany(a, 'req/a', 10);
  await m.waitMessages(2);
  // Robot A's burst does not fill the member's socket: two in flight, the rest in the broker.
  t.like(broker.sharedStats()[0], { inflight: 2, queued: 8, dropped: 0 });
  // Robot B's requests go at once, beside A's: B has nothing in flight.
  await publishMany(b, 'req/b', 3, 1, 100);
  await m.waitMessages(4);
  t.deepEqual(payloads(m), ['m0', 'm1', 'm100', 'm101']);
  // C as well; then each PUBACK frees one place of its topic, and the waiting topics take turns.
  await publishMany(c, 'req/c', 3, 1, 200);
  await m.waitMessages(6);
  t.like(broker.sharedStats()[0], { inflight: 6, queued: 10 });
  for (const id of ['m0', 'm100', 'm200', 'm1', 'm2']) {
    const n = m.messages.length;
    m.puback(m.messages.find((x) => x.payload.toString() === id)!.messageId!);
    await m.waitMessages(n + 1);
  }
  t.deepEqual(payloads(m).slice(6), ['m2', 'm102', 'm202', 'm3', 'm4']);
  t.like(broker.sharedStats()[0], { inflight: 6, queued: 5 });
});

test('a publisher whose topic has a long queue is not read from until it is short again; nothing is dropped', async (t) => {
  const broker = await brokerWith(t, { maxInflight: 1 });
  const m = await member(t, broker.url, '$share/g/req/+', 1, { autoAck: false });
  const a = await publisher(t, broker.url);
  // 30 messages of 256 KiB written at once (the broker reads a socket 64 KiB at a time): it stops reading once
  // more than PAUSE_AFTER x 1 wait.
  const n = 30;
  const body = (i: number) => Buffer.concat([Buffer.from(`m${i}:`), Buffer.alloc(256 * 1024)]);
  const sends = Array.from({ length: n }, (_, i) => a.publish('req/a', body(i), { qos: 1 }));
  await m.waitMessages(1);
  await waitFor(() => broker.sharedStats()[0]!.queued >= PAUSE_AFTER, 'the queue to fill');
  await sleep(300);
  const held = broker.sharedStats()[0]!.queued;
  t.true(held <= 2 * PAUSE_AFTER, `${held} waiting in the broker`);
  // Acknowledging one at a time lets the rest through, in order, none dropped.
  for (let k = 1; k < n; k++) {
    m.puback(m.messages[k - 1]!.messageId!);
    await m.waitMessages(k + 1);
  }
  await Promise.all(sends);
  t.deepEqual(
    m.messages.map((x) => x.payload.subarray(0, x.payload.indexOf(':')).toString()),
    range(n),
  );
  t.like(broker.sharedStats()[0], { dropped: 0 });
});

test('over the bound, a group drops the oldest messages of the topic with the most waiting', async (t) => {
  // Two of a topic in flight, at most five waiting; no topic has enough waiting to be paused (8).
  const broker = await brokerWith(t, { maxInflight: 2, maxQueued: 5 });
  const m = await member(t, broker.url, '$share/g/req/+', 1, { autoAck: false });
  const a = await publisher(t, broker.url);
  const b = await publisher(t, broker.url);
  await publishMany(a, 'req/a', 8);
  await publishMany(b, 'req/b', 4, 1, 100);
  await m.waitMessages(4);
  // In flight m0, m1, m100, m101; A's m2..m4 dropped to keep five waiting, B's two kept.
  t.like(broker.sharedStats()[0], { inflight: 4, queued: 5, dropped: 3 });
  for (const id of ['m0', 'm100', 'm1', 'm101', 'm5']) {
    const n = m.messages.length;
    m.puback(m.messages.find((x) => x.payload.toString() === id)!.messageId!);
    await m.waitMessages(n + 1);
  }
  t.deepEqual(payloads(m), ['m0', 'm1', 'm100', 'm101', 'm5', 'm102', 'm6', 'm103', 'm7']);
});

test('a malformed $share filter gets SUBACK 0x80 and the connection stays open', async (t) => {
  const broker = await startBroker(t);
  const c = await RawClient.connect(t, broker.url, { clientId: cid('bad') });
  const granted = await c.subscribe(
    ['$share/g/ok/#', 2],
    ['$share//x', 1],
    ['$share/a+b/x', 1],
    ['$share/+/x', 1],
    ['$share/a#/x', 1],
    ['$share/g', 1],
    ['$share/g/', 1],
    ['$share/g/a#', 1],
    ['$share/g/a/+b', 1],
  );
  // A shared subscription is granted at most QoS 1.
  t.deepEqual(granted, [1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80]);
  const pub = await publisher(t, broker.url);
  await pub.publish('ok/1', 'x', { qos: 1 });
  const [m] = await c.waitMessages(1);
  t.like(m, { topic: 'ok/1', qos: 1 });
  t.false(c.isClosed);
  t.is(broker.sharedStats().length, 1);
});

test('publishing to a $share/ topic closes the connection', async (t) => {
  const broker = await startBroker(t);
  const m = await member(t, broker.url, '$share/g/x');
  const pub = await publisher(t, broker.url);
  pub.send(encodePublish({ topic: '$share/g/x', payload: Buffer.from('x'), qos: 0 }));
  await Promise.race([pub.closed, sleep(2000).then(() => t.fail('still open'))]);
  t.deepEqual(await receivedBefore(m, await publisher(t, broker.url), 'x'), []);
});

test('a group ends with its last member and starts afresh', async (t) => {
  const broker = await startBroker(t);
  const a = await member(t, broker.url, '$share/g/e/x');
  t.is(broker.sharedStats().length, 1);
  await a.disconnect();
  await waitFor(() => broker.sharedStats().length === 0, 'the group to end');
  const pub = await publisher(t, broker.url);
  await publishMany(pub, 'e/x', 3);
  const b = await member(t, broker.url, '$share/g/e/x');
  await publishMany(pub, 'e/x', 2, 1, 3);
  t.deepEqual(
    (await receivedBefore(b, pub, 'e/x')).map((m) => m.payload.toString()),
    range(2, 3),
  );
});

forEachBroker(
  'a wildcard shared filter does not match topics beginning with $ [MQTT-4.7.2-1]',
  async (t, url) => {
    const m = await member(t, url, '$share/g/#');
    const pub = await publisher(t, url);
    await pub.publish('$edge/x', 'hidden', { qos: 1 });
    t.deepEqual(await receivedBefore(m, pub, 'edge/x'), []);
  },
);

test('shared and plain deliveries to one client never share a packet identifier in flight', async (t) => {
  const broker = await brokerWith(t, { maxInflight: 20 });
  const c = await RawClient.connect(t, broker.url, { clientId: cid('both'), autoAck: false });
  t.deepEqual(await c.subscribe(['i/plain', 1], ['$share/g/i/shared', 1]), [1, 1]);
  const pub = await publisher(t, broker.url);
  for (let i = 0; i < 20; i++) {
    await pub.publish('i/plain', `p${i}`, { qos: 1 });
    await pub.publish('i/shared', `s${i}`, { qos: 1 });
  }
  const got = await c.waitMessages(40);
  t.is(new Set(got.map((m) => m.messageId)).size, 40);
  for (const m of got) c.puback(m.messageId!);
  await waitFor(() => broker.sharedStats()[0]?.inflight === 0, 'the PUBACKs to be handled');
  t.like(broker.sharedStats()[0], { inflight: 0, delivered: 20 });
});

test('a member killed in a burst loses nothing: the others get every message exactly once', async (t) => {
  const broker = await startBroker(t);
  const filter = '$share/g/b/x';
  const a = await member(t, broker.url, filter);
  const b = await member(t, broker.url, filter);
  const doomed = await member(t, broker.url, filter, 1, { autoAck: false });
  const pub = await publisher(t, broker.url);
  // Published without waiting for each PUBACK, so the doomed member takes a share before its backlog shows.
  const first = Array.from({ length: 150 }, (_, i) => pub.publish('b/x', `m${i}`, { qos: 1 }));
  await Promise.all(first);
  await waitTotal([a, b, doomed], 150);
  t.log(`doomed member held ${doomed.messages.length}`);
  t.true(doomed.messages.length > 0);
  doomed.kill();
  await Promise.all(Array.from({ length: 150 }, (_, i) => pub.publish('b/x', `m${150 + i}`, { qos: 1 })));
  await waitTotal([a, b], 300);
  await fence([a, b], pub);
  const survivors = [...payloads(a), ...payloads(b)];
  t.is(survivors.length, 300);
  t.deepEqual([...new Set(survivors)].sort(), range(300).sort());
});

test('members on WebSocket and TCP share one group', async (t) => {
  const broker = await startBroker(t, true);
  const ws = await mqtt.connectAsync(`ws://127.0.0.1:${broker.wsPort}`, { reconnectPeriod: 0 });
  t.teardown(() => ws.endAsync(true));
  const overWs: string[] = [];
  ws.on('message', (_topic, payload) => overWs.push(payload.toString()));
  await ws.subscribeAsync('$share/g/ws/x', { qos: 1 });
  const tcp = await member(t, broker.url, '$share/g/ws/x');
  const pub = await publisher(t, broker.url);
  await publishMany(pub, 'ws/x', 20);
  await waitFor(() => overWs.length + tcp.messages.length >= 20, '20 messages over both transports');
  t.true(overWs.length > 0 && tcp.messages.length > 0);
  t.deepEqual([...overWs, ...payloads(tcp)].sort(), range(20).sort());
});

test('a 3 MB message reaches an mqtt.js member intact', async (t) => {
  const broker = await startBroker(t);
  const client = await connectNoDelay(t, broker.url);
  await client.subscribeAsync('$share/g/big/x', { qos: 1 });
  const received = new Promise<Buffer>((resolve) =>
    client.once('message', (_topic, payload) => resolve(payload)),
  );
  const payload = Buffer.alloc(3 * 1024 * 1024, 7);
  payload.writeUInt32BE(0xdeadbeef, payload.length - 4);
  const pub = await connectNoDelay(t, broker.url);
  await pub.publishAsync('big/x', payload, { qos: 1 });
  t.true((await received).equals(payload));
});

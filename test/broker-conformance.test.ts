/**
 * MQTT 3.1.1 conformance of the embedded broker where edgecut relies on it, one test per normative statement
 * (OASIS mqtt-v3.1.1-os, cited in the title), each run on the embedded broker (aedes plus the corrections in
 * broker/conformance.ts) and on Mosquitto as the reference. Raw packets show the flags as sent.
 */
import type { ExecutionContext } from 'ava';
import { encodeId, encodePacket, encodePublish, encodeString, PacketType } from '../broker/wire.ts';
import { forEachBroker } from './helpers/mosquitto.ts';
import { RawClient, receivedBefore } from './helpers/raw-mqtt.ts';
import { sleep } from './helpers/wait.ts';

let ids = 0;
/** A client id unique in this file. */
const cid = (name: string) => `${name}-${process.pid}-${++ids}`;

/** True when the connection closes within `ms`. */
async function closesWithin(client: RawClient, ms: number): Promise<boolean> {
  return Promise.race([client.closed.then(() => true), sleep(ms).then(() => false)]);
}

async function subscriber(t: ExecutionContext, url: string, filter: string, qos = 1): Promise<RawClient> {
  const c = await RawClient.connect(t, url, { clientId: cid('sub') });
  t.deepEqual(await c.subscribe([filter, qos]), [qos]);
  return c;
}

forEachBroker(
  '[MQTT-3.3.1-8] [MQTT-3.3.1-9] RETAIN is 1 on a new subscription, 0 on an established one',
  async (t, url) => {
    const pub = await RawClient.connect(t, url, { clientId: cid('pub') });
    await pub.publish('c/retain', 'first', { qos: 1, retain: true });
    const sub = await subscriber(t, url, 'c/retain');
    const [replayed] = await sub.waitMessages(1);
    t.like(replayed, { topic: 'c/retain', retain: true });
    t.is(replayed?.payload.toString(), 'first');
    await pub.publish('c/retain', 'second', { qos: 1, retain: true });
    await pub.publish('c/retain', 'third', { qos: 1 });
    const [, live, plain] = await sub.waitMessages(3);
    t.like(live, { retain: false });
    t.is(live?.payload.toString(), 'second');
    t.like(plain, { retain: false });
  },
);

forEachBroker(
  '[MQTT-3.3.1-10] [MQTT-3.3.1-11] a zero-byte retained message is forwarded and clears the retained one',
  async (t, url) => {
    const pub = await RawClient.connect(t, url, { clientId: cid('pub') });
    await pub.publish('c/clear', 'state', { qos: 1, retain: true });
    const sub = await subscriber(t, url, 'c/clear');
    await sub.waitMessages(1);
    await pub.publish('c/clear', '', { qos: 1, retain: true });
    const [, cleared] = await sub.waitMessages(2);
    t.is(cleared?.payload.length, 0);
    t.false(cleared?.retain);
    const late = await subscriber(t, url, 'c/clear');
    t.deepEqual(await receivedBefore(late, pub, 'c/clear'), []);
  },
);

forEachBroker(
  '[MQTT-3.3.1-12] a RETAIN=0 message neither stores nor replaces the retained one',
  async (t, url) => {
    const pub = await RawClient.connect(t, url, { clientId: cid('pub') });
    await pub.publish('c/keep', 'retained', { qos: 1, retain: true });
    await pub.publish('c/keep', 'passing', { qos: 1 });
    const late = await subscriber(t, url, 'c/keep');
    const [m] = await late.waitMessages(1);
    t.is(m?.payload.toString(), 'retained');
    t.is((await receivedBefore(late, pub, 'c/keep')).length, 1);
  },
);

forEachBroker('[MQTT-3.3.1-3] the DUP flag of an incoming PUBLISH is not propagated', async (t, url) => {
  const sub = await subscriber(t, url, 'c/dup');
  const pub = await RawClient.connect(t, url, { clientId: cid('pub') });
  await pub.publish('c/dup', 'x', { qos: 1, dup: true });
  const [m] = await sub.waitMessages(1);
  t.like(m, { qos: 1, dup: false });
});

forEachBroker(
  '[MQTT-3.8.4-6] delivered QoS is the minimum of the published and the granted QoS',
  async (t, url) => {
    const q0 = await subscriber(t, url, 'c/qos/+', 0);
    const q1 = await subscriber(t, url, 'c/qos/+', 1);
    const pub = await RawClient.connect(t, url, { clientId: cid('pub') });
    await pub.publish('c/qos/a', 'one', { qos: 1 });
    await pub.publish('c/qos/b', 'zero', { qos: 0 });
    await pub.publish('c/qos/c', 'two', { qos: 2 });
    t.deepEqual(
      (await q0.waitMessages(3)).map((m) => m.qos),
      [0, 0, 0],
    );
    t.deepEqual(
      (await q1.waitMessages(3)).map((m) => m.qos),
      [1, 0, 1],
    );
  },
);

forEachBroker(
  '[MQTT-3.8.4-6] a retained message is sent at the QoS granted to the new subscription',
  async (t, url) => {
    const pub = await RawClient.connect(t, url, { clientId: cid('pub') });
    await pub.publish('c/rq/a', 'status', { qos: 1, retain: true });
    const q0 = await subscriber(t, url, 'c/rq/+', 0);
    const [m] = await q0.waitMessages(1);
    t.like(m, { qos: 0, retain: true });
  },
);

forEachBroker(
  '[MQTT-3.3.5-1] overlapping subscriptions deliver at the maximum of their QoS',
  async (t, url) => {
    const sub = await RawClient.connect(t, url, { clientId: cid('sub') });
    t.deepEqual(await sub.subscribe(['c/ov/#', 0], ['c/ov/x', 1]), [0, 1]);
    const pub = await RawClient.connect(t, url, { clientId: cid('pub') });
    await pub.publish('c/ov/x', 'x', { qos: 1 });
    // Every copy of it arrives before a marker on a topic only one subscription matches.
    const copies = await receivedBefore(sub, pub, 'c/ov/y');
    // 3.1.1 allows one copy per matching subscription; at least one must carry the maximum QoS.
    t.true(copies.length >= 1 && copies.some((m) => m.qos === 1));
  },
);

forEachBroker(
  '[MQTT-4.6.0-6] messages of one topic and QoS arrive in the order published',
  async (t, url) => {
    const sub = await subscriber(t, url, 'c/order/+');
    const pub = await RawClient.connect(t, url, { clientId: cid('pub') });
    const n = 300;
    const sent: Array<Promise<void>> = [];
    for (let i = 0; i < n; i++) {
      sent.push(pub.publish('c/order/q1', `${i}`, { qos: 1 }));
      sent.push(pub.publish('c/order/q0', `${i}`, { qos: 0 }));
    }
    await Promise.all(sent);
    await sub.waitMessages(2 * n);
    const seq = (topic: string) =>
      sub.messages.filter((m) => m.topic === topic).map((m) => Number(m.payload.toString()));
    const expected = Array.from({ length: n }, (_, i) => i);
    t.deepEqual(seq('c/order/q1'), expected);
    t.deepEqual(seq('c/order/q0'), expected);
  },
);

forEachBroker('[MQTT-4.7.2-1] wildcard filters do not match topics beginning with $', async (t, url) => {
  const all = await RawClient.connect(t, url, { clientId: cid('all') });
  t.deepEqual(await all.subscribe(['#', 1], ['+/x', 1]), [1, 1]);
  const dollar = await subscriber(t, url, '$edge/#');
  const pub = await RawClient.connect(t, url, { clientId: cid('pub') });
  await pub.publish('$edge/x', 'x', { qos: 1 });
  await dollar.waitMessages(1);
  t.deepEqual(
    (await receivedBefore(all, pub, 'c/after-dollar'))
      .filter((m) => m.topic.startsWith('$'))
      .map((m) => m.topic),
    [],
  );
});

forEachBroker('[MQTT-3.3.2-2] a PUBLISH topic with a wildcard closes the connection', async (t, url) => {
  const sub = await subscriber(t, url, 'c/wild/#');
  for (const topic of ['c/wild/+', 'c/wild/#']) {
    const pub = await RawClient.connect(t, url, { clientId: cid('pub') });
    pub.send(encodePublish({ topic, payload: Buffer.from('x'), qos: 0 }));
    t.true(await closesWithin(pub, 2000), topic);
  }
  const good = await RawClient.connect(t, url, { clientId: cid('pub') });
  t.deepEqual(await receivedBefore(sub, good, 'c/wild/ok'), []);
});

forEachBroker(
  '[MQTT-4.7.3-1] a zero-length topic name or topic filter closes the connection',
  async (t, url) => {
    const pub = await RawClient.connect(t, url, { clientId: cid('pub') });
    pub.send(encodePublish({ topic: '', payload: Buffer.from('x'), qos: 0 }));
    t.true(await closesWithin(pub, 2000), 'PUBLISH');
    const sub = await RawClient.connect(t, url, { clientId: cid('sub') });
    sub.send(encodePacket(PacketType.subscribe, 0x02, encodeId(1), encodeString(''), Buffer.from([0])));
    t.true(await closesWithin(sub, 2000), 'SUBSCRIBE');
  },
);

forEachBroker('[MQTT-3.8.3-3] a SUBSCRIBE without a topic filter closes the connection', async (t, url) => {
  const sub = await RawClient.connect(t, url, { clientId: cid('sub') });
  sub.send(encodePacket(PacketType.subscribe, 0x02, encodeId(1)));
  t.true(await closesWithin(sub, 2000));
});

forEachBroker('[MQTT-3.1.0-2] a second CONNECT closes the connection', async (t, url) => {
  const c = await RawClient.connect(t, url, { clientId: cid('twice') });
  c.send(RawClient.connectPacket({ clientId: cid('again') }));
  t.true(await closesWithin(c, 2000));
});

forEachBroker(
  '[MQTT-3.1.3-8] an empty client id with CleanSession=0 gets CONNACK 0x02 and is closed',
  async (t, url) => {
    const c = await RawClient.connect(t, url, { clientId: '', clean: false, allowRefusal: true });
    t.is(c.connack.returnCode, 2);
    t.true(await closesWithin(c, 2000));
    // [MQTT-3.1.3-6]: with CleanSession=1 the server assigns an id.
    const ok = await RawClient.connect(t, url, { clientId: '', clean: true });
    t.is(ok.connack.returnCode, 0);
  },
);

forEachBroker(
  '[MQTT-3.1.4-2] a CONNECT with the id of a connected client disconnects the old one',
  async (t, url) => {
    const id = cid('same');
    const first = await RawClient.connect(t, url, { clientId: id });
    const second = await RawClient.connect(t, url, { clientId: id });
    t.true(await closesWithin(first, 2000));
    t.false(second.isClosed);
  },
);

forEachBroker(
  '[MQTT-3.1.2-8] [MQTT-3.1.2-17] the will is published, retained, when the connection drops',
  async (t, url) => {
    const watcher = await subscriber(t, url, 'c/will/+');
    const id = cid('dying');
    const dying = await RawClient.connect(t, url, {
      clientId: id,
      will: { topic: 'c/will/a', payload: 'offline', qos: 1, retain: true },
    });
    dying.kill();
    const [will] = await watcher.waitMessages(1);
    t.like(will, { topic: 'c/will/a', retain: false });
    t.is(will?.payload.toString(), 'offline');
    const late = await subscriber(t, url, 'c/will/a');
    const [kept] = await late.waitMessages(1);
    t.like(kept, { topic: 'c/will/a', retain: true });
  },
);

forEachBroker('[MQTT-3.14.4-3] no will is published after DISCONNECT', async (t, url) => {
  const watcher = await subscriber(t, url, 'c/nowill/+');
  const leaving = await RawClient.connect(t, url, {
    clientId: cid('leaving'),
    will: { topic: 'c/nowill/a', payload: 'offline', qos: 1 },
  });
  await leaving.disconnect();
  // A Will would be published as the connection closes, before a later client's marker.
  const other = await RawClient.connect(t, url, { clientId: cid('other') });
  t.deepEqual(await receivedBefore(watcher, other, 'c/nowill/marker'), []);
});

forEachBroker(
  '[MQTT-3.1.2-24] a client silent for 1.5 keep-alive periods is disconnected and its will sent',
  async (t, url, broker) => {
    const watcher = await subscriber(t, url, 'c/ka/+');
    const silent = await RawClient.connect(t, url, {
      clientId: cid('silent'),
      keepalive: 1,
      will: { topic: 'c/ka/a', payload: 'gone', qos: 1 },
    });
    const started = Date.now();
    // Not before one keep-alive period has passed ...
    t.false(await closesWithin(silent, 1000));
    // ... and within 1.5 periods, plus timer slack. Mosquitto 2.0.11 checks keep-alives only every few seconds, so
    // it is given until 8 s: the deviation is reported in the log, not failed.
    const limit = broker === 'aedes' ? 2000 : 8000;
    t.true(await closesWithin(silent, limit - 1000));
    const elapsed = Date.now() - started;
    if (elapsed > 1600)
      t.log(`${broker} closed the silent connection after ${elapsed} ms (1.5 x keep-alive = 1500 ms)`);
    t.true(elapsed >= 1000 && elapsed <= limit, `closed after ${elapsed} ms`);
    await watcher.waitMessages(1);
  },
);

forEachBroker(
  '[MQTT-3.1.2-4] [MQTT-4.4.0-1] [MQTT-3.3.1-1] a resumed session re-sends unacknowledged QoS 1 with DUP=1',
  async (t, url) => {
    const id = cid('durable');
    // Its will tells when the broker has seen the connection go.
    const will = { topic: `c/sess-will/${id}`, payload: 'gone', qos: 1 as const };
    const first = await RawClient.connect(t, url, { clientId: id, clean: false, autoAck: false, will });
    t.false(first.connack.sessionPresent);
    t.deepEqual(await first.subscribe(['c/sess/+', 1]), [1]);
    const pub = await RawClient.connect(t, url, { clientId: cid('pub') });
    t.deepEqual(await pub.subscribe([will.topic, 1]), [1]);
    await pub.publish('c/sess/a', 'unacked', { qos: 1 });
    const [sent] = await first.waitMessages(1);
    t.like(sent, { dup: false, qos: 1 });
    first.kill();
    await pub.waitMessages(1);
    await pub.publish('c/sess/b', 'queued', { qos: 1 });
    const again = await RawClient.connect(t, url, { clientId: id, clean: false });
    // [MQTT-3.2.2-2]
    t.true(again.connack.sessionPresent);
    const got = await again.waitMessages(2);
    const resent = got.find((m) => m.payload.toString() === 'unacked');
    const queued = got.find((m) => m.payload.toString() === 'queued');
    t.like(resent, { dup: true, messageId: sent?.messageId });
    t.like(queued, { dup: false, qos: 1 });
    await again.disconnect();
    // Clean up the session so no state leaks into other tests.
    const clean = await RawClient.connect(t, url, { clientId: id, clean: true });
    await clean.disconnect();
  },
);

forEachBroker(
  '[MQTT-3.1.2-6] [MQTT-3.2.2-1] CleanSession=1 discards the previous session',
  async (t, url) => {
    const id = cid('fresh');
    const durable = await RawClient.connect(t, url, { clientId: id, clean: false });
    t.deepEqual(await durable.subscribe(['c/fresh/+', 1]), [1]);
    await durable.disconnect();
    const pub = await RawClient.connect(t, url, { clientId: cid('pub') });
    await pub.publish('c/fresh/a', 'queued', { qos: 1 });
    const clean = await RawClient.connect(t, url, { clientId: id, clean: true });
    t.false(clean.connack.sessionPresent);
    await pub.publish('c/fresh/b', 'live', { qos: 1 });
    // The old session's subscription would have delivered both before a marker on a topic subscribed now.
    t.deepEqual(await clean.subscribe(['c/fresh-marker', 1]), [1]);
    t.deepEqual(await receivedBefore(clean, pub, 'c/fresh-marker'), []);
  },
);

forEachBroker(
  '[MQTT-3.1.4-2] [MQTT-3.1.2-8] after a takeover the retained status is the new connection’s',
  async (t, url) => {
    // edgecut's services announce `online` (retained) after CONNACK and leave `offline` (retained) as their will; a
    // restarted service that takes its id over must not be reported offline by its predecessor's will.
    const id = cid('svc');
    const will = { topic: 'c/status/svc', payload: 'offline', qos: 1 as const, retain: true };
    const old = await RawClient.connect(t, url, { clientId: id, will });
    await old.publish('c/status/svc', 'online-1', { qos: 1, retain: true });
    const watcher = await subscriber(t, url, 'c/status/svc');
    t.deepEqual(await watcher.subscribe(['c/status-marker', 1]), [1]);
    const next = await RawClient.connect(t, url, { clientId: id, will });
    await next.publish('c/status/svc', 'online-2', { qos: 1, retain: true });
    await old.closed;
    // Both brokers publish the predecessor's will as they close it, before the new connection's CONNACK; whatever
    // they publish for it has reached the watcher by a later marker, and the new status is the last.
    const seen = await receivedBefore(watcher, next, 'c/status-marker');
    t.is(seen.at(-1)?.payload.toString(), 'online-2');
    const reader = await subscriber(t, url, 'c/status/svc');
    const [status] = await reader.waitMessages(1);
    t.is(status?.payload.toString(), 'online-2');
  },
);

forEachBroker(
  '[MQTT-4.7.2-1] a persistent session does not queue $ topics for its wildcard filters',
  async (t, url) => {
    const id = cid('durable-all');
    const durable = await RawClient.connect(t, url, { clientId: id, clean: false });
    t.deepEqual(await durable.subscribe(['#', 1]), [1]);
    const pub = await RawClient.connect(t, url, { clientId: cid('pub') });
    await pub.publish('$edge/online', 'hidden', { qos: 1 });
    const online = await receivedBefore(durable, pub, 'c/dollar/online');
    await durable.disconnect();
    await pub.publish('$edge/offline', 'hidden', { qos: 1 });
    await pub.publish('c/dollar/offline', 'seen', { qos: 1 });
    const again = await RawClient.connect(t, url, { clientId: id, clean: false });
    // What the session queued arrives before a marker published after it resumed.
    const queued = await receivedBefore(again, pub, 'c/dollar/after');
    t.deepEqual(
      // Its own topics: '#' also sees what the file's other tests publish meanwhile.
      [...online, ...queued].map((m) => m.topic).filter((topic) => /^(\$edge|c\/dollar)\//.test(topic)),
      ['c/dollar/offline'],
    );
    await again.disconnect();
    await (await RawClient.connect(t, url, { clientId: id, clean: true })).disconnect();
  },
);

forEachBroker(
  '[MQTT-3.1.2-2] a CONNECT with an unsupported protocol level gets CONNACK 0x01, then the connection is closed',
  async (t, url) => {
    const c = await RawClient.connect(t, url, { clientId: cid('level6'), level: 6, allowRefusal: true });
    t.is(c.connack.returnCode, 1);
    t.true(await closesWithin(c, 2000));
  },
);

/**
 * A subscriber that stops reading (a robot on a stalled link, a worker stuck in a long computation) gets a bounded
 * outgoing buffer in the embedded broker, not every message published meanwhile; no QoS 1 message is lost, and it
 * receives them all once it reads again. QoS 0 messages to a stalled shared-subscription member are dropped instead.
 * The broker runs in this process, so its socket to the subscriber and its memory are observed directly.
 */

import type { Aedes } from 'aedes';
import test, { type ExecutionContext } from 'ava';
import type { MqttClient } from 'mqtt';
import { WRITE_WINDOW_BYTES } from '../broker/direct-read.ts';
import { DEFAULT_MAX_INFLIGHT, PAUSE_AFTER, QOS0_BACKLOG_BYTES } from '../broker/shared.ts';
import { startBroker } from './helpers/broker.ts';
import { connectNoDelay } from './helpers/mosquitto.ts';
import { RawClient } from './helpers/raw-mqtt.ts';
import { sleep, waitFor } from './helpers/wait.ts';

const MIB = 1024 * 1024;
const COUNT = 48;

/** Message i: 1 MiB whose first 4 bytes are i. */
function message(i: number): Buffer {
  const b = Buffer.alloc(MIB, i & 0xff);
  b.writeUInt32BE(i, 0);
  return b;
}

/** The bytes the broker holds unsent to `clientId`, and the most it held while `run` ran (sampled every 5 ms). */
async function backlogWhile(aedes: Aedes, clientId: string, run: () => Promise<void>): Promise<number> {
  let most = 0;
  const timer = setInterval(() => {
    const conn = (aedes as unknown as { clients: Record<string, { conn: { writableLength: number } }> })
      .clients[clientId]?.conn;
    most = Math.max(most, conn?.writableLength ?? 0);
  }, 5);
  try {
    await run();
  } finally {
    clearInterval(timer);
  }
  return most;
}

/**
 * Publishes COUNT messages of 1 MiB without waiting for each, then waits until the broker takes on no more; `acked`
 * counts the PUBACKs the publisher had by then (messages the broker took on). QoS 0 has no PUBACK: a fixed wait.
 */
async function flood(
  pub: MqttClient,
  topic: string,
  qos: 0 | 1,
): Promise<{ sent: Array<Promise<unknown>>; acked: number }> {
  let acked = 0;
  const sent = Array.from({ length: COUNT }, (_, i) =>
    pub.publishAsync(topic, message(i), { qos }).then(() => acked++),
  );
  if (qos === 0) {
    await sleep(1500);
    return { sent, acked };
  }
  // Until the broker has taken on some and then nothing more for 700 ms (at most 20 s: a busy host is slow).
  const deadline = Date.now() + 20_000;
  let last = -1;
  let still = 0;
  while (Date.now() < deadline && (acked === 0 || still < 700)) {
    await sleep(100);
    still = acked === last ? still + 100 : 0;
    last = acked;
  }
  return { sent, acked };
}

async function stalledSubscriber(
  t: ExecutionContext,
  url: string,
  clientId: string,
  filter: string,
  qos: 0 | 1,
) {
  const sub = await RawClient.connect(t, url, { clientId });
  await sub.subscribe([filter, qos]);
  sub.socket.pause();
  return sub;
}

for (const [kind, filter] of [
  ['a plain subscription', 'bp/plain'],
  ['a shared subscription', '$share/g/bp/shared'],
] as const) {
  // A plain subscription is bounded by the connection's window of unsent bytes (WRITE_WINDOW_BYTES, beyond which a
  // delivery waits for the socket to drain) and by reading a publisher only once its last batch is handled
  // (broker/direct-read.ts); a shared one by its in-flight bound per member.
  test(`QoS 1 to ${kind} that stops reading: a bounded backlog in the broker, every message once it reads again`, async (t) => {
    const broker = await startBroker(t);
    const topic = filter.replace('$share/g/', '');
    const sub = await stalledSubscriber(t, broker.url, `stalled-${topic.replace('/', '-')}`, filter, 1);
    const pub = await connectNoDelay(t, broker.url);
    let sent: Array<Promise<unknown>> = [];
    let acked = 0;
    const most = await backlogWhile(broker.events!, `stalled-${topic.replace('/', '-')}`, async () => {
      ({ sent, acked } = await flood(pub, topic, 1));
    });
    t.log(
      `${kind}: at most ${(most / MIB).toFixed(1)} MiB unsent to the subscriber; ${acked} of ${COUNT} taken on`,
    );
    // 48 MiB were published; the broker's socket to the stalled subscriber held a few messages at most (a shared
    // member its in-flight bound and one message; a plain subscriber its window and one message).
    const window =
      kind === 'a plain subscription' ? WRITE_WINDOW_BYTES + 2 * MIB : (DEFAULT_MAX_INFLIGHT + 2) * MIB;
    t.true(most <= window, `${(most / MIB).toFixed(1)} MiB unsent, at most ${window / MIB} MiB expected`);
    // The rest wait in the publisher, which the broker stopped reading: it took on a few (plain: those in the
    // sockets and its parser), or its in-flight bound and the group's queue up to the pause (shared).
    const bound = kind === 'a plain subscription' ? 12 : DEFAULT_MAX_INFLIGHT * (1 + PAUSE_AFTER) + 4;
    t.true(acked > 0 && acked <= bound, `${acked} taken on, at most ${bound} expected`);
    sub.socket.resume();
    await Promise.all(sent);
    const got = await sub.waitMessages(COUNT, 30_000);
    t.deepEqual(
      got.map((m) => m.payload.readUInt32BE(0)),
      Array.from({ length: COUNT }, (_, i) => i),
      'every message, in order, once',
    );
    t.true(got.every((m, i) => m.payload.equals(message(i))));
  });
}

test('QoS 0 to a shared-subscription member that stops reading: dropped beyond the backlog bound', async (t) => {
  const broker = await startBroker(t);
  await stalledSubscriber(t, broker.url, 'stalled-q0', '$share/g/bp/q0', 0);
  const pub = await connectNoDelay(t, broker.url);
  const most = await backlogWhile(broker.events!, 'stalled-q0', async () => {
    await Promise.all((await flood(pub, 'bp/q0', 0)).sent);
    await waitFor(
      () => (broker.sharedStats()[0]?.delivered ?? 0) + (broker.sharedStats()[0]?.dropped ?? 0) >= COUNT,
      'every message delivered or dropped',
    );
  });
  const [stats] = broker.sharedStats();
  t.log(
    `at most ${(most / MIB).toFixed(1)} MiB unsent; delivered ${stats?.delivered}, dropped ${stats?.dropped}`,
  );
  t.true(most <= QOS0_BACKLOG_BYTES + 2 * MIB, `${(most / MIB).toFixed(1)} MiB unsent`);
  t.true((stats?.dropped ?? 0) > 0, 'messages beyond the bound were dropped');
  t.is((stats?.delivered ?? 0) + (stats?.dropped ?? 0), COUNT);
});

test('a publisher paused by a shared group while a batch of its packets is handled is read again once resumed', async (t) => {
  // 300 small messages arrive in a few reads, so many packets of one batch are handled while the group pauses their
  // publisher (its queue is full: the only member stopped reading). aedes lost the count of those packets, and a
  // connection read only between batches would then never be read again (broker/direct-read.ts countEveryPacket).
  const broker = await startBroker(t);
  const sub = await stalledSubscriber(t, broker.url, 'stalled-small', '$share/g/bp/small', 1);
  const pub = await connectNoDelay(t, broker.url);
  const n = 300;
  const small = (i: number) => {
    const b = Buffer.alloc(1024, 7);
    b.writeUInt32BE(i, 0);
    return b;
  };
  const sent = Array.from({ length: n }, (_, i) => pub.publishAsync('bp/small', small(i), { qos: 1 }));
  await sleep(500);
  sub.socket.resume();
  await Promise.all(sent);
  const got = await sub.waitMessages(n, 30_000);
  t.deepEqual(
    got.map((m) => m.payload.readUInt32BE(0)).sort((a, b) => a - b),
    Array.from({ length: n }, (_, i) => i),
    'every message once',
  );
});

/**
 * Uplink emulation (measurement/shaping.ts): the rate parser, the link schedule in virtual time, the MQTT framer, and the
 * shaped stream over real sockets, alone and under an MQTT connection to the embedded broker.
 */
import { once } from 'node:events';
import { type AddressInfo, createServer, type Socket, connect as tcpConnect } from 'node:net';
import test from 'ava';
import { EmbeddedBroker } from '../broker/broker.ts';
import {
  BACKLOG_BYTES,
  formatRate,
  LinkSchedule,
  MqttFramer,
  parseRate,
  ShapedStream,
  SLICE_BYTES,
  shapeUplink,
} from '../measurement/shaping.ts';
import { silentLogger } from '../runtime/log.ts';
import { Connection } from '../runtime/mqtt.ts';
import { startBroker } from './helpers/broker.ts';
import { waitFor } from './helpers/wait.ts';

test('bit rates parse with decimal prefixes; byte rates and nonsense do not', (t) => {
  t.is(parseRate('10mbps'), 10e6);
  t.is(parseRate('10Mbit'), 10e6);
  t.is(parseRate('512kbps'), 512e3);
  t.is(parseRate('2.5 Mbit/s'), 2.5e6);
  t.is(parseRate('1gbps'), 1e9);
  t.is(parseRate('250000'), 250000);
  t.is(parseRate('off'), 0);
  t.is(parseRate('10MB/s'), undefined);
  t.is(parseRate('10MBps'), undefined);
  t.is(parseRate('fast'), undefined);
  t.is(parseRate('-3mbps'), undefined);
  t.is(formatRate(10e6), '10 Mbit/s');
  t.is(formatRate(512e3), '512 kbit/s');
});

test('the link schedule: 1 MB at 10 Mbit/s takes 0.8 s, set-up per message, messages one after another', (t) => {
  const link = new LinkSchedule({ rateBps: 10e6, setupMs: 0 });
  t.is(link.reserve(1e6, 1, 0), 800);
  const setup = new LinkSchedule({ rateBps: 8e6, setupMs: 5 });
  // 1000 bytes at 8 Mbit/s = 1 ms, plus 5 ms set-up.
  t.is(setup.reserve(1000, 1, 100), 106);
  // Queued behind the first: starts at 106, not at 101.
  t.is(setup.reserve(1000, 1, 101), 112);
  // Continuation bytes of a message pay no set-up; an idle link builds no credit.
  t.is(setup.reserve(1000, 0, 200), 201);
  const setupOnly = new LinkSchedule({ rateBps: 0, setupMs: 7 });
  t.is(setupOnly.reserve(1e9, 2, 0), 14);
});

function packet(type: number, body: number): Buffer {
  const len: number[] = [];
  let x = body;
  do {
    let b = x % 128;
    x = Math.floor(x / 128);
    if (x > 0) b |= 0x80;
    len.push(b);
  } while (x > 0);
  return Buffer.concat([Buffer.from([type << 4, ...len]), Buffer.alloc(body, 0x30)]);
}

test('the framer finds every PUBLISH start however the bytes are chunked', (t) => {
  // CONNECT, PUBLISH (3-byte length), PINGREQ (empty), PUBLISH, PUBACK; payload bytes look like PUBLISH headers.
  const stream = Buffer.concat([
    packet(1, 20),
    packet(3, 200_000),
    packet(12, 0),
    packet(3, 5),
    packet(4, 2),
  ]);
  t.is(new MqttFramer().feed(stream), 2);
  const byByte = new MqttFramer();
  let n = 0;
  for (const b of stream) n += byByte.feed(Buffer.from([b]));
  t.is(n, 2);
  const chunked = new MqttFramer();
  let m = 0;
  for (let i = 0; i < stream.length; i += 777) m += chunked.feed(stream.subarray(i, i + 777));
  t.is(m, 2);
});

/** Sends `data` through a shaped socket to a local server; resolves with the ms until all of it arrived. */
async function timedSend(chunks: Buffer[], shape: { rateBps: number; setupMs: number }): Promise<number> {
  const total = chunks.reduce((a, c) => a + c.length, 0);
  let received = 0;
  let done: (ms: number) => void = () => undefined;
  const finished = new Promise<number>((r) => {
    done = r;
  });
  let t0 = 0;
  const server = createServer((s) =>
    s.on('data', (d: Buffer) => {
      received += d.length;
      if (received >= total) done(performance.now() - t0);
    }),
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const raw: Socket = tcpConnect((server.address() as AddressInfo).port, '127.0.0.1');
  await once(raw, 'connect');
  const shaped = new ShapedStream(raw, shape);
  shaped.setNoDelay(true);
  t0 = performance.now();
  for (const c of chunks) shaped.write(c);
  const ms = await finished;
  shaped.destroy();
  await new Promise((r) => server.close(r));
  return ms;
}

test('a shaped socket delivers at the configured rate (ratio of two rates)', async (t) => {
  const data = [Buffer.alloc(32 * 1024), Buffer.alloc(32 * 1024)];
  const slow = await timedSend(data, { rateBps: 4e6, setupMs: 0 });
  const fast = await timedSend(data, { rateBps: 16e6, setupMs: 0 });
  // 64 KiB: 131 ms at 4 Mbit/s, 33 ms at 16 Mbit/s.
  t.true(slow >= 125 && slow < 131 + 40, `4 Mbit/s took ${slow.toFixed(1)} ms`);
  t.true(fast >= 30 && fast < 33 + 30, `16 Mbit/s took ${fast.toFixed(1)} ms`);
  const ratio = slow / fast;
  t.log(`4 Mbit/s ${slow.toFixed(1)} ms, 16 Mbit/s ${fast.toFixed(1)} ms, ratio ${ratio.toFixed(2)}`);
  t.true(ratio > 2.8 && ratio < 4.4, `ratio ${ratio.toFixed(2)}, expected ~4`);
});

test('each PUBLISH waits the set-up time; other packets do not', async (t) => {
  const publishes = Array.from({ length: 5 }, () => packet(3, 10));
  const others = Array.from({ length: 5 }, () => packet(4, 2));
  const withSetup = await timedSend([...publishes, ...others], { rateBps: 0, setupMs: 20 });
  // 100 ms if only the 5 publishes wait, 200 ms if the 5 other packets waited too; the margin is for a busy host.
  t.true(
    withSetup >= 98 && withSetup < 190,
    `5 publishes with 20 ms set-up took ${withSetup.toFixed(1)} ms (200 ms would mean every packet waited)`,
  );
  const acksOnly = await timedSend(others, { rateBps: 0, setupMs: 20 });
  t.true(acksOnly < 20, `acks took ${acksOnly.toFixed(1)} ms`);
});

test('an MQTT connection through the shaped uplink: publish time follows the rate, and it reconnects', async (t) => {
  const broker = await startBroker(t);
  const port = broker.port;
  const conns: Connection[] = [];
  t.teardown(async () => {
    for (const c of conns) await c.stop();
  });
  const publishMs = async (rateBps: number, id: string) => {
    const conn = new Connection({
      url: broker.url,
      clientId: id,
      role: 'test',
      statusTopic: `test/${id}/status`,
      logger: silentLogger,
      reconnectPeriodMs: 100,
      wrapStream: shapeUplink({ rateBps, setupMs: 0 }),
    });
    conns.push(conn);
    await conn.start();
    const payload = Buffer.alloc(50_000);
    await conn.publish('test/data', payload, { qos: 1 });
    // The median of three: one publish delayed by a busy host (a 155 ms one once, in a full run) is not the rate.
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      await conn.publish('test/data', payload, { qos: 1 });
      times.push(performance.now() - t0);
    }
    return { conn, ms: times.sort((x, y) => x - y)[1]! };
  };
  const slow = await publishMs(4e6, 'shaped-slow');
  const fast = await publishMs(16e6, 'shaped-fast');
  t.log(`publish 50 kB: 4 Mbit/s ${slow.ms.toFixed(1)} ms, 16 Mbit/s ${fast.ms.toFixed(1)} ms`);
  // 50 kB: 100 ms at 4 Mbit/s, 25 ms at 16 Mbit/s (plus the PUBACK round trip); medians of three publishes.
  t.true(slow.ms >= 95 && slow.ms < 100 + 50, `4 Mbit/s publish took ${slow.ms.toFixed(1)} ms`);
  t.true(fast.ms >= 23 && fast.ms < 25 + 40, `16 Mbit/s publish took ${fast.ms.toFixed(1)} ms`);

  await broker.stop();
  await waitFor(() => !slow.conn.connected, 'the slow client to disconnect', 5000);
  const again = new EmbeddedBroker({ host: '127.0.0.1', port, logger: silentLogger });
  await again.start();
  t.teardown(() => again.stop());
  await waitFor(() => slow.conn.connected, 'the slow client to reconnect', 5000);
  const t0 = performance.now();
  await slow.conn.publish('test/data', Buffer.alloc(50_000), { qos: 1 });
  const after = performance.now() - t0;
  t.true(after >= 95, `still shaped after the reconnect: ${after.toFixed(1)} ms`);
});

/** A shaped socket to a local server that records when bytes arrive; `sent` is when the data was written. */
async function shapedPair(shape: { rateBps: number; setupMs: number }) {
  const arrivals: Array<{ at: number; total: number }> = [];
  let received = 0;
  const server = createServer((s) =>
    s.on('data', (d: Buffer) => {
      received += d.length;
      arrivals.push({ at: performance.now(), total: received });
    }),
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const raw: Socket = tcpConnect((server.address() as AddressInfo).port, '127.0.0.1');
  await once(raw, 'connect');
  const shaped = new ShapedStream(raw, shape);
  shaped.setNoDelay(true);
  const close = async () => {
    shaped.destroy();
    await new Promise((r) => server.close(r));
  };
  return { shaped, arrivals, close };
}

test('a long message reaches the peer progressively, not all at once at its end', async (t) => {
  const { shaped, arrivals, close } = await shapedPair({ rateBps: 8e6, setupMs: 0 });
  const size = 4 * SLICE_BYTES;
  const t0 = performance.now();
  shaped.write(Buffer.alloc(size));
  await waitFor(() => (arrivals.at(-1)?.total ?? 0) >= size, `${size} bytes to arrive`);
  await close();
  const first = arrivals[0]!.at - t0;
  const last = arrivals.at(-1)!.at - t0;
  t.log(`${size} B at 8 Mbit/s: first bytes after ${first.toFixed(1)} ms, all after ${last.toFixed(1)} ms`);
  // 256 KiB at 8 Mbit/s: 262 ms; the first 64 KiB slice leaves after 66 ms.
  t.true(last >= 255, `all bytes after ${last.toFixed(1)} ms`);
  t.true(first < last / 2, `first bytes after ${first.toFixed(1)} ms of ${last.toFixed(1)}`);
});

test('the writer goes on at once while the backlog is short, so back-to-back messages keep the link busy', async (t) => {
  const { shaped, arrivals, close } = await shapedPair({ rateBps: 8e6, setupMs: 0 });
  const t0 = performance.now();
  let calledBack = Number.NaN;
  shaped.write(Buffer.alloc(100_000), () => {
    calledBack = performance.now() - t0;
  });
  shaped.write(Buffer.alloc(100_000));
  await waitFor(() => (arrivals.at(-1)?.total ?? 0) >= 200_000, '200 kB to arrive');
  const last = arrivals.at(-1)!.at - t0;
  // Beyond the backlog, the writer waits until enough has left the emulated link.
  const big = BACKLOG_BYTES + 4 * SLICE_BYTES;
  const t1 = performance.now();
  let bigBack = Number.NaN;
  shaped.write(Buffer.alloc(big), () => {
    bigBack = performance.now() - t1;
  });
  await waitFor(() => !Number.isNaN(bigBack), 'the large message back');
  await close();
  t.log(
    `first write called back after ${calledBack.toFixed(1)} ms; 2 x 100 kB arrived after ${last.toFixed(1)} ms`,
  );
  t.true(calledBack < 50, `called back after ${calledBack.toFixed(1)} ms, expected at once`);
  // 200 kB at 8 Mbit/s: 200 ms with the link busy throughout.
  t.true(last >= 195 && last < 200 + 60, `2 x 100 kB took ${last.toFixed(1)} ms`);
  // 4 slices (256 KiB, 262 ms) must leave before the backlog is short enough.
  t.true(bigBack >= 250, `a write beyond the backlog was called back after ${bigBack.toFixed(1)} ms`);
});

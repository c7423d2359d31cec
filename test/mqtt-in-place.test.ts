/**
 * Reading large PUBLISH packets in place (runtime/mqtt-framing.ts): the framer cuts any sequence of reads into the
 * stream's bytes unchanged, each large PUBLISH as one buffer of its own; and an MQTT.js client reading through it
 * (bench/in-place-reader.ts) gets every payload byte-exact from the embedded broker and from Mosquitto, before and
 * after a reconnect.
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import test from 'ava';
import mqtt, { type MqttClient } from 'mqtt';
import { readInPlace } from '../bench/in-place-reader.ts';
import { encodePublish } from '../broker/wire.ts';
import { DIRECT_READ_BYTES, type FramerStats, PacketFramer } from '../runtime/mqtt-framing.ts';
import { forEachBroker } from './helpers/mosquitto.ts';

const KIB = 1024;
const MIB = 1024 * KIB;

const publish = (topic: string, payload: Buffer, messageId = 1) =>
  encodePublish({ topic, payload, qos: 1, messageId });

/**
 * Feeds `stream` to a framer as a socket would: each read lands in the buffer the framer gives, at most as many
 * bytes as that buffer holds and as the next of `reads` (cycled) allows. Returns the chunks it handed on.
 */
function feed(stream: Buffer, reads: number[], maxPacketBytes = 64 * MIB) {
  const chunks: Buffer[] = [];
  const stats: FramerStats = { packets: 0, directBytes: 0 };
  const framer = new PacketFramer({
    maxPacketBytes: () => maxPacketBytes,
    deliver: (c) => chunks.push(c),
    stats,
  });
  for (let at = 0, i = 0; at < stream.length; i++) {
    const dst = framer.nextBuffer();
    const n = Math.min(reads[i % reads.length]!, dst.length, stream.length - at);
    stream.copy(dst, 0, at, at + n);
    framer.onRead(n, dst);
    at += n;
  }
  return { chunks, stats };
}

test('the framer hands on the bytes unchanged, each large PUBLISH spanning reads as one buffer of exactly its size', (t) => {
  const big = publish('t/big', randomBytes(MIB + 3), 1);
  const mid = publish('t/mid', randomBytes(100 * KIB), 2);
  const small = publish('t/s', randomBytes(10), 3);
  const under = publish('t/u', randomBytes(DIRECT_READ_BYTES - 20), 4);
  const stream = Buffer.concat([small, big, under, mid, small, big]);
  // Odd read sizes: fixed headers, remaining lengths and payloads are all cut somewhere.
  for (const reads of [[3, 65_536, 7], [50_001, 2, 1000], [65_536]]) {
    const { chunks, stats } = feed(stream, reads);
    t.true(
      Buffer.concat(chunks).equals(stream),
      `reads of ${reads.join(', ')}: the same bytes in the same order`,
    );
    const whole = chunks.filter((c) => c.buffer.byteLength === c.length && (c.equals(big) || c.equals(mid)));
    t.is(whole.length, 3, `reads of ${reads.join(', ')}: big, mid and big each one buffer of their own`);
    t.is(stats.packets, 3);
    t.true(stats.directBytes > 0 && stats.directBytes <= 2 * big.length + mid.length);
  }
  // One byte per read: every header is cut; the large packet is read in place once its length is known.
  const short = Buffer.concat([small, mid, small]);
  const { chunks, stats } = feed(short, [1]);
  t.true(Buffer.concat(chunks).equals(short));
  t.is(stats.packets, 1);
  t.true(chunks.some((c) => c.equals(mid) && c.buffer.byteLength === mid.length));
});

test('the framer leaves a PUBLISH above its limit, and packets of other kinds, to the parser in pieces', (t) => {
  const big = publish('t/big', randomBytes(300 * KIB));
  // A large SUBSCRIBE-sized packet of another type (0x82) with a remaining length above the threshold.
  const other = Buffer.concat([Buffer.from([0x82, 0x80, 0x80, 0x02]), randomBytes(32 * KIB)]);
  const stream = Buffer.concat([big, other, big]);
  const { chunks, stats } = feed(stream, [65_536], 256 * KIB);
  t.true(Buffer.concat(chunks).equals(stream));
  t.is(stats.packets, 0);
  t.true(chunks.every((c) => c.length <= 65_536));
});

test('a malformed remaining length stops the framing; the bytes still go on unchanged for the parser to refuse', (t) => {
  // Five length bytes with the continuation bit: no MQTT packet has that.
  const bad = Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3]);
  const big = publish('t/big', randomBytes(200 * KIB));
  const stream = Buffer.concat([publish('t/s', randomBytes(5)), bad, big]);
  const { chunks, stats } = feed(stream, [4, 65_536]);
  t.true(Buffer.concat(chunks).equals(stream));
  t.is(stats.packets, 0);
});

test('readInPlace takes plain TCP only: TLS and WebSocket URLs keep MQTT.js transport', (t) => {
  for (const [url, expected] of [
    ['mqtt://127.0.0.1:1', true],
    ['tcp://127.0.0.1:1', true],
    ['mqtts://127.0.0.1:1', false],
    ['ws://127.0.0.1:1', false],
    ['wss://127.0.0.1:1', false],
  ] as const) {
    const client = mqtt.connect(url, { manualConnect: true, reconnectPeriod: 0 });
    // Never connected, so nothing to end (MQTT.js cannot end a client that never built a stream).
    t.is(readInPlace(client), expected, url);
  }
});

/** A client reading in place, connected (TCP_NODELAY, reconnecting quickly), ended at teardown. */
async function inPlaceClient(
  t: Parameters<Parameters<typeof forEachBroker>[1]>[0],
  url: string,
  stats: FramerStats,
  maxPacketBytes: number,
): Promise<MqttClient> {
  const client = mqtt.connect(url, {
    manualConnect: true,
    reconnectPeriod: 100,
    clientId: `in-place-${Math.random()}`,
  });
  t.true(readInPlace(client, { stats, maxPacketBytes }));
  client.on('connect', () => (client.stream as Partial<Socket>).setNoDelay?.(true));
  client.connect();
  t.teardown(() => client.endAsync(true));
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  return client;
}

forEachBroker(
  'a client reading in place gets every message byte-exact, in order, before and after a reconnect',
  async (t, url) => {
    const stats: FramerStats = { packets: 0, directBytes: 0 };
    // Read in place up to 2 MiB; the 4 MiB message goes MQTT.js's own way.
    const sub = await inPlaceClient(t, url, stats, 2 * MIB);
    const got: Array<{ topic: string; payload: Buffer }> = [];
    let wake: (() => void) | undefined;
    sub.on('message', (topic, payload) => {
      got.push({ topic, payload });
      wake?.();
    });
    await sub.subscribeAsync('big/#', { qos: 1 });
    const pub = await mqtt.connectAsync(url, { reconnectPeriod: 0 });
    t.teardown(() => pub.endAsync(true));
    const until = async (n: number) => {
      const deadline = Date.now() + 20_000;
      while (got.length < n && Date.now() < deadline) await new Promise<void>((r) => (wake = r));
      t.is(got.length, n);
    };
    const sizes = [4 * MIB, 10, 64 * KIB, DIRECT_READ_BYTES - 16, DIRECT_READ_BYTES, MIB + 1, 0, 300 * KIB];
    const payloads = sizes.map((n) => randomBytes(n));
    for (const [i, p] of payloads.entries()) void pub.publishAsync(`big/${i}`, p, { qos: 1 });
    await until(payloads.length);
    for (const [i, p] of payloads.entries()) {
      t.is(got[i]!.topic, `big/${i}`);
      t.true(got[i]!.payload.equals(p), `payload ${i} (${p.length} bytes) arrived byte-exact`);
    }
    // 64 KiB, 1 MiB + 1 and 300 KiB span several reads (64 KiB at most each outside a large packet): read in place,
    // each payload a view of its packet's buffer; the 4 MiB one is above the client's limit.
    t.true(stats.packets >= 3 && stats.packets <= 4, String(stats.packets));
    const mib = got[5]!.payload;
    t.is(mib.buffer.byteLength - mib.byteOffset, mib.length);
    t.true(mib.buffer.byteLength < mib.length + 64);
    // The connection drops: MQTT.js reconnects through a new in-place connection and resubscribes.
    const before = stats.packets;
    const reconnected = new Promise<void>((resolve) => sub.once('connect', () => resolve()));
    sub.stream.destroy();
    await reconnected;
    // The resubscription is not awaited by MQTT.js's 'connect' event: publish until a message comes through.
    const again = randomBytes(MIB);
    const deadline = Date.now() + 10_000;
    while (got.length === payloads.length && Date.now() < deadline) {
      await pub.publishAsync('big/again', again, { qos: 1 });
      await new Promise((r) => setTimeout(r, 100));
    }
    t.true(got.length > payloads.length, 'a message arrived after the reconnect');
    t.true(got[payloads.length]!.payload.equals(again));
    t.true(stats.packets > before, 'read in place on the new connection');
  },
);

/**
 * The cheap path for large PUBLISH packets (broker/large-publish.ts): a packet assembled in one buffer whatever
 * the chunks it arrives in, its payload a view of that buffer, the packets around it parsed as before; and through
 * the embedded broker, every message byte-exact to a subscriber when a publisher writes large and small packets in
 * chunks that split headers, payloads and packet boundaries anywhere.
 */
import { randomBytes } from 'node:crypto';
import type { Client } from 'aedes';
import test from 'ava';
import mqttPacket, { type IPublishPacket, type Packet } from 'mqtt-packet';
import { largePublishPath } from '../broker/large-publish.ts';
import { encodePublish } from '../broker/wire.ts';
import { collect, connectClient, startBroker } from './helpers/broker.ts';
import { RawClient } from './helpers/raw-mqtt.ts';

/** A parser behind the cheap path, as aedes holds it (`client._parser`), and the packets it emits. */
function parserWithPath(threshold?: number) {
  const parser = mqttPacket.parser();
  const packets: Packet[] = [];
  parser.on('packet', (p: Packet) => packets.push(p));
  parser.on('error', (err: Error) => {
    throw err;
  });
  const stats = largePublishPath({ _parser: parser } as unknown as Client, undefined, threshold);
  return { parser, packets, stats };
}

/** Splits bytes into chunks of the given sizes, cycling through them. */
function chunks(bytes: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const n = sizes[i % sizes.length]!;
    out.push(bytes.subarray(at, at + n));
    at += n;
  }
  return out;
}

const publish = (topic: string, payload: Buffer, messageId = 1) =>
  encodePublish({ topic, payload, qos: 1, messageId });

test('a large PUBLISH in many chunks is assembled in one buffer; its payload is a view of it', (t) => {
  const { parser, packets, stats } = parserWithPath();
  const payload = randomBytes(1024 * 1024 + 3);
  const small = randomBytes(100);
  const stream = Buffer.concat([
    publish('a/b', payload, 7),
    publish('s', small, 8),
    publish('c', payload, 9),
  ]);
  // Odd chunk sizes: the fixed header, the topic, the payload and the next packet's header all split somewhere.
  for (const c of chunks(stream, [1, 2, 3, 65_536, 7, 50_001, 1000])) parser.parse(c);
  t.is(packets.length, 3);
  const [a, s, c] = packets as IPublishPacket[];
  t.is(a!.topic, 'a/b');
  t.is(a!.messageId, 7);
  t.true(Buffer.from(a!.payload as Buffer).equals(payload));
  t.true(Buffer.from(s!.payload as Buffer).equals(small));
  t.is(c!.messageId, 9);
  t.true(Buffer.from(c!.payload as Buffer).equals(payload));
  // One buffer per large packet (topic, packet id and payload: the remaining length), the payload a view of it.
  t.is(stats.packets, 2);
  const view = a!.payload as Buffer;
  t.is(view.buffer.byteLength, payload.length + 2 + 3 + 2);
  t.is(view.byteOffset, 2 + 3 + 2);
});

test('a large PUBLISH that arrives whole, and packets below the threshold, take the parser as it is', (t) => {
  const { parser, packets, stats } = parserWithPath(1024);
  const big = randomBytes(4096);
  // Whole in one chunk: nothing to assemble.
  parser.parse(publish('x', big));
  // Below the threshold, in chunks: the parser's own list.
  for (const c of chunks(publish('y', randomBytes(1000), 2), [10])) parser.parse(c);
  t.is(packets.length, 2);
  t.true(Buffer.from((packets[0] as IPublishPacket).payload as Buffer).equals(big));
  t.is(stats.packets, 0);
  // Just above it, in chunks: assembled.
  for (const c of chunks(publish('z', randomBytes(1100), 3), [10])) parser.parse(c);
  t.is(packets.length, 3);
  t.is(stats.packets, 1);
});

test('through the broker: large and small messages written in arbitrary chunks arrive byte-exact, in order', async (t) => {
  const broker = await startBroker(t);
  const sub = await connectClient(t, broker.url);
  const got = await collect(sub, 'big/#');
  const raw = await RawClient.connect(t, broker.url, { clientId: 'chunked-publisher' });
  const sizes = [4 * 1024 * 1024, 10, 64 * 1024, 16 * 1024 - 16, 16 * 1024, 1024 * 1024 + 1, 0];
  const payloads = sizes.map((n) => randomBytes(n));
  const stream = Buffer.concat(payloads.map((p, i) => publish(`big/${i}`, p, i + 1)));
  for (const c of chunks(stream, [3, 70_000, 1, 9000, 131_072, 5])) raw.send(c);
  for (const [i, p] of payloads.entries()) {
    const m = await got.next();
    t.is(m.topic, `big/${i}`);
    t.true(m.payload.equals(p), `payload ${i} (${p.length} bytes) arrived byte-exact`);
  }
  // 4 MiB, 1 MiB + 1 and 64 KiB span several reads of the socket (64 KiB at most each), so they were read into
  // buffers of their own (a TCP connection: broker/direct-read.ts); 16 KiB may have arrived in one read; 16 KiB - 16
  // is below the threshold with its header, the rest far below. None was left to the parser's wrapper.
  t.true(
    broker.directReads.packets >= 3 && broker.directReads.packets <= 4,
    String(broker.directReads.packets),
  );
  t.is(broker.largePublishes.packets, 0);
});

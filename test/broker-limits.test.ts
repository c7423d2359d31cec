/**
 * The embedded broker's resource limits (broker/limits.ts), on the real broker over real sockets: an oversized
 * packet is refused from its fixed header before it is buffered (far smaller before CONNECT), an oversized retained
 * payload is acknowledged and dropped, connections per address and connect rate are bounded, a socket that never
 * sends CONNECT is closed. Each refusal is counted and logged once.
 */
import { connect, type Socket } from 'node:net';
import test, { type ExecutionContext } from 'ava';
import mqtt from 'mqtt';
import { EmbeddedBroker } from '../broker/broker.ts';
import type { BrokerLimits } from '../broker/limits.ts';
import { waitFor } from './helpers/edge.ts';
import { capturingLogger, type LogLine } from './helpers/log.ts';
import { sleep } from './helpers/wait.ts';

async function brokerWith(
  t: ExecutionContext,
  limits: Partial<BrokerLimits>,
): Promise<{ broker: EmbeddedBroker; logs: LogLine[] }> {
  const { logger, lines: logs } = capturingLogger('warn');
  const broker = new EmbeddedBroker({
    host: '127.0.0.1',
    port: 0,
    logger,
    limits,
  });
  await broker.start();
  t.teardown(() => broker.stop());
  return { broker, logs };
}

/** A raw socket, and a promise of its close. */
async function rawSocket(port: number): Promise<{ socket: Socket; closed: Promise<void> }> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  return { socket, closed };
}

/** An MQTT remaining length (variable byte integer). */
function varint(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

const within = <T>(p: Promise<T>, ms: number, what: string) =>
  Promise.race([
    p,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms)),
  ]);

test('a CONNECT announcing 200 MB is refused from its header: the socket is closed before the body is sent', async (t) => {
  const { broker, logs } = await brokerWith(t, {});
  const { socket, closed } = await rawSocket(broker.port);
  // CONNECT fixed header (0x10), remaining length 200,000,000, then the first kilobyte of the body.
  socket.write(Buffer.concat([Buffer.from([0x10]), varint(200_000_000), Buffer.alloc(1024)]));
  await within(closed, 2000, 'the socket to be closed');
  t.is(broker.limitStats()['pre-connect packet'], 1);
  const line = logs.find((l) => l.limit === 'pre-connect packet');
  t.is(line?.msg, 'refused: over the pre-connect packet limit of 65536');
  t.is(line?.bytes, 200_000_000);
  t.is(line?.address, '127.0.0.1');
});

test('a connected client over the packet limit is disconnected; under it, it is served', async (t) => {
  const { broker } = await brokerWith(t, { maxPacketBytes: 100_000 });
  const sub = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
  t.teardown(() => sub.endAsync(true));
  const got: number[] = [];
  sub.on('message', (_topic, payload) => got.push(payload.length));
  await sub.subscribeAsync('big/#', { qos: 1 });
  const pub = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
  t.teardown(() => pub.endAsync(true));
  await pub.publishAsync('big/ok', Buffer.alloc(90_000), { qos: 1 });
  await waitFor(() => got.length === 1, 'the message under the limit');
  const closed = new Promise<void>((resolve) => pub.once('close', () => resolve()));
  void pub.publishAsync('big/over', Buffer.alloc(200_000), { qos: 1 }).catch(() => undefined);
  await within(closed, 2000, 'the publisher to be disconnected');
  t.is(broker.limitStats().packet, 1);
  t.deepEqual(got, [90_000], 'the oversized message was not routed');
});

test('a retained payload over the limit is acknowledged and dropped; the next one under it is retained', async (t) => {
  const { broker, logs } = await brokerWith(t, { maxRetainedBytes: 1000 });
  const sub = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
  t.teardown(() => sub.endAsync(true));
  const got: number[] = [];
  sub.on('message', (_topic, payload) => got.push(payload.length));
  await sub.subscribeAsync('profile/x', { qos: 1 });
  const pub = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
  t.teardown(() => pub.endAsync(true));
  await pub.publishAsync('profile/x', Buffer.alloc(2000), { qos: 1, retain: true });
  await pub.publishAsync('profile/x', Buffer.alloc(500), { qos: 1, retain: true });
  await waitFor(() => got.length >= 1, 'the retained message under the limit');
  t.deepEqual(got, [500], 'the oversized one was neither routed nor retained');
  t.true(pub.connected, 'the publisher stays connected');
  const late = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
  t.teardown(() => late.endAsync(true));
  const retained: number[] = [];
  late.on('message', (_topic, payload) => retained.push(payload.length));
  await late.subscribeAsync('profile/x', { qos: 1 });
  await waitFor(() => retained.length === 1, 'the retained message');
  t.deepEqual(retained, [500]);
  t.is(broker.limitStats().retained, 1);
  t.truthy(logs.find((l) => l.limit === 'retained' && l.topic === 'profile/x' && l.bytes === 2000));
});

test('connections per address and connect rate are bounded; a closed connection frees its place', async (t) => {
  const { broker } = await brokerWith(t, { maxConnectionsPerAddress: 3, connectsPerSecond: 1000 });
  const open = await Promise.all([1, 2, 3].map(() => rawSocket(broker.port)));
  const fourth = await rawSocket(broker.port);
  await within(fourth.closed, 2000, 'the fourth connection to be closed');
  t.is(broker.limitStats().connections, 1);
  open[0]!.socket.destroy();
  await open[0]!.closed;
  await sleep(50); // the broker's side of the close
  const client = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
  t.teardown(() => client.endAsync(true));
  t.true(client.connected, 'a place freed is taken again');
  for (const o of open) o.socket.destroy();

  // Rate: 2 per second, bursts of 4.
  const { broker: slow } = await brokerWith(t, { connectsPerSecond: 2 });
  const burst = await Promise.all([1, 2, 3, 4, 5].map(() => rawSocket(slow.port)));
  await within(Promise.race(burst.map((b) => b.closed)), 2000, 'a connection beyond the burst to be closed');
  t.is(slow.limitStats()['connect rate'], 1);
  for (const b of burst) b.socket.destroy();
});

test('a socket that never sends CONNECT is closed after the connect timeout', async (t) => {
  const { broker } = await brokerWith(t, { connectTimeoutMs: 300 });
  const started = performance.now();
  const { closed } = await rawSocket(broker.port);
  await within(closed, 3000, 'the silent socket to be closed');
  const ms = performance.now() - started;
  t.true(ms >= 250, `closed after ${ms.toFixed(0)} ms`);
});

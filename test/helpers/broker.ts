/**
 * Test helpers: a real embedded broker on port 0, closed when the test ends (aedes' test/helper.js style).
 */
import { createServer } from 'node:net';
import type { ExecutionContext } from 'ava';
import mqtt, { type MqttClient } from 'mqtt';
import { EmbeddedBroker } from '../../broker/broker.ts';
import { silentLogger } from '../../runtime/log.ts';

/**
 * A free loopback port below Linux's ephemeral range (32768-60999). A test that stops a broker and restarts it on
 * the same port uses one: a port the OS handed out for port 0 could meanwhile be handed to a broker of another
 * test running in parallel, and the reconnecting clients would then talk to that broker.
 */
export async function stablePort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (await portFree(port)) return port;
  }
}

/** True when nothing listens on this loopback port right now. */
export function portFree(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** Starts the embedded broker on a free loopback port (or the given one); stops it at teardown. */
export async function startBroker(
  t: ExecutionContext,
  ws = false,
  port = 0,
  shared?: ConstructorParameters<typeof EmbeddedBroker>[0]['shared'],
): Promise<EmbeddedBroker> {
  const broker = new EmbeddedBroker({
    host: '127.0.0.1',
    port,
    wsPort: ws ? 0 : undefined,
    logger: silentLogger,
    ...(shared ? { shared } : {}),
  });
  await broker.start();
  t.teardown(() => broker.stop());
  return broker;
}

/** A plain MQTT client, ended at teardown. */
export async function connectClient(
  t: ExecutionContext,
  url: string,
  opts: mqtt.IClientOptions = {},
): Promise<MqttClient> {
  const client = await mqtt.connectAsync(url, { reconnectPeriod: 0, ...opts });
  t.teardown(() => client.endAsync(true));
  return client;
}

/** Collects messages on a topic filter; `next()` resolves with the next one (or rejects after a timeout). */
export async function collect(client: MqttClient, filter: string) {
  const queue: Array<{ topic: string; payload: Buffer }> = [];
  const waiters: Array<(m: { topic: string; payload: Buffer }) => void> = [];
  client.on('message', (topic, payload) => {
    const m = { topic, payload };
    const w = waiters.shift();
    if (w) w(m);
    else queue.push(m);
  });
  await client.subscribeAsync(filter, { qos: 1 });
  return {
    all: queue,
    next(timeoutMs = 10_000): Promise<{ topic: string; payload: Buffer }> {
      const m = queue.shift();
      if (m) return Promise.resolve(m);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no message on ${filter} within ${timeoutMs} ms`)),
          timeoutMs,
        );
        waiters.push((msg) => {
          clearTimeout(timer);
          resolve(msg);
        });
      });
    },
  };
}

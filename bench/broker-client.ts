/**
 * Clients of `npm run bench -- broker`, in a process of their own, each with its own MQTT connection: a publisher
 * keeping `inflight` messages of `size` bytes in flight on its topic, or a subscriber counting what arrives on its
 * filter. The first 8 bytes of a payload are its send time (ms since the epoch, with fractions; one host, one
 * clock), so a subscriber measures each message's latency through the broker.
 *
 * Protocol with bench/broker.ts: the argument is a JSON array of jobs, one per client; the process prints
 * `{"ready":true}` once every client is connected (and subscribed), reads the start time (epoch ms) from a line on
 * stdin, runs until the end of the measured window, and prints the clients' results as one JSON array on one line,
 * in the order of the jobs. Messages count when sent (publisher) or received (subscriber) inside the window
 * [start + warmMs, start + warmMs + durationMs).
 */

import type { Socket } from 'node:net';
import { createInterface } from 'node:readline';
import mqtt from 'mqtt';
import { storeWithoutClone } from '../runtime/mqtt-patches.ts';
import { readInPlace } from './in-place-reader.ts';

/** What one client does. */
export interface ClientJob {
  url: string;
  role: 'pub' | 'sub';
  /** Publisher: the topic; subscriber: the filter. */
  topic: string;
  size: number;
  qos: 0 | 1;
  /** Publisher: messages in flight at once (QoS 1: unacknowledged; QoS 0: not yet written to the socket). */
  inflight: number;
  warmMs: number;
  durationMs: number;
  /** Subscriber: how long after the window to wait for stragglers before reporting. */
  graceMs: number;
}

/** What a client reports. */
export interface ClientResult {
  role: 'pub' | 'sub';
  /** Messages sent (publisher: acknowledged, for QoS 1) or received inside the window. */
  messages: number;
  bytes: number;
  /**
   * Subscriber: latency of the messages received in the window, ms, as at most {@link LATENCY_POINTS} evenly spaced
   * quantiles (sorted ascending; each stands for messages / its length of them).
   */
  latenciesMs?: number[];
  /** Publisher: messages sent in all (warm-up included), so a subscriber's losses can be told. */
  sentTotal?: number;
  /** Subscriber: messages received in all. */
  receivedTotal?: number;
}

/** Latency quantiles a subscriber reports. */
export const LATENCY_POINTS = 2000;

const now = () => performance.timeOrigin + performance.now();

/**
 * The buffers large messages are read into, given back by a subscriber once it has read a message's send time: the
 * subscriber's own cost kept small, so the broker's shows, as the publisher's is (below). Without them every
 * message would be a fresh buffer, and on this project's virtual machines the first touch of fresh pages cost the
 * subscriber more than the broker's work per message.
 */
class ReceiveBuffers {
  private readonly free = new Map<number, Buffer[]>();
  /** At most this many idle buffers per size (a subscriber gives each back before it reads the next message). */
  private static readonly KEEP = 32;

  /** The memory of the buffers handed out: only those come back (a small payload shares Node's pool with others). */
  private readonly ours = new WeakSet<ArrayBufferLike>();

  take = (size: number): Buffer => {
    const reused = this.free.get(size)?.pop();
    if (reused) return reused;
    const fresh = Buffer.allocUnsafeSlow(size);
    this.ours.add(fresh.buffer);
    return fresh;
  };

  /** Gives back the buffer `payload` was read into, if it was one of these (a large message's payload is a view of it). */
  giveBack(payload: Buffer): void {
    if (!this.ours.has(payload.buffer)) return;
    const whole = Buffer.from(payload.buffer, 0, payload.buffer.byteLength);
    const list = this.free.get(whole.length) ?? [];
    this.free.set(whole.length, list);
    if (list.length < ReceiveBuffers.KEEP) list.push(whole);
  }
}

const receiveBuffers = new ReceiveBuffers();

function connect(job: ClientJob): Promise<mqtt.MqttClient> {
  const client = mqtt.connect(job.url, {
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    // The broker's cost is measured, not the client's: no deep copy of each QoS 1 payload.
    queueQoSZero: false,
    manualConnect: true,
  });
  storeWithoutClone(client);
  // Large messages read in place, each into a buffer of its own (bench/in-place-reader.ts), reused once read.
  if (job.role === 'sub') readInPlace(client, { take: receiveBuffers.take });
  client.connect();
  return new Promise((resolve, reject) => {
    client.once('connect', () => {
      (client.stream as Partial<Socket>).setNoDelay?.(true);
      resolve(client);
    });
    client.once('error', reject);
  });
}

async function startSignal(): Promise<number> {
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    const at = Number(line.trim());
    if (Number.isFinite(at)) {
      lines.close();
      return at;
    }
  }
  throw new Error('stdin closed before the start time came');
}

async function publisher(job: ClientJob, client: mqtt.MqttClient, start: number): Promise<ClientResult> {
  const from = start + job.warmMs;
  const until = from + job.durationMs;
  let messages = 0;
  let sentTotal = 0;
  const wait = start - now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  await new Promise<void>((resolve) => {
    // Never longer than the window and a grace period: a QoS 0 write that the broker stopped reading never calls
    // back, and the subscriber has reported by then anyway.
    setTimeout(resolve, Math.max(0, until + job.graceMs - now())).unref();
    let running = 0;
    // The publisher's own cost kept small, so the broker's shows: one payload buffer per message in flight, filled
    // once and reused once its message is done with (QoS 1: acknowledged, the broker holds it whole; QoS 0 of at
    // least a socket's high-water mark: written, or the write callback would have waited for 'drain'). Only the
    // send time in its first 8 bytes changes. A fresh buffer per message cost the publisher a 1 MiB memset and, on
    // this project's virtual machines, fresh pages: more than the broker's work per message, and growing with the
    // number of client processes sharing the cores.
    const reuse = job.qos === 1 || job.size >= 16 * 1024;
    const free: Buffer[] = [];
    const take = (): Buffer => {
      const reused = reuse ? free.pop() : undefined;
      if (reused) return reused;
      const fresh = Buffer.allocUnsafe(job.size);
      fresh.fill(0x5a, 8);
      return fresh;
    };
    const pump = () => {
      while (running < job.inflight && now() < until) {
        const payload = take();
        const sentAt = now();
        payload.writeDoubleLE(sentAt, 0);
        running++;
        sentTotal++;
        client.publish(job.topic, payload, { qos: job.qos }, (err) => {
          if (reuse) free.push(payload);
          running--;
          if (!err && sentAt >= from && sentAt < until) messages++;
          if (now() >= until && running === 0) resolve();
          else setImmediate(pump);
        });
      }
    };
    pump();
  });
  return { role: 'pub', messages, bytes: messages * job.size, sentTotal };
}

/** Subscribes; the returned function counts what arrives in the window that starts at its argument. */
async function subscriber(
  job: ClientJob,
  client: mqtt.MqttClient,
): Promise<(start: number) => Promise<ClientResult>> {
  const latencies: number[] = [];
  let receivedTotal = 0;
  let from = Number.POSITIVE_INFINITY;
  let until = Number.POSITIVE_INFINITY;
  client.on('message', (_topic, payload) => {
    const at = now();
    receivedTotal++;
    if (at >= from && at < until && payload.length >= 8) latencies.push(at - payload.readDoubleLE(0));
    receiveBuffers.giveBack(payload);
  });
  await client.subscribeAsync(job.topic, { qos: job.qos });
  return async (start) => {
    from = start + job.warmMs;
    until = from + job.durationMs;
    await new Promise((r) => setTimeout(r, until + job.graceMs - now()));
    latencies.sort((a, b) => a - b);
    // At most LATENCY_POINTS quantiles of them (a 1 KiB run delivers hundreds of thousands).
    const k = Math.min(latencies.length, LATENCY_POINTS);
    const points = Array.from({ length: k }, (_, i) => latencies[Math.floor((i * latencies.length) / k)]!);
    return {
      role: 'sub',
      messages: latencies.length,
      bytes: latencies.length * job.size,
      latenciesMs: points,
      receivedTotal,
    };
  };
}

async function main(): Promise<void> {
  const jobs = JSON.parse(process.argv[2] ?? '[]') as ClientJob[];
  const clients = await Promise.all(jobs.map((job) => connect(job)));
  const runs = await Promise.all(
    jobs.map((job, i) =>
      job.role === 'sub'
        ? subscriber(job, clients[i]!)
        : (start: number) => publisher(job, clients[i]!, start),
    ),
  );
  process.stdout.write('{"ready":true}\n');
  const start = await startSignal();
  const results = await Promise.all(runs.map((run) => run(start)));
  await Promise.all(clients.map((c) => c.endAsync(true)));
  // Exit once the line is written: a pipe takes a long line in several writes.
  process.stdout.write(`${JSON.stringify(results)}\n`, () => process.exit(0));
}

main().catch((err: unknown) => {
  process.stderr.write(`bench broker client: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});

/**
 * `npm run bench -- fairness [--burst N]`: one robot's burst against another robot's latency on a shared tail
 * worker. The embedded broker and one tail worker (one slot, its tails stretched to a slow server's 20 ms), and two
 * robots as raw MQTT clients: robot B sends a request every 50 ms for 10 s alone (idle), then again while robot A
 * sends a burst of N requests (default 2000) at once. Reported: B's median and p95 latency (send to result) idle and
 * under the burst, their ratio (target: p95 within 2x), and how A's burst was answered (served, refused as
 * overloaded). Without the worker's per-device queues B waited behind all of A's requests.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { EmbeddedBroker } from '../broker/broker.ts';
import { UserError } from '../common/errors.ts';
import { silentLogger } from '../common/log.ts';
import { ModelHandle } from '../common/model-handle.ts';
import { mulberry32 } from '../common/random.ts';
import { createSession, runWire } from '../common/runtime.ts';
import { median, quantile } from '../common/stats.ts';
import { decodeMessage, emptyTimes, encodeRequest } from '../schemas/codec.ts';
import { TAIL_GROUP, topics } from '../schemas/topics.ts';
import { randomInputs } from '../services/edge-head/frames.ts';
import { writeDemoModel } from '../services/edge-head/main.ts';
import { TailWorker } from '../services/server-tail/worker.ts';

const TAIL_MS = 20;
const PERIOD_MS = 50;
const PHASE_MS = 10_000;

/** `p`, or an error naming `what` after `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`fairness: no ${what} within ${ms / 1000} s`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** `npm run bench -- fairness [--burst N]`. */
export async function run(args: string[]): Promise<void> {
  const i = args.indexOf('--burst');
  const burst = i >= 0 ? Number(args[i + 1]) : 2000;
  if (!(Number.isInteger(burst) && burst >= 1 && burst <= 100_000))
    throw new UserError(
      `--burst ${String(args[i + 1])} is not allowed: expected a whole number from 1 to 100000`,
    );
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-fairness-'));
  const broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, logger: silentLogger });
  await broker.start();
  const clients: mqtt.MqttClient[] = [];
  let worker: TailWorker | undefined;
  try {
    const model = await ModelHandle.fromFile(await writeDemoModel(dir));
    const k = 1;
    const crossing = await runWire(
      await createSession(model.part(k, 'head')),
      randomInputs(model.inputs, mulberry32(3)),
    );
    worker = new TailWorker(
      {
        mqttUrl: broker.url,
        workerId: 'tail-fair',
        modelsDir: dir,
        group: TAIL_GROUP,
        concurrency: 1,
        threads: 1,
        maxRequestBytes: 1 << 24,
        sessionCache: 4,
        telemetryMs: 1000,
        profileRuns: 3,
        // A slow server: the demo CNN's tail (about a millisecond here) stretched to about TAIL_MS.
        emulateDevice: { kind: 'factor', factor: TAIL_MS },
      },
      silentLogger,
    );
    await worker.start();
    const connect = async (id: string) => {
      const c = await mqtt.connectAsync(broker.url, { clientId: id, reconnectPeriod: 0 });
      clients.push(c);
      return c;
    };
    const sentAt = new Map<string, number>();
    const latency = new Map<string, number>();
    const codes = new Map<string, number>();
    const observer = await connect('observer');
    // The worker emulates the slow server once it has profiled the model and published the profile.
    const profiled = new Promise<void>((resolve) =>
      observer.on('message', (topic) => {
        if (topics.workerProfile.match(topic)) resolve();
      }),
    );
    await observer.subscribeAsync(topics.workerProfile.filter(), { qos: 1 });
    await within(profiled, 60_000, 'the worker to profile the demo CNN');
    observer.on('message', (topic, payload) => {
      if (!topics.result.match(topic)) return;
      const m = decodeMessage(payload);
      const id = m.kind === 'result' || m.kind === 'error' ? m.value.requestId : '';
      const at = sentAt.get(id);
      if (at !== undefined) latency.set(id, performance.now() - at);
      const code = m.kind === 'error' ? m.value.code : m.kind;
      if (id.startsWith('a')) codes.set(code, (codes.get(code) ?? 0) + 1);
    });
    await observer.subscribeAsync(topics.result.filter(), { qos: 1 });
    const send = (c: mqtt.MqttClient, device: string, id: string) => {
      sentAt.set(id, performance.now());
      const times = { ...emptyTimes(), sent: Date.now() };
      const payload = encodeRequest({
        requestId: id,
        deviceId: device,
        modelId: model.id,
        cutId: k,
        tensors: crossing,
        times,
        deadlineMs: 0,
      });
      return c.publishAsync(topics.request.build({ device }), Buffer.from(payload), { qos: 1 });
    };
    const a = await connect('robot-a');
    const b = await connect('robot-b');
    await send(b, 'robot-b', 'warm');
    await within(
      new Promise<void>((resolve) => {
        const poll: NodeJS.Timeout = setInterval(() => {
          if (!latency.has('warm')) return;
          clearInterval(poll);
          resolve();
        }, 20);
        poll.unref();
      }),
      30_000,
      'the first answer of the worker',
    );
    const phase = async (name: string) => {
      const ids: string[] = [];
      const end = performance.now() + PHASE_MS;
      let n = 0;
      while (performance.now() < end) {
        const id = `${name}${n++}`;
        ids.push(id);
        void send(b, 'robot-b', id);
        await new Promise((r) => setTimeout(r, PERIOD_MS));
      }
      const deadline = performance.now() + 60_000;
      while (ids.some((id) => !latency.has(id)) && performance.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      const ms = ids.flatMap((id) => (latency.has(id) ? [latency.get(id)!] : []));
      return { sent: ids.length, answered: ms.length, p50: median(ms), p95: quantile(ms, 0.95) };
    };
    process.stderr.write(`fairness: robot B alone for ${PHASE_MS / 1000} s\n`);
    const idle = await phase('idle');
    process.stderr.write(`fairness: robot B again while robot A sends ${burst} requests at once\n`);
    const bursting = phase('burst');
    await Promise.all(Array.from({ length: burst }, (_, j) => send(a, 'robot-a', `a${j}`)));
    const loaded = await bursting;
    const row = (name: string, p: typeof idle) =>
      `| ${name} | ${p.sent} | ${p.answered} | ${p.p50.toFixed(1)} | ${p.p95.toFixed(1)} |`;
    const ratio = loaded.p95 / idle.p95;
    process.stdout.write(
      [
        `fairness: one tail worker (1 slot), robot B every ${PERIOD_MS} ms for ${PHASE_MS / 1000} s, alone and while robot A bursts ${burst} requests`,
        '',
        '| robot B | requests | answered | median ms | p95 ms |',
        '|---|---|---|---|---|',
        row('alone', idle),
        row(`during A's burst of ${burst}`, loaded),
        '',
        `A's burst: ${[...codes.entries()].map(([c, n]) => `${n} ${c === 'result' ? 'served' : c}`).join(', ')}`,
        `B's p95 under the burst: ${ratio.toFixed(2)}x its idle p95 (target <= 2x): ${ratio <= 2 ? 'PASS' : 'FAIL'}`,
        '',
      ].join('\n'),
    );
  } finally {
    for (const c of clients) await c.endAsync().catch(() => undefined);
    await worker?.stop();
    await broker.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

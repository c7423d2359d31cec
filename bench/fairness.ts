/**
 * `npm run bench -- fairness [--burst N]`: one robot's burst against another robot's latency on a shared tail
 * worker. The embedded broker and one tail worker (its default concurrency, one tail per core; its tails stretched to a
 * server 20x slower than this host) run as processes, as robot A does (bench/fairness-burst.ts); every request carries
 * the demo CNN's input (cut 0). Robot B is this process, a raw MQTT client that sends a
 * request every 50 ms for 10 s alone (idle), then again while robot A sends a burst of N requests (default 2000) at
 * once. Reported: B's median and p95 latency (send to result) idle and under the burst, their ratio (target: p95
 * within 2x), and how A's burst was answered (served, refused as overloaded). Without the broker's turns per topic
 * and the worker's queues per device, B waited behind all of A's requests.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { type ServiceProcess, startService } from '../cli/processes.ts';
import { ModelHandle } from '../model/handle.ts';
import { mulberry32 } from '../model/random.ts';
import { median, quantile } from '../planning/stats.ts';
import { UserError } from '../runtime/errors.ts';
import { decodeMessage, emptyTimes, encodeRequest } from '../schemas/codec.ts';
import { topics } from '../schemas/topics.ts';
import { randomInputs } from '../services/edge-head/frames.ts';
import { writeDemoModel } from '../services/edge-head/main.ts';
import { freePort } from './processes.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** The worker emulates a server this many times slower than this host. */
const TAIL_FACTOR = 20;
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

/** Which of B's requests took longer than `limitMs`, and when in the phase they were sent. */
function slowLine(series: ReadonlyArray<[number, number]>, limitMs: number): string {
  const slow = series.filter(([, ms]) => ms > limitMs);
  if (slow.length === 0) return `B's requests over ${limitMs.toFixed(1)} ms (2x its idle p95): none`;
  const worst = Math.max(...slow.map(([, ms]) => ms));
  return (
    `B's requests over ${limitMs.toFixed(1)} ms (2x its idle p95): ${slow.length}, sent from ` +
    `${(slow[0]![0] / 1000).toFixed(2)} s to ${(slow.at(-1)![0] / 1000).toFixed(2)} s into the burst phase ` +
    `(A's burst starts at 0), the slowest ${worst.toFixed(0)} ms`
  );
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
  const quiet = { onStdout: () => undefined, onStderr: () => undefined };
  const procs: ServiceProcess[] = [];
  const clients: mqtt.MqttClient[] = [];
  let robotA: ReturnType<typeof spawn> | undefined;
  try {
    const file = await writeDemoModel(dir);
    const model = await ModelHandle.fromFile(file);
    // Cut 0: the requests carry the model's input, so neither robot needs an onnxruntime session of its own (the
    // worker's tail is the whole model, stretched like any tail).
    const k = 0;
    const crossing = randomInputs(model.inputs, mulberry32(3));
    const step = (what: string) => process.stderr.write(`fairness: ${what}\n`);
    step('starting the broker and the tail worker');
    const port = await freePort();
    const url = `mqtt://127.0.0.1:${port}`;
    const broker = startService('broker', ['broker', '--port', String(port), '--host', '127.0.0.1'], quiet);
    procs.push(broker);
    await within(broker.ready, 30_000, 'broker ready');
    // A slow server: the demo CNN (a fraction of a millisecond here) stretched TAIL_FACTOR times.
    const worker = startService(
      'tail',
      // The worker as a user runs it: one tail at a time per core (TAIL_CONCURRENCY=auto).
      ['tail', '--worker-id', 'tail-fair', '--models-dir', dir, '--threads', '1'],
      {
        ...quiet,
        env: { MQTT_URL: url, EMULATE_DEVICE: `x${TAIL_FACTOR}`, PROFILE_RUNS: '3', LOG_LEVEL: 'error' },
      },
    );
    procs.push(worker);
    const connect = async (id: string) => {
      const c = await mqtt.connectAsync(url, { clientId: id, reconnectPeriod: 0 });
      clients.push(c);
      return c;
    };
    const sentAt = new Map<string, number>();
    const latency = new Map<string, number>();
    const offsets = new Map<string, number>();
    const observer = await connect('observer');
    // The worker emulates the slow server once it has profiled the model and published the profile.
    const profiled = new Promise<void>((resolve) =>
      observer.on('message', (topic) => {
        if (topics.workerProfile.match(topic)) resolve();
      }),
    );
    await observer.subscribeAsync(topics.workerProfile.filter(), { qos: 1 });
    step('waiting for the worker to profile the demo CNN');
    await within(profiled, 60_000, 'the worker to profile the demo CNN');
    observer.on('message', (topic, payload) => {
      if (!topics.result.match(topic)) return;
      const m = decodeMessage(payload);
      const id = m.kind === 'result' || m.kind === 'error' ? m.value.requestId : '';
      const at = sentAt.get(id);
      if (at !== undefined) latency.set(id, performance.now() - at);
    });
    await observer.subscribeAsync(topics.result.build({ device: 'robot-b' }), { qos: 1 });
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
    const b = await connect('robot-b');
    step('waiting for the first answer of the worker');
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
      const start = performance.now();
      const end = start + PHASE_MS;
      let n = 0;
      while (performance.now() < end) {
        const id = `${name}${n++}`;
        ids.push(id);
        offsets.set(id, performance.now() - start);
        void send(b, 'robot-b', id);
        await new Promise((r) => setTimeout(r, PERIOD_MS));
      }
      const deadline = performance.now() + 60_000;
      while (ids.some((id) => !latency.has(id)) && performance.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      const ms = ids.flatMap((id) => (latency.has(id) ? [latency.get(id)!] : []));
      /** [ms into the phase it was sent, latency ms] of each answered request. */
      const series = ids.flatMap(
        (id): Array<[number, number]> => (latency.has(id) ? [[offsets.get(id)!, latency.get(id)!]] : []),
      );
      return {
        sent: ids.length,
        answered: ms.length,
        p50: median(ms),
        p95: quantile(ms, 0.95),
        series,
      };
    };
    process.stderr.write(`fairness: robot B alone for ${PHASE_MS / 1000} s\n`);
    const idle = await phase('idle');
    // Robot A, its own process: connected and its request computed before the burst phase starts.
    const a = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/fairness-burst.ts')], {
      cwd: ROOT,
      env: { ...process.env, MQTT_URL: url, MODEL_FILE: file, BURST: String(burst) },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    robotA = a;
    const lines = createInterface({ input: a.stdout! })[Symbol.asyncIterator]();
    // Robot A answers within its own bound (FAIRNESS_WAIT_MS, 30 s, after the burst), so a stall shows as unanswered
    // requests in the report rather than as a benchmark that says nothing.
    const line = async (what: string) => {
      const next = await within(lines.next(), 60_000, what);
      if (next.done) throw new Error(`fairness: robot A exited before ${what}`);
      return JSON.parse(next.value) as Record<string, unknown>;
    };
    step('starting robot A');
    await line('robot A connected');
    process.stderr.write(`fairness: robot B again while robot A sends ${burst} requests at once\n`);
    const bursting = phase('burst');
    a.stdin!.write('go\n');
    const loaded = await bursting;
    const report = (await line("robot A's answers")) as {
      answers: Record<string, number>;
      unanswered: number;
    };
    const codes = new Map(Object.entries(report.answers));
    if (report.unanswered > 0) codes.set('unanswered', report.unanswered);
    const row = (name: string, p: typeof idle) =>
      `| ${name} | ${p.sent} | ${p.answered} | ${p.p50.toFixed(1)} | ${p.p95.toFixed(1)} |`;
    const ratio = loaded.p95 / idle.p95;
    process.stdout.write(
      [
        `fairness: broker, one tail worker (${cpus().length} slots, one per core) and robot A as processes; robot B every ${PERIOD_MS} ms for ${PHASE_MS / 1000} s, alone and while robot A bursts ${burst} requests`,
        '',
        '| robot B | requests | answered | median ms | p95 ms |',
        '|---|---|---|---|---|',
        row('alone', idle),
        row(`during A's burst of ${burst}`, loaded),
        '',
        `A's burst: ${[...codes.entries()].map(([c, n]) => `${n} ${c === 'result' ? 'served' : c}`).join(', ')}`,
        slowLine(loaded.series, 2 * idle.p95),
        `B's p95 under the burst: ${ratio.toFixed(2)}x its idle p95 (target <= 2x): ${ratio <= 2 ? 'PASS' : 'FAIL'}`,
        '',
      ].join('\n'),
    );
  } finally {
    robotA?.kill('SIGKILL');
    for (const c of clients) await c.endAsync().catch(() => undefined);
    for (const p of procs.reverse()) await p.stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

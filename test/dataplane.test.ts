/**
 * The data plane on both brokers (the embedded aedes and Mosquitto): competing tail workers share the requests,
 * a worker killed mid-stream loses no frame, and a plan switch mid-stream drops or duplicates none.
 */
import test, { type ExecutionContext } from 'ava';
import { EmbeddedBroker } from '../broker/broker.ts';
import { type ServiceProcess, startService } from '../cli/processes.ts';
import { profileModel } from '../measurement/profiler.ts';
import { mulberry32 } from '../model/random.ts';
import { silentLogger } from '../runtime/log.ts';
import type { Plan } from '../schemas/messages.ts';
import { topics } from '../schemas/topics.ts';
import { EdgeHead, type FrameReport } from '../services/edge-head/edge.ts';
import { randomInputs } from '../services/edge-head/frames.ts';
import { Planner } from '../services/planner/planner.ts';
import { TailWorker } from '../services/server-tail/worker.ts';
import { connectClient, stablePort } from './helpers/broker.ts';
import { demoModelDir } from './helpers/models.ts';
import { forEachBroker, startMosquitto } from './helpers/mosquitto.ts';
import { edgeOptions, tailOptions } from './helpers/services.ts';
import { sleep, waitFor } from './helpers/wait.ts';

async function* frames(
  model: Awaited<ReturnType<typeof demoModelDir>>['model'],
  n: number,
  onFrame?: (i: number) => Promise<void>,
) {
  const rand = mulberry32(3);
  for (let i = 0; i < n; i++) {
    await onFrame?.(i);
    yield { index: i, capturedAt: Date.now(), inputs: randomInputs(model.inputs, rand) };
  }
}

async function edgeFor(
  t: ExecutionContext,
  url: string,
  model: Awaited<ReturnType<typeof demoModelDir>>['model'],
  extra = {},
) {
  const planner = new Planner({ mqttUrl: url, plannerId: 'planner-dp', cut: 'middle' }, silentLogger);
  await planner.start();
  t.teardown(() => planner.stop());
  const profile = await profileModel(model, { runs: 2, warmup: 1, checkCuts: 0 });
  const edge = new EdgeHead(
    model,
    profile,
    edgeOptions({ mqttUrl: url, deviceId: 'robot-dp', window: 6, ...extra }),
    silentLogger,
  );
  await edge.start();
  t.teardown(() => edge.stop());
  t.true(await edge.waitForPlan(), 'a plan arrives');
  return edge;
}

function assertEveryFrameOnce(t: ExecutionContext, reports: FrameReport[], n: number): void {
  t.is(reports.length, n);
  t.deepEqual(
    reports.map((r) => r.index).sort((a, b) => a - b),
    Array.from({ length: n }, (_, i) => i),
  );
  const wrong = reports.filter((r) => !(r.maxAbsDiff !== undefined && r.maxAbsDiff <= 1e-5));
  t.is(wrong.length, 0, `frames differing from the whole model: ${wrong.map((r) => r.index).join(', ')}`);
}

forEachBroker(
  '3 tail workers share 300 requests: each gets some, none twice, all answered',
  async (t, url) => {
    const { dir, model } = await demoModelDir(t);
    const workers = ['w1', 'w2', 'w3'].map(
      (id) => new TailWorker(tailOptions({ mqttUrl: url, workerId: id, modelsDir: dir }), silentLogger),
    );
    for (const w of workers) {
      await w.start();
      t.teardown(() => w.stop());
    }
    const edge = await edgeFor(t, url, model);
    const reports: FrameReport[] = [];
    await edge.run(frames(model, 300), (r) => reports.push(r));
    assertEveryFrameOnce(t, reports, 300);
    t.is(reports.filter((r) => r.fallback).length, 0);
    const served = workers.map((w) => w.servedCount);
    t.log(`served: ${served.join(', ')}`);
    t.true(
      served.every((s) => s > 0),
      `every worker gets some: ${served.join(', ')}`,
    );
    t.is(
      served.reduce((a, b) => a + b, 0),
      300,
      'no request served twice',
    );
    for (const id of ['w1', 'w2', 'w3']) t.true(reports.some((r) => r.tailBy === id));
  },
);

forEachBroker(
  'killing a worker mid-stream loses no frame: each answered once, by redelivery or fallback',
  async (t, url) => {
    const { dir, model } = await demoModelDir(t);
    const procs: ServiceProcess[] = [];
    t.teardown(async () => {
      for (const p of procs) await p.stop(2000);
    });
    const env = { MQTT_URL: url, LOG_LEVEL: 'error', PROFILE_RUNS: '0' };
    for (const id of ['k1', 'k2', 'k3']) {
      const p = startService(id, ['tail', '--worker-id', id, '--models-dir', dir], {
        env,
        onStderr: () => undefined,
      });
      procs.push(p);
      await p.ready;
    }
    const edge = await edgeFor(t, url, model, { resultTimeoutMs: 3000 });
    const reports: FrameReport[] = [];
    await edge.run(
      frames(model, 200, async (i) => {
        if (i === 60) {
          procs[0]!.child.kill('SIGKILL');
          await procs[0]!.exited;
        }
        // Keep some requests in flight at the worker when it dies.
        if (i % 10 === 0) await sleep(5);
      }),
      (r) => reports.push(r),
    );
    assertEveryFrameOnce(t, reports, 200);
    const byWorker = new Map<string, number>();
    for (const r of reports)
      byWorker.set(
        r.fallback ? 'fallback' : r.tailBy,
        (byWorker.get(r.fallback ? 'fallback' : r.tailBy) ?? 0) + 1,
      );
    t.log(JSON.stringify(Object.fromEntries(byWorker)));
    t.true((byWorker.get('k2') ?? 0) + (byWorker.get('k3') ?? 0) > 0, 'the survivors keep serving');
  },
);

forEachBroker(
  'a plan switch mid-stream drops and duplicates no frame, and every result is correct',
  async (t, url) => {
    const { dir, model } = await demoModelDir(t);
    const worker = new TailWorker(
      tailOptions({ mqttUrl: url, workerId: 'ws', modelsDir: dir }),
      silentLogger,
    );
    await worker.start();
    t.teardown(() => worker.stop());
    const edge = await edgeFor(t, url, model);
    const first = edge.currentPlan!;
    const next = model.cuts.find(
      (c) => c.index > 0 && c.index !== first.cut.index && c.index < model.layers && c.tensors.length > 1,
    )!;
    const planner = await connectClient(t, url);
    const reports: FrameReport[] = [];
    await edge.run(
      frames(model, 120, async (i) => {
        if (i === 50) {
          const plan: Plan = {
            ...first,
            seq: first.seq + 1,
            cut: {
              index: next.index,
              after: next.after,
              bytes: next.bytes,
              tensors: next.tensors.map((x) => x.name),
            },
            reason: 'test switch',
            issuedAt: Date.now(),
          };
          await planner.publishAsync(topics.plan.build({ device: 'robot-dp' }), JSON.stringify(plan), {
            qos: 1,
            retain: true,
          });
          await waitFor(
            () => edge.currentPlan?.cut.index === next.index,
            `the edge to take cut ${next.index}`,
          );
        }
      }),
      (r) => reports.push(r),
    );
    assertEveryFrameOnce(t, reports, 120);
    const cuts = new Set(reports.map((r) => r.cut.index));
    t.deepEqual(
      [...cuts].sort((a, b) => a - b),
      [first.cut.index, next.index].sort((a, b) => a - b),
    );
    t.is(reports.filter((r) => r.fallback).length, 0);
    t.true(reports.filter((r) => r.index >= 50).every((r) => r.cut.index === next.index));
  },
);

for (const kind of ['aedes', 'mosquitto'] as const) {
  test(`stopping the broker mid-stream: frames go on by local fallback, offloading resumes after a restart [${kind}]`, async (t) => {
    const { dir, model } = await demoModelDir(t);
    let stopBroker: () => Promise<void>;
    let restart: () => Promise<void>;
    let url: string;
    if (kind === 'aedes') {
      const first = new EmbeddedBroker({ host: '127.0.0.1', port: await stablePort(), logger: silentLogger });
      await first.start();
      url = first.url;
      let current = first;
      t.teardown(() => current.stop());
      stopBroker = () => first.stop();
      restart = async () => {
        current = new EmbeddedBroker({ host: '127.0.0.1', port: first.port, logger: silentLogger });
        await current.start();
      };
    } else {
      const first = await startMosquitto(t, { port: await stablePort() });
      url = first.url;
      stopBroker = () => first.stop();
      restart = async () => {
        await startMosquitto(t, { port: Number(new URL(url).port) });
      };
    }
    const worker = new TailWorker(
      tailOptions({ mqttUrl: url, workerId: 'wb', modelsDir: dir }),
      silentLogger,
    );
    await worker.start();
    t.teardown(() => worker.stop());
    const edge = await edgeFor(t, url, model, { resultTimeoutMs: 2000 });
    const reports: FrameReport[] = [];
    const n = 90;
    await edge.run(
      frames(model, n, async (i) => {
        if (i === 20) await stopBroker();
        if (i === 50) await restart();
        if (i >= 20) await sleep(20);
      }),
      (r) => reports.push(r),
    );
    assertEveryFrameOnce(t, reports, n);
    // Frames pulled after the stop and finished before the restart: up to `window` (6) frames before frame 50
    // may still be queued when the broker is back, and may then go to the worker.
    const during = reports.filter((r) => r.index > 20 && r.index < 50 - 6);
    const offloaded = during.filter((r) => r.fallback === undefined).map((r) => `${r.index} by ${r.tailBy}`);
    t.deepEqual(offloaded, [], 'frames while the broker is down run locally');
    const resumed = reports.filter((r) => r.index >= 75 && !r.fallback && r.tailBy === 'wb');
    t.true(resumed.length > 0, 'offloading resumes after the restart');
    t.log(`fallbacks ${reports.filter((r) => r.fallback).length}, offloaded after restart ${resumed.length}`);
  });
}

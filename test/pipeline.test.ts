/**
 * Integration: frames through head, the real embedded broker, a real tail worker and back, against the whole model
 * run locally with the same runtime (real onnxruntime sessions everywhere).
 */
import test, { type ExecutionContext } from 'ava';
import { profileModel } from '../measurement/profiler.ts';
import { mulberry32 } from '../model/random.ts';
import { silentLogger } from '../runtime/log.ts';
import { EdgeHead, type FrameReport } from '../services/edge-head/edge.ts';
import { randomInputs } from '../services/edge-head/frames.ts';
import { Planner } from '../services/planner/planner.ts';
import { TailWorker } from '../services/server-tail/worker.ts';
import { startBroker } from './helpers/broker.ts';
import { demoModelDir } from './helpers/models.ts';
import { edgeOptions, tailOptions } from './helpers/services.ts';

async function pipeline(t: ExecutionContext, cut: string) {
  const broker = await startBroker(t);
  const { dir, model } = await demoModelDir(t);
  const worker = new TailWorker(
    tailOptions({ mqttUrl: broker.url, workerId: 'tail-a', modelsDir: dir }),
    silentLogger,
  );
  const planner = new Planner({ mqttUrl: broker.url, plannerId: 'planner-a', cut }, silentLogger);
  const profile = await profileModel(model, { runs: 2, warmup: 1, checkCuts: 0 });
  const edge = new EdgeHead(
    model,
    profile,
    edgeOptions({ mqttUrl: broker.url, deviceId: 'robot-1' }),
    silentLogger,
  );
  await worker.start();
  t.teardown(() => worker.stop());
  await planner.start();
  t.teardown(() => planner.stop());
  await edge.start();
  t.teardown(() => edge.stop());
  t.true(await edge.waitForPlan(), 'a plan arrives');
  return { model, edge, worker };
}

async function* frames(model: Awaited<ReturnType<typeof pipeline>>['model'], n: number) {
  const rand = mulberry32(7);
  for (let i = 0; i < n; i++)
    yield { index: i, capturedAt: Date.now(), inputs: randomInputs(model.inputs, rand) };
}

for (const cut of ['middle', '0', '1']) {
  test(`frames split at cut ${cut} equal the whole model`, async (t) => {
    const { model, edge, worker } = await pipeline(t, cut);
    const reports: FrameReport[] = [];
    await edge.run(frames(model, 6), (r) => reports.push(r));
    t.is(reports.length, 6);
    const expected = cut === 'middle' ? edge.currentPlan?.cut.index : Number(cut);
    for (const r of reports) {
      t.is(r.cut.index, expected ?? -1);
      t.is(r.tailBy, 'tail-a');
      t.is(r.fallback, undefined);
      t.true(
        r.maxAbsDiff !== undefined && r.maxAbsDiff <= 1e-5,
        `frame ${r.index} differs by ${r.maxAbsDiff}`,
      );
    }
    t.is(worker.servedCount, 6);
  });
}

test('the middle cut of the demo model is inside the graph and single-tensor', async (t) => {
  const { edge, model } = await pipeline(t, 'middle');
  const plan = edge.currentPlan!;
  t.true(plan.cut.index > 0 && plan.cut.index < model.layers);
  t.is(plan.cut.tensors.length, 1);
});

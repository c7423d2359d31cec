/**
 * A device that declares only its whole-model latency (a robot without edgecut's code) gets plans: the planner
 * spreads the declared latency over a tail worker's per-layer proportions of the same model.
 */
import test from 'ava';
import { silentLogger } from '../runtime/log.ts';
import { PlanSchema } from '../schemas/messages.ts';
import { type DeclaredProfile, ProfileError, parseDeviceProfile } from '../schemas/profile.ts';
import { topics } from '../schemas/topics.ts';
import { profileFromDeclaration } from '../services/planner/declared.ts';
import { chooseFixedCut } from '../services/planner/fixed-cut.ts';
import { Planner } from '../services/planner/planner.ts';
import { collect, connectClient, startBroker } from './helpers/broker.ts';
import { makeProfile } from './helpers/profiles.ts';
import { waitFor } from './helpers/wait.ts';

const CUT_BYTES = [100_000, 50_000, 1_000, 10];
const server = makeProfile([1, 1, 1], CUT_BYTES, { device: 'w1' });
const declared = (device: string, wholeMs: number): DeclaredProfile => ({
  version: 1,
  kind: 'declared',
  device: { id: device, description: 'a Python robot' },
  model: { id: server.model.id },
  wholeMs,
});

test('the declared latency is spread over the median of the workers’ per-layer proportions', (t) => {
  const a = makeProfile([1, 2, 7], CUT_BYTES, { device: 'w1' });
  const b = makeProfile([3, 2, 5], CUT_BYTES, { device: 'w2' });
  const c = makeProfile([2, 2, 6], CUT_BYTES, { device: 'w3' });
  const p = profileFromDeclaration(declared('r9', 50), [a, b, c]);
  t.is(p.kind, 'predicted');
  t.is(p.device.id, 'r9');
  t.deepEqual(
    p.layers.map((l) => l.ms),
    [10, 10, 30],
    'medians 2, 2, 6 scaled by 50 / 10',
  );
  t.is(p.wholeMs.median, 50);
  t.deepEqual(p.cuts, a.cuts, 'the cuts and their sizes are the model’s');
  t.like(p.prediction, { factor: 5, workers: 3 });
});

test('a declaration is checked like any payload: one line naming the field', (t) => {
  t.throws(() => parseDeviceProfile({ ...declared('r1', 10), wholeMs: 0 }, 'profile of device r1'), {
    instanceOf: ProfileError,
    message: 'profile of device r1: wholeMs: expected a latency > 0 ms',
  });
  t.throws(
    () => parseDeviceProfile({ ...declared('r1', 10), model: { id: 'abc' } }, 'profile of device r1'),
    {
      message: 'profile of device r1: model.id: expected a hex sha256',
    },
  );
});

test('on the broker: a declared device gets an Algorithm 1 plan, and a fixed cut once a worker profile is known', async (t) => {
  const broker = await startBroker(t);
  const auto = new Planner(
    { mqttUrl: broker.url, plannerId: 'p-auto', cut: 'auto', edgeLoad: 'none', bandwidth: 10e6, tickMs: 100 },
    silentLogger,
  );
  await auto.start();
  t.teardown(() => auto.stop());
  const robot = await connectClient(t, broker.url);
  const plans = await collect(robot, topics.plan.build({ device: 'r2' }));
  await robot.publishAsync(
    topics.workerProfile.build({ worker: 'w1', model: server.model.id }),
    JSON.stringify(server),
    { qos: 1, retain: true },
  );
  // 30 ms over three equal layers: the same device as the measured 10/10/10 profile of planner-mqtt.test.ts.
  await robot.publishAsync(topics.deviceProfile.build({ device: 'r2' }), JSON.stringify(declared('r2', 30)), {
    qos: 1,
    retain: true,
  });
  const plan = PlanSchema.parse(JSON.parse((await plans.next()).payload.toString()));
  t.is(plan.cut.index, 2);
  t.like(plan.inputs, { edgeProfile: 'predicted' });
  t.is(plan.predicted?.edgeMs, 20);
  await auto.stop();

  // Fixed cut: the declaration waits for a worker's profile of its model, which brings the cuts.
  const other = makeProfile([1, 1, 1, 1], [9, 9, 9, 9, 9], { device: 'w2', id: 'b'.repeat(64) });
  const fixed = new Planner({ mqttUrl: broker.url, plannerId: 'p-fixed', cut: 'middle' }, silentLogger);
  await fixed.start();
  t.teardown(() => fixed.stop());
  // Its own client: `collect` takes every message the client receives.
  const r3 = await collect(await connectClient(t, broker.url), topics.plan.build({ device: 'r3' }));
  await robot.publishAsync(
    topics.deviceProfile.build({ device: 'r3' }),
    JSON.stringify({ ...declared('r3', 8), model: { id: other.model.id } }),
    { qos: 1, retain: true },
  );
  await waitFor(
    () =>
      /no tail worker has published a profile of model bbbbbbbbbbbb yet/.test(fixed.noPlan.get('r3') ?? ''),
    'the reason why r3 has no plan',
  );
  await robot.publishAsync(
    topics.workerProfile.build({ worker: 'w2', model: other.model.id }),
    JSON.stringify(other),
    { qos: 1, retain: true },
  );
  const fixedPlan = PlanSchema.parse(JSON.parse((await r3.next()).payload.toString()));
  const expected = chooseFixedCut(other.cuts, 'middle');
  t.like(fixedPlan.cut, { index: 'error' in expected ? -1 : expected.index }, 'the middle cut of the model');
  t.is(fixedPlan.modelId, other.model.id);
});

/**
 * The planner service on the real embedded broker: retained plans follow synthetic telemetry.
 */
import test from 'ava';
import { PlanSchema } from '../schemas/messages.ts';
import { topics } from '../schemas/topics.ts';
import { Planner } from '../services/planner/planner.ts';
import { collect, connectClient, startBroker } from './helpers/broker.ts';
import { capturingLogger } from './helpers/log.ts';
import { deviceTelemetry, makeProfile, workerTelemetry } from './helpers/profiles.ts';
import { waitFor } from './helpers/wait.ts';

const telemetry = (device: string, kbps: number, loadavg1: number) =>
  deviceTelemetry(device, Date.now(), kbps, loadavg1);

const edge = makeProfile([10, 10, 10], [100_000, 50_000, 1_000, 10], { device: 'r1' });
const server = makeProfile([1, 1, 1], [100_000, 50_000, 1_000, 10], { device: 'w1' });

test('bandwidth down moves the retained plan later, edge load up moves it earlier, no profile means no plan', async (t) => {
  const broker = await startBroker(t);
  const { logger, lines } = capturingLogger();
  const planner = new Planner(
    {
      mqttUrl: broker.url,
      plannerId: 'p1',
      cut: 'auto',
      edgeLoad: 'loadavg',
      bandwidth: 10e6,
      holdMs: 300,
      tickMs: 100,
      minGain: 0.1,
      linkWindow: 3,
    },
    logger,
  );
  await planner.start();
  t.teardown(() => planner.stop());
  const robot = await connectClient(t, broker.url);
  const plans = await collect(robot, topics.plan.build({ device: 'r1' }));
  const nextPlan = async () => PlanSchema.parse(JSON.parse((await plans.next()).payload.toString()));

  await robot.publishAsync(
    topics.workerProfile.build({ worker: 'w1', model: server.model.id }),
    JSON.stringify(server),
    { qos: 1, retain: true },
  );
  await robot.publishAsync(topics.deviceProfile.build({ device: 'r1' }), JSON.stringify(edge), {
    qos: 1,
    retain: true,
  });
  const first = await nextPlan();
  t.is(first.cut.index, 2);
  t.is(first.objective, 'latency');
  t.truthy(first.predicted);

  await robot.publishAsync(
    topics.deviceTelemetry.build({ device: 'r1' }),
    JSON.stringify(telemetry('r1', 100, 0.1)),
  );
  const later = await nextPlan();
  t.is(later.cut.index, 3, later.reason);
  t.regex(later.reason, /switched from cut 2/);
  t.like(later.inputs, { link: { source: 'fitted', samples: 3 } });

  await robot.publishAsync(
    topics.deviceTelemetry.build({ device: 'r1' }),
    JSON.stringify(telemetry('r1', 10_000, 40)),
  );
  const earlier = await nextPlan();
  t.true(earlier.cut.index < 3, earlier.reason);
  t.like(earlier.inputs, { edgeLoad: { mode: 'loadavg', factor: 20 } });

  // A device with telemetry but no profile: no plan, and the reason is logged.
  await robot.publishAsync(
    topics.deviceTelemetry.build({ device: 'r2' }),
    JSON.stringify(telemetry('r2', 10_000, 0.1)),
  );
  await waitFor(
    () => /has published no profile/.test(planner.noPlan.get('r2') ?? ''),
    'the reason why r2 has no plan',
  );
  t.is(planner.plans.get('r2'), undefined);
  t.true(
    lines.some(
      (l) => l.msg === 'no plan for device' && l.device === 'r2' && /no profile/.test(String(l.reason ?? '')),
    ),
  );
});

test('identity from the topic: telemetry naming another device is refused; a silent device is forgotten', async (t) => {
  const broker = await startBroker(t);
  const { logger, lines } = capturingLogger();
  const planner = new Planner(
    {
      mqttUrl: broker.url,
      plannerId: 'p-identity',
      cut: 'auto',
      edgeLoad: 'loadavg',
      bandwidth: 10e6,
      holdMs: 300,
      tickMs: 100,
      linkWindow: 3,
      forgetMs: 300,
    },
    logger,
  );
  await planner.start();
  t.teardown(() => planner.stop());
  const robot = await connectClient(t, broker.url);
  const plans = await collect(robot, topics.plan.build({ device: 'victim' }));
  const nextPlan = async () => PlanSchema.parse(JSON.parse((await plans.next()).payload.toString()));
  await robot.publishAsync(
    topics.workerProfile.build({ worker: 'w1', model: server.model.id }),
    JSON.stringify(server),
    { qos: 1, retain: true },
  );
  await robot.publishAsync(topics.deviceProfile.build({ device: 'victim' }), JSON.stringify(edge), {
    qos: 1,
  });
  t.is((await nextPlan()).cut.index, 2);
  // The attacker, on its own topic, names the victim with a load that would move the victim to full offload.
  await robot.publishAsync(
    topics.deviceTelemetry.build({ device: 'attacker' }),
    JSON.stringify(telemetry('victim', 10_000, 40)),
    { qos: 1 },
  );
  // Then the victim's own telemetry (a slower link): the next plan is the one it asks for.
  const keepAlive = setInterval(
    () =>
      void robot.publishAsync(
        topics.deviceTelemetry.build({ device: 'victim' }),
        JSON.stringify(telemetry('victim', 100, 0.1)),
        { qos: 1 },
      ),
    100,
  );
  t.teardown(() => clearInterval(keepAlive));
  const next = await nextPlan();
  t.is(next.cut.index, 3, next.reason);
  t.like(next.inputs, { edgeLoad: { factor: 1 } });
  const refused = lines.find((l) => l.msg === 'message handler failed');
  const topic = topics.deviceTelemetry.build({ device: 'attacker' });
  t.is(refused?.topic, topic);
  t.is(
    refused?.err,
    `${topic}: refused, the payload names device victim; a device reports on its own topic only`,
  );
  // A worker likewise: telemetry on w1's topic naming w2 (an empty queue that would draw the frames) is refused.
  const w1 = topics.workerTelemetry.build({ worker: 'w1' });
  await robot.publishAsync(w1, JSON.stringify(workerTelemetry('w2', Date.now())), { qos: 1 });
  await waitFor(() => lines.some((l) => l.topic === w1), 'the forged worker telemetry to be refused');
  t.is(
    lines.find((l) => l.topic === w1)?.err,
    `${w1}: refused, the payload names worker w2; a worker reports on its own topic only`,
  );
  // Nothing of the refused messages is kept.
  t.false(planner.noPlan.has('attacker'));
  t.false(planner.noPlan.has('victim'));
  // A device with telemetry and no profile is held (to say why it has no plan) until it has been silent for
  // PLAN_FORGET_MS; the victim, reporting every 100 ms, is kept.
  await robot.publishAsync(
    topics.deviceTelemetry.build({ device: 'ghost' }),
    JSON.stringify(telemetry('ghost', 10_000, 0.1)),
    { qos: 1 },
  );
  await waitFor(() => planner.noPlan.has('ghost'), 'the ghost device to be held');
  await waitFor(
    () => lines.some((l) => l.msg.startsWith('device forgotten') && l.device === 'ghost'),
    'the ghost device to be forgotten',
  );
  t.false(planner.noPlan.has('ghost'));
  t.is(planner.devices, 1);
  t.truthy(planner.plans.get('victim'));
  // The victim goes silent: it is forgotten too, and its metrics series with it.
  clearInterval(keepAlive);
  await waitFor(() => planner.devices === 0, 'the silent victim to be forgotten');
  t.is(planner.plans.get('victim'), undefined);
});

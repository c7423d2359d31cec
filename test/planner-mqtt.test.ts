/**
 * The planner service on the real embedded broker: retained plans follow synthetic telemetry.
 */
import { Writable } from 'node:stream';
import test from 'ava';
import { pino } from 'pino';
import { PlanSchema } from '../schemas/messages.ts';
import { topics } from '../schemas/topics.ts';
import { Planner } from '../services/planner/planner.ts';
import { collect, connectClient, startBroker } from './helpers/broker.ts';
import { deviceTelemetry, makeProfile } from './helpers/profiles.ts';

const telemetry = (device: string, kbps: number, loadavg1: number) =>
  deviceTelemetry(device, Date.now(), kbps, loadavg1);

const edge = makeProfile([10, 10, 10], [100_000, 50_000, 1_000, 10], { device: 'r1' });
const server = makeProfile([1, 1, 1], [100_000, 50_000, 1_000, 10], { device: 'w1' });

test('bandwidth down moves the retained plan later, edge load up moves it earlier, no profile means no plan', async (t) => {
  const broker = await startBroker(t);
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
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
    pino({ level: 'info' }, sink),
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
  await new Promise((r) => setTimeout(r, 500));
  t.is(planner.plans.get('r2'), undefined);
  t.regex(planner.noPlan.get('r2') ?? '', /has published no profile/);
  const logged = lines.map((l) => JSON.parse(l) as { msg: string; device?: string; reason?: string });
  t.true(
    logged.some(
      (l) => l.msg === 'no plan for device' && l.device === 'r2' && /no profile/.test(l.reason ?? ''),
    ),
  );
});

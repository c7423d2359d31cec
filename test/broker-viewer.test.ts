/**
 * The read-only role `viewer` (the dashboard's login; broker/acl.ts `VIEWER_READS`): it may subscribe to the control
 * plane and frame reports of every device and worker, over TCP and WebSocket, and may publish nothing; it may not
 * subscribe to the data plane (requests, results) or outside edgecut/v1/. `edgecut users add --role viewer` writes it.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import type { MqttClient } from 'mqtt';
import { covers, mayPublish, maySubscribe, VIEWER_READS, viewerGrants } from '../broker/acl.ts';
import { parseUsers } from '../broker/users.ts';
import { type TopicSpec, topics } from '../schemas/topics.ts';
import {
  connectAs,
  edgecutWithInput,
  startSecureBroker,
  type TestUser,
  tempDir,
  writeUsersFile,
} from './helpers/auth.ts';
import { collect } from './helpers/broker.ts';

const USERS: TestUser[] = [
  { username: 'dash', role: 'viewer', password: 'pw-dash' },
  { username: 'p1', role: 'planner', password: 'pw-p1' },
  { username: 'robot-1', role: 'device', password: 'pw-robot-1' },
  { username: 'root', role: 'admin', password: 'pw-root' },
];
const password = (name: string) => USERS.find((u) => u.username === name)!.password;
const ids = { device: 'robot-1', worker: 'tail-1', planner: 'p1', model: 'm' };
const specs = Object.entries(topics) as Array<[string, TopicSpec<string>]>;

/** Subscribes and returns the granted QoS, 128 being the failure return code. */
async function granted(client: MqttClient, filter: string): Promise<number> {
  try {
    return (await client.subscribeAsync(filter, { qos: 1 }))[0]!.qos;
  } catch (err) {
    return (err as { packet?: { granted?: number[] } }).packet?.granted?.[0] ?? -1;
  }
}

test("a viewer's grants: every topic the dashboard reads, no data plane, nothing to publish", (t) => {
  const g = viewerGrants();
  t.deepEqual(g.publish, []);
  for (const [name, spec] of specs) {
    t.false(mayPublish(g, spec.build(ids)), `publish ${name}`);
    const readable = (VIEWER_READS as readonly string[]).includes(name);
    t.is(maySubscribe(g, spec.filter()), readable, `subscribe ${name}`);
  }
  for (const name of ['request', 'result', 'deviceProbe', 'tailPrepare'])
    t.false((VIEWER_READS as readonly string[]).includes(name), `${name} is not for viewers`);
  for (const filter of [
    '#',
    'edgecut/v1/#',
    'edgecut/v1/devices/#',
    '$SYS/#',
    'other/topic',
    '+/v1/devices/+/plan',
  ])
    t.false(maySubscribe(g, filter), filter);
  t.true(covers(topics.plan.filter(), topics.plan.build({ device: 'x' })));
});

test('a viewer subscribes to what the dashboard reads (TCP and WebSocket) and gets it', async (t) => {
  const broker = await startSecureBroker(t, { usersFile: await writeUsersFile(t, USERS), wsPort: 0 });
  const url = `mqtt://127.0.0.1:${broker.port}`;
  const planner = await connectAs(t, url, 'p1', password('p1'));
  const plan = topics.plan.build({ device: 'robot-1' });
  await planner.publishAsync(plan, '{"a":"plan"}', { qos: 1, retain: true });
  for (const [label, at] of [
    ['tcp', url],
    ['ws', `ws://127.0.0.1:${broker.wsPort}`],
  ] as const) {
    // Any client id: the role is bound to no id (the page makes up its own).
    const viewer = await connectAs(t, at, 'dash', password('dash'), { clientId: `dashboard-${label}` });
    for (const name of VIEWER_READS)
      t.is(await granted(viewer, topics[name].filter()), 1, `${label} ${name}`);
    const plans = await collect(viewer, plan);
    t.is((await plans.next()).payload.toString(), '{"a":"plan"}', `${label}: the retained plan`);
  }
});

test('a viewer cannot publish anything nor subscribe outside what it reads', async (t) => {
  const broker = await startSecureBroker(t, { usersFile: await writeUsersFile(t, USERS) });
  const url = `mqtt://127.0.0.1:${broker.port}`;
  const viewer = await connectAs(t, url, 'dash', password('dash'), { clientId: 'dashboard-1' });
  for (const filter of [
    '#',
    'edgecut/v1/#',
    topics.request.filter(),
    topics.result.filter(),
    topics.result.build({ device: 'robot-1' }),
    topics.deviceProbe.filter(),
    topics.tailPrepare.filter(),
    topics.workerProfile.filter(),
    'other/topic',
  ])
    t.is(await granted(viewer, filter), 128, `SUBACK failure for ${filter}`);
  const planner = await connectAs(t, url, 'p1', password('p1'));
  const plan = topics.plan.build({ device: 'robot-1' });
  await planner.publishAsync(plan, 'from the planner', { qos: 1, retain: true });
  const root = await connectAs(t, url, 'root', password('root'));
  const seen = await collect(root, '#');
  // Every topic of the map, and one outside it: acknowledged (QoS 1) and dropped.
  const attempts = [...specs.map(([, s]) => s.build(ids)), 'other/topic'];
  for (const topic of attempts) await viewer.publishAsync(topic, 'from the viewer', { qos: 1, retain: true });
  t.true(viewer.connected, 'a refused publish does not disconnect');
  // A positive signal after the viewer's publishes: the root sees the next message of a real publisher.
  const robot = await connectAs(t, url, 'robot-1', password('robot-1'));
  await robot.publishAsync(topics.deviceTelemetry.build({ device: 'robot-1' }), 'fence', { qos: 1 });
  for (;;) {
    const m = await seen.next();
    t.not(m.payload.toString(), 'from the viewer', `nothing the viewer published reached ${m.topic}`);
    if (m.payload.toString() === 'fence') break;
  }
  t.is(broker.accessStats().refusedPublishes, attempts.length);
  const later = await collect(
    await connectAs(t, url, 'root', password('root'), { clientId: 'root-2' }),
    plan,
  );
  t.is((await later.next()).payload.toString(), 'from the planner', 'the retained plan is unchanged');
});

test('edgecut users add --role viewer writes a viewer; an id field with it is refused', async (t) => {
  const file = join(await tempDir(t), 'users.json');
  const added = await edgecutWithInput(['users', 'add', file, 'dash', '--role', 'viewer'], 'pw\n');
  t.is(added.code, 0, added.stderr);
  t.is(added.stdout, `added dash (viewer) in ${file}\n`);
  const table = parseUsers(await readFile(file, 'utf8'), file);
  t.is(table.users.get('dash')?.role, 'viewer');
  t.is(table.users.get('dash')?.id, undefined);
  const withId = await edgecutWithInput(
    ['users', 'add', file, 'dash', '--role', 'viewer', '--device', 'd'],
    'pw\n',
  );
  t.is(withId.code, 2);
  t.regex(withId.stderr, /--device is not allowed with --role viewer/);
});

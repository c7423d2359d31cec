/**
 * Users and per-role topic access on the embedded broker (broker/auth.ts, broker/acl.ts): passwords, CONNACK
 * refusals, SUBACK failures, dropped publishes and wills, and the real services running under their roles.
 */
import test, { type ExecutionContext } from 'ava';
import type { MqttClient } from 'mqtt';
import { covers, grantsFor } from '../broker/acl.ts';
import { parseUsers } from '../broker/users.ts';
import { profileModel } from '../measurement/profiler.ts';
import type { ModelHandle } from '../model/handle.ts';
import { mulberry32 } from '../model/random.ts';
import { silentLogger } from '../runtime/log.ts';
import { sharedFilter, TAIL_GROUP, topics } from '../schemas/topics.ts';
import { EdgeHead, type EdgeOptions, type FrameReport } from '../services/edge-head/edge.ts';
import { randomInputs } from '../services/edge-head/frames.ts';
import { Planner } from '../services/planner/planner.ts';
import { TailWorker } from '../services/server-tail/worker.ts';
import { connectAs, refusal, startSecureBroker, type TestUser, writeUsersFile } from './helpers/auth.ts';
import { collect } from './helpers/broker.ts';
import { demoModelDir } from './helpers/models.ts';
import { edgeOptions, tailOptions } from './helpers/services.ts';
import { sleep, waitFor } from './helpers/wait.ts';

const USERS: TestUser[] = [
  { username: 'robot-1', role: 'device', password: 'pw-robot-1' },
  { username: 'robot-2', role: 'device', password: 'pw-robot-2' },
  { username: 'cam', role: 'device', password: 'pw-cam', device: 'robot-3' },
  { username: 'w1', role: 'worker', password: 'pw-w1' },
  { username: 'p1', role: 'planner', password: 'pw-p1' },
  { username: 'root', role: 'admin', password: 'pw-root' },
];
const password = (name: string) => USERS.find((u) => u.username === name)!.password;

async function aclBroker(t: Parameters<typeof writeUsersFile>[0]) {
  const broker = await startSecureBroker(t, { usersFile: await writeUsersFile(t, USERS) });
  const as = (name: string, opts = {}) => connectAs(t, broker.url, name, password(name), opts);
  return { broker, as };
}

/** Subscribes and returns the granted QoS, 128 being the failure return code. */
async function granted(client: MqttClient, filter: string): Promise<number> {
  try {
    const g = await client.subscribeAsync(filter, { qos: 1 });
    return g[0]!.qos;
  } catch (err) {
    // mqtt.js rejects a SUBACK failure with the SUBACK attached.
    return (err as { packet?: { granted?: number[] } }).packet?.granted?.[0] ?? -1;
  }
}

test('grants are derived from the topic map: each role publishes what it owns, bound to its id', (t) => {
  const device = grantsFor('device', 'robot-1');
  t.deepEqual(device.publish, [
    topics.request.build({ device: 'robot-1' }),
    topics.deviceTelemetry.build({ device: 'robot-1' }),
    topics.deviceFrames.build({ device: 'robot-1' }),
    topics.deviceProbe.build({ device: 'robot-1' }),
    topics.deviceProfile.build({ device: 'robot-1' }),
    topics.deviceStatus.build({ device: 'robot-1' }),
  ]);
  t.deepEqual(device.subscribe, [
    topics.result.build({ device: 'robot-1' }),
    topics.plan.build({ device: 'robot-1' }),
  ]);
  const worker = grantsFor('worker', 'w1');
  t.true(worker.publish.includes(topics.result.filter()));
  t.true(worker.publish.includes(topics.workerProfile.filter({ worker: 'w1' })));
  t.deepEqual(worker.subscribe, [topics.request.filter(), topics.tailPrepare.filter()]);
  const planner = grantsFor('planner', 'p1');
  t.deepEqual(planner.publish, [
    topics.plan.filter(),
    topics.devicePredictions.filter(),
    topics.tailPrepare.build({ planner: 'p1' }),
    topics.plannerStatus.build({ planner: 'p1' }),
  ]);
});

test('a filter is granted only when an allowed filter covers every topic it matches', (t) => {
  t.true(covers('a/+/c', 'a/b/c'));
  t.true(covers('a/+/c', 'a/+/c'));
  t.false(covers('a/b/c', 'a/+/c'));
  t.false(covers('a/+/c', 'a/#'));
  t.true(covers('a/#', 'a'));
  t.true(covers('a/#', 'a/+/c/#'));
  t.false(covers('a/b', 'a/b/c'));
  t.false(covers('+/b', '$SYS/b'), 'a first-level wildcard matches no $ topic [MQTT-4.7.2-1]');
});

test('a bad users file is one line naming the file, the entry and what is allowed', async (t) => {
  const one = (text: string) => {
    const err = t.throws(() => parseUsers(text, 'users.json'))!;
    t.false(err.message.includes('\n'));
    return err.message;
  };
  const hash = 'scrypt$N=16384,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
  t.regex(
    one(JSON.stringify({ users: [{ username: 'r', role: 'robot', password: hash }] })),
    /^users file users.json: entry 1 \("r"\): role "robot" is not allowed: expected one of device, worker, planner, viewer, admin$/,
  );
  const plain = one(JSON.stringify({ users: [{ username: 'r', role: 'device', password: 'hunter2' }] }));
  t.regex(plain, /entry 1 \("r"\): password is not allowed: .*plain-text passwords are refused/);
  t.false(plain.includes('hunter2'), 'the password is not echoed');
  t.regex(
    one(JSON.stringify({ users: [{ username: 'r', role: 'worker', password: hash, device: 'd' }] })),
    /field "device" is not allowed with role worker/,
  );
  t.regex(
    one(JSON.stringify({ users: [{ username: 'r', role: 'device', password: hash, colour: 'red' }] })),
    /field "colour" is not allowed: expected only username, role, password, device, worker, planner/,
  );
  t.regex(
    one(JSON.stringify({ users: [{ username: 'a b', role: 'device', password: hash }] })),
    /username "a b" is not a valid device id/,
  );
  const twice = { username: 'r', role: 'admin', password: hash };
  t.regex(
    one(JSON.stringify({ users: [twice, twice] })),
    /entry 2 \("r"\): username already used by entry 1/,
  );
  t.regex(one('[]'), /expected an object \{"users": \[\.\.\.\]\}/);
  t.regex(one('{'), /not JSON/);
});

test('a right password is accepted; a wrong one, an unknown user, no user and a foreign client id are refused', async (t) => {
  const { broker, as } = await aclBroker(t);
  const ok = await as('robot-1');
  t.true(ok.connected);
  await as('robot-1', { clientId: 'robot-1:debug' });
  await as('root', { clientId: 'anything' });
  const url = broker.url;
  const wrong = await refusal(url, { clientId: 'robot-1', username: 'robot-1', password: 'nope' });
  t.is(wrong.code, 4, 'CONNACK 0x04 bad user name or password');
  t.regex(wrong.message, /Bad username or password/);
  const unknown = await refusal(url, { clientId: 'ghost', username: 'ghost', password: 'pw' });
  t.is(unknown.code, 4);
  const anonymous = await refusal(url, {});
  t.is(anonymous.code, 5, 'CONNACK 0x05 not authorized');
  const foreign = await refusal(url, {
    clientId: 'robot-2',
    username: 'robot-1',
    password: password('robot-1'),
  });
  t.is(foreign.code, 2, 'CONNACK 0x02 identifier rejected: robot-1 may not take over robot-2’s session');
  t.is(broker.accessStats().refusedConnects, 4);
});

test("robot-1 cannot read robot-2's results, and never gets them; robot-2 does", async (t) => {
  const { broker, as } = await aclBroker(t);
  const robot1 = await as('robot-1');
  const robot2 = await as('robot-2');
  const worker = await as('w1');
  t.is(await granted(robot1, topics.result.build({ device: 'robot-2' })), 128, 'SUBACK failure');
  t.is(await granted(robot1, topics.result.filter()), 128, 'a wildcard reaching other devices is refused');
  t.is(await granted(robot1, topics.plan.build({ device: 'robot-2' })), 128);
  t.is(await granted(robot1, '#'), 128);
  const at1: string[] = [];
  robot1.on('message', (topic) => at1.push(topic));
  const own = await collect(robot1, topics.result.build({ device: 'robot-1' }));
  const at2 = await collect(robot2, topics.result.build({ device: 'robot-2' }));
  await worker.publishAsync(topics.result.build({ device: 'robot-2' }), 'for robot-2', { qos: 1 });
  await worker.publishAsync(topics.result.build({ device: 'robot-1' }), 'for robot-1', { qos: 1 });
  t.is((await at2.next()).payload.toString(), 'for robot-2');
  // Published before robot-1's own result by the same client, robot-2's would have reached robot-1 first.
  t.is((await own.next()).payload.toString(), 'for robot-1');
  t.deepEqual(at1, [topics.result.build({ device: 'robot-1' })]);
  t.is(broker.accessStats().refusedSubscribes, 4);
});

test('a robot cannot publish a plan: acknowledged, dropped, the retained plan unchanged, still connected', async (t) => {
  const { broker, as } = await aclBroker(t);
  const planner = await as('p1');
  const plan1 = topics.plan.build({ device: 'robot-1' });
  await planner.publishAsync(plan1, 'from the planner', { qos: 1, retain: true });
  const robot = await as('robot-1');
  const plans = await collect(robot, plan1);
  t.is((await plans.next()).payload.toString(), 'from the planner', 'the retained plan');
  const root = await as('root');
  const seen = await collect(root, topics.plan.filter());
  t.is((await seen.next()).payload.toString(), 'from the planner');
  const telemetry = await collect(
    await as('root', { clientId: 'root-telemetry' }),
    topics.deviceTelemetry.filter(),
  );
  // QoS 1 gets its PUBACK [MQTT-3.3.5-2]; QoS 0 has none.
  await robot.publishAsync(plan1, 'forged', { qos: 1, retain: true });
  await robot.publishAsync(topics.plan.build({ device: 'robot-2' }), 'forged', { qos: 1, retain: true });
  await robot.publishAsync(plan1, 'forged', { qos: 0 });
  await robot.publishAsync(topics.deviceTelemetry.build({ device: 'robot-1' }), 'still here', { qos: 1 });
  t.is((await telemetry.next()).payload.toString(), 'still here', 'the robot stays connected and heard');
  t.true(robot.connected);
  t.deepEqual(seen.all, [], 'nobody sees a forged plan');
  t.deepEqual(plans.all, []);
  const later = await as('root', { clientId: 'root-later' });
  const retained = await collect(later, topics.plan.filter());
  t.is((await retained.next()).payload.toString(), 'from the planner', 'the retained plan is unchanged');
  // aedes streams retained messages after the SUBACK, and no later message is ordered after them: this absence
  // needs time (the refusal itself is counted below).
  await sleep(100);
  t.is(retained.all.length, 0, 'and no forged plan was retained for robot-2');
  t.is(broker.accessStats().refusedPublishes, 3);
});

test('RETAIN on a topic the map never retains (telemetry, requests) is acknowledged and dropped; on its profile it is kept', async (t) => {
  const { broker, as } = await aclBroker(t);
  const robot = await as('robot-1');
  const root = await as('root');
  const telemetry = topics.deviceTelemetry.build({ device: 'robot-1' });
  const seen = await collect(root, telemetry);
  await robot.publishAsync(telemetry, 'retained telemetry', { qos: 1, retain: true });
  await robot.publishAsync(telemetry, 'plain telemetry', { qos: 1 });
  t.is((await seen.next()).payload.toString(), 'plain telemetry', 'the retained one was not routed');
  t.true(robot.connected);
  t.is(broker.accessStats().refusedPublishes, 1);
  // A profile is retained as the map says.
  const profile = topics.deviceProfile.build({ device: 'robot-1' });
  await robot.publishAsync(profile, 'a profile', { qos: 1, retain: true });
  // Everything of robot-1's: devices/robot-1/#.
  const all = telemetry.replace(/telemetry$/, '#');
  const later = await collect(await as('root', { clientId: 'root-later' }), all);
  const got = await later.next();
  t.is(got.topic, profile, 'only the profile is retained for a later subscriber');
  t.is(got.payload.toString(), 'a profile');
  await robot.publishAsync(telemetry, 'after', { qos: 1 });
  t.is((await later.next()).payload.toString(), 'after', 'no retained telemetry came before the live one');
});

test('a robot cannot publish a request as another device; workers take requests through $share', async (t) => {
  const { broker, as } = await aclBroker(t);
  const worker = await as('w1');
  const requests = await collect(worker, sharedFilter(TAIL_GROUP, topics.request.filter()));
  t.is(
    await granted(worker, sharedFilter(TAIL_GROUP, topics.result.filter())),
    128,
    '$share is no way around',
  );
  t.is(await granted(worker, topics.deviceTelemetry.filter()), 128);
  const robot = await as('robot-1');
  await robot.publishAsync(topics.request.build({ device: 'robot-2' }), 'spoofed', { qos: 1 });
  await robot.publishAsync(topics.request.build({ device: 'robot-1' }), 'genuine', { qos: 1 });
  const got = await requests.next();
  t.is(got.topic, topics.request.build({ device: 'robot-1' }));
  t.is(got.payload.toString(), 'genuine');
  // A device whose user name differs from its id publishes as the id of its entry.
  const cam = await as('cam', { clientId: 'robot-3' });
  await cam.publishAsync(topics.request.build({ device: 'robot-3' }), 'from cam', { qos: 1 });
  // The spoofed request, published before the genuine one by the same client, would have arrived first.
  t.is((await requests.next()).payload.toString(), 'from cam');
  t.deepEqual(requests.all, []);
  t.is(broker.accessStats().refusedPublishes, 1);
});

test('a Last Will on a topic the user may not publish is not delivered; its own is', async (t) => {
  const { broker, as } = await aclBroker(t);
  const root = await as('root');
  const status = await collect(root, topics.deviceStatus.filter());
  const offline = (device: string) => ({
    topic: topics.deviceStatus.build({ device }),
    payload: Buffer.from(`${device} offline`),
    qos: 1 as const,
    retain: true,
  });
  const honest = await as('robot-1', { will: offline('robot-1') });
  const liar = await as('robot-2', { will: offline('robot-1') });
  liar.stream.destroy();
  await waitFor(() => broker.accessStats().refusedPublishes === 1, "the liar's will to be refused");
  honest.stream.destroy();
  const got = await status.next();
  t.is(got.payload.toString(), 'robot-1 offline');
  t.deepEqual(status.all, []);
  t.is(broker.accessStats().refusedPublishes, 1);
});

const creds = (workerId: string, password: string) => ({ workerId, username: workerId, password });

async function* frames(model: Awaited<ReturnType<typeof demoModelDir>>['model'], n: number) {
  const rand = mulberry32(5);
  for (let i = 0; i < n; i++)
    yield { index: i, capturedAt: Date.now(), inputs: randomInputs(model.inputs, rand) };
}

/**
 * Starts a planner (fixed middle cut) and an edge under the given users (each user name is also the service's id),
 * waits for the plan and streams 20 frames; returns their reports.
 */
async function planAndStream(
  t: ExecutionContext,
  url: string,
  model: ModelHandle,
  [plannerUser, plannerPassword]: [string, string],
  [edgeUser, edgePassword]: [string, string],
  edgeExtra: Partial<EdgeOptions>,
): Promise<FrameReport[]> {
  const planner = new Planner(
    { mqttUrl: url, plannerId: plannerUser, cut: 'middle', username: plannerUser, password: plannerPassword },
    silentLogger,
  );
  await planner.start();
  t.teardown(() => planner.stop());
  const profile = await profileModel(model, { runs: 2, warmup: 1, checkCuts: 0 });
  const edge = new EdgeHead(
    model,
    profile,
    edgeOptions({
      mqttUrl: url,
      deviceId: edgeUser,
      username: edgeUser,
      password: edgePassword,
      ...edgeExtra,
    }),
    silentLogger,
  );
  await edge.start();
  t.teardown(() => edge.stop());
  t.true(await edge.waitForPlan(), 'the planner’s plan reaches the device');
  const reports: FrameReport[] = [];
  await edge.run(frames(model, 20), (r) => reports.push(r));
  return reports;
}

test('the services run end to end under their roles, and access control refuses nothing they do', async (t) => {
  const { dir, model } = await demoModelDir(t);
  const users: TestUser[] = [
    { username: 'edge-acl', role: 'device', password: 'e' },
    { username: 'tail-shared', role: 'worker', password: 'w' },
    { username: 'tail-plain', role: 'worker', password: 'w' },
    { username: 'planner-acl', role: 'planner', password: 'p' },
    { username: 'planner-live', role: 'planner', password: 'p' },
    { username: 'root', role: 'admin', password: 'r' },
  ];
  const broker = await startSecureBroker(t, { usersFile: await writeUsersFile(t, users) });
  const url = broker.url;
  // An admin sees every topic, so that each one is shown to be published by its owner and delivered.
  const seen = new Set<string>();
  const root = await connectAs(t, url, 'root', 'r');
  root.on('message', (topic) => {
    const name = Object.entries(topics).find(([, spec]) => spec.match(topic))?.[0];
    if (name) seen.add(name);
  });
  await root.subscribeAsync('edgecut/#', { qos: 0 });
  const workers = [
    new TailWorker(
      tailOptions({
        ...creds('tail-shared', 'w'),
        mqttUrl: url,
        modelsDir: dir,
        profileRuns: 1,
        telemetryMs: 50,
      }),
      silentLogger,
    ),
    new TailWorker(
      tailOptions({ ...creds('tail-plain', 'w'), mqttUrl: url, modelsDir: dir, group: '', telemetryMs: 50 }),
      silentLogger,
    ),
  ];
  for (const w of workers) {
    await w.start();
    t.teardown(() => w.stop());
  }
  const reports = await planAndStream(t, url, model, ['planner-acl', 'p'], ['edge-acl', 'e'], {
    telemetryMs: 50,
    frameReports: true,
  });
  t.is(reports.length, 20);
  t.is(reports.filter((r) => r.fallback).length, 0, 'every frame offloaded');
  t.true(reports.every((r) => r.maxAbsDiff !== undefined && r.maxAbsDiff <= 1e-5));
  // The predictions of Algorithm 1 (a fixed cut has none): a second planner, under its own planner user, planning
  // by Algorithm 1 on a configured link, publishes them on the edge's next telemetry.
  const live = new Planner(
    {
      mqttUrl: url,
      plannerId: 'planner-live',
      cut: 'auto',
      bandwidth: 1e9,
      username: 'planner-live',
      password: 'p',
    },
    silentLogger,
  );
  await live.start();
  t.teardown(() => live.stop());
  await waitFor(
    () => seen.size === Object.keys(topics).length,
    'every topic of the map to be published and delivered',
  );
  t.deepEqual(
    [...seen].sort(),
    Object.keys(topics).sort(),
    'every topic of the map was published and delivered',
  );
  t.deepEqual(broker.accessStats(), { refusedPublishes: 0, refusedSubscribes: 0, refusedConnects: 0 });
});

test('one worker credential for a scaled family: replicas tail-<anything> serve; others are refused', async (t) => {
  const { dir, model } = await demoModelDir(t);
  const users: TestUser[] = [
    { username: 'tails', role: 'worker', password: 'w', worker: 'tail-*' },
    { username: 'edge-f', role: 'device', password: 'e' },
    { username: 'planner-f', role: 'planner', password: 'p' },
  ];
  const broker = await startSecureBroker(t, { usersFile: await writeUsersFile(t, users) });
  const url = broker.url;
  // Two replicas with ids chosen at start, as WORKER_ID=auto does (tail-<host>-<pid>), under one credential.
  const workers = ['tail-gw-101', 'tail-gw-102'].map(
    (workerId) =>
      new TailWorker(
        tailOptions({ ...creds('tails', 'w'), workerId, mqttUrl: url, modelsDir: dir, telemetryMs: 50 }),
        silentLogger,
      ),
  );
  for (const w of workers) {
    await w.start();
    t.teardown(() => w.stop());
  }
  // Outside the family: the connection is refused with return code 2 (identifier rejected).
  const outsider = await refusal(url, { username: 'tails', password: 'w', clientId: 'worker-9' });
  t.is(outsider.code, 2);
  // A family member may not speak for a worker outside the family either.
  const member = await connectAs(t, url, 'tails', 'w', { clientId: 'tail-gw-103' });
  await member.publishAsync(topics.workerStatus.build({ worker: 'other-1' }), '{}', { qos: 1 });
  await member.publishAsync(topics.workerStatus.build({ worker: 'tail-gw-103' }), '{}', { qos: 1 });
  const reports = await planAndStream(t, url, model, ['planner-f', 'p'], ['edge-f', 'e'], { window: 2 });
  t.is(reports.filter((r) => r.fallback).length, 0, 'every frame offloaded');
  t.deepEqual([...new Set(reports.map((r) => r.tailBy))].sort(), ['tail-gw-101', 'tail-gw-102']);
  t.deepEqual(broker.accessStats(), { refusedPublishes: 1, refusedSubscribes: 0, refusedConnects: 1 });
});

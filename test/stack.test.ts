/**
 * `edgecut stack up` runs compose.yaml itself as local processes: the whole system comes up with three tail
 * workers, frames stream through it and every result arrives, a crashed worker is restarted, and Ctrl-C stops
 * everything cleanly. compose.cluster.yaml runs the same services against Mosquitto as the external broker.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import mqtt from 'mqtt';
import { EDGECUT_BIN, startService } from '../cli/processes.ts';
import { ModelHandle } from '../model/handle.ts';
import { edgecutWithInput } from './helpers/auth.ts';
import { hasMosquitto, startMosquitto } from './helpers/mosquitto.ts';
import { parsePrometheus, total } from './helpers/prometheus.ts';
import {
  alive,
  docCommand,
  docCommands,
  docLines,
  freePortOffset,
  type StackProcess,
  stackUp,
} from './helpers/stack.ts';
import { waitFor } from './helpers/wait.ts';

/** A line of stack up's stderr: a service's (prefixed with its process id), its own, or its progress while it waits. */
const PREFIXED = /^(stack|[a-z-]+-\d+)\s* \| |^stack: |^[^|]* \.\.\. \d+\.\d s$|^[^|]* done in \d+\.\d s$/;

/**
 * Every port compose.yaml listens on (broker TCP and WebSocket, the dashboard, metrics of each service and 3 tail
 * replicas).
 */
const COMPOSE_PORTS = [1883, 8080, 8083, 9464, 9465, 9466, 9467, 9470, 9471, 9472];

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-stack-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Streams `frames` frames from a fresh edge process through the stack and returns its output lines. The device is
 * emulated (`emulate`), so that offloading wins whatever the host's load: the demo CNN runs about as fast on this
 * host's device as through a worker, and a loaded host may tip the plan either way (at 20x, one full run of the
 * suite still planned every frame on the device).
 */
async function streamFrames(
  t: ExecutionContext,
  mqttUrl: string,
  modelsDir: string,
  frames: number,
  emulate = 'x50',
  model = 'demo',
): Promise<{ code: number; lines: string[] }> {
  const lines: string[] = [];
  const edge = startService(
    'edge',
    ['edge', '--device-id', 'stack-test-robot', '--model', model, '--models-dir', modelsDir],
    {
      env: {
        MQTT_URL: mqttUrl,
        FRAMES: String(frames),
        WINDOW: '3',
        VERIFY: 'true',
        LOG_LEVEL: 'warn',
        EMULATE_DEVICE: emulate,
      },
      onStdout: (line) => lines.push(line),
      onStderr: () => undefined,
    },
  );
  t.teardown(() => edge.stop(2000));
  return { code: await edge.exited, lines };
}

function tailIds(processes: StackProcess[]): string[] {
  return processes.filter((p) => p.id.startsWith('server-tail-')).map((p) => String(p.id));
}

/**
 * An environment under which a Compose file runs with its own settings: every variable it interpolates
 * (`${NAME:-default}`) set empty, so each takes the file's default whatever the environment the tests run in.
 */
async function stockEnv(file: string): Promise<Record<string, string>> {
  const text = await readFile(file, 'utf8');
  return Object.fromEntries([...text.matchAll(/\$\{([A-Z_][A-Z0-9_]*):-/g)].map((m) => [m[1] ?? '', '']));
}

/** A frame line of the example robot (`edge-head-1`) in the stack's output: its cut and who ran its tail. */
function robotFrame(line: string): { cut: number; tailBy: string } | undefined {
  const m = /^edge-head-1\s+\| frame\s+\d+\s+cut\s+(\d+)\b.*\btail by (\S+)/.exec(line);
  return m ? { cut: Number(m[1]), tailBy: String(m[2]) } : undefined;
}

test('stack up --scale server-tail=3 runs the stock compose.yaml: every worker answers the example robot within 30 s, a crash is restarted, Ctrl-C stops all', async (t) => {
  const dir = await tempDir(t);
  const offset = await freePortOffset(COMPOSE_PORTS);
  // The command docs/deploy.md shows, plus a port offset and a volumes directory of the test's own.
  const { words } = await docCommand('docs/deploy.md', 'npx edgecut stack up --scale');
  t.deepEqual(words.slice(3), ['up', '--scale', 'server-tail=3']);
  const spawned = performance.now();
  // The stock file's settings (PLAN_CUT auto: Algorithm 1; the example robot SqueezeNet 1.1 on an emulated Raspberry
  // Pi 3 at 10 fps).
  const run = stackUp(
    t,
    [...words.slice(4), '--port-offset', String(offset), '--volumes-dir', dir],
    await stockEnv('compose.yaml'),
  );
  const processes = await run.ready;
  const readyAt = performance.now();
  t.deepEqual(
    processes.map((p) => p.id),
    [
      'broker-1',
      'planner-1',
      'server-tail-1',
      'server-tail-2',
      'server-tail-3',
      'dashboard-1',
      'edge-head-1',
    ],
  );
  // The dashboard's URL is the line printed right before the stack's ready line, and its page finds the broker's
  // WebSocket port (shifted by the offset like every port of the file).
  const dashboardUrl = `http://localhost:${8080 + offset}/`;
  const readyIndex = run.stdout.findIndex((l) => l.startsWith('{"ready":"stack"'));
  t.is(run.stdout[readyIndex - 1], `dashboard: ${dashboardUrl}`);
  const config = (await (await fetch(`http://127.0.0.1:${8080 + offset}/config.json`)).json()) as {
    mqttUrl: string;
  };
  t.is(config.mqttUrl, `ws://127.0.0.1:${8083 + offset}`);
  const broker = processes.find((p) => p.id === 'broker-1');
  t.is(broker?.port, 1883 + offset, 'the broker listens on its compose port plus the offset');
  const pids = processes.map((p) => Number(p.pid));
  t.true(
    pids.every((pid) => pid > 0 && alive(pid)),
    'every process reports its pid and is running',
  );

  // Every line of every service is prefixed with its process id, as `docker compose up` does.
  await run.waitForStderr(/^server-tail-3 \| \{.*"level":30/);
  t.true(
    run.stderr.every((l) => PREFIXED.test(l)),
    `every stderr line is prefixed: ${run.stderr.find((l) => !PREFIXED.test(l))}`,
  );

  // With the stock settings the planner offloads the example robot's frames, and the shared subscription spreads
  // them over the three workers: each answers within 30 s of the stack being up.
  const tails = processes.filter((p) => p.id.startsWith('server-tail-'));
  t.is(tailIds(processes).length, 3);
  const workerIds = tails.map((p) => String(p.serviceId));
  const robotFrames = () => run.stdout.map(robotFrame).filter((f) => f !== undefined);
  const answered = () => new Set(robotFrames().map((f) => f.tailBy));
  const deadline = readyAt + 30_000;
  await waitFor(
    () => workerIds.every((id) => answered().has(id)),
    'every worker answering the example robot',
    Math.max(0, deadline - performance.now()),
  ).catch(() => undefined);
  const allAt = performance.now();
  const seen = robotFrames();
  const perWorker = Object.fromEntries(
    [...workerIds, 'local'].map((id) => [id, seen.filter((f) => f.tailBy === id).length]),
  );
  const offloaded = seen.filter((f) => workerIds.includes(f.tailBy));
  t.log(
    `example robot: ${seen.length} frames, ${offloaded.length} offloaded, per worker ${JSON.stringify(perWorker)}; ` +
      `every worker answered ${((allAt - readyAt) / 1000).toFixed(1)} s after the stack was up, ` +
      `${((allAt - spawned) / 1000).toFixed(1)} s after stack up started`,
  );
  for (const id of workerIds)
    t.true(
      (perWorker[id] ?? 0) > 0,
      `${id} answered none of the example robot's frames within 30 s of the stack being up: ${JSON.stringify(perWorker)}; ` +
        `last frames:\n${run.stdout
          .filter((l) => robotFrame(l))
          .slice(-3)
          .join('\n')}\nthe planner's decisions:\n${run.stderr
          .filter((l) => /^planner-1 .*"msg":"(plan published|no plan for device|plan kept)/.test(l))
          .slice(-5)
          .join('\n')}\nthe workers' profiles:\n${run.stderr
          .filter((l) => /^server-tail-\d .*"msg":"profile published"/.test(l))
          .join('\n')}`,
    );
  t.true(allAt <= deadline, 'within 30 s');
  const layers = (await ModelHandle.fromFile(join(dir, 'models', 'squeezenet1.1.onnx'))).layers;
  t.true(
    offloaded.every((f) => f.cut < layers),
    `offloaded frames run a head of the model (cuts ${[...new Set(offloaded.map((f) => f.cut))].join(', ')} of ${layers})`,
  );

  // A robot of the test's own, the same model on the same emulated device, checks every result against the whole
  // model.
  const mqttUrl = `mqtt://127.0.0.1:${1883 + offset}`;
  const frames = 30;
  const { code, lines } = await streamFrames(
    t,
    mqttUrl,
    join(dir, 'models'),
    frames,
    'rpi3b',
    'squeezenet1.1',
  );
  t.is(code, 0, lines.slice(-5).join('\n'));
  const frameLines = lines.filter((l) => l.startsWith('frame '));
  t.is(frameLines.length, frames);
  // Offloaded, or run on the device before its first plan offloads: each equal to the whole model.
  const check = new RegExp(
    `check: (\\d+)/${frames} frames offloaded and equal .*, (\\d+) run on the device and equal to it .* PASS`,
  ).exec(lines.join('\n'));
  t.truthy(check, lines.slice(-3).join('\n'));
  const testOffloaded = Number(check?.[1]);
  t.true(testOffloaded > 0);
  t.is(testOffloaded + Number(check?.[2]), frames);

  // Every process serves /healthz and /metrics on its compose METRICS_PORT (plus the offset, plus the replica
  // index for the workers), and the workers' request counts add up to the frames they answered.
  const metricsPorts: Record<string, number> = {
    'broker-1': 9464,
    'planner-1': 9465,
    'edge-head-1': 9466,
    'dashboard-1': 9467,
    'server-tail-1': 9470,
    'server-tail-2': 9471,
    'server-tail-3': 9472,
  };
  let served = 0;
  for (const p of processes) {
    const port = (metricsPorts[p.id] ?? 0) + offset;
    t.is(p.metricsPort, port, `${p.id} serves metrics on its translated port`);
    t.is((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200, `${p.id} is healthy`);
    const families = parsePrometheus(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
    if (p.id.startsWith('server-tail-')) {
      const mine = total(families, 'edgecut_tail_requests_total', {
        worker: String(p.serviceId),
        outcome: 'ok',
      });
      t.true(mine > 0, `${p.id} served some of the requests`);
      served += total(families, 'edgecut_tail_requests_total', { outcome: 'ok' });
    }
    if (p.id === 'planner-1')
      t.true(total(families, 'edgecut_planner_plans_total') >= 2, 'plans for both robots');
    if (p.id === 'broker-1')
      // The planner, three workers and the example robot (and the test's robot, if its goodbye is still on the way).
      t.true([5, 6].includes(total(families, 'edgecut_broker_clients')));
  }
  t.true(
    served >= testOffloaded + offloaded.length,
    `the workers served ${served} requests, at least the ${testOffloaded} offloaded frames of the test robot and the ${offloaded.length} of the example robot`,
  );

  // A crashed worker is restarted under its restart policy (compose.yaml: unless-stopped).
  const victim = processes.find((p) => p.id === 'server-tail-2');
  process.kill(Number(victim?.pid), 'SIGKILL');
  const since = run.stderr.length;
  await run.waitForStderr(
    /^stack\s+\| server-tail-2 exited with code 137; restarting in \d+ ms \(restart 1\)/,
    since,
  );
  const again = await run.waitForStderr(/^stack\s+\| server-tail-2 ready \(pid (\d+)/, since);
  const newPid = Number(/pid (\d+)/.exec(again)?.[1]);
  t.not(newPid, Number(victim?.pid));
  t.true(alive(newPid));

  // Ctrl-C: every process stops after its work in flight, the edge first and the broker last.
  run.child.kill('SIGINT');
  t.is(await run.exited, 0);
  const stops = run.stderr
    .filter((l) => /"msg":"stopping after the work in flight"/.test(l))
    .map((l) => l.split(' ')[0]);
  t.is(stops[0], 'edge-head-1');
  t.is(stops.at(-1), 'broker-1');
  t.regex(run.stderr.at(-1) ?? '', /^stack\s+\| stopped$/);
  for (const pid of [...pids.filter((p) => p !== Number(victim?.pid)), newPid])
    t.false(alive(pid), `pid ${pid} is gone`);
});

test('stack up with access control: every service logs in under its role, anonymous clients are refused', async (t) => {
  const dir = await tempDir(t);
  const passwords = {
    ROBOT_PASSWORD: 'robot-pw',
    TAIL_PASSWORD: 'tail-pw',
    PLANNER_PASSWORD: 'planner-pw',
    DASHBOARD_PASSWORD: 'dashboard-pw',
  };
  // The users commands docs/deploy.md shows, run as written in a directory of the test's own.
  const usersAdd = (await docLines('docs/deploy.md')).filter((l) => l.includes('npx edgecut users add'));
  t.is(usersAdd.length, 4);
  for (const line of usersAdd) {
    const local = line.replaceAll('npx edgecut', `"${process.execPath}" "${EDGECUT_BIN}"`);
    const r = spawnSync('sh', ['-c', local], {
      cwd: dir,
      env: { ...process.env, ...passwords },
      encoding: 'utf8',
    });
    t.is(r.status, 0, `${line}\n${r.stderr}`);
  }
  // One more device user, for the test's own robot.
  const add = await edgecutWithInput(
    ['users', 'add', join(dir, 'config', 'users.json'), 'stack-test-robot', '--role', 'device'],
    'test-pw\n',
  );
  t.is(add.code, 0, add.stderr);
  const offset = await freePortOffset(COMPOSE_PORTS);
  const run = stackUp(
    t,
    ['--scale', 'server-tail=2', '--port-offset', String(offset), '--volumes-dir', join(dir, 'volumes')],
    {
      ...passwords,
      EDGECUT_CONFIG: join(dir, 'config'),
      BROKER_USERS: '/config/users.json',
      ROBOT_USERNAME: 'robot-1',
      TAIL_USERNAME: 'tails',
      PLANNER_USERNAME: 'planner',
      DASHBOARD_USERNAME: 'dashboard',
      PLAN_CUT: 'middle',
      FPS: '2',
    },
  );
  const processes = await run.ready;
  const mqttUrl = `mqtt://127.0.0.1:${1883 + offset}`;
  const lines: string[] = [];
  const warnings: string[] = [];
  const edge = startService(
    'edge',
    [
      'edge',
      '--device-id',
      'stack-test-robot',
      '--model',
      'demo',
      '--models-dir',
      join(dir, 'volumes', 'models'),
    ],
    {
      env: {
        MQTT_URL: mqttUrl,
        MQTT_USERNAME: 'stack-test-robot',
        MQTT_PASSWORD: 'test-pw',
        FRAMES: '20',
        VERIFY: 'true',
        LOG_LEVEL: 'warn',
        // The first plan needs a tail worker's profile of the demo model, which the workers make when this device
        // declares it, while the suite loads the host: the frames start once the plan is there, not after the
        // default 10 s (then they would all run on the device, which is not what this test checks).
        PLAN_WAIT_MS: '60000',
      },
      onStdout: (line) => lines.push(line),
      onStderr: (line) => warnings.push(line),
    },
  );
  t.teardown(() => edge.stop(2000));
  t.is(await edge.exited, 0, [...warnings.slice(-3), ...lines.slice(-3)].join('\n'));
  t.regex(lines.join('\n'), /check: 20\/20 frames offloaded and equal .* PASS/);
  // Without credentials: refused (CONNACK 5, not authorized).
  const anonymous = await new Promise<number | undefined>((resolve) => {
    const c = mqtt.connect(mqttUrl, { reconnectPeriod: 0 });
    c.once('error', (err) => {
      c.end(true);
      resolve((err as Error & { code?: number }).code);
    });
    c.once('connect', () => {
      c.end(true);
      resolve(0);
    });
  });
  t.is(anonymous, 5);
  const broker = processes.find((p) => p.id === 'broker-1');
  const families = parsePrometheus(
    await (await fetch(`http://127.0.0.1:${Number(broker?.metricsPort)}/metrics`)).text(),
  );
  t.is(
    total(families, 'edgecut_broker_refused_total', { action: 'connect' }),
    1,
    'only the anonymous client',
  );
  t.is(
    total(families, 'edgecut_broker_refused_total', { action: 'publish' }),
    0,
    'the services publish only what their roles allow',
  );
  t.is(total(families, 'edgecut_broker_refused_total', { action: 'subscribe' }), 0);
  run.child.kill('SIGINT');
  t.is(await run.exited, 0);
});

const clusterTest = hasMosquitto || process.env.CI === 'true' ? test : test.skip;

clusterTest(
  'stack up -f compose.cluster.yaml runs every service against an external broker (Mosquitto)',
  async (t) => {
    const dir = await tempDir(t);
    const mosquitto = await startMosquitto(t);
    const offset = await freePortOffset([8080, 9465, 9466, 9467, 9470, 9471]);
    const shown = await docCommand('docs/deploy.md', 'npx edgecut stack up -f compose.cluster.yaml');
    t.deepEqual(Object.keys(shown.env), ['MQTT_URL']);
    const run = stackUp(t, [...shown.words.slice(4), '--port-offset', String(offset), '--volumes-dir', dir], {
      MQTT_URL: mosquitto.url,
      PLAN_CUT: 'middle',
      FPS: '2',
    });
    const processes = await run.ready;
    t.deepEqual(
      processes.map((p) => p.id),
      ['planner-1', 'server-tail-1', 'server-tail-2', 'edge-head-1', 'dashboard-1'],
    );
    const { code, lines } = await streamFrames(t, mosquitto.url, join(dir, 'models'), 20);
    t.is(code, 0, lines.slice(-5).join('\n'));
    t.regex(lines.join('\n'), /check: 20\/20 frames offloaded and equal .* PASS/);
    run.child.kill('SIGINT');
    t.is(await run.exited, 0);
  },
);

test('stack up refuses a Compose file it cannot run, with one line', async (t) => {
  const dir = await tempDir(t);
  const { writeFile } = await import('node:fs/promises');
  const file = join(dir, 'compose.yaml');
  await writeFile(file, 'services:\n  db:\n    image: postgres:16\n');
  const run = stackUp(t, ['-f', file]);
  t.is(await run.exited, 2);
  t.deepEqual(run.stderr, [
    'edgecut: services.db runs image "postgres:16", which stack up cannot run without a container engine; start it yourself and name the services to run: edgecut stack up SERVICE...',
  ]);
});

test('a service that refuses its configuration stops stack up instead of restarting forever', async (t) => {
  const dir = await tempDir(t);
  const { writeFile } = await import('node:fs/promises');
  const file = join(dir, 'compose.yaml');
  await writeFile(
    file,
    'services:\n  planner:\n    build: .\n    restart: always\n    command: ["planner"]\n    environment:\n      MQTT_URL: "not a url"\n',
  );
  const run = stackUp(t, ['-f', file]);
  t.is(await run.exited, 1);
  const own = run.stderr.filter((l) => l.startsWith('planner-1'));
  t.is(own.length, 1, 'the service says what is wrong in one line');
  t.regex(own[0] ?? '', /MQTT_URL="not a url" is not allowed: expected a URL like mqtt:\/\/host:1883/);
  t.true(
    run.stderr.some((l) =>
      /stack\s+\| planner-1 refused its configuration \(exit code 2\); not restarting it/.test(l),
    ),
  );
});

test('docs/deploy.md shows only commands these tests run', async (t) => {
  const shown = (await docCommands('docs/deploy.md')).map((c) => c.words.slice(0, 4).join(' '));
  t.deepEqual(shown, [
    'npx edgecut stack up',
    'npx edgecut stack config',
    'printf \'%s\\n\' "$ROBOT_PASSWORD" |',
    'printf \'%s\\n\' "$TAIL_PASSWORD" |',
    'printf \'%s\\n\' "$PLANNER_PASSWORD" |',
    'printf \'%s\\n\' "$DASHBOARD_PASSWORD" |',
    'npx edgecut stack up',
  ]);
});

test("the README's stack command is the one docs/deploy.md shows and the test above runs", async (t) => {
  const readme = (await docCommands('README.md')).filter((c) => c.words.includes('stack'));
  const deploy = await docCommand('docs/deploy.md', 'npx edgecut stack up --scale');
  t.deepEqual(
    readme.map((c) => c.words),
    [deploy.words],
  );
});

test('restart on-failure:2 restarts a failing process twice, then leaves it down while the rest runs', async (t) => {
  const dir = await tempDir(t);
  const { writeFile } = await import('node:fs/promises');
  const file = join(dir, 'compose.yaml');
  // The edge runs one frame on the device alone (no plan, no worker), so its --verify check fails: exit 1.
  await writeFile(
    file,
    [
      'services:',
      '  broker:',
      '    build: .',
      '    command: [broker, --host, 127.0.0.1]',
      '    environment: { BROKER_PORT: "1883", BROKER_WS_PORT: "8083" }',
      '  robot:',
      '    build: .',
      '    restart: on-failure:2',
      '    command: [edge, --model, demo, --models-dir, /models]',
      '    environment: { MQTT_URL: "mqtt://broker:1883", FRAMES: "1", VERIFY: "true", PLAN_WAIT_MS: "0", EDGE_PROFILE: measure, PROFILE_RUNS: "1" }',
      '    volumes: [models:/models]',
      '    depends_on: [broker]',
      'volumes: { models: {} }',
      '',
    ].join('\n'),
  );
  const offset = await freePortOffset([1883, 8083]);
  const run = stackUp(t, ['-f', file, '--port-offset', String(offset)]);
  await run.waitForStderr(/^stack\s+\| robot-1 exited with code 1; restarting in 1000 ms \(restart 1\)$/);
  await run.waitForStderr(/^stack\s+\| robot-1 exited with code 1; restarting in 2000 ms \(restart 2\)$/);
  await run.waitForStderr(/^stack\s+\| robot-1 exited with code 1$/);
  t.false(run.stderr.some((l) => /restart 3/.test(l)));
  t.is(run.child.exitCode, null, 'the broker still runs');
  run.child.kill('SIGINT');
  t.is(await run.exited, 0);
});

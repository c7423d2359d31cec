// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the strings are Compose interpolation syntax under test
/**
 * The Compose reader and the container-to-host translation of `edgecut stack`, as pure functions, and
 * `edgecut stack config` on the project's own compose.yaml.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { parse } from 'yaml';
import { BROKER_NODE_FLAGS } from '../cli/processes.ts';
import { loadCompose, parseDuration } from '../cli/stack/compose.ts';
import { interpolate, parseDotEnv } from '../cli/stack/interpolate.ts';
import { entrypointNodeFlags, localiseUrls, planStack } from '../cli/stack/plan.ts';
import { edgecut } from './helpers/cli.ts';
import { docCommand } from './helpers/stack.ts';

async function composeFile(t: ExecutionContext, text: string, dotEnv?: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-compose-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'compose.yaml'), text);
  if (dotEnv !== undefined) await writeFile(join(dir, '.env'), dotEnv);
  return join(dir, 'compose.yaml');
}

test('interpolation follows the Compose specification', (t) => {
  const vars = { A: 'a', EMPTY: '' };
  t.is(interpolate('x${A}y$A', vars, 'f'), 'xaya');
  t.is(interpolate('${B:-def}/${EMPTY:-def}/${EMPTY-def}', vars, 'f'), 'def/def/');
  t.is(interpolate('${A:+set}${B:+set}', vars, 'f'), 'set');
  t.is(interpolate('$$A costs $5', vars, 'f'), '$A costs $5');
  t.is(interpolate('${B:-${A}}', vars, 'f'), 'a');
  t.throws(() => interpolate('${B:?tell me B}', vars, 'services.x.environment.B'), {
    message: 'services.x.environment.B: B is required: tell me B (set it in the environment or .env)',
  });
  t.throws(() => interpolate('${A', vars, 'f'), { message: /unclosed/ });
  t.throws(() => interpolate('${1A}', vars, 'f'), { message: /is not a variable reference/ });
  t.deepEqual(parseDotEnv('# c\nA=1\nexport B="two words"\nC=3 # note\n\nbad line\n'), {
    A: '1',
    B: 'two words',
    C: '3',
  });
});

test('an entrypoint runs the edgecut CLI, with or without node options', (t) => {
  t.deepEqual(entrypointNodeFlags(undefined), []);
  t.deepEqual(entrypointNodeFlags(['node', 'bin/edgecut.js']), []);
  t.deepEqual(entrypointNodeFlags(['edgecut']), []);
  t.deepEqual(
    entrypointNodeFlags(['node', '--single-threaded-gc', '--max-semi-space-size=8', 'bin/edgecut.js']),
    ['--single-threaded-gc', '--max-semi-space-size=8'],
  );
  t.is(entrypointNodeFlags(['node', 'other.js']), undefined);
  t.is(entrypointNodeFlags(['node', '-e', 'x', 'bin/edgecut.js']), undefined);
  t.is(entrypointNodeFlags(['sh', '-c', 'edgecut broker']), undefined);
});

test('durations and URLs naming services translate to this host', (t) => {
  t.is(parseDuration('1m30s', 'x'), 90_000);
  t.is(parseDuration('500ms', 'x'), 500);
  t.throws(() => parseDuration('soon', 'services.a.stop_grace_period'), {
    message: 'services.a.stop_grace_period="soon" is not a duration: expected e.g. 10s, 1m30s, 500ms',
  });
  const names = ['broker', 'planner'];
  t.is(localiseUrls('mqtt://broker:1883', names, 100), 'mqtt://127.0.0.1:1983');
  t.is(localiseUrls('mqtts://user:pw@broker:8883/x', names, 0), 'mqtts://user:pw@127.0.0.1:8883/x');
  t.is(localiseUrls('ws://broker', names, 5), 'ws://127.0.0.1');
  t.is(localiseUrls('mqtt://brokerage:1883', names, 100), 'mqtt://brokerage:1883', 'only whole host names');
  t.is(localiseUrls('mqtt://emqx.example:1883', names, 100), 'mqtt://emqx.example:1883');
});

test('compose.yaml becomes seven processes with distinct ports, local URLs and the volume on the host', async (t) => {
  const project = await loadCompose('compose.yaml', { PLAN_CUT: 'middle' });
  const plan = planStack(project, { scale: { 'server-tail': 3 }, portOffset: 10, volumesDir: '/v' });
  t.deepEqual(plan.order, ['broker', 'planner', 'server-tail', 'dashboard', 'edge-head']);
  t.deepEqual(
    plan.processes.map((p) => p.id),
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
  const env = Object.fromEntries(plan.processes.map((p) => [p.id, p.env]));
  t.is(env['broker-1']?.BROKER_PORT, '1893');
  // The dashboard's port, and the broker's WebSocket port the page is told, move with the offset.
  t.is(env['dashboard-1']?.DASHBOARD_PORT, '8090');
  t.is(env['dashboard-1']?.DASHBOARD_BROKER_WS_PORT, '8093');
  t.is(env['planner-1']?.MQTT_URL, 'mqtt://127.0.0.1:1893');
  t.is(env['planner-1']?.PLAN_CUT, 'middle');
  t.deepEqual(
    ['server-tail-1', 'server-tail-2', 'server-tail-3'].map((id) => env[id]?.METRICS_PORT),
    ['9480', '9481', '9482'],
    'replica i adds i - 1 to its own ports',
  );
  t.is(env['server-tail-2']?.MODELS_DIR, '/v/models');
  t.is(env['edge-head-1']?.MODELS_DIR, '/v/models');
  t.is(env['broker-1']?.BROKER_DATA_DIR, '/v/broker-data');
  t.deepEqual([...plan.volumeDirs].sort(), ['/v/broker-data', '/v/models']);
  t.deepEqual(plan.processes[0]?.args, ['broker']);
  // The broker's entrypoint gives node its V8 options; stack up passes them on.
  t.deepEqual(plan.processes[0]?.nodeFlags, BROKER_NODE_FLAGS);
  t.is(plan.processes[1]?.nodeFlags, undefined);
  t.deepEqual(plan.processes[0]?.restart, { kind: 'always' });
  t.is(plan.processes[0]?.stopGraceMs, 15_000);
});

test('a service named on the command line brings its dependencies; scale 0 leaves a service out', async (t) => {
  const project = await loadCompose('compose.yaml', {});
  const plan = planStack(project, { services: ['server-tail'], volumesDir: '/v' });
  t.deepEqual(
    plan.processes.map((p) => p.id),
    ['broker-1', 'server-tail-1'],
  );
  const none = planStack(project, { scale: { 'edge-head': 0 }, volumesDir: '/v' });
  t.false(none.processes.some((p) => p.service === 'edge-head'));
});

test('what stack cannot run or would run wrongly is one line naming it', async (t) => {
  const collide = await composeFile(
    t,
    'services:\n  a:\n    build: .\n    command: [tail]\n    environment: {METRICS_PORT: "9000"}\n' +
      '  b:\n    build: .\n    command: [tail]\n    environment: {METRICS_PORT: "9001"}\n',
  );
  const project = await loadCompose(collide, {});
  t.throws(() => planStack(project, { scale: { a: 2 }, volumesDir: '/v' }), {
    message:
      'b-1: METRICS_PORT=9001 is also used by a-2 (METRICS_PORT); give the services distinct ports in the Compose file (replicas add their index - 1 to their own ports)',
  });
  const cycle = await composeFile(
    t,
    'services:\n  a:\n    build: .\n    command: [tail]\n    depends_on: [b]\n  b:\n    build: .\n    command: [tail]\n    depends_on: [a]\n',
  );
  t.throws(() => planStack(project, { services: ['x'], volumesDir: '/v' }), {
    message: 'no service named "x"; the file has a, b',
  });
  const cyclic = await loadCompose(cycle, {});
  t.throws(() => planStack(cyclic, { volumesDir: '/v' }), { message: 'depends_on has a cycle: a -> b -> a' });
  const badVolume = await composeFile(
    t,
    'services:\n  a:\n    build: .\n    command: [tail]\n    volumes: ["data:/data"]\n',
  );
  await t.throwsAsync(loadCompose(badVolume, {}), {
    message: 'services.a.volumes[0]: volume "data" is not declared under the top-level volumes',
  });
  const badRestart = await composeFile(
    t,
    'services:\n  a:\n    build: .\n    command: [tail]\n    restart: sometimes\n',
  );
  await t.throwsAsync(loadCompose(badRestart, {}), {
    message:
      'services.a.restart="sometimes" is not allowed: expected no, always, unless-stopped or on-failure[:N]',
  });
  const otherEntry = await composeFile(
    t,
    'services:\n  a:\n    build: .\n    entrypoint: [node, --inspect, other.js]\n    command: [tail]\n',
  );
  const otherProject = await loadCompose(otherEntry, {});
  t.throws(() => planStack(otherProject, { volumesDir: '/v' }), {
    message:
      'services.a.entrypoint ["node","--inspect","other.js"]: stack up runs only edgecut commands (entrypoint unset, ["node", "bin/edgecut.js"], ["node", "--option", ..., "bin/edgecut.js"] or ["edgecut"]); start this service another way and leave it out',
  });
  const notYaml = await composeFile(t, 'services:\n  a: [\n');
  await t.throwsAsync(loadCompose(notYaml, {}), { message: /compose\.yaml line \d+: not valid YAML: / });
  const noServices = await composeFile(t, 'volumes: {}\n');
  await t.throwsAsync(loadCompose(noServices, {}), { message: /compose\.yaml: services: / });
});

test('.env beside the file fills variables; the environment wins over it', async (t) => {
  const file = await composeFile(
    t,
    'services:\n  a:\n    build: .\n    command: [tail]\n    environment:\n      X: ${X}\n      Y: ${Y}\n',
    'X=from-dotenv\nY=from-dotenv\n',
  );
  const project = await loadCompose(file, { Y: 'from-env' });
  t.deepEqual(project.services.a?.environment, { X: 'from-dotenv', Y: 'from-env' });
  t.is(project.dir, resolve(file, '..'));
});

test('npx edgecut stack config --scale server-tail=3 prints the processes stack up runs', async (t) => {
  const { words } = await docCommand('docs/deploy.md', 'npx edgecut stack config');
  t.deepEqual(words, ['npx', 'edgecut', 'stack', 'config', '--scale', 'server-tail=3']);
  const { code, stdout } = await edgecut(words.slice(2));
  t.is(code, 0);
  const doc = parse(stdout) as {
    processes: Record<string, { command: string[]; environment: Record<string, string> }>;
  };
  t.deepEqual(Object.keys(doc.processes), [
    'broker-1',
    'planner-1',
    'server-tail-1',
    'server-tail-2',
    'server-tail-3',
    'dashboard-1',
    'edge-head-1',
  ]);
  t.deepEqual(doc.processes['server-tail-3']?.command, ['edgecut', 'tail']);
  t.is(doc.processes['server-tail-3']?.environment.METRICS_PORT, '9472');
  t.is(doc.processes['planner-1']?.environment.MQTT_URL, 'mqtt://127.0.0.1:1883');
});

test('stack flags that are not allowed are one line each, exit 2', async (t) => {
  for (const [args, message] of [
    [
      ['--scale', 'server-tail=x'],
      '--scale "server-tail=x" is not allowed: expected SERVICE=N with N a whole number >= 0',
    ],
    [
      ['--scale', 'tails=2'],
      '--scale tails=2: no service named "tails"; the file has broker, planner, server-tail, dashboard, edge-head',
    ],
    [['--port-offset', '-5'], '--port-offset "-5" is not allowed: expected a whole number from 0 to 60000'],
    [
      ['-f', 'compose.cluster.yaml'],
      /^x-mqtt\.MQTT_URL: MQTT_URL is required: set MQTT_URL to your MQTT cluster/,
    ],
  ] as const) {
    const { code, stderr } = await edgecut(['stack', 'config', ...args], { MQTT_URL: '' });
    t.is(code, 2, args.join(' '));
    const lines = stderr.trim().split('\n');
    t.is(lines.length, 1, stderr);
    if (typeof message === 'string') t.is(lines[0], `edgecut: ${message}`);
    else t.regex(lines[0]?.replace(/^edgecut: /, '') ?? '', message);
  }
});

test('a variable no setting of the command reads is refused, naming the nearest setting', async (t) => {
  const file = await composeFile(
    t,
    'services:\n  planner:\n    build: .\n    command: [planner]\n    environment:\n      PLAN_CUTT: middle\n      NODE_OPTIONS: --max-old-space-size=512\n',
  );
  const r = await edgecut(['stack', 'config', '-f', file]);
  t.is(r.code, 2);
  t.is(
    r.stderr,
    'edgecut: services.planner.environment.PLAN_CUTT is not a setting of `edgecut planner`: did you mean PLAN_CUT? (docs/configuration.md lists every setting)\n',
  );
  const fixed = await composeFile(
    t,
    'services:\n  planner:\n    build: .\n    command: [planner]\n    environment:\n      PLAN_CUT: middle\n      NODE_OPTIONS: --max-old-space-size=512\n',
  );
  t.is((await edgecut(['stack', 'config', '-f', fixed])).code, 0, "Node's own variables pass");
});

test('a service with a Compose profile runs only when the profile is enabled or the service is named', async (t) => {
  const file = await composeFile(
    t,
    'services:\n  a:\n    build: .\n    command: [tail]\n  debug:\n    build: .\n    command: [planner]\n    profiles: [debug]\n',
  );
  const project = await loadCompose(file, {});
  const ids = (opts: { profiles?: string[]; services?: string[] }) =>
    planStack(project, { ...opts, volumesDir: '/v' }).processes.map((p) => p.id);
  t.deepEqual(ids({}), ['a-1']);
  t.deepEqual(ids({ profiles: ['debug'] }), ['a-1', 'debug-1']);
  t.deepEqual(ids({ services: ['debug'] }), ['debug-1']);
});

test('on a terminal each service gets its own prefix colour and the stack its bold one', async (t) => {
  const { Supervisor } = await import('../cli/stack/supervisor.ts');
  const { systemClock } = await import('../runtime/clock.ts');
  const file = await composeFile(
    t,
    'services:\n  planner:\n    build: .\n    command: [planner]\n    environment:\n      MQTT_URL: "not a url"\n',
  );
  const plan = planStack(await loadCompose(file, {}), { volumesDir: '/v' });
  const lines: string[] = [];
  const supervisor = new Supervisor(plan, {
    cwd: process.cwd(),
    baseEnv: { PATH: process.env.PATH ?? '' },
    clock: systemClock,
    color: true,
    out: { stdout: (l) => lines.push(l), stderr: (l) => lines.push(l) },
  });
  await t.throwsAsync(supervisor.start(), { message: /planner-1 refused its configuration/ });
  t.true(lines.some((l) => l.startsWith('\u001b[36mplanner-1 | \u001b[0medgecut: MQTT_URL="not a url"')));
  t.true(
    lines.some((l) => l.startsWith('\u001b[1mstack     | \u001b[0mplanner-1 refused its configuration')),
  );
});

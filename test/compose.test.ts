/**
 * compose.yaml and compose.cluster.yaml are valid Compose files (checked by docker-compose's own validator; no
 * Docker engine needed), every variable they set is a setting of the service's command, and the Dockerfile builds
 * a slim runtime with everything the services load.
 */
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { parse } from 'yaml';
import {
  BROKER_NODE_FLAGS,
  MALLOC_TUNABLES,
  MALLOC_TUNED_COMMANDS,
  SERVICE_NODE_FLAGS,
} from '../cli/processes.ts';
import { settingsOf } from '../cli/service-commands.ts';
import { DEFAULT_BROKER_WS_PORT } from '../services/dashboard/config.ts';

const run = promisify(execFile);

interface ComposeService {
  command: string[];
  entrypoint?: string[];
  environment: Record<string, string>;
  healthcheck?: { test: string[] };
  restart?: string;
  volumes?: (string | { source: string; target: string })[];
  depends_on?: Record<string, { condition: string }>;
}

async function validated(
  file: string,
  env: Record<string, string> = {},
): Promise<Record<string, ComposeService>> {
  const { stdout } = await run('docker-compose', ['-f', file, 'config'], { env: { ...process.env, ...env } });
  return (parse(stdout) as { services: Record<string, ComposeService> }).services;
}

for (const [file, env, names] of [
  ['compose.yaml', {}, ['broker', 'dashboard', 'edge-head', 'planner', 'server-tail']],
  [
    'compose.cluster.yaml',
    { MQTT_URL: 'mqtt://emqx.example:1883' },
    ['dashboard', 'edge-head', 'planner', 'server-tail'],
  ],
] as const) {
  test(`docker-compose validates ${file}; every variable is a setting of its command`, async (t) => {
    const services = await validated(file, env);
    t.deepEqual(Object.keys(services).sort(), [...names]);
    for (const [name, s] of Object.entries(services)) {
      const command = s.command[0] ?? '';
      const table = settingsOf(command);
      if (!table) {
        t.fail(`${name} runs an unknown command ${command}`);
        continue;
      }
      const known = new Set(Object.values(table).map((x) => x.env));
      // The malloc settings (broker and edge) and the broker's V8 options are read by the C library and Node, not by
      // edgecut: the values `stack up` also gives them. The broker's V8 options are on node's command line
      // (NODE_OPTIONS refuses --single-threaded-gc), and the image's NODE_OPTIONS for the services is cleared.
      if (MALLOC_TUNED_COMMANDS.includes(command)) {
        t.is(s.environment.GLIBC_TUNABLES, MALLOC_TUNABLES, `${name}: the malloc settings stack up gives it`);
        known.add('GLIBC_TUNABLES');
      }
      if (command === 'broker') {
        t.deepEqual(s.entrypoint, ['node', ...BROKER_NODE_FLAGS, 'bin/edgecut.js']);
        t.is(s.environment.NODE_OPTIONS, '');
        known.add('NODE_OPTIONS');
      }
      for (const variable of Object.keys(s.environment)) {
        t.true(
          known.has(variable),
          `${file}: ${name} sets ${variable}, which \`edgecut ${command}\` does not read`,
        );
      }
      t.deepEqual(
        s.healthcheck?.test,
        ['CMD', 'node', 'bin/edgecut.js', 'health'],
        `${name} has a healthcheck`,
      );
      t.true(
        /^\d+$/.test(s.environment.METRICS_PORT ?? ''),
        `${name} serves /healthz and /metrics on a port`,
      );
      t.is(s.restart, 'unless-stopped');
      if (command === 'tail' || command === 'edge') {
        // docker-compose v1 prints short syntax (`models:/models:rw`), newer versions the long one.
        const mounts = (s.volumes ?? []).map((v) =>
          typeof v === 'string' ? v.split(':').slice(0, 2).join(':') : `${v.source}:${v.target}`,
        );
        t.true(mounts.includes('models:/models'), `${name} mounts the models volume`);
        t.is(s.environment.MODELS_DIR, '/models');
      }
    }
    if (file === 'compose.cluster.yaml') {
      // The dashboard does not connect itself: the browser does, to DASHBOARD_MQTT_URL.
      for (const [name, s] of Object.entries(services))
        if (name !== 'dashboard') t.is(s.environment.MQTT_URL, 'mqtt://emqx.example:1883');
    } else {
      t.is(services.planner?.depends_on?.broker?.condition, 'service_healthy');
      // The page on 8080 reaches the broker's WebSocket port from the browser (the default of DASHBOARD_MQTT_URL).
      t.is(services.dashboard?.environment.DASHBOARD_PORT, '8080');
      t.is(services.broker?.environment.BROKER_WS_PORT, String(DEFAULT_BROKER_WS_PORT));
      t.is(services.dashboard?.environment.DASHBOARD_BROKER_WS_PORT, String(DEFAULT_BROKER_WS_PORT));
    }
  });
}

test('compose.cluster.yaml refuses to start without MQTT_URL', async (t) => {
  const err = await t.throwsAsync(validated('compose.cluster.yaml', { MQTT_URL: '' }));
  t.regex(String((err as { stderr?: string })?.stderr), /set MQTT_URL to your MQTT cluster/);
});

test('the Dockerfile builds in one stage and runs production dependencies only in another', async (t) => {
  const text = await readFile('Dockerfile', 'utf8');
  const stages = text.split('\n').filter((l) => l.startsWith('FROM '));
  t.is(stages.length, 2);
  t.regex(stages[0] ?? '', / AS build$/);
  const runtime = text.slice(text.lastIndexOf('\nFROM '));
  t.regex(runtime, /npm ci --omit=dev/);
  t.regex(runtime, /^USER node$/m, 'the services run unprivileged');
  // The named volumes start with the image directory's owner: the models and the broker's store are writable.
  t.regex(runtime, /^RUN mkdir -p \/models \/data && chown node:node \/models \/data$/m);
  t.regex(runtime, /^ENTRYPOINT \["node", "bin\/edgecut\.js"\]$/m);
  // The services' V8 options, as `edgecut stack up` and the benchmarks start them.
  t.regex(runtime, new RegExp(`^ENV NODE_OPTIONS=${SERVICE_NODE_FLAGS.join(' ')}$`, 'm'));
  // Every directory the CLI and services load at run time is in the runtime image.
  const copied = new Set([...runtime.matchAll(/^COPY --from=build \/app\/(\S+) /gm)].map((m) => m[1] ?? ''));
  for (const dir of [
    'bin',
    'cli',
    'model',
    'planning',
    'measurement',
    'runtime',
    'broker',
    'services',
    'schemas',
    'data',
  ]) {
    t.true(copied.has(dir), `the runtime stage copies ${dir}/`);
  }
  // ... and nothing in them imports from a directory left out (bench, scripts, test, ...).
  for (const dir of copied) {
    if (dir === 'tsconfig.json' || dir === 'data') continue;
    for (const file of await readdir(dir, { recursive: true })) {
      if (!file.endsWith('.ts') && !file.endsWith('.js')) continue;
      const source = await readFile(join(dir, file), 'utf8');
      for (const m of source.matchAll(/(?:from |import\()'(\.[^']+)'/g)) {
        const target = relative('.', resolve(dir, dirname(file), m[1] ?? '')).split(sep)[0] ?? '';
        t.true(copied.has(target), `${dir}/${file} imports ${m[1]}, outside the runtime image`);
      }
    }
  }
  const dockerignore = await readFile('.dockerignore', 'utf8');
  for (const entry of ['node_modules', '.git', '.edgecut']) t.true(dockerignore.split('\n').includes(entry));
});

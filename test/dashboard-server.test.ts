/**
 * The dashboard's HTTP server (services/dashboard/server.ts) without a browser: the page, /config.json, the vendored
 * assets, 404 for everything else (path traversal included), only GET; and `edgecut dashboard`'s bad settings.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import mqtt from 'mqtt';
import { EDGECUT_BIN, type ServiceProcess, startService } from '../cli/processes.ts';
import { silentLogger } from '../runtime/log.ts';
import { topics } from '../schemas/topics.ts';
import { type DashboardOptions, DashboardServer, PAGE_READS } from '../services/dashboard/server.ts';
import { edgecut } from './helpers/cli.ts';

async function serve(t: ExecutionContext, o: Partial<DashboardOptions> = {}): Promise<string> {
  const server = new DashboardServer({ port: 0, host: '127.0.0.1', logger: silentLogger, ...o });
  await server.start();
  t.teardown(() => server.stop());
  return `http://127.0.0.1:${server.port}`;
}

/** A raw request: the path is sent exactly as given (fetch would resolve `..` before sending it). */
function raw(
  base: string,
  path: string,
  method = 'GET',
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; type: string | undefined }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: hostname, port, path, method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          body: Buffer.concat(chunks).toString(),
          type: res.headers['content-type'],
        }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

test('GET / is the page; its module and stylesheets are served from the package and node_modules', async (t) => {
  const base = await serve(t);
  const page = await raw(base, '/');
  t.is(page.status, 200);
  t.regex(page.type ?? '', /^text\/html/);
  // Every asset the page or its modules name is served, as JavaScript or CSS; none is fetched from elsewhere.
  const sources = [...page.body.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
  t.true(sources.includes('/assets/app.js'));
  const seen = new Set<string>();
  const queue = sources.filter((s) => s.startsWith('/'));
  while (queue.length > 0) {
    const path = queue.shift()!;
    if (seen.has(path)) continue;
    seen.add(path);
    const got = await raw(base, path);
    t.is(got.status, 200, path);
    t.regex(got.type ?? '', path.endsWith('.css') ? /^text\/css/ : /^text\/javascript/, path);
    for (const m of got.body.matchAll(/^import [^'"]*['"]([^'"]+)['"]/gm)) queue.push(m[1]!);
    t.notRegex(
      got.body.slice(0, 2000),
      /https?:\/\/cdn|unpkg\.com|jsdelivr/,
      `${path} fetches nothing at run time`,
    );
  }
  t.true(seen.has('/assets/vendor/uPlot.esm.js'), 'uPlot');
  t.true(seen.has('/assets/vendor/mqtt.esm.js'), "mqtt.js's browser bundle");
  t.true(seen.has('/assets/state.js'));
  const html = page.body.match(/\s(?:src|href)="(https?:[^"]+)"/);
  t.is(html, null, 'no absolute URL in the page');
});

test('/config.json: the broker URL from the page host by default, or as configured; the viewer topics', async (t) => {
  const base = await serve(t);
  const got = await raw(base, '/config.json', 'GET', { host: 'gateway.local:8080' });
  t.is(got.status, 200);
  t.regex(got.type ?? '', /^application\/json/);
  const body = JSON.parse(got.body) as Record<string, unknown>;
  t.deepEqual(body, {
    mqttUrl: 'ws://gateway.local:8083',
    root: 'edgecut/v1',
    topics: Object.fromEntries(PAGE_READS.map((n) => [n, topics[n].pattern])),
  });
  const v6 = JSON.parse((await raw(base, '/config.json', 'GET', { host: '[::1]:8080' })).body);
  t.is(v6.mqttUrl, 'ws://[::1]:8083');
  const odd = JSON.parse((await raw(base, '/config.json', 'GET', { host: 'a b"<script>' })).body);
  t.is(odd.mqttUrl, 'ws://localhost:8083', 'a Host header that is no host name is not echoed');
  const set = await serve(t, { mqttWsUrl: 'wss://mqtt.example:8084/mqtt', username: 'view', password: 'pw' });
  t.deepEqual(JSON.parse((await raw(set, '/config.json')).body), {
    mqttUrl: 'wss://mqtt.example:8084/mqtt',
    username: 'view',
    password: 'pw',
    root: 'edgecut/v1',
    topics: Object.fromEntries(PAGE_READS.map((n) => [n, topics[n].pattern])),
  });
});

test('anything else is 404, path traversal included; only GET (and HEAD)', async (t) => {
  const base = await serve(t);
  for (const path of [
    '/nope',
    '/assets/',
    '/assets/missing.js',
    '/assets/../package.json',
    '/assets/vendor/../../../../etc/passwd',
    '/assets/%2e%2e/%2e%2e/package.json',
    '/..%2f..%2fpackage.json',
    '/assets/vendor/uPlot.esm.js/',
    '/assets//app.js',
    '//etc/passwd',
    '/public/app.js',
    '/services/dashboard/server.ts',
  ]) {
    const got = await raw(base, path);
    t.is(got.status, 404, path);
    t.notRegex(got.body, /"name"|root:/, path);
  }
  t.is((await raw(base, `/${'a'.repeat(3000)}`)).status, 414);
  t.is((await raw(base, '/', 'POST')).status, 405);
  t.is((await raw(base, '/config.json', 'PUT')).status, 405);
  t.is((await raw(base, '/assets/app.js?v=1')).status, 200, 'a query string is ignored');
  const head = await raw(base, '/', 'HEAD');
  t.is(head.status, 200);
  t.is(head.body, '');
});

const oneLine = (s: string) => s.trim().split('\n').length === 1;

test('edgecut dashboard: a bad setting is one line naming it and what is allowed, exit 2', async (t) => {
  const cases: Array<[string[], Record<string, string>, RegExp]> = [
    [
      ['--port', '70000'],
      {},
      /--port="70000" is not allowed: expected a port from 0 to 65535 -- DASHBOARD_PORT/,
    ],
    [
      [],
      { DASHBOARD_MQTT_URL: 'mqtt://broker:1883' },
      /DASHBOARD_MQTT_URL="mqtt:\/\/broker:1883" is not allowed: expected a WebSocket URL like ws:\/\/host:8083/,
    ],
    [['--mqtt-ws-url', 'nonsense'], {}, /--mqtt-ws-url="nonsense" is not allowed: expected a WebSocket URL/],
    [['--metrics-port', 'x'], {}, /--metrics-port="x" is not allowed: expected off/],
    [
      ['--port', '0'],
      { DASHBOARD_PASSWORD: 'secret' },
      /DASHBOARD_PASSWORD is set but DASHBOARD_USERNAME is not: give both \(a user of role viewer\) or neither/,
    ],
  ];
  for (const [args, env, re] of cases) {
    const got = await edgecut(['dashboard', ...args], env);
    t.is(got.code, 2, `${args.join(' ')} ${JSON.stringify(env)}: ${got.stderr}`);
    t.regex(got.stderr, re);
    t.true(oneLine(got.stderr), got.stderr);
    t.notRegex(got.stderr, /secret/, 'a password is never echoed');
  }
});

test('edgecut dashboard: a port in use is one line naming DASHBOARD_PORT', async (t) => {
  const base = await serve(t);
  const port = new URL(base).port;
  const got = await edgecut(['dashboard', '--host', '127.0.0.1', '--port', port]);
  t.is(got.code, 2, got.stderr);
  t.regex(got.stderr, new RegExp(`DASHBOARD_PORT=${port}: cannot listen on 127.0.0.1:${port}: .*EADDRINUSE`));
  t.true(oneLine(got.stderr), got.stderr);
});

test('the commands of docs/dashboard.md run as written: the page finds the broker they start over WebSocket', async (t) => {
  const doc = await readFile(new URL('../docs/dashboard.md', import.meta.url), 'utf8');
  const lines = [...doc.matchAll(/^```sh\n([\s\S]*?)^```$/gm)]
    .flatMap((m) => m[1]!.split('\n'))
    .map((l) =>
      l
        .replace(/\s+#.*$/, '')
        .replace(/\s*&$/, '')
        .trim(),
    )
    .filter((l) => l !== '');
  const edgecutArgs = (prefix: string) => {
    const line = lines.find((l) => l.startsWith(prefix));
    if (!line) throw new Error(`docs/dashboard.md shows no "${prefix}"`);
    return line.split(/\s+/).slice(2);
  };
  const procs: ServiceProcess[] = [];
  t.teardown(async () => {
    for (const p of procs.reverse()) await p.stop(5000);
  });
  const quiet = { onStderr: () => undefined, env: { LOG_LEVEL: 'warn' } };
  // As written, on free loopback ports instead of the well-known ones.
  const brokerArgs = edgecutArgs('npx edgecut broker');
  t.deepEqual(brokerArgs, ['broker', '--ws-port', '8083']);
  const broker = startService(
    'broker',
    [...brokerArgs.slice(0, 2), '0', '--port', '0', '--host', '127.0.0.1'],
    quiet,
  );
  procs.push(broker);
  const wsPort = Number((await broker.ready).wsPort);
  const dashboardArgs = edgecutArgs('npx edgecut dashboard');
  t.deepEqual(dashboardArgs, ['dashboard']);
  const dashboard = startService(
    'dashboard',
    [...dashboardArgs, '--port', '0', '--host', '127.0.0.1', '--broker-ws-port', String(wsPort)],
    quiet,
  );
  procs.push(dashboard);
  const ready = await dashboard.ready;
  const config = (await (await fetch(new URL('/config.json', String(ready.url)))).json()) as {
    mqttUrl: string;
  };
  t.is(config.mqttUrl, `ws://127.0.0.1:${wsPort}`);
  const client = await mqtt.connectAsync(config.mqttUrl, { reconnectPeriod: 0 });
  t.teardown(() => client.endAsync(true));
  t.true(client.connected, 'the URL the page gets reaches the broker over WebSocket');
  // The viewer's user, as the doc writes it.
  const add = lines.find((l) => l.includes('npx edgecut users add'));
  t.truthy(add);
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-dash-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const r = spawnSync(
    'sh',
    ['-c', add!.replaceAll('npx edgecut', `"${process.execPath}" "${EDGECUT_BIN}"`)],
    {
      cwd: dir,
      env: { ...process.env, DASHBOARD_PASSWORD: 'd-pw' },
      encoding: 'utf8',
    },
  );
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /^added dashboard \(viewer\) in config\/users\.json$/m);
});

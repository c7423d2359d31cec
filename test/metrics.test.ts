/**
 * Metrics and health (runtime/metrics.ts, docs/observability.md): every service, run as the real process with
 * METRICS_PORT=0, serves /metrics in the Prometheus text format and /healthz; the counts of the four services agree
 * with each other and with what the edge printed; `edgecut health` is what compose healthchecks run; logs are JSON.
 */
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import test from 'ava';
import { BrokerMetrics } from '../broker/metrics.ts';
import { type ServiceProcess, startBrokerProcess, startService } from '../cli/processes.ts';
import { silentLogger } from '../runtime/log.ts';
import { type MetricSet, MetricsServer, Monitored, metricsTable } from '../runtime/metrics.ts';
import { writeDemoModel } from '../services/edge-head/main.ts';
import { EdgeMetrics } from '../services/edge-head/metrics.ts';
import { PlannerMetrics } from '../services/planner/metrics.ts';
import { TailMetrics } from '../services/server-tail/metrics.ts';
import { edgecut } from './helpers/cli.ts';
import { tempDir, waitFor } from './helpers/edge.ts';
import { type Family, parsePrometheus, samples, total, value } from './helpers/prometheus.ts';
import { until } from './helpers/wait.ts';

const FRAMES = 20;

/** GETs a path of a metrics port. */
async function get(port: number, path: string): Promise<{ status: number; type: string; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: await res.text() };
}

/** Scrapes and strictly parses /metrics. */
async function scrape(port: number): Promise<Map<string, Family>> {
  const r = await get(port, '/metrics');
  if (r.status !== 200 || !r.type.startsWith('text/plain; version=0.0.4'))
    throw new Error(`/metrics answered ${r.status} ${r.type}`);
  return parsePrometheus(r.body);
}

/** Is this a structured log line of `service`: a JSON object with a numeric `level`, `time` and the service? */
function isLogLine(line: string, service: string): boolean {
  try {
    const o = JSON.parse(line) as Record<string, unknown> | null;
    return (
      typeof o === 'object' &&
      o !== null &&
      typeof o.level === 'number' &&
      typeof o.time === 'number' &&
      o.service === service &&
      typeof o.msg === 'string'
    );
  } catch {
    return false;
  }
}

/** A loopback port nothing listens on. */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

test('the Prometheus parser reads escapes and histograms, and rejects what a scraper rejects', (t) => {
  const text = [
    '# HELP a_total things, with a \\\\ backslash',
    '# TYPE a_total counter',
    'a_total{name="say \\"hi\\"\\n",b="x,y"} 3',
    'a_total 1.5e3',
    '# HELP h seconds',
    '# TYPE h histogram',
    'h_bucket{le="0.1",s="x"} 1',
    'h_bucket{le="+Inf",s="x"} 2',
    'h_sum{s="x"} 0.3',
    'h_count{s="x"} 2',
    '',
  ].join('\n');
  const f = parsePrometheus(text);
  t.is(f.get('a_total')?.help, 'things, with a \\ backslash');
  t.is(value(f, 'a_total', { name: 'say "hi"\n' }), 3);
  t.is(samples(f, 'a_total', { b: 'x,y' })[0]?.labels.name, 'say "hi"\n');
  t.is(total(f, 'a_total'), 1503);
  t.is(value(f, 'h_count', { s: 'x' }), 2);
  const bad = {
    'no TYPE': 'x 1',
    'unquoted label': '# TYPE x gauge\nx{a=1} 1',
    'bad escape': '# TYPE x gauge\nx{a="\\t"} 1',
    'bad value': '# TYPE x gauge\nx one',
    'duplicate series': '# TYPE x gauge\nx{a="1"} 1\nx{a="1"} 2',
    'negative counter': '# TYPE x_total counter\nx_total -1',
    'split family': '# TYPE x gauge\nx 1\n# TYPE y gauge\ny 1\nx{a="2"} 1',
    'count != +Inf': '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3',
    'buckets decrease': '# TYPE h histogram\nh_bucket{le="1"} 3\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 2',
  };
  for (const [why, body] of Object.entries(bad)) t.throws(() => parsePrometheus(body), undefined, why);
});

test('METRICS_PORT=abc stops a service with one line naming it', async (t) => {
  const r = await edgecut(['planner'], { METRICS_PORT: 'abc' });
  t.not(r.code, 0);
  t.is(r.stdout, '');
  const lines = r.stderr.trim().split('\n');
  t.is(lines.length, 1);
  t.regex(
    lines[0] ?? '',
    /^edgecut: METRICS_PORT="abc" is not allowed: expected off, 0 \(any free port\) or a port/,
  );
});

test('edgecut health exits 1 with one line when nothing answers', async (t) => {
  const port = await deadPort();
  const r = await edgecut(['health', '--url', `http://127.0.0.1:${port}/healthz`]);
  t.is(r.code, 1);
  t.is(r.stdout, '');
  t.regex(
    r.stderr,
    new RegExp(`^edgecut health: http://127\\.0\\.0\\.1:${port}/healthz: connect ECONNREFUSED[^\\n]*\\n$`),
  );
});

test('the endpoint: /healthz follows the lifecycle and the check, other paths are 404, stop closes it', async (t) => {
  const set = new PlannerMetrics().set;
  let connected = false;
  let started: () => void = () => undefined;
  const component = {
    start: () => new Promise<void>((resolve) => (started = resolve)),
    stop: async () => undefined,
  };
  const served = new Monitored(component, {
    port: 0,
    host: '127.0.0.1',
    registry: set.registry,
    service: 'planner',
    logger: silentLogger,
    check: () => (connected ? undefined : 'not connected to the broker'),
  });
  const starting = served.start();
  await waitFor(() => served.server.port !== undefined, 'the listener');
  const port = served.server.port!;
  t.deepEqual(JSON.parse((await get(port, '/healthz')).body), {
    status: 'unavailable',
    service: 'planner',
    reason: 'starting',
  });
  started();
  await starting;
  const down = await get(port, '/healthz');
  t.is(down.status, 503);
  t.is(JSON.parse(down.body).reason, 'not connected to the broker');
  connected = true;
  const up = await get(port, '/healthz');
  t.is(up.status, 200);
  t.is(up.type, 'application/json');
  t.deepEqual(JSON.parse(up.body), { status: 'ok', service: 'planner' });
  t.is((await get(port, '/nope')).status, 404);
  t.is((await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'POST' })).status, 404);
  const f = await scrape(port);
  t.is(f.get('process_cpu_seconds_total')?.type, 'counter', 'standard process metrics, no prefix');
  t.is(f.get('nodejs_heap_size_used_bytes')?.type, 'gauge');
  t.is(value(f, 'edgecut_planner_errors_total', { code: 'handler' }), 0);
  t.deepEqual(served.server.readyDetails(), { metricsPort: port });
  await served.stop();
  await served.stop();
  await t.throwsAsync(fetch(`http://127.0.0.1:${port}/healthz`));
  t.deepEqual(served.server.readyDetails(), {});
});

test('METRICS_PORT=off opens nothing', async (t) => {
  const server = new MetricsServer({
    port: 'off',
    registry: new PlannerMetrics().set.registry,
    service: 'planner',
    health: () => ({ ok: true }),
    logger: silentLogger,
  });
  await server.start();
  t.is(server.port, undefined);
  t.deepEqual(server.readyDetails(), {});
  await server.stop();
});

/** The metric definitions of every service, as docs/observability.md lists them. */
function catalog(): string {
  const sets: Array<[string, MetricSet]> = [
    ['edge (`edgecut edge`)', new EdgeMetrics('d').set],
    ['tail worker (`edgecut tail`)', new TailMetrics('w').set],
    ['planner (`edgecut planner`)', new PlannerMetrics().set],
    [
      'broker (`edgecut broker`)',
      new BrokerMetrics({
        sharedStats: () => [],
        accessStats: () => zeroAccess,
        limitStats: () => ({}),
        loginStats: () => ({ checks: 0, address: 0, user: 0, busy: 0 }),
        poolStats: () => ({ taken: 0, reused: 0, returned: 0, idleBytes: 0 }),
      }).set,
    ],
  ];
  return sets.map(([name, set]) => metricsTable(name, set.definitions)).join('\n\n');
}
const zeroAccess = { refusedConnects: 0, refusedPublishes: 0, refusedSubscribes: 0 };

test('docs/observability.md lists every metric as the registries define it', async (t) => {
  const doc = await readFile(new URL('../docs/observability.md', import.meta.url), 'utf8');
  const m = /<!-- metrics:start -->\n([\s\S]*?)\n<!-- metrics:end -->/.exec(doc);
  t.truthy(m, 'the doc has the generated section');
  const expected = catalog();
  t.is(m?.[1], expected, `regenerate the section between the markers with:\n${expected}`);
});

test('every service serves /metrics and /healthz, and their counts agree', async (t) => {
  const dir = await tempDir(t, 'edgecut-metrics-');
  const model = await writeDemoModel(dir);
  const procs: ServiceProcess[] = [];
  t.teardown(async () => {
    for (const p of [...procs].reverse()) await p.stop(3000);
  });
  const stderr = new Map<string, string[]>();
  const opts = (name: string, env: Record<string, string>) => {
    const lines: string[] = [];
    stderr.set(name, lines);
    return {
      env: { LOG_LEVEL: 'info', METRICS_PORT: '0', ...env },
      onStderr: (l: string) => void lines.push(l),
    };
  };
  const { proc: broker, url } = await startBrokerProcess(opts('broker', {}));
  procs.push(broker);
  const env = { MQTT_URL: url };
  const planner = startService(
    'planner',
    ['planner', '--planner-id', 'm-planner', '--cut', 'middle'],
    opts('planner', env),
  );
  const tail = startService(
    'tail',
    ['tail', '--worker-id', 'm-tail', '--models-dir', dir, '--profile-runs', '0'],
    opts('tail', env),
  );
  procs.push(planner, tail);
  // The edge starts once the worker has joined its group: a request published before any worker subscribed is
  // dropped by the broker (no subscriber), and its frame would fall back after the deadline below.
  await tail.ready;
  const out: string[] = [];
  const edge = startService(
    'edge',
    ['edge', '--device-id', 'm-robot', '--model', model, '--frames', String(FRAMES), '--fps', '10'],
    // A generous deadline: on a loaded machine the worker's first request (model load, session) may take seconds,
    // and a fallback would make the counts this test compares differ for a reason it does not test.
    {
      ...opts('edge', { ...env, METRICS_LINGER_MS: '60000', RESULT_TIMEOUT_MS: '30000' }),
      onStdout: (l) => void out.push(l),
    },
  );
  procs.push(edge);
  const ports: Record<string, number> = {};
  for (const p of [broker, planner, tail, edge]) {
    const ready = await p.ready;
    t.true(Number.isInteger(ready.metricsPort), `${p.name} ready line has metricsPort`);
    ports[p.name] = ready.metricsPort as number;
  }
  // While the edge streams (10 fps: 2 s), all four are connected and healthy.
  for (const name of ['broker', 'planner', 'tail', 'edge']) {
    const h = await get(ports[name]!, '/healthz');
    t.is(h.status, 200, `${name} /healthz: ${h.body}`);
    t.is(JSON.parse(h.body).service, name);
  }
  t.true(value(await scrape(ports.broker!), 'edgecut_broker_clients') >= 3);
  const live = await edgecut(['health', '--url', `http://127.0.0.1:${ports.tail}/healthz`]);
  t.is(live.code, 0, live.stderr);
  t.deepEqual(JSON.parse(live.stdout), { status: 'ok', service: 'tail' });
  const byEnv = await edgecut(['health'], { METRICS_PORT: String(ports.planner) });
  t.is(byEnv.code, 0, byEnv.stderr);

  await waitFor(() => out.some((l) => l.startsWith('done: ')), 'the edge to finish its frames', 60_000);
  const frames = out.filter((l) => l.startsWith('frame '));
  t.is(frames.length, FRAMES);
  const cuts = new Set(frames.map((l) => Number(/ cut +(\d+) /.exec(l)?.[1])));
  t.is(cuts.size, 1, 'one cut for every frame');
  const cut = [...cuts][0]!;
  t.true(cut > 0, 'the planner splits the model (PLAN_CUT=middle)');
  t.deepEqual(
    // The demo CNN names its classes (metadata edgecut.labels), so each line ends in its top-1.
    frames.filter((l) => !/ tail by m-tail {2}top-1 \S+ [01]\.\d{3}$/.test(l)),
    [],
    `every frame offloaded to the tail worker; the worker's log:\n${(stderr.get('tail') ?? []).join('\n')}`,
  );

  const e = await scrape(ports.edge!);
  const device = { device: 'm-robot' };
  t.is(value(e, 'edgecut_edge_frames_total', { ...device, outcome: 'offloaded' }), FRAMES);
  t.is(value(e, 'edgecut_edge_frames_total', { ...device, outcome: 'local' }), 0);
  t.is(value(e, 'edgecut_edge_frames_total', { ...device, outcome: 'fallback' }), 0);
  for (const stage of ['head', 'transfer', 'tail', 'total'])
    t.is(value(e, 'edgecut_edge_stage_seconds_count', { ...device, stage }), FRAMES, stage);
  const head = value(e, 'edgecut_edge_stage_seconds_sum', { ...device, stage: 'head' });
  const whole = value(e, 'edgecut_edge_stage_seconds_sum', { ...device, stage: 'total' });
  t.true(head > 0 && whole > head, 'seconds: total > head > 0');
  t.is(value(e, 'edgecut_edge_cut', device), cut);
  t.is(value(e, 'edgecut_edge_frames_in_flight', device), 0);
  t.true(value(e, 'edgecut_edge_fps', device) > 0);
  t.is(total(e, 'edgecut_edge_fallbacks_total', device), 0);
  t.is(total(e, 'edgecut_edge_errors_total', device), 0);
  const sent = value(e, 'edgecut_edge_request_bytes_total', device);
  t.true(sent > 0);
  t.is(JSON.parse((await get(ports.edge!, '/healthz')).body).reason, 'frames done');

  // The tail counts a request once its result is published, which may be just after the edge has it.
  const worker = { worker: 'm-tail' };
  const w = await until(async () => {
    const now = await scrape(ports.tail!);
    return total(now, 'edgecut_tail_requests_total', { ...worker, outcome: 'ok' }) >= FRAMES && now;
  }, `the tail to count ${FRAMES} requests`);
  t.is(value(w, 'edgecut_tail_requests_total', { ...worker, model: 'demo-cnn', outcome: 'ok' }), FRAMES);
  t.is(value(w, 'edgecut_tail_requests_total', { ...worker, model: 'demo-cnn', outcome: 'error' }), 0);
  t.is(value(w, 'edgecut_tail_inference_seconds_count', { ...worker, model: 'demo-cnn' }), FRAMES);
  t.is(total(w, 'edgecut_tail_errors_total', worker), 0);
  t.is(value(w, 'edgecut_tail_received_bytes_total', worker), sent, 'the bytes the edge sent');
  t.is(value(w, 'edgecut_tail_queue_depth', worker), 0);

  const p = await scrape(ports.planner!);
  t.is(value(p, 'edgecut_planner_cut', device), cut);
  t.true(value(p, 'edgecut_planner_plans_total', device) >= 1);
  t.true(value(p, 'edgecut_planner_replan_seconds_count') >= 1);
  t.is(value(p, 'edgecut_planner_devices'), 1);
  t.is(total(p, 'edgecut_planner_errors_total'), 0);

  const b = await scrape(ports.broker!);
  t.true(value(b, 'edgecut_broker_messages_published_total') >= 2 * FRAMES, 'requests and results at least');
  const groups = samples(b, 'edgecut_broker_shared_members');
  t.is(groups.length, 1, 'the tail workers’ shared group');
  t.is(groups[0]?.value, 1);
  t.true((samples(b, 'edgecut_broker_shared_delivered_total')[0]?.value ?? 0) >= FRAMES);
  t.is(total(b, 'edgecut_broker_refused_total'), 0);
  for (const f of [e, w, p, b]) t.truthy(f.get('process_cpu_seconds_total'), 'standard process metrics');

  // A signal ends the edge's linger; its port is then dead and `edgecut health` says so in one line.
  t.is(await edge.stop(), 0);
  const dead = await edgecut(['health', '--url', `http://127.0.0.1:${ports.edge}/healthz`]);
  t.is(dead.code, 1);
  t.is(dead.stderr.trim().split('\n').length, 1);
  t.regex(dead.stderr, /ECONNREFUSED/);

  for (const [name, lines] of stderr) {
    t.true(lines.length > 0, `${name} logged`);
    const unstructured = lines.filter((l) => !isLogLine(l, name));
    t.deepEqual(unstructured, [], `${name} writes only JSON log lines with a level on stderr`);
  }
  t.true(
    (stderr.get('tail') ?? []).some((l) => isLogLine(l, 'tail') && JSON.parse(l).metricsPort === ports.tail),
    'the port is logged once at info',
  );
});

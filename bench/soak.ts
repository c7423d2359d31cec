/**
 * `npm run bench -- soak [--minutes N] [--out FILE]`: the whole system left running under faults, as a gateway runs
 * for days. Three robots (the demo CNN on an emulated Raspberry Pi 3, 10 fps each), two tail workers, the planner
 * and the embedded broker with its retained-message store, all separate processes. Each robot's uplink switches
 * between 100 and 1 Mbit/s every 30 s (staggered by 10 s between robots), so the planner moves every robot between
 * cuts all the time. At 40% of the run one worker is killed with SIGKILL and a new one started; at 70% the broker
 * is restarted on its port and data directory. Measured: frames answered and lost per robot (lost: a frame index
 * never reported; must be 0), plan changes, and the resident memory of every process sampled every 5 s, whose slope
 * after its first minute must stay at or below 1 MB per minute. The run's minutes, its faults and that first minute
 * count from when the robots are running: starting the services (the workers profile the model) is not the steady
 * state, and on a busy host it can take longer than a short run.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ServiceProcess, startService } from '../cli/processes.ts';
import { UserError } from '../runtime/errors.ts';
import { freePort, rssMB } from './processes.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The target: resident memory grows by at most this after a process's first minute (MB per minute). */
export const RSS_SLOPE_LIMIT = 1;
/** Memory is sampled this often (ms). */
const SAMPLE_MS = 5000;
/** A process's first minute under load is its warm-up: sessions, caches and JIT settle. */
const WARMUP_MS = 60_000;
const ROBOTS = 3;
const FPS = 10;
const SWITCH_MS = 30_000;

/** One process instance (a restarted service is a new instance). */
interface Instance {
  name: string;
  proc: ServiceProcess;
  startedAt: number;
  /** [ms since start of the run, MB]. */
  rss: Array<[number, number]>;
  /** [ms since start of the run, MB] of the V8 heap in use (from the process's /metrics). */
  heap: Array<[number, number]>;
  /** [ms since start of the run, MB] of memory outside the heap that V8 tracks (Buffers, from /metrics). */
  external: Array<[number, number]>;
  /** Its /metrics port, once its ready line said it. */
  metricsPort?: number;
}

/** What a soak run measured. */
export interface SoakResult {
  minutes: number;
  robots: Array<{
    device: string;
    answered: number;
    lost: number;
    offloaded: number;
    fallbacks: number;
    planChanges: number;
    cuts: number[];
  }>;
  processes: Array<{
    name: string;
    samples: number;
    firstMB: number;
    lastMB: number;
    slopeMBPerMin: number | null;
    /** Slope of the V8 heap in use after the first minute: growth that is JavaScript, not native memory. */
    heapSlopeMBPerMin: number | null;
    /** Slope of Buffers and other memory V8 tracks outside its heap after the first minute. */
    externalSlopeMBPerMin: number | null;
    /** Resident memory every 30 s: [minutes since the start of the run, MB]. */
    rss: Array<[number, number]>;
  }>;
  faults: string[];
  passed: boolean;
}

/** The V8 heap in use and the external memory of a service, MB, from its /metrics; undefined when it does not answer. */
async function memoryMB(port: number): Promise<{ heap: number; external: number } | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(2000) });
    const text = await res.text();
    const read = (name: string) => {
      const v = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1];
      return v === undefined ? undefined : Number(v) / 2 ** 20;
    };
    const heap = read('nodejs_heap_size_used_bytes');
    const external = read('nodejs_external_memory_bytes');
    return heap === undefined || external === undefined ? undefined : { heap, external };
  } catch {
    return undefined;
  }
}

/** Least-squares slope of MB over minutes, or null with fewer than 6 samples. */
export function slopePerMinute(points: ReadonlyArray<[number, number]>): number | null {
  if (points.length < 6) return null;
  const xs = points.map(([ms]) => ms / 60_000);
  const ys = points.map(([, mb]) => mb);
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  let num = 0;
  let den = 0;
  for (let i = 0; i < xs.length; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den > 0 ? num / den : null;
}

/** An uplink schedule alternating 100 Mbit/s and 1 Mbit/s every SWITCH_MS, shifted by `offsetMs`. */
function uplinkSchedule(totalMs: number, offsetMs: number): string {
  const parts = ['100mbps'];
  let fast = false;
  for (let at = SWITCH_MS - offsetMs; at < totalMs + SWITCH_MS; at += SWITCH_MS) {
    parts.push(`${fast ? '100mbps' : '1mbps'}@${Math.round(at / 1000)}s`);
    fast = !fast;
  }
  return parts.join(',');
}

/** Runs the soak for `minutes` and returns what it measured. */
export async function soak(
  minutes: number,
  log: (line: string) => void = () => undefined,
): Promise<SoakResult> {
  const totalMs = minutes * 60_000;
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-soak-'));
  const models = join(dir, 'models');
  const data = join(dir, 'broker-data');
  await mkdir(models, { recursive: true });
  const port = await freePort();
  const url = `mqtt://127.0.0.1:${port}`;
  // Every service serves /metrics on a free port: its V8 heap tells JavaScript growth from native growth.
  const env = { MQTT_URL: url, LOG_LEVEL: 'error', METRICS_PORT: '0' };
  const quiet = { onStdout: () => undefined, onStderr: () => undefined };
  const t0 = Date.now();
  /** When the robots were running (ms since t0): the run's schedule and the memory warm-up count from it. */
  let loadAt = Number.POSITIVE_INFINITY;
  const instances: Instance[] = [];
  const faults: string[] = [];
  const track = (name: string, proc: ServiceProcess): Instance => {
    const inst: Instance = { name, proc, startedAt: Date.now() - t0, rss: [], heap: [], external: [] };
    instances.push(inst);
    void proc.ready.then(
      (line) => {
        if (typeof line.metricsPort === 'number') inst.metricsPort = line.metricsPort;
      },
      () => undefined,
    );
    return inst;
  };
  const broker = () =>
    startService('broker', ['broker', '--port', String(port), '--host', '127.0.0.1', '--data-dir', data], {
      ...quiet,
      env: { LOG_LEVEL: 'error', METRICS_PORT: '0' },
    });
  const tail = (id: string) =>
    startService(id, ['tail', '--worker-id', id, '--models-dir', models], { ...quiet, env });
  const plans = new Map<string, number[]>();
  const frames = new Map<
    string,
    Array<{ frame: number; cut: number; tailBy: string; fallback: string | null }>
  >();
  let brokerInst = track('broker', broker());
  const live = new Set<Instance>();
  let progress: NodeJS.Timeout | undefined;
  const sampler = setInterval(() => {
    const at = Date.now() - t0;
    for (const inst of live) {
      void rssMB(inst.proc.child.pid).then((mb) => {
        if (mb !== undefined) inst.rss.push([at, mb]);
      });
      if (inst.metricsPort !== undefined)
        void memoryMB(inst.metricsPort).then((m) => {
          if (!m) return;
          inst.heap.push([at, m.heap]);
          inst.external.push([at, m.external]);
        });
    }
  }, SAMPLE_MS);
  try {
    await brokerInst.proc.ready;
    live.add(brokerInst);
    const tails = [track('tail-1', tail('tail-1')), track('tail-2', tail('tail-2'))];
    const planner = track(
      'planner',
      startService('planner', ['planner'], {
        ...quiet,
        env: { ...env, LOG_LEVEL: 'info' },
        onStderr: (line) => {
          if (!line.includes('"plan published"')) return;
          const j = JSON.parse(line) as { device?: string; cut?: number };
          if (j.device === undefined || j.cut === undefined) return;
          plans.set(j.device, [...(plans.get(j.device) ?? []), j.cut]);
        },
      }),
    );
    await Promise.all([...tails, planner].map((i) => i.proc.ready));
    for (const i of [...tails, planner]) live.add(i);
    const robots = Array.from({ length: ROBOTS }, (_, r) => {
      const device = `robot-${r + 1}`;
      frames.set(device, []);
      const args = [
        'edge',
        '--device-id',
        device,
        '--models-dir',
        models,
        '--emulate-device',
        'rpi3b',
        '--emulate-uplink',
        uplinkSchedule(totalMs, r * 10_000),
        '--fps',
        String(FPS),
        '--frames',
        String(Math.ceil((totalMs / 1000) * FPS * 2)),
        '--report',
        'json',
      ];
      const proc = startService(device, args, {
        env,
        onStderr: () => undefined,
        onStdout: (line) => {
          if (!line.startsWith('{"frame"')) return;
          const f = JSON.parse(line) as {
            frame: number;
            cut: number;
            tailBy: string;
            fallback: string | null;
          };
          frames.get(device)!.push(f);
        },
      });
      return track(device, proc);
    });
    await Promise.all(robots.map((r) => r.proc.ready));
    for (const r of robots) live.add(r);
    log(`soak: ${ROBOTS} robots, 2 workers, planner, broker on ${url}; ${minutes} min`);
    loadAt = Date.now() - t0;
    const sinceLoad = () => Date.now() - t0 - loadAt;
    const until = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms - sinceLoad())));
    // Progress once a minute: a long run shows it is alive and what it has answered so far.
    progress = setInterval(() => {
      const answered = [...frames.values()].reduce((a, fs) => a + fs.length, 0);
      log(`${(sinceLoad() / 60_000).toFixed(0)} of ${minutes} min: ${answered} frames answered`);
    }, 60_000);
    // Fault 1: a worker killed outright, and a new one started in its place.
    await until(0.4 * totalMs);
    const victim = tails[0]!;
    victim.proc.child.kill('SIGKILL');
    await victim.proc.exited;
    live.delete(victim);
    const replacement = track('tail-3', tail('tail-3'));
    await replacement.proc.ready;
    live.add(replacement);
    faults.push(`${(sinceLoad() / 60_000).toFixed(1)} min: tail-1 killed (SIGKILL), tail-3 started`);
    log(faults.at(-1)!);
    // Fault 2: the broker restarted on its port and data directory.
    await until(0.7 * totalMs);
    await brokerInst.proc.stop(10_000);
    live.delete(brokerInst);
    brokerInst = track('broker (restarted)', broker());
    await brokerInst.proc.ready;
    live.add(brokerInst);
    faults.push(`${(sinceLoad() / 60_000).toFixed(1)} min: broker restarted`);
    log(faults.at(-1)!);
    await until(totalMs);
    // The robots finish the frames in flight on SIGTERM.
    await Promise.all(robots.map((r) => r.proc.stop(30_000)));
  } finally {
    clearInterval(sampler);
    clearInterval(progress);
    for (const inst of [...instances].reverse()) await inst.proc.stop(10_000);
    await rm(dir, { recursive: true, force: true });
  }
  const robots = [...frames.entries()].map(([device, fs]) => {
    const seen = new Set(fs.map((f) => f.frame));
    const max = Math.max(0, ...seen);
    const cuts = plans.get(device) ?? [];
    return {
      device,
      answered: fs.length,
      lost: max - seen.size,
      offloaded: fs.filter((f) => f.tailBy !== 'local').length,
      fallbacks: fs.filter((f) => f.fallback !== null).length,
      planChanges: cuts.filter((c, i) => i > 0 && c !== cuts[i - 1]).length,
      cuts: [...new Set(cuts)].sort((a, b) => a - b),
    };
  });
  const processes = instances.map((inst) => {
    const warm = ([at]: [number, number]) => at >= Math.max(inst.startedAt, loadAt) + WARMUP_MS;
    return {
      name: inst.name,
      samples: inst.rss.length,
      firstMB: inst.rss[0]?.[1] ?? 0,
      lastMB: inst.rss.at(-1)?.[1] ?? 0,
      slopeMBPerMin: slopePerMinute(inst.rss.filter(warm)),
      heapSlopeMBPerMin: slopePerMinute(inst.heap.filter(warm)),
      externalSlopeMBPerMin: slopePerMinute(inst.external.filter(warm)),
      rss: inst.rss
        .filter((_, i) => i % 6 === 0)
        .map(([ms, mb]): [number, number] => [Math.round(ms / 6000) / 10, Math.round(mb)]),
    };
  });
  const passed =
    robots.every((r) => r.lost === 0 && r.answered > 0) &&
    processes.every((p) => p.slopeMBPerMin === null || p.slopeMBPerMin <= RSS_SLOPE_LIMIT);
  return { minutes, robots, processes, faults, passed };
}

/** The result as tables. */
export function formatSoak(r: SoakResult): string {
  const lines = [
    `soak: ${r.minutes} min, ${ROBOTS} robots at ${FPS} fps, 2 tail workers, uplinks switching every ${SWITCH_MS / 1000} s`,
    ...r.faults.map((f) => `fault at ${f}`),
    '',
    '| robot | frames answered | lost | by a worker | fallbacks | plan changes | cuts planned |',
    '|---|---|---|---|---|---|---|',
    ...r.robots.map(
      (x) =>
        `| ${x.device} | ${x.answered} | ${x.lost} | ${x.offloaded} | ${x.fallbacks} | ${x.planChanges} | ${x.cuts.join(', ')} |`,
    ),
    '',
    `| process | RSS samples | first MB | last MB | slope after 1 min (MB/min, target <= ${RSS_SLOPE_LIMIT}) | V8 heap (MB/min) | external (MB/min) |`,
    '|---|---|---|---|---|---|---|',
    ...r.processes.map(
      (p) =>
        `| ${p.name} | ${p.samples} | ${p.firstMB.toFixed(0)} | ${p.lastMB.toFixed(0)} | ${
          p.slopeMBPerMin === null ? 'n/a (ran too briefly)' : p.slopeMBPerMin.toFixed(2)
        } | ${p.heapSlopeMBPerMin === null ? 'n/a' : p.heapSlopeMBPerMin.toFixed(2)} | ${
          p.externalSlopeMBPerMin === null ? 'n/a' : p.externalSlopeMBPerMin.toFixed(2)
        } |`,
    ),
    '',
  ];
  const answered = r.robots.reduce((a, x) => a + x.answered, 0);
  const lost = r.robots.reduce((a, x) => a + x.lost, 0);
  const slopes = r.processes.flatMap((p) => (p.slopeMBPerMin === null ? [] : [p.slopeMBPerMin]));
  const worst = slopes.length > 0 ? Math.max(...slopes).toFixed(2) : 'n/a';
  lines.push(
    `soak: ${answered} frames answered, ${lost} lost, largest RSS slope ${worst} MB/min: ${r.passed ? 'PASS' : 'FAIL'}`,
  );
  return lines.join('\n');
}

/** `npm run bench -- soak [--minutes N] [--out FILE]`. */
export async function run(args: string[]): Promise<void> {
  const i = args.indexOf('--minutes');
  const minutes = i >= 0 ? Number(args[i + 1]) : 10;
  if (!(minutes > 0 && minutes <= 24 * 60))
    throw new UserError(
      `--minutes ${String(args[i + 1])} is not allowed: expected a number of minutes above 0, at most 1440`,
    );
  const o = args.indexOf('--out');
  const out = resolve(o >= 0 && args[o + 1] ? args[o + 1]! : join(ROOT, '.cache/bench/soak.json'));
  const r = await soak(minutes, (line) => process.stderr.write(`${line}\n`));
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, `${JSON.stringify(r, null, 2)}\n`);
  process.stdout.write(`${formatSoak(r)}\nwrote ${out}\n`);
  if (!r.passed) process.exitCode = 1;
}

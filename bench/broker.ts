/**
 * `npm run bench -- broker [--quick] [--rounds N] [--seconds S] [--sizes LIST] [--clients LIST] [--processes P]`:
 * `edgecut broker` against Mosquitto (`set_tcp_nodelay true`) in the same run, on loopback, with the broker, the
 * publishers and the subscribers in processes of their own (bench/broker-client.ts; by default one process per
 * role, `--processes per-client` one per client). Per payload size (1 KiB, 64 KiB, 1 MiB, 4 MiB), QoS (0, 1) and
 * topology (one publisher to one subscriber; three publishers, each on its own topic, to a `$share` group of
 * three), and per broker: messages and MB per second delivered, latency p50 and p99 (publish to delivery), the
 * broker's CPU seconds per GB delivered and its peak resident memory. Each case starts a fresh broker; rounds
 * alternate which broker goes first; the table gives medians over rounds and the ratio edgecut / Mosquitto.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { startBrokerProcess } from '../cli/processes.ts';
import { median } from '../planning/stats.ts';
import { UserError } from '../runtime/errors.ts';
import type { ClientJob, ClientResult } from './broker-client.ts';
import { hasMosquitto, launchMosquitto, MOSQUITTO_BIN } from './mosquitto.ts';
import { cpuSeconds, minorFaults, peakRssMB } from './processes.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLIENT = join(ROOT, 'bench/broker-client.ts');
const KIB = 1024;
const MIB = 1024 * KIB;

/** Messages a publisher keeps in flight (the measurement: 16 QoS 1 messages). */
const INFLIGHT = 16;

type BrokerName = 'edgecut' | 'mosquitto';
/** One publisher to one subscriber; three publishers to a `$share` group of three; three plain pairs (the same processes as the group, each publisher to a subscriber of its own topic). */
type Topology = '1:1' | '3:$share3' | '3:3';

/** The values of `--clients`. */
const CLIENTS_FLAG: Record<string, Topology> = { one: '1:1', share: '3:$share3', pairs: '3:3' };

const TOPOLOGY_LABEL: Record<Topology, string> = {
  '1:1': '1 -> 1',
  '3:$share3': '3 -> $share of 3',
  '3:3': '3 -> 3 (plain pairs)',
};

interface Case {
  size: number;
  qos: 0 | 1;
  topology: Topology;
}

/** One broker's measurement of one case in one round. */
interface Measured {
  msgPerS: number;
  mbPerS: number;
  p50Ms: number;
  p99Ms: number;
  cpuSPerGB: number;
  /** The broker's minor page faults per MB moved (fresh memory touched for the first time). */
  faultsPerMB: number;
  peakRssMB: number;
  /** Messages published (warm-up included) that no subscriber received (QoS 0 may drop; QoS 1 must not). */
  lost: number;
}

interface Row extends Case {
  edgecut: Measured;
  mosquitto: Measured;
}

/**
 * How the clients are spread over processes: `per-role`, the publishers in one process and the subscribers in
 * another, so that every case runs the same number of processes and what differs is the broker's work; or
 * `per-client`, each client a process of its own, as a gateway's robots and tail workers are.
 */
type ClientProcesses = 'per-role' | 'per-client';
const CLIENT_PROCESSES: readonly ClientProcesses[] = ['per-role', 'per-client'];

/** The options of a run. */
export interface BrokerBenchOptions {
  rounds: number;
  seconds: number;
  sizes: number[];
  qos: Array<0 | 1>;
  topologies: Topology[];
  processes: ClientProcesses;
}

function options(args: string[]): BrokerBenchOptions {
  const value = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const quick = args.includes('--quick');
  const rounds = Number(value('--rounds') ?? (quick ? 1 : 3));
  const seconds = Number(value('--seconds') ?? (quick ? 1 : 3));
  if (!Number.isInteger(rounds) || rounds < 1)
    throw new UserError(`--rounds ${value('--rounds')} is not allowed: expected a whole number >= 1`);
  if (!(seconds > 0 && seconds <= 600))
    throw new UserError(
      `--seconds ${value('--seconds')} is not allowed: expected a number of seconds above 0, at most 600`,
    );
  const sizeArg = value('--sizes');
  const sizes = sizeArg
    ? sizeArg.split(',').map((s) => parseSize(s))
    : quick
      ? [64 * KIB]
      : [KIB, 64 * KIB, MIB, 4 * MIB];
  const clientsArg = value('--clients');
  const topologies = clientsArg
    ? clientsArg.split(',').map((c) => {
        const t = CLIENTS_FLAG[c.trim()];
        if (!t)
          throw new UserError(
            `--clients ${clientsArg} is not allowed: expected a list of ${Object.keys(CLIENTS_FLAG).join(', ')} (one to one, a $share group of three, three plain pairs)`,
          );
        return t;
      })
    : (['1:1', '3:$share3', '3:3'] as Topology[]);
  const processesArg = value('--processes') ?? 'per-role';
  if (!CLIENT_PROCESSES.includes(processesArg as ClientProcesses))
    throw new UserError(
      `--processes ${processesArg} is not allowed: expected ${CLIENT_PROCESSES.join(' or ')} (the publishers in one process and the subscribers in another, or every client a process of its own)`,
    );
  return {
    rounds,
    seconds,
    sizes,
    qos: quick ? [1] : [0, 1],
    topologies: [...new Set(topologies)],
    processes: processesArg as ClientProcesses,
  };
}

function parseSize(s: string): number {
  const m = /^(\d+)(k|m)?$/i.exec(s.trim());
  const bytes = m ? Number(m[1]) * (m[2]?.toLowerCase() === 'm' ? MIB : m[2] ? KIB : 1) : Number.NaN;
  if (!(bytes >= 8 && bytes <= 8 * MIB - 1024))
    throw new UserError(
      `--sizes ${s} is not allowed: expected payload sizes from 8 bytes to 8 MiB less 1 KiB (the broker's packet limit), such as 1k,64k,1m,4m`,
    );
  return bytes;
}

function label(size: number): string {
  return size >= MIB ? `${size / MIB} MiB` : size >= KIB ? `${size / KIB} KiB` : `${size} B`;
}

interface Client {
  child: ChildProcess;
  ready: Promise<void>;
  /** The results of its jobs, in their order. */
  result: Promise<ClientResult[]>;
}

/** Starts a process running `jobs` (bench/broker-client.ts), each client with a connection of its own. */
function startClients(jobs: ClientJob[]): Client {
  const child = spawn(process.execPath, ['--import', 'tsx', CLIENT, JSON.stringify(jobs)], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  let onReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => {
    onReady = resolve;
  });
  const result = new Promise<ClientResult[]>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      if (line === '{"ready":true}') onReady();
      else if (line.startsWith('[')) resolve(JSON.parse(line) as ClientResult[]);
    });
    const who = jobs.map((j) => `${j.role} ${j.topic}`).join(', ');
    child.once('exit', (code) =>
      reject(new Error(`bench broker clients (${who}) exited with ${code}: ${stderr.trim()}`)),
    );
  });
  return { child, ready: Promise.race([ready, result.then(() => undefined)]), result };
}

async function startBroker(
  name: BrokerName,
): Promise<{ url: string; pid: number | undefined; stop(): Promise<unknown> }> {
  if (name === 'mosquitto') return launchMosquitto({ noDelay: true });
  const quiet = { onStdout: () => undefined, onStderr: () => undefined };
  const { proc, url } = await startBrokerProcess({ ...quiet, env: { LOG_LEVEL: 'error' } });
  return { url, pid: proc.child.pid, stop: () => proc.stop(5000) };
}

async function measureCase(name: BrokerName, c: Case, o: BrokerBenchOptions): Promise<Measured> {
  const broker = await startBroker(name);
  const clients: Client[] = [];
  try {
    const n = c.topology === '1:1' ? 1 : 3;
    const warmMs = 500;
    const durationMs = o.seconds * 1000;
    const base = { url: broker.url, size: c.size, qos: c.qos, inflight: INFLIGHT, warmMs, durationMs };
    // Every client a process of its own, or the publishers in one and the subscribers in another.
    const processes = (jobs: ClientJob[]) =>
      (o.processes === 'per-client' ? jobs.map((j) => [j]) : [jobs]).map(startClients);
    const subs = processes(
      Array.from({ length: n }, (_, i) => ({
        ...base,
        role: 'sub' as const,
        topic: c.topology === '3:$share3' ? '$share/bench/bench/+' : `bench/${i}`,
        graceMs: 3000,
      })),
    );
    clients.push(...subs);
    await Promise.all(subs.map((s) => s.ready));
    const pubs = processes(
      Array.from({ length: n }, (_, i) => ({
        ...base,
        role: 'pub' as const,
        topic: `bench/${i}`,
        graceMs: 3000,
      })),
    );
    clients.push(...pubs);
    await Promise.all(pubs.map((p) => p.ready));
    const start = performance.timeOrigin + performance.now() + 300;
    for (const cl of clients) cl.child.stdin?.write(`${start}\n`);
    const at = (t: number) =>
      new Promise((r) => setTimeout(r, Math.max(0, t - (performance.timeOrigin + performance.now()))));
    await at(start + warmMs);
    const cpu0 = await cpuSeconds(broker.pid);
    const faults0 = await minorFaults(broker.pid);
    await at(start + warmMs + durationMs);
    const cpu1 = await cpuSeconds(broker.pid);
    const faults1 = await minorFaults(broker.pid);
    // Every client reports within its grace period after the window; a case that does not is an error, not a hang.
    let timer: NodeJS.Timeout | undefined;
    const [subResults, pubResults] = await Promise.race([
      Promise.all([
        Promise.all(subs.map((s) => s.result)).then((r) => r.flat()),
        Promise.all(pubs.map((p) => p.result)).then((r) => r.flat()),
      ]),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new Error(`${name}, ${label(c.size)} QoS ${c.qos} ${c.topology}: a client did not report`),
            ),
          30_000,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    const peak = await peakRssMB(broker.pid);
    const received = subResults.reduce((a, r) => a + r.messages, 0);
    const bytes = received * c.size;
    // Each subscriber's quantile points stand for messages / points of its messages.
    const weighted = subResults
      .flatMap((r) =>
        (r.latenciesMs ?? []).map((ms) => ({ ms, w: r.messages / (r.latenciesMs?.length || 1) })),
      )
      .sort((a, b) => a.ms - b.ms);
    const totalW = weighted.reduce((a, x) => a + x.w, 0);
    const q = (p: number) => {
      let acc = 0;
      for (const x of weighted) {
        acc += x.w;
        if (acc >= p * totalW) return x.ms;
      }
      return Number.NaN;
    };
    const sent = pubResults.reduce((a, r) => a + (r.sentTotal ?? 0), 0);
    const got = subResults.reduce((a, r) => a + (r.receivedTotal ?? 0), 0);
    const cpu = cpu0 !== undefined && cpu1 !== undefined ? cpu1 - cpu0 : Number.NaN;
    return {
      msgPerS: received / o.seconds,
      mbPerS: bytes / MIB / o.seconds,
      p50Ms: q(0.5),
      p99Ms: q(0.99),
      cpuSPerGB: bytes > 0 ? cpu / (bytes / 1024 ** 3) : Number.NaN,
      faultsPerMB:
        bytes > 0 && faults0 !== undefined && faults1 !== undefined
          ? (faults1 - faults0) / (bytes / MIB)
          : Number.NaN,
      peakRssMB: peak,
      lost: Math.max(0, sent - got),
    };
  } finally {
    for (const cl of clients) if (cl.child.exitCode === null) cl.child.kill('SIGKILL');
    await broker.stop();
  }
}

function medianOf(ms: Measured[]): Measured {
  const m = (f: (x: Measured) => number) => median(ms.map(f));
  return {
    msgPerS: m((x) => x.msgPerS),
    mbPerS: m((x) => x.mbPerS),
    p50Ms: m((x) => x.p50Ms),
    p99Ms: m((x) => x.p99Ms),
    cpuSPerGB: m((x) => x.cpuSPerGB),
    faultsPerMB: m((x) => x.faultsPerMB),
    peakRssMB: m((x) => x.peakRssMB),
    lost: Math.max(...ms.map((x) => x.lost)),
  };
}

const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(x >= 100 ? 0 : 1) : '-');
const ratio = (a: number, b: number) => (b > 0 && Number.isFinite(a / b) ? `${(a / b).toFixed(2)}x` : '-');

/** The table of a run, one row per case. */
export function renderTable(rows: readonly Row[]): string {
  const head =
    '| payload | QoS | clients | msg/s edgecut | msg/s mosquitto | ratio | MB/s edgecut | MB/s mosquitto | p50 / p99 ms edgecut | p50 / p99 ms mosquitto | CPU s/GB edgecut | CPU s/GB mosquitto | ratio | page faults/MB edgecut / mosquitto | peak RSS MB edgecut / mosquitto | lost (QoS 1 must be 0) |';
  const sep = `|${head
    .split('|')
    .slice(1, -1)
    .map(() => '---')
    .join('|')}|`;
  const lines = rows.map((r) => {
    const e = r.edgecut;
    const m = r.mosquitto;
    return `| ${label(r.size)} | ${r.qos} | ${TOPOLOGY_LABEL[r.topology]} | ${f1(e.msgPerS)} | ${f1(m.msgPerS)} | ${ratio(e.msgPerS, m.msgPerS)} | ${f1(e.mbPerS)} | ${f1(m.mbPerS)} | ${f1(e.p50Ms)} / ${f1(e.p99Ms)} | ${f1(m.p50Ms)} / ${f1(m.p99Ms)} | ${f1(e.cpuSPerGB)} | ${f1(m.cpuSPerGB)} | ${ratio(e.cpuSPerGB, m.cpuSPerGB)} | ${f1(e.faultsPerMB)} / ${f1(m.faultsPerMB)} | ${f1(e.peakRssMB)} / ${f1(m.peakRssMB)} | ${e.lost} / ${m.lost} |`;
  });
  return [head, sep, ...lines].join('\n');
}

/**
 * Per payload and QoS, what a `$share` group of three moves against one subscriber and against three plain pairs
 * (the same seven processes), for each broker: the shared path's cost with the processes' count factored out.
 */
export function renderShareRatios(rows: readonly Row[]): string {
  const lines: string[] = [];
  for (const r of rows) {
    if (r.topology !== '3:$share3') continue;
    const find = (t: Topology) => rows.find((x) => x.size === r.size && x.qos === r.qos && x.topology === t);
    const one = find('1:1');
    const pairs = find('3:3');
    const part = (name: BrokerName) =>
      `${name} ${one ? ratio(r[name].msgPerS, one[name].msgPerS) : '-'} of 1 -> 1, ${pairs ? ratio(r[name].msgPerS, pairs[name].msgPerS) : '-'} of 3 plain pairs`;
    lines.push(`${label(r.size)} QoS ${r.qos}, $share of 3: ${part('edgecut')}; ${part('mosquitto')}`);
  }
  return lines.join('\n');
}

export async function run(args: string[]): Promise<void> {
  if (!hasMosquitto)
    throw new UserError(`${MOSQUITTO_BIN} not found: install the mosquitto package (or set MOSQUITTO_BIN)`);
  const o = options(args);
  const cases: Case[] = [];
  for (const topology of o.topologies)
    for (const qos of o.qos) for (const size of o.sizes) cases.push({ size, qos, topology });
  const measured = new Map<string, Record<BrokerName, Measured[]>>();
  const key = (c: Case) => `${c.size}|${c.qos}|${c.topology}`;
  for (let round = 0; round < o.rounds; round++) {
    for (const c of cases) {
      const order: BrokerName[] = round % 2 === 0 ? ['edgecut', 'mosquitto'] : ['mosquitto', 'edgecut'];
      const entry = measured.get(key(c)) ?? { edgecut: [], mosquitto: [] };
      measured.set(key(c), entry);
      for (const name of order) {
        const m = await measureCase(name, c, o);
        entry[name].push(m);
        process.stderr.write(
          `bench broker: round ${round + 1}/${o.rounds} ${label(c.size)} QoS ${c.qos} ${c.topology} ${name}: ${f1(m.msgPerS)} msg/s, ${f1(m.cpuSPerGB)} CPU s/GB\n`,
        );
      }
    }
  }
  const rows: Row[] = cases.map((c) => {
    const e = measured.get(key(c))!;
    return { ...c, edgecut: medianOf(e.edgecut), mosquitto: medianOf(e.mosquitto) };
  });
  const out = join(ROOT, '.cache/bench/broker.json');
  await mkdir(join(ROOT, '.cache/bench'), { recursive: true });
  await writeFile(out, `${JSON.stringify({ options: o, rows, at: new Date().toISOString() }, null, 2)}\n`);
  process.stdout.write(
    `edgecut broker vs Mosquitto (set_tcp_nodelay true), loopback, ${o.rounds} round(s) of ${o.seconds} s per case, medians; publishers keep ${INFLIGHT} messages in flight; clients ${o.processes === 'per-role' ? 'in one process per role (publishers, subscribers)' : 'each in a process of its own'}\n\n${renderTable(rows)}\n\n${renderShareRatios(rows)}\n\nwritten to ${out}\n`,
  );
}

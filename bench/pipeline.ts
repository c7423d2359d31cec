/**
 * `npm run bench -- pipeline [--frames N] [--window W] [--rounds N] [--cut NAME|INDEX] [--quick]`: the data plane
 * end to end, in one run on this host (compare the ratios, which are measured in the same run; medians throughout).
 *
 * 1. SqueezeNet 1.0 (zoo) split at a middle single-tensor cut (default after `features.7.cat`, the output of the
 *    fire5 module: 1x256x27x27 float32, head and tail about equally heavy) between a real EdgeHead (this process)
 *    and a real tail worker (`edgecut tail`) over the embedded broker (`edgecut broker`), with the edge's uplink
 *    shaped (EdgeOptions.uplink, as `EMULATE_UPLINK` does) to 10 and to 100 Mbit/s. ORT threads 1 on both sides.
 *    a. Latency (window 1, an idle pipeline for every frame): median latency vs the ideal
 *       median(head) + wire + median(tail), wire = the request's PUBLISH packet bytes x 8 / rate, all measured in
 *       the same run (head: the edge's report, tail: the worker's own stamps). The result (4 KB of class scores)
 *       returns over the unshaped loopback and is left out of the ideal; its time is part of the overhead shown.
 *       Target: latency <= 1.15 x ideal.
 *    b. Throughput (window W >= 4, frames as fast as the edge takes them): fps vs 1 / the slowest stage of head,
 *       wire and tail (medians of the same run). Target: fps >= 0.85 x that bound.
 * 2. Codec and broker cost per frame of a 1 MiB float32 tensor on loopback, aedes and Mosquitto side by side, at
 *    QoS 1 and QoS 0 (bench/pipeline-overhead.ts).
 *
 * `--quick` runs a few frames of everything (the output has the same shape; the figures are not meaningful).
 */
import { formatBytes, table } from '../cli/format.ts';
import { loadModelRef } from '../cli/model-source.ts';
import { formatRate } from '../measurement/shaping.ts';
import type { CutInfo, ModelHandle } from '../model/handle.ts';
import { median } from '../planning/stats.ts';
import { topics } from '../schemas/topics.ts';
import { hasMosquitto, launchMosquitto, MOSQUITTO_BIN, type MosquittoHandle } from './mosquitto.ts';
import { BENCH_DEVICE, type EdgeRunResult, publishPlan, runEdge } from './pipeline-e2e.ts';
import { measureOverhead, type OverheadRow } from './pipeline-overhead.ts';
import { startPipelineStack } from './pipeline-stack.ts';

const MODEL = 'squeezenet1.0';
const DEFAULT_CUT = 'features.7.cat';
const RATES = [10e6, 100e6];
const LATENCY_TARGET = 1.15;
const THROUGHPUT_TARGET = 0.85;
const THREADS = 1;
const GAP_MS = 50;

interface Options {
  quick: boolean;
  frames: number;
  window: number;
  rounds: number;
  cut: string;
  latencyWarmup: number;
  throughputWarmup: number;
}

function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

function parseOptions(args: string[]): Options {
  const quick = args.includes('--quick');
  const count = (name: string, fallback: number, min = 1) => {
    const v = option(args, name);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`${name} needs an integer >= ${min}, got ${v}`);
    return n;
  };
  const window = count('--window', 4, 4);
  return {
    quick,
    frames: count('--frames', quick ? 2 : 30, 2),
    window,
    rounds: count('--rounds', quick ? 10 : 100),
    cut: option(args, '--cut') ?? DEFAULT_CUT,
    // Warm-up frames load the sessions and fill the window; --quick keeps them to a minimum.
    latencyWarmup: quick ? 1 : 2,
    throughputWarmup: quick ? 1 : window,
  };
}

function findCut(model: ModelHandle, spec: string): CutInfo {
  const cut = /^\d+$/.test(spec) ? model.cuts[Number(spec)] : model.cuts.find((c) => c.after === spec);
  if (!cut || cut.index === 0 || cut.index === model.layers)
    throw new Error(`${model.name} has no inner cut ${spec}`);
  if (!cut.singleTensor) throw new Error(`cut ${spec} of ${model.name} is crossed by several tensors`);
  return cut;
}

/** Bytes of the request's MQTT PUBLISH packet (QoS 1): fixed header, topic, packet id and payload [MQTT-3.3]. */
function publishBytes(payloadBytes: number): number {
  const rest = 2 + Buffer.byteLength(topics.request.build({ device: BENCH_DEVICE })) + 2 + payloadBytes;
  let lengthBytes = 1;
  for (let x = rest; x >= 128; x = Math.floor(x / 128)) lengthBytes++;
  return 1 + lengthBytes + rest;
}

const ms = (x: number) => x.toFixed(1);
const med = (r: EdgeRunResult, f: (x: EdgeRunResult['reports'][number]) => number) =>
  median(r.reports.map(f));

interface LatencyRow {
  rate: number;
  requestBytes: number;
  wireMs: number;
  headMs: number;
  tailMs: number;
  idealMs: number;
  latencyMs: number;
  overheadMs: number;
  fallbacks: number;
}

interface ThroughputRow {
  rate: number;
  headMs: number;
  wireMs: number;
  tailMs: number;
  slowest: string;
  boundFps: number;
  fps: number;
  fallbacks: number;
}

function latencyRow(rate: number, r: EdgeRunResult): LatencyRow {
  const requestBytes = r.reports[0]!.requestBytes;
  const wireMs = (publishBytes(requestBytes) * 8 * 1000) / rate;
  const headMs = med(r, (x) => x.headMs);
  const tailMs = med(r, (x) => x.tailMs);
  return {
    rate,
    requestBytes,
    wireMs,
    headMs,
    tailMs,
    idealMs: headMs + wireMs + tailMs,
    latencyMs: med(r, (x) => x.totalMs),
    overheadMs: med(r, (x) => x.transferMs) - wireMs,
    fallbacks: r.fallbacks,
  };
}

/**
 * Steady-state ms per frame: the least-squares slope of completion time over completion number (the measured frames,
 * after the warm-up filled the window). Unlike (last - first) / (n - 1) it does not hang on two single completions,
 * whose jitter alone moved the rate by 1-2% over 30 frames.
 */
function completionInterval(at: readonly number[]): number {
  const n = at.length;
  const meanI = (n - 1) / 2;
  const meanT = at.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (i - meanI) * (at[i]! - meanT);
    den += (i - meanI) ** 2;
  }
  return num / den;
}

function throughputRow(rate: number, r: EdgeRunResult): ThroughputRow {
  const wireMs = (publishBytes(r.reports[0]!.requestBytes) * 8 * 1000) / rate;
  const stages = { head: med(r, (x) => x.headMs), uplink: wireMs, tail: med(r, (x) => x.tailMs) };
  const [slowest, slowestMs] = Object.entries(stages).sort((a, b) => b[1] - a[1])[0]!;
  return {
    rate,
    headMs: stages.head,
    wireMs,
    tailMs: stages.tail,
    slowest,
    boundFps: 1000 / slowestMs,
    fps: 1000 / completionInterval(r.completedAt),
    fallbacks: r.fallbacks,
  };
}

const verdict = (ok: boolean) => (ok ? 'met' : 'MISSED');

/** Runs the benchmark. */
export async function run(args: string[]): Promise<void> {
  const o = parseOptions(args);
  const out = (s: string) => process.stdout.write(s);
  const model = await loadModelRef(MODEL);
  const cut = findCut(model, o.cut);
  const t = cut.tensors[0]!;
  out(
    `pipeline benchmark: ${model.name} split after ${cut.after} (cut ${cut.index} of ${model.layers}; crossing ` +
      `${t.shape.join('x')} ${t.dtype}, ${cut.bytes} B), ORT threads ${THREADS}${o.quick ? ', QUICK (figures not meaningful)' : ''}\n` +
      'edge: EdgeHead in this process, uplink shaped as EMULATE_UPLINK shapes it; broker: `edgecut broker` (aedes); ' +
      'tail: `edgecut tail` (concurrency 1); 3 processes on this host; medians\n\n',
  );
  const stack = await startPipelineStack(model, THREADS);
  let mosquitto: MosquittoHandle | undefined;
  try {
    await publishPlan(stack.brokerUrl, model, cut);
    const latency: LatencyRow[] = [];
    const throughput: ThroughputRow[] = [];
    for (const rate of RATES) {
      const common = { brokerUrl: stack.brokerUrl, model, rateBps: rate, threads: THREADS };
      const lat = await runEdge({
        ...common,
        window: 1,
        frames: o.frames,
        warmup: o.latencyWarmup,
        gapMs: GAP_MS,
      });
      latency.push(latencyRow(rate, lat));
      const thr = await runEdge({
        ...common,
        window: o.window,
        frames: o.frames,
        warmup: o.throughputWarmup,
      });
      throughput.push(throughputRow(rate, thr));
    }
    out(
      `1a. latency: window 1, ${o.frames} frames per rate after ${o.latencyWarmup} warm-up, ${GAP_MS} ms idle ` +
        'before each frame\n\n',
    );
    out(
      table(
        [
          'uplink',
          'request',
          'head ms',
          'wire ms',
          'tail ms',
          'ideal ms',
          'latency ms',
          'latency/ideal',
          'overhead ms',
          `target <= ${LATENCY_TARGET}`,
        ],
        latency.map((r) => [
          formatRate(r.rate),
          formatBytes(r.requestBytes),
          ms(r.headMs),
          ms(r.wireMs),
          ms(r.tailMs),
          ms(r.idealMs),
          ms(r.latencyMs),
          (r.latencyMs / r.idealMs).toFixed(3),
          ms(r.overheadMs),
          verdict(r.latencyMs <= LATENCY_TARGET * r.idealMs),
        ]),
        [1, 2, 3, 4, 5, 6, 7, 8],
      ),
    );
    out(
      '\nideal = median(head) + wire + median(tail); wire = the request PUBLISH packet x 8 / rate. The result ' +
        '(class scores, ~4 KB) returns unshaped and is not in the ideal.\n' +
        "overhead = median(transfer) - wire, transfer = the edge's round trip minus the worker's own span: encode, " +
        "MQTT writes, shaper timer, broker, MQTT parse and decode on both sides, the result's way back.\n\n",
    );
    out(
      `1b. throughput: window ${o.window}, frames as fast as the edge takes them, ${o.frames} frames per rate ` +
        `after ${o.throughputWarmup} warm-up\n\n`,
    );
    out(
      table(
        [
          'uplink',
          'head ms',
          'wire ms',
          'tail ms',
          'slowest',
          'bound fps',
          `${THROUGHPUT_TARGET} x bound`,
          'fps',
          'fps/bound',
          `target >= ${THROUGHPUT_TARGET}`,
        ],
        throughput.map((r) => [
          formatRate(r.rate),
          ms(r.headMs),
          ms(r.wireMs),
          ms(r.tailMs),
          r.slowest,
          r.boundFps.toFixed(2),
          (THROUGHPUT_TARGET * r.boundFps).toFixed(2),
          r.fps.toFixed(2),
          (r.fps / r.boundFps).toFixed(3),
          verdict(r.fps >= THROUGHPUT_TARGET * r.boundFps),
        ]),
        [1, 2, 3, 5, 6, 7, 8],
      ),
    );
    out(
      "\nbound = 1 / the slowest stage (head and tail: medians of this run, under the pipeline's own contention); " +
        "fps = 1 / the least-squares slope of the measured frames' completion times.\n\n",
    );
    const fallbacks = [...latency, ...throughput].reduce((s, r) => s + r.fallbacks, 0);
    for (const r of latency)
      out(
        `latency @ ${formatRate(r.rate)}: ${ms(r.latencyMs)} ms = ${(r.latencyMs / r.idealMs).toFixed(3)} x ideal ` +
          `${ms(r.idealMs)} ms (target <= ${LATENCY_TARGET}: ${verdict(r.latencyMs <= LATENCY_TARGET * r.idealMs)})\n`,
      );
    for (const r of throughput)
      out(
        `throughput @ ${formatRate(r.rate)}: ${r.fps.toFixed(2)} fps = ${(r.fps / r.boundFps).toFixed(3)} x bound ` +
          `${r.boundFps.toFixed(2)} fps (${r.slowest}) (target >= ${THROUGHPUT_TARGET}: ` +
          `${verdict(r.fps >= THROUGHPUT_TARGET * r.boundFps)})\n`,
      );
    out(`frames run on the edge instead of the worker (fallbacks): ${fallbacks}\n\n`);

    const rows: OverheadRow[] = [];
    const warmup = o.quick ? 2 : 10;
    for (const qos of [1, 0] as const)
      rows.push(await measureOverhead('aedes', stack.brokerUrl, qos, o.rounds, warmup));
    if (hasMosquitto) {
      for (const noDelay of [false, true]) {
        mosquitto = await launchMosquitto({ noDelay });
        const name = noDelay ? 'mosquitto+nodelay' : 'mosquitto';
        for (const qos of [1, 0] as const)
          rows.push(await measureOverhead(name, mosquitto.url, qos, o.rounds, warmup));
        await mosquitto.stop();
        mosquitto = undefined;
      }
    }
    out(
      `2. codec and broker per frame: a 1 MiB float32 tensor (request ${rows[0]!.bytes} B) on loopback, no shaping; ` +
        `${o.rounds} rounds after ${warmup} warm-up\n\n`,
    );
    out(
      table(
        [
          'broker',
          'QoS',
          'encode ms',
          'decode ms',
          'RTT ms',
          'raw RTT ms',
          '16 B RTT ms',
          'codec ms',
          'broker+transport ms',
          'codec share',
        ],
        rows.map((r) => {
          const codec = r.encodeMs + r.decodeMs;
          return [
            r.broker,
            String(r.qos),
            r.encodeMs.toFixed(3),
            r.decodeMs.toFixed(3),
            r.rttMs.toFixed(2),
            r.rawRttMs.toFixed(2),
            r.smallRttMs.toFixed(2),
            codec.toFixed(2),
            (r.rttMs - codec).toFixed(2),
            `${((100 * codec) / r.rttMs).toFixed(0)}%`,
          ];
        }),
        [1, 2, 3, 4, 5, 6, 7, 8, 9],
      ),
    );
    out(
      '\nRTT: encode, publish (shared subscription, like a tail worker), deliver, zero-copy decode, 16 B reply. ' +
        'raw RTT: the same bytes without encode/decode. codec ms = encode + decode; broker+transport = RTT - codec ' +
        '(MQTT writes and parses in both clients, the broker, loopback TCP).\n' +
        'mosquitto: its default configuration (Nagle on); mosquitto+nodelay: with set_tcp_nodelay true. aedes ' +
        '(`edgecut broker`) sets TCP_NODELAY on every client socket.\n',
    );
    if (!hasMosquitto) out(`mosquitto: ${MOSQUITTO_BIN} not installed, its rows are missing\n`);
  } finally {
    await mosquitto?.stop();
    await stack.stop();
  }
}

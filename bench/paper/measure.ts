/**
 * The measurements of `edgecut bench paper`, each on real processes (bench/scenario.ts): edge only and fixed cuts
 * driven by plans the benchmark publishes itself (no planner: the oracle, full offload), and the auto planner from a
 * cold start. Frames are the edge's own reports.
 */
import { dirname } from 'node:path';
import mqtt from 'mqtt';
import { median } from '../../planning/stats.ts';
import { type Plan, PlanSchema } from '../../schemas/messages.ts';
import { type Profile, ProfileSchema } from '../../schemas/profile.ts';
import { topics } from '../../schemas/topics.ts';
import { type FrameLine, frameStats, type PlanLine, planChanges, runScenario } from '../scenario.ts';
import type { AutoRun, Contender, OracleCut } from './results.ts';

/** The device id every benchmark edge uses. */
const DEVICE = 'robot';

/** A model as the services load it. */
export interface BenchModel {
  /** Zoo name, or `shared-squeezenet`. */
  name: string;
  label: string;
  path: string;
  /** Directory holding only this model (the tail workers load every model of their directory). */
  dir: string;
  /** `edgecut edge` source arguments. */
  source: string[];
  /** A reference profile of this host for the model (edge `--profile`), in a directory of its own (tail `--profiles`). */
  profile?: string;
}

/** What runs where. */
export interface Setup {
  model: BenchModel;
  /** Edge device preset (emulated). */
  edge: string;
  /** Tail device preset, or `host`. */
  tail: string;
  /** Uplink rate as `edgecut edge --emulate-uplink` takes it, e.g. `1mbps`. */
  uplink: string;
  uplinkBps: number;
  /** More `edgecut edge` arguments (e.g. `--emulate-contention true`). */
  edgeExtra?: string[];
}

/**
 * Figures of measured frames, with `lost` frames never answered. `since`: the answer just before the first measured
 * frame (ms), so that fps is the steady rate of frames in flight (frames / time between answers), not diluted by
 * the first frame's wait behind the warm-up.
 */
export function contender(frames: readonly FrameLine[], lost: number, since?: number): Contender {
  const s = frameStats(frames);
  const sent = frames.filter((f) => f.requestBytes > 0).map((f) => f.requestBytes);
  const last = frames.length ? Math.max(...frames.map((f) => f.at)) : 0;
  const fps = since !== undefined && last > since ? (1000 * frames.length) / (last - since) : s.fps;
  return {
    frames: s.frames,
    fps,
    medianMs: s.medianMs,
    p95Ms: s.p95Ms,
    cut: Math.max(0, s.cut),
    offloaded: s.offloaded,
    fallbacks: s.fallbacks,
    lost,
    stagesMs: {
      head: frames.length ? median(frames.map((f) => f.headMs)) : 0,
      transfer: frames.length ? median(frames.map((f) => f.transferMs)) : 0,
      tail: frames.length ? median(frames.map((f) => f.tailMs)) : 0,
    },
    requestBytes: sent.length ? median(sent) : 0,
  };
}

function edgeArgs(s: Setup, extra: string[]): string[] {
  return [
    '--model',
    s.model.path,
    ...s.model.source,
    '--emulate-device',
    s.edge,
    '--emulate-uplink',
    s.uplink,
    '--device-id',
    DEVICE,
    ...(s.model.profile ? ['--profile', s.model.profile] : ['--profile-runs', '5']),
    ...(s.edgeExtra ?? []),
    ...extra,
  ];
}

function tailArgs(s: Setup): string[][] {
  return [
    [
      '--models-dir',
      s.model.dir,
      '--profile-runs',
      '5',
      ...(s.model.profile ? ['--profiles', dirname(s.model.profile)] : []),
      ...(s.tail === 'host' ? [] : ['--emulate-device', s.tail]),
    ],
  ];
}

/** Frames as they arrive, and waits for those matching a predicate. */
class FrameFeed {
  readonly frames: FrameLine[] = [];
  private waiters: Array<() => void> = [];

  push(f: FrameLine): void {
    this.frames.push(f);
    for (const w of this.waiters.splice(0)) w();
  }

  /** Waits until `n` frames match; rejects after `timeoutMs` naming `what`. */
  async collect(
    match: (f: FrameLine) => boolean,
    n: number,
    timeoutMs: number,
    what: string,
  ): Promise<FrameLine[]> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const got = this.frames.filter(match);
      if (got.length >= n) return got.slice(0, n);
      const left = end - Date.now();
      if (left <= 0)
        throw new Error(`${what}: ${got.length} of ${n} frames within ${Math.round(timeoutMs / 1000)} s`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
}

/** What a driven run sees of the services: the edge's and the worker's (emulated) profiles. */
export interface Profiles {
  device: Profile;
  worker: Profile;
}

/** One cut to measure, with its prediction. */
export interface CutTarget {
  cut: number;
  after: string | null;
  bytes: number;
  tensors: string[];
  predictedMs: number;
  /** Lower bound of one frame: device time + transfer at the link's rate, ms. */
  lowerMs: number;
}

/** Per-cut predictions from the profiles the services published (the times the emulation itself holds). */
export function cutTargets(p: Profiles, uplinkBps: number): CutTarget[] {
  const edge = p.device.layers.map((l) => l.ms);
  const tail = p.worker.layers.map((l) => l.ms);
  const sum = (xs: number[], from: number, to: number) => xs.slice(from, to).reduce((a, b) => a + b, 0);
  const n = edge.length;
  return p.device.cuts.map((c) => {
    const head = sum(edge, 0, c.index);
    const link = c.index >= n ? 0 : (c.bytes * 8000) / uplinkBps;
    return {
      cut: c.index,
      after: c.after,
      bytes: c.bytes,
      tensors: c.tensors,
      predictedMs: head + link + sum(tail, c.index, n),
      lowerMs: 0.97 * head + link,
    };
  });
}

/** Frames of a fixed cut: warm-up frames (discarded) and measured ones, from its predicted frame time. */
export function framesFor(predictedMs: number): { warm: number; n: number } {
  if (predictedMs > 15_000) return { warm: 0, n: 1 };
  if (predictedMs < 1_000) return { warm: 2, n: 3 };
  return { warm: predictedMs < 5_000 ? 1 : 0, n: 2 };
}

/**
 * The oracle's second look: cuts measured within {@link REFINE_WITHIN} of the best are measured again for about
 * {@link REFINE_MS} (at least 3 frames, at most {@link REFINE_MAX}), so the reference is not three frames of a
 * 2-core host's noise where a few cuts are about as fast as each other.
 */
export const REFINE_WITHIN = 0.9;
export const REFINE_MS = 3000;
export const REFINE_MAX = 60;

/** Frames of the second look at a cut whose frame takes `ms`. */
export function refineFrames(ms: number): number {
  return Math.min(REFINE_MAX, Math.max(3, Math.ceil(REFINE_MS / Math.max(ms, 1))));
}

/** A fixed-cut run: the benchmark publishes each plan itself and measures the frames at it. */
export interface DrivenRun {
  profiles: Profiles;
  /** Measured frames of every cut asked for, by cut. */
  cuts: Map<number, FrameLine[]>;
}

/**
 * Runs the services without a planner and calls `plan(measure, profiles)`, which measures cuts one after another
 * (`measure(target)` publishes its plan and waits for its frames).
 */
export async function drivenRun(
  s: Setup,
  plan: (
    measure: (t: CutTarget, frames?: number) => Promise<FrameLine[]>,
    profiles: Profiles,
  ) => Promise<void>,
): Promise<DrivenRun> {
  const feed = new FrameFeed();
  const cuts = new Map<number, FrameLine[]>();
  let profiles: Profiles | undefined;
  await runScenario({
    edge: edgeArgs(s, ['--window', '1', '--frames', '1000000', '--result-timeout-ms', '600000']),
    tails: tailArgs(s),
    planner: false,
    onFrame: (f) => feed.push(f),
    timeoutMs: 3 * 3600_000,
    drive: async ({ url }) => {
      const client = await mqtt.connectAsync(url, {
        clientId: `bench-paper-${process.pid}`,
        reconnectPeriod: 0,
      });
      try {
        profiles = await readProfiles(client);
        let seq = 0;
        const device = profiles.device;
        await plan(async (t, frames) => {
          const at = Date.now();
          const message: Plan = PlanSchema.parse({
            version: 1,
            device: DEVICE,
            modelId: device.model.id,
            seq: ++seq,
            cut: { index: t.cut, after: t.after, bytes: t.bytes, tensors: t.tensors },
            objective: 'fixed',
            predicted: null,
            reason: `edgecut bench paper measures cut ${t.cut}`,
            inputs: {},
            issuedAt: at,
          });
          await client.publishAsync(topics.plan.build({ device: DEVICE }), JSON.stringify(message), {
            qos: 1,
            retain: true,
          });
          const { warm, n } = frames ? { warm: 1, n: frames } : framesFor(t.predictedMs);
          const got = await feed.collect(
            (f) => f.cut === t.cut && f.at - f.totalMs >= at,
            warm + n,
            Math.max(60_000, 4 * (warm + n) * t.predictedMs),
            `cut ${t.cut}`,
          );
          const measured = got.slice(warm);
          cuts.set(t.cut, measured);
          return measured;
        }, profiles);
      } finally {
        await client.endAsync();
      }
    },
  });
  if (!profiles) throw new Error('the driven run ended before the profiles arrived');
  return { profiles, cuts };
}

async function readProfiles(client: mqtt.MqttClient): Promise<Profiles> {
  let device: Profile | undefined;
  let worker: Profile | undefined;
  const got = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no device or worker profile within 120 s')), 120_000);
    client.on('message', (topic, payload) => {
      if (payload.length === 0) return;
      const p = ProfileSchema.safeParse(JSON.parse(payload.toString('utf8')));
      if (!p.success) return;
      if (topic === topics.deviceProfile.build({ device: DEVICE })) device = p.data;
      else worker = p.data;
      if (device && worker && device.model.id === worker.model.id) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  await client.subscribeAsync(
    [topics.deviceProfile.build({ device: DEVICE }), topics.workerProfile.filter()],
    {
      qos: 1,
    },
  );
  await got;
  return { device: device!, worker: worker! };
}

/** The auto planner from a cold start (no bandwidth given): `warmup` frames skipped, then `measured` frames. */
export async function autoRun(
  s: Setup,
  o: {
    window: number;
    warmup: number;
    measured: number;
    planner?: string[];
    edgeExtra?: string[];
    env?: Record<string, string>;
  },
): Promise<{ run: AutoRun; frames: FrameLine[] }> {
  const total = o.warmup + o.measured;
  const r = await runScenario({
    edge: edgeArgs(s, ['--window', String(o.window), '--frames', String(total), ...(o.edgeExtra ?? [])]),
    tails: tailArgs(s),
    planner: o.planner ?? [],
    ...(o.env ? { env: o.env } : {}),
    timeoutMs: 3 * 3600_000,
  });
  const frames = [...r.frames].sort((a, b) => a.frame - b.frame);
  const start = r.edgeReadyAt;
  const before = frames[o.warmup - 1];
  const run: AutoRun = {
    // One frame at a time, fps as for a fixed cut (frames / (last answer - first capture)); with frames in flight,
    // the steady rate between answers.
    ...contender(frames.slice(o.warmup), total - r.frames.length, o.window > 1 ? before?.at : undefined),
    window: o.window,
    warmup: o.warmup,
    plans: r.plans.map((p: PlanLine) => ({ cut: p.cut, atMs: Math.max(0, p.at - start), reason: p.reason })),
    planChanges: planChanges(r.plans),
    frameLog: frames.map((f) => ({
      frame: f.frame,
      atMs: Math.round(f.at - start),
      cut: f.cut,
      totalMs: round1(f.totalMs),
      headMs: round1(f.headMs),
      transferMs: round1(f.transferMs),
      tailMs: round1(f.tailMs),
      fallback: f.fallback !== null,
    })),
    settledAtFrame: null,
  };
  return { run, frames };
}

/**
 * 1-based index of the first frame from which on every frame ran, without a fallback, at a cut whose measured fps
 * is within 5% of the best (`fpsOf` gives a cut's measured fps, undefined when the oracle did not measure it).
 */
export function settledAt(
  frames: ReadonlyArray<{ cut: number; fallback: unknown }>,
  fpsOf: (cut: number) => number | undefined,
  best: number,
): number | null {
  const good = (f: { cut: number; fallback: unknown }) => !f.fallback && (fpsOf(f.cut) ?? 0) >= 0.95 * best;
  let from: number | null = null;
  for (let i = frames.length - 1; i >= 0; i--) {
    if (!good(frames[i]!)) break;
    from = i + 1;
  }
  return from;
}

const round1 = (x: number) => Math.round(x * 10) / 10;

/** The oracle's record of a measured cut. */
export function oracleCut(t: CutTarget, frames: readonly FrameLine[]): OracleCut {
  const s = frameStats(frames);
  return {
    cut: t.cut,
    after: t.after,
    bytes: t.bytes,
    predictedMs: t.predictedMs,
    fps: s.fps,
    medianMs: s.medianMs,
    p95Ms: s.p95Ms,
    frames: s.frames,
  };
}

/**
 * `edgecut plan`: what Algorithm 1 decides for a model between two devices at a given bandwidth, with every
 * candidate as a table and a text bar chart (the paper's Figs. 3 and 4 in text), and each candidate's device-side
 * joules per frame when the edge preset has power figures.
 */
import { z } from 'zod';
import {
  allPresets,
  findPreset,
  type Power,
  type Preset,
  presetsWithPower,
} from '../measurement/device/presets.ts';
import type { ModelHandle } from '../model/handle.ts';
import { linkFromBandwidth, parseRate } from '../planning/link.ts';
import { type HostModel, presetProfile } from '../planning/preset-profile.ts';
import { type Candidate, type Objective, searchPartition } from '../planning/search.ts';
import { UserError } from '../runtime/errors.ts';
import type { Profile } from '../schemas/profile.ts';
import { parseFlags } from './device.ts';
import { formatBytes, table } from './format.ts';
import type { Progress } from './progress.ts';

/** Raw flags of `edgecut plan`. */
export interface PlanFlags {
  edge: string;
  server: string;
  bandwidth: string;
  alphaMs: string;
  mtu: string;
  load: string;
  objective: string;
  presets?: string;
  json?: boolean;
}

const rate = z.string().transform((v, ctx) => {
  const r = parseRate(v);
  if (r === undefined)
    ctx.addIssue({ code: 'custom', message: 'expected a rate such as 1mbps, 8kbps or 100mbit/s' });
  return r ?? 0;
});

const Flags = z.object({
  edge: z.string().min(1),
  server: z.string().min(1),
  bandwidth: rate,
  alphaMs: z.coerce.number({ message: 'expected milliseconds >= 0' }).min(0, 'expected milliseconds >= 0'),
  mtu: z.coerce
    .number({ message: 'expected a whole number of bytes' })
    .int('expected a whole number of bytes')
    .min(1, 'expected a whole number of bytes >= 1'),
  load: z.coerce.number({ message: 'expected a load factor >= 1' }).min(1, 'expected a load factor >= 1'),
  objective: z.enum(['latency', 'throughput', 'energy'], {
    message: 'expected latency, throughput or energy',
  }),
});

/** A preset name, or a number of GFLOPs as an ad-hoc device without measured times. */
export function deviceRef(ref: string, presets: readonly Preset[], flag: string): Preset {
  if (/^\d+(\.\d+)?$/.test(ref)) {
    const gflops = Number(ref);
    if (gflops > 0)
      return {
        name: `${ref}gflops`,
        description: `a ${ref} GFLOPs device`,
        gflops,
        measured: {},
        source: flag,
      };
  }
  return findPreset(ref, presets);
}

/** The plan's JSON form: `{best, candidates}`, k = 0 first and edge-only last. */
export interface PlanJson {
  objective: Objective;
  edge: string;
  server: string;
  bandwidthBps: number;
  /** The edge preset's power figures; null when it has none (then every energyJ is null). */
  edgePower: Power | null;
  best: CandidateJson;
  candidates: CandidateJson[];
}

/** One candidate in the JSON form. */
export interface CandidateJson {
  index: number;
  after: string | null;
  op: string;
  bytes: number;
  edgeMs: number;
  transferMs: number;
  serverMs: number;
  totalMs: number;
  periodMs: number;
  /** Device-side joules per frame; null when the edge preset has no power figures. */
  energyJ: number | null;
}

/** Runs the what-if search for one model; pure apart from predicting the two profiles. */
export async function whatIf(
  handle: ModelHandle,
  o: {
    edge: Preset;
    server: Preset;
    presets: readonly Preset[];
    bandwidthBps: number;
    alphaMs: number;
    mtu: number;
    load: number;
    objective: Objective;
  },
  host: HostModel,
  runtimeVersion: string,
): Promise<{ json: PlanJson; edgeProfile: Profile; serverProfile: Profile }> {
  const edgeProfile = await presetProfile(handle, o.edge, o.presets, host, runtimeVersion);
  const serverProfile = await presetProfile(handle, o.server, o.presets, host, runtimeVersion);
  const result = searchPartition({
    edgeMs: edgeProfile.layers.map((l) => l.ms),
    serverMs: serverProfile.layers.map((l) => l.ms),
    cuts: handle.cuts.map((c) => ({ index: c.index, bytes: c.bytes })),
    link: { ...linkFromBandwidth(o.bandwidthBps, o.alphaMs, o.mtu) },
    edgeLoad: o.load,
    objective: o.objective,
    ...(o.edge.power ? { power: o.edge.power } : {}),
  });
  const toJson = (c: Candidate): CandidateJson => {
    const cut = handle.cuts[c.index]!;
    return {
      index: c.index,
      after: cut.after,
      op: cut.op,
      bytes: c.bytes,
      edgeMs: c.edgeMs,
      transferMs: c.transferMs,
      serverMs: c.serverMs,
      totalMs: c.totalMs,
      periodMs: c.periodMs,
      energyJ: c.energyJ,
    };
  };
  return {
    json: {
      objective: o.objective,
      edge: o.edge.name,
      server: o.server.name,
      bandwidthBps: o.bandwidthBps,
      edgePower: o.edge.power ?? null,
      best: toJson(result.best),
      candidates: result.candidates.map(toJson),
    },
    edgeProfile,
    serverProfile,
  };
}

/** Joules for the table: three decimals, `-` without power figures. */
function joules(j: number | null): string {
  return j === null ? '-' : j.toFixed(3);
}

function bar(c: CandidateJson, maxMs: number, width = 40): string {
  const cells = (ms: number) => Math.round((ms / maxMs) * width);
  const e = cells(c.edgeMs);
  const t = cells(c.transferMs);
  const s = cells(c.serverMs);
  return `${'█'.repeat(e)}${'▒'.repeat(t)}${'░'.repeat(s)}`;
}

/** `edgecut plan <file|zoo-name> --edge ... --server ... --bandwidth ...`. */
export async function planCommand(
  handle: ModelHandle,
  raw: PlanFlags,
  host: HostModel,
  runtimeVersion: string,
  progress?: Progress,
): Promise<void> {
  const f = parseFlags(Flags, raw as unknown as Record<string, unknown>);
  const presets = allPresets(raw.presets);
  const edge = deviceRef(f.edge, presets, '--edge');
  const server = deviceRef(f.server, presets, '--server');
  if (f.objective === 'energy' && !edge.power) {
    const withPower = presetsWithPower(presets);
    throw new UserError(
      `--objective energy needs the edge's power figures, and ${edge.name === f.edge ? `preset "${edge.name}"` : `"--edge ${f.edge}" (a GFLOPs device)`} has none; ` +
        `presets with power figures: ${withPower.join(', ') || 'none'}`,
    );
  }
  const { json, edgeProfile, serverProfile } = await whatIf(
    handle,
    {
      edge,
      server,
      presets,
      bandwidthBps: f.bandwidth,
      alphaMs: f.alphaMs,
      mtu: f.mtu,
      load: f.load,
      objective: f.objective,
    },
    host,
    runtimeVersion,
  );
  // The results go to stdout once the progress line (stderr) is gone.
  progress?.stop();
  if (raw.json) {
    process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
    return;
  }
  const maxMs = Math.max(...json.candidates.map((c) => c.totalMs));
  const rows = json.candidates.map((c) => [
    String(c.index),
    c.after ?? '(input)',
    c.op,
    formatBytes(c.bytes),
    c.edgeMs.toFixed(1),
    c.transferMs.toFixed(1),
    c.serverMs.toFixed(1),
    c.totalMs.toFixed(1),
    joules(c.energyJ),
    `${bar(c, maxMs)}${c.index === json.best.index ? ' ◀ best' : ''}`,
  ]);
  const pred = (p: Profile) =>
    `${p.device.id} ${p.wholeMs.median.toFixed(0)} ms whole model (${String(p.prediction?.rule)})`;
  process.stdout.write(
    `${handle.name}: edge ${pred(edgeProfile)}, server ${pred(serverProfile)}; link ${(f.bandwidth / 1e6).toFixed(3)} Mbit/s, ` +
      `alpha ${f.alphaMs} ms per ${f.mtu}-byte packet; edge load ${f.load}; objective ${f.objective}` +
      `${json.edgePower ? `; edge power ${json.edgePower.computeW} W computing, ${json.edgePower.radioW} W sending, ${json.edgePower.idleW} W waiting` : ''}\n\n`,
  );
  process.stdout.write(
    table(
      [
        'k',
        'after',
        'op',
        'D_k',
        'edge ms',
        'transfer ms',
        'server ms',
        'total ms',
        'J/frame',
        '█ edge ▒ transfer ░ server',
      ],
      rows,
      [0, 3, 4, 5, 6, 7, 8],
    ),
  );
  const b = json.best;
  process.stdout.write(
    `\nbest: cut ${b.index} ${b.index === 0 ? '(full offload)' : b.index === json.candidates.length - 1 ? '(edge only)' : `after ${b.after} (${b.op})`}: ` +
      `${b.totalMs.toFixed(1)} ms = edge ${b.edgeMs.toFixed(1)} + transfer ${b.transferMs.toFixed(1)} + server ${b.serverMs.toFixed(1)}` +
      `${b.energyJ === null ? '' : `; ${joules(b.energyJ)} J per frame on the device`}\n`,
  );
}

/**
 * `edgecut bench paper` (`npm run bench -- paper`): the paper's scenarios measured live, with the real services on
 * emulated devices and links, against edge only, full offload and an oracle that measures every cut that could
 * win; then the robot experiment of section III-C and the step response. Writes the results file after every
 * scenario (an interrupted run resumes from it) and renders docs/results.md with its charts.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import cliProgress from 'cli-progress';
import { EDGECUT_BIN } from '../../cli/processes.ts';
import { hostBench } from '../../measurement/device/host.ts';
import { type ZooName, zooModelPath } from '../../model/zoo/index.ts';
import { parseRate } from '../../planning/link.ts';
import { errorMessage, UserError } from '../../runtime/errors.ts';
import { busyProcesses, stepScenarios } from '../loop.ts';
import type { FrameLine } from '../scenario.ts';
import {
  autoRun,
  type BenchModel,
  type CutTarget,
  contender,
  cutTargets,
  drivenRun,
  oracleCut,
  REFINE_WITHIN,
  refineFrames,
  type Setup,
  settledAt,
} from './measure.ts';
import {
  type EdgeOnlyRecord,
  type OracleCut,
  type PaperResults,
  readResults,
  type ScenarioRecord,
  writeResults,
} from './results.ts';

const exec = promisify(execFile);
const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const SHARED = resolve(ROOT, '../shared');

/** The paper's configurations: the edge device and the tail devices. */
const CONFIGS = [
  { config: 'I' as const, edge: 'rpi3b', tails: ['iphone6', 'xeon-e3-1246', 'jetson-tx2'] },
  { config: 'II' as const, edge: 'rpi3b-ncs', tails: ['host'] },
];
const UPLINKS = ['256kbps', '1mbps', '4mbps', '10mbps', '100mbps'];
const ZOO: ZooName[] = ['squeezenet1.0', 'alexnet', 'inception-v3'];
const LABELS: Record<string, string> = {
  'squeezenet1.0': 'SqueezeNet 1.0 (zoo)',
  alexnet: 'AlexNet (zoo)',
  'inception-v3': 'Inception-v3 (zoo)',
  'shared-squeezenet': 'SqueezeNet (the real pretrained model of ../shared)',
};

/** Options of a run (the flags of `edgecut bench paper`). */
export interface PaperOptions {
  /** The test suite's reduced grid. */
  quick: boolean;
  /** The results file: read to resume, written after every scenario. */
  out: string;
  /** Where results.md and its charts (results/*.svg) go. */
  docDir: string;
  /** Scenarios measured at once (they mostly wait on emulated time, so a few fit on two cores). */
  jobs: number;
  /** Ignores the results file's scenarios and measures everything again (with `only`, the chosen ones). */
  fresh: boolean;
  /** Renders the doc from the results file without measuring. */
  renderOnly: boolean;
  /** Measures only scenarios whose id (`model|edge|tail|uplink`) contains this, or `robot` or `steps` (measured again). */
  only: string | undefined;
  /**
   * Measures the auto planner's runs again in the scenarios already measured, keeping their oracle, edge-only and
   * full-offload measurements (after a change to the planner, which those do not involve).
   */
  autoOnly: boolean;
  /** Like `autoOnly`, for the pipelined run alone (where it ran with another window than PIPELINED_WINDOW). */
  pipelinedOnly: boolean;
  /**
   * Measures again, for longer, edge only and the oracle's cuts near its best where they were measured with fewer
   * frames than the oracle's second look takes now (results measured before it existed), and recomputes the best
   * and when the auto runs settled; nothing else is measured.
   */
  refineOnly: boolean;
}

/** The options with their defaults; `--jobs` must be a whole number >= 1. */
export function paperOptions(
  o: Partial<Record<keyof PaperOptions, unknown>> & { jobs?: unknown },
): PaperOptions {
  const quick = o.quick === true;
  const out = resolve(
    typeof o.out === 'string'
      ? o.out
      : join(ROOT, quick ? '.cache/bench-paper/quick/results.json' : 'docs/results.json'),
  );
  const jobs = Number(o.jobs ?? (quick ? 1 : 3));
  if (!Number.isInteger(jobs) || jobs < 1)
    throw new UserError(`--jobs ${String(o.jobs)} is not allowed: expected a whole number >= 1`);
  return {
    quick,
    out,
    docDir: resolve(typeof o.docDir === 'string' ? o.docDir : quick ? dirname(out) : join(ROOT, 'docs')),
    jobs,
    fresh: o.fresh === true,
    renderOnly: o.renderOnly === true,
    only: typeof o.only === 'string' ? o.only : undefined,
    autoOnly: o.autoOnly === true,
    pipelinedOnly: o.pipelinedOnly === true,
    refineOnly: o.refineOnly === true,
  };
}

/**
 * `npm run bench -- paper [--quick] [--jobs N] [--out FILE] [--doc DIR] [--fresh] [--render-only] [--only ID]
 * [--auto-only] [--pipelined-only] [--refine-only]`.
 */
export async function run(args: string[]): Promise<void> {
  const value = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  await runPaper(
    paperOptions({
      quick: args.includes('--quick'),
      out: value('--out'),
      docDir: value('--doc'),
      jobs: value('--jobs'),
      fresh: args.includes('--fresh'),
      renderOnly: args.includes('--render-only'),
      only: value('--only'),
      autoOnly: args.includes('--auto-only'),
      pipelinedOnly: args.includes('--pipelined-only'),
      refineOnly: args.includes('--refine-only'),
    }),
  );
}

/** Prepares a model in a directory of its own (tail workers load every model of their directory). */
async function prepareModel(name: string, cache: string): Promise<BenchModel> {
  const dir = join(cache, 'models', name);
  await mkdir(dir, { recursive: true });
  if (name === 'shared-squeezenet') {
    const src = join(SHARED, 'models/squeezenet1.0-fp16.onnx');
    // The file's name says which model it is: the emulation finds the preset's measured time by it.
    const path = join(dir, 'squeezenet1.0-fp16.onnx');
    await linkOnce(src, path);
    return {
      name,
      label: LABELS[name]!,
      path,
      dir,
      source: ['--source', `image:${join(SHARED, 'images/fish.png')}`, '--preprocess', '{"channels":"BGR"}'],
    };
  }
  const built = await zooModelPath(name as ZooName);
  const path = join(dir, `${name}.onnx`);
  await linkOnce(built, path);
  return { name, label: LABELS[name]!, path, dir, source: ['--source', 'synthetic'] };
}

/** A symbolic link to `src` at `path`, unless one resolves there already (a dangling one is replaced). */
async function linkOnce(src: string, path: string): Promise<void> {
  if (existsSync(path)) return;
  await rm(path, { force: true });
  await symlink(src, path);
}

/**
 * This host's profile of a model, measured once (`edgecut profile`, 10 runs per layer) and kept: the edges and the
 * tail workers of every run emulate their devices from it, so the runs of a scenario differ only by what happens
 * live, not by how busy the host was while each of them profiled at start.
 */
async function referenceProfile(m: BenchModel, cache: string): Promise<string> {
  const file = join(cache, 'profiles', m.name, `${m.name}.json`);
  if (existsSync(file)) return file;
  await mkdir(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  await exec(
    process.execPath,
    [EDGECUT_BIN, 'profile', m.path, '--runs', '10', '--check-cuts', '0', '--out', tmp],
    {
      maxBuffer: 64 << 20,
    },
  );
  await rename(tmp, file);
  return file;
}

/** One unit of work of the grid. */
interface Job {
  id: string;
  /** Weight for the progress bar's time left: about the seconds it takes. */
  weight: number;
  run(): Promise<void>;
}

const RPI_MS: Record<string, number> = {
  'squeezenet1.0': 2032,
  'shared-squeezenet': 2032,
  alexnet: 3200,
  'inception-v3': 7000,
};

/** Runs the grid (or its quick subset) and renders the doc. */
export async function runPaper(o: PaperOptions): Promise<void> {
  const cache = join(ROOT, '.cache/bench-paper');
  await mkdir(dirname(o.out), { recursive: true });
  // --fresh measures everything again, except with --auto-only or --pipelined-only, where it measures those runs
  // again and keeps the rest, and with --only, where it measures the chosen scenarios (and their edge only) again.
  let results =
    o.fresh && !o.autoOnly && !o.pipelinedOnly && o.only === undefined ? undefined : await readResults(o.out);
  const grid = o.quick ? 'quick' : 'full';
  if (results && results.grid !== grid)
    throw new UserError(
      `${o.out} holds the ${results.grid} grid, not the ${grid} one: run with${results.grid === 'quick' ? '' : 'out'} --quick to resume it, or --fresh to measure the ${grid} grid over it`,
    );
  if (!o.renderOnly) {
    const bench = await hostBench().catch(() => undefined);
    results ??= {
      version: 1,
      grid: o.quick ? 'quick' : 'full',
      host: {
        cpu: cpus()[0]?.model.trim() ?? 'unknown CPU',
        cores: cpus().length,
        gflops: bench ? Number(bench.gflops.toFixed(1)) : null,
        node: process.version,
        onnxruntime: await onnxruntimeVersion(),
      },
      profiles: 'reference',
      edgeOnly: [],
      scenarios: [],
      robot: null,
      steps: [],
    };
    await measureGrid(o, results, cache);
  }
  if (!results) throw new UserError(`no results in ${o.out}: run the benchmark without --render-only first`);
  // The settling frame is derived: stored runs are brought up to the rule of settleScenario (and saved if it moved).
  const before = JSON.stringify(
    results.scenarios.map((sc) => [sc.autoSequential.settledAtFrame, sc.autoPipelined.settledAtFrame]),
  );
  for (const sc of results.scenarios) settleScenario(sc, results.edgeOnly);
  if (
    JSON.stringify(
      results.scenarios.map((sc) => [sc.autoSequential.settledAtFrame, sc.autoPipelined.settledAtFrame]),
    ) !== before
  )
    await writeResults(o.out, results);
  const { renderResultsDoc } = await import('./doc.ts');
  const doc = await renderResultsDoc(results, { chartsDir: 'results' });
  await mkdir(join(o.docDir, 'results'), { recursive: true });
  await writeFile(join(o.docDir, 'results.md'), doc.markdown);
  for (const c of doc.charts) await writeFile(join(o.docDir, 'results', c.file), c.svg);
  process.stdout.write(
    `wrote ${join(o.docDir, 'results.md')} and ${doc.charts.length} charts from ${o.out}\n`,
  );
}

async function onnxruntimeVersion(): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  const pkg = JSON.parse(
    await readFile(join(ROOT, 'node_modules/onnxruntime-node/package.json'), 'utf8'),
  ) as {
    version: string;
  };
  return pkg.version;
}

async function measureGrid(o: PaperOptions, results: PaperResults, cache: string): Promise<void> {
  const modelNames: string[] = o.quick ? ['squeezenet1.0'] : [...ZOO];
  if (!o.quick && existsSync(join(SHARED, 'models/squeezenet1.0-fp16.onnx')))
    modelNames.push('shared-squeezenet');
  const models = new Map<string, BenchModel>();
  for (const m of modelNames) {
    const model = await prepareModel(m, cache);
    // One profile per model, measured here before anything else runs, for every run (a file that resumes keeps
    // what it was measured with).
    if (results.profiles === 'reference') model.profile = await referenceProfile(model, cache);
    models.set(m, model);
  }
  const configs = o.quick ? [{ config: 'II' as const, edge: 'rpi3b-ncs', tails: ['host'] }] : CONFIGS;
  const uplinks = o.quick ? ['10mbps'] : UPLINKS;

  let saving = Promise.resolve();
  const save = () => {
    saving = saving.then(() => writeResults(o.out, results));
    return saving;
  };

  // --fresh --only: the chosen scenarios and their edge only are measured again, everything else is kept.
  const remeasure = o.fresh && !o.autoOnly && !o.pipelinedOnly && !o.refineOnly && o.only !== undefined;

  // Edge only, once per model and edge device: neither the link nor a server takes part.
  const edgeJobs: Job[] = [];
  for (const m of models.values())
    for (const c of configs) {
      const id = `${m.name}|${c.edge}`;
      // With --only, edge only where a chosen scenario needs it.
      const chosen =
        !o.only || c.tails.some((tail) => uplinks.some((u) => `${id}|${tail}|${u}`.includes(o.only!)));
      if (remeasure && chosen) results.edgeOnly = results.edgeOnly.filter((e) => e.id !== id);
      const had = results.edgeOnly.find((e) => e.id === id);
      if (had && !(o.refineOnly && had.run.frames < refineFrames(1000 / had.run.fps))) continue;
      if (!chosen) continue;
      edgeJobs.push({
        id: `edge only: ${m.name} on ${c.edge}`,
        weight: ((c.edge === 'rpi3b' ? RPI_MS[m.name]! : 300) * 8) / 1000 + 20,
        run: async () => {
          const s: Setup = { model: m, edge: c.edge, tail: c.tails[0]!, uplink: '100mbps', uplinkBps: 100e6 };
          const r = await drivenRun(s, async (measure, p) => {
            const all = cutTargets(p, s.uplinkBps);
            const last = all[all.length - 1]!;
            // As long as the oracle's second look at a cut: edge only is the contender every scenario is held to.
            await measure(
              { ...last, predictedMs: Math.min(last.predictedMs, 1_000) },
              refineFrames(last.predictedMs),
            );
          });
          const n = r.profiles.device.layers.length;
          const frames = r.cuts.get(n) ?? [];
          const record: EdgeOnlyRecord = {
            id,
            model: m.name,
            edge: c.edge,
            emulated: `edge ${r.profiles.device.device.description}: whole model ${r.profiles.device.wholeMs.median.toFixed(0)} ms`,
            run: contender(frames, 0),
            measuredAt: had?.measuredAt ?? new Date().toISOString(),
            ...(had ? { refinedAt: new Date().toISOString() } : {}),
          };
          results.edgeOnly = [...results.edgeOnly.filter((e) => e.id !== id), record];
          await save();
        },
      });
    }

  const scenarioJobs: Job[] = [];
  for (const m of models.values())
    for (const c of configs)
      for (const tail of c.tails)
        for (const uplink of uplinks) {
          const id = `${m.name}|${c.edge}|${tail}|${uplink}`;
          if (o.only && !id.includes(o.only)) continue;
          if (remeasure) results.scenarios = results.scenarios.filter((x) => x.id !== id);
          const done = results.scenarios.find((x) => x.id === id);
          if (o.refineOnly) {
            if (done) {
              scenarioJobs.push({
                id: `${id} (oracle refined)`,
                weight: 30,
                run: async () => {
                  const edgeOnly = results.edgeOnly.find((e) => e.id === `${m.name}|${c.edge}`);
                  if (!edgeOnly) throw new Error(`edge only of ${m.name} on ${c.edge} was not measured`);
                  const s: Setup = { model: m, edge: c.edge, tail, uplink, uplinkBps: parseRate(uplink)! };
                  if (await refineScenario(s, done, edgeOnly)) await save();
                },
              });
            }
            continue;
          }
          // Measured again already (a resumed --auto-only run): kept, unless --fresh. With --pipelined-only, the
          // pipelined run alone, where it ran with another window.
          const again =
            done &&
            (o.pipelinedOnly
              ? o.fresh || done.autoPipelined.window !== PIPELINED_WINDOW
              : o.autoOnly && (o.fresh || done.autoMeasuredAt === undefined));
          if (done && again) {
            const edgeMs = c.edge === 'rpi3b' ? RPI_MS[m.name]! : 300;
            scenarioJobs.push({
              id: `${id} (auto)`,
              weight: (edgeMs * 12) / 1000 + 30,
              run: async () => {
                const edgeOnly = results.edgeOnly.find((e) => e.id === `${m.name}|${c.edge}`);
                if (!edgeOnly) throw new Error(`edge only of ${m.name} on ${c.edge} was not measured`);
                const auto = await measureAuto(
                  { model: m, edge: c.edge, tail, uplink, uplinkBps: parseRate(uplink)! },
                  edgeOnly.run.fps,
                  done.oracle.measured,
                  done.oracle.bestFps,
                  done.cuts - 1,
                  o.quick,
                  o.pipelinedOnly ? done.autoSequential : undefined,
                );
                Object.assign(done, auto, { autoMeasuredAt: new Date().toISOString() });
                await save();
              },
            });
            continue;
          }
          if (done) continue;
          const edgeMs = c.edge === 'rpi3b' ? RPI_MS[m.name]! : 300;
          scenarioJobs.push({
            id,
            weight: (edgeMs * 30) / 1000 + 60,
            run: async () => {
              const edgeOnly = results.edgeOnly.find((e) => e.id === `${m.name}|${c.edge}`);
              if (!edgeOnly) throw new Error(`edge only of ${m.name} on ${c.edge} was not measured`);
              const rec = await measureScenario(
                { model: m, edge: c.edge, tail, uplink, uplinkBps: parseRate(uplink)! },
                c.config,
                edgeOnly,
                o.quick,
              );
              results.scenarios.push(rec);
              await save();
            },
          });
        }

  const total = [...edgeJobs, ...scenarioJobs].reduce((a, j) => a + j.weight, 0) + (o.quick ? 0 : 600);
  const bar = progressBar(total);
  // Scenarios mostly wait on emulated time, so several run at once, except where this host's own speed shows:
  // Config II's edge is only 3-5x slower than this host and its tail is this host; at 100 Mbit/s a frame takes tens
  // of milliseconds, so the broker's and the shaper's own work on a shared CPU would show in its rate.
  const alone = (j: Job) => j.id.includes('rpi3b-ncs') || j.id.replace(/ \(auto\)$/, '').endsWith('|100mbps');
  try {
    await runJobs(
      edgeJobs.filter((j) => !alone(j)),
      o.jobs,
      bar,
    );
    await runJobs(edgeJobs.filter(alone), 1, bar);
    await runJobs(
      scenarioJobs.filter((j) => !alone(j)),
      o.jobs,
      bar,
    );
    await runJobs(scenarioJobs.filter(alone), 1, bar);
    // Alone on the host: the robot experiment loads its CPU, and the step response times plans in seconds.
    // `--only robot` and `--only steps` measure them again.
    if (o.only === 'robot') results.robot = null;
    if (o.only === 'steps') results.steps = [];
    if (!o.quick && results.robot === null && (!o.only || o.only === 'robot')) {
      bar.task('robot experiment');
      results.robot = await robotExperiment(models.get('squeezenet1.0') ?? [...models.values()][0]!);
      await save();
      bar.done(300, 'robot experiment');
    }
    if (!o.quick && results.steps.length === 0 && (!o.only || o.only === 'steps')) {
      bar.task('step response');
      results.steps = await stepScenarios(['uplink', 'load']);
      await save();
      bar.done(300, 'step response');
    }
  } finally {
    bar.stop();
    await saving;
  }
}

/**
 * The oracle's second look: every measured cut within REFINE_WITHIN of the best (edge only included) that was
 * measured with fewer frames than {@link refineFrames} asks is measured again, for longer, and replaces its record.
 */
async function refineCuts(
  measured: OracleCut[],
  targets: readonly CutTarget[],
  edgeFps: number,
  measure: (t: CutTarget, frames?: number) => Promise<FrameLine[]>,
): Promise<number> {
  const best = Math.max(edgeFps, ...measured.map((m) => m.fps));
  let refined = 0;
  for (const [i, m] of measured.entries()) {
    const n = refineFrames(1000 / m.fps);
    if (m.fps < REFINE_WITHIN * best || n <= m.frames) continue;
    const t = targets.find((x) => x.cut === m.cut);
    if (!t) continue;
    measured[i] = oracleCut(t, await measure(t, n));
    refined++;
  }
  return refined;
}

/**
 * `--refine-only` for one scenario already measured: its oracle's cuts near the best measured again for longer,
 * the best and the auto runs' settling frame recomputed. False when there was nothing to measure again.
 */
async function refineScenario(s: Setup, done: ScenarioRecord, edgeOnly: EdgeOnlyRecord): Promise<boolean> {
  const edgeFps = edgeOnly.run.fps;
  const best = Math.max(edgeFps, ...done.oracle.measured.map((m) => m.fps));
  const due = done.oracle.measured.some(
    (m) => m.fps >= REFINE_WITHIN * best && refineFrames(1000 / m.fps) > m.frames,
  );
  if (!due) return false;
  const measured = [...done.oracle.measured];
  const driven = await drivenRun(s, async (measure, p) => {
    await refineCuts(measured, cutTargets(p, s.uplinkBps), edgeFps, measure);
  });
  const nLayers = driven.profiles.device.layers.length;
  const top = measured.reduce((b, m) => (m.fps > b.fps ? { cut: m.cut, fps: m.fps } : b), {
    cut: nLayers,
    fps: edgeFps,
  });
  const fpsOf = (cut: number) => (cut === nLayers ? edgeFps : measured.find((m) => m.cut === cut)?.fps);
  const fullFrames = driven.cuts.get(0);
  Object.assign(done, {
    oracle: { ...done.oracle, measured, bestCut: top.cut, bestFps: top.fps },
    ...(fullFrames ? { fullOffload: contender(fullFrames, 0) } : {}),
    oracleRefinedAt: new Date().toISOString(),
  });
  for (const run of [done.autoSequential, done.autoPipelined])
    run.settledAtFrame = settledAt(run.frameLog, fpsOf, top.fps);
  return true;
}

/**
 * When each auto run of a scenario settled (its `settledAtFrame`), by one rule for every stored run: the first frame
 * from which on every frame ran, without a fallback, at a cut measured within 5% of the oracle's best. A cut counts
 * as measured so by the oracle (edge only for everything on the device) or, for the sequential run, by the run
 * itself when its measured frames ran at that cut: two measurements of one cut at different times differ by the
 * host's noise, and the run's own is the one its frames had.
 */
export function settleScenario(sc: ScenarioRecord, edgeOnly: readonly EdgeOnlyRecord[]): void {
  const edgeFps = edgeOnly.find((e) => e.id === `${sc.model}|${sc.edge}`)?.run.fps;
  const n = sc.cuts - 1;
  const oracleFps = (cut: number) =>
    cut === n ? edgeFps : sc.oracle.measured.find((m) => m.cut === cut)?.fps;
  const seq = sc.autoSequential;
  sc.autoSequential.settledAtFrame = settledAt(
    seq.frameLog,
    (cut) => Math.max(oracleFps(cut) ?? 0, cut === seq.cut ? seq.fps : 0) || undefined,
    sc.oracle.bestFps,
  );
  sc.autoPipelined.settledAtFrame = settledAt(sc.autoPipelined.frameLog, oracleFps, sc.oracle.bestFps);
}

/** The oracle, full offload and the two auto runs of one scenario. */
async function measureScenario(
  s: Setup,
  config: 'I' | 'II',
  edgeOnly: EdgeOnlyRecord,
  quick: boolean,
): Promise<ScenarioRecord> {
  const started = Date.now();
  const edgeFps = edgeOnly.run.fps;
  const measured: OracleCut[] = [];
  let pruned = 0;
  let nCuts = 0;
  let emulated = '';
  const driven = await drivenRun(s, async (measure, p) => {
    const targets = cutTargets(p, s.uplinkBps);
    const n = p.device.layers.length;
    nCuts = targets.length;
    emulated =
      `edge ${p.device.device.description} (whole model ${p.device.wholeMs.median.toFixed(0)} ms), ` +
      `tail ${p.worker.device.description} (whole model ${p.worker.wholeMs.median.toFixed(0)} ms), ` +
      `uplink ${s.uplink} (a token bucket in the edge process)`;
    // Full offload first: a contender of its own.
    const full = targets.find((t) => t.cut === 0)!;
    measured.push(oracleCut(full, await measure(full)));
    // Then every cut that could beat the best so far, in order of predicted time.
    let bestMs = Math.min(1000 / edgeFps, measured[0]!.medianMs);
    const order = targets
      .filter((t) => t.cut !== 0 && t.cut !== n)
      .sort((a, b) => a.predictedMs - b.predictedMs);
    const limit = quick ? 3 : order.length;
    let tried = 0;
    for (const t of order) {
      if (t.lowerMs >= bestMs || tried >= limit) {
        pruned++;
        continue;
      }
      tried++;
      const c = oracleCut(t, await measure(t));
      measured.push(c);
      bestMs = Math.min(bestMs, 1000 / c.fps);
    }
    await refineCuts(measured, targets, edgeFps, measure);
  });
  const nLayers = driven.profiles.device.layers.length;
  const best = measured.reduce((b, m) => (m.fps > b.fps ? { cut: m.cut, fps: m.fps } : b), {
    cut: nLayers,
    fps: edgeFps,
  });
  const fullFrames = driven.cuts.get(0) ?? [];
  const auto = await measureAuto(s, edgeFps, measured, best.fps, nLayers, quick);
  return {
    id: `${s.model.name}|${s.edge}|${s.tail}|${s.uplink}`,
    model: s.model.name,
    modelLabel: s.model.label,
    config,
    edge: s.edge,
    tail: s.tail,
    uplinkBps: s.uplinkBps,
    uplink: s.uplink,
    emulated,
    cuts: nCuts,
    fullOffload: contender(fullFrames, 0),
    ...auto,
    oracle: { measured, bestCut: best.cut, bestFps: best.fps, pruned },
    measuredAt: new Date().toISOString(),
    seconds: Math.round((Date.now() - started) / 1000),
  };
}

/**
 * The auto planner's two runs of a scenario, sequential and pipelined, from a cold start; `measured` and `bestFps`
 * are the oracle's (for how long to measure, and for when the plan settled).
 */
async function measureAuto(
  s: Setup,
  edgeFps: number,
  measured: readonly OracleCut[],
  bestFps: number,
  nLayers: number,
  quick: boolean,
  keepSequential?: ScenarioRecord['autoSequential'],
): Promise<Pick<ScenarioRecord, 'autoSequential' | 'autoPipelined'>> {
  const fpsOf = (cut: number) => (cut === nLayers ? edgeFps : measured.find((m) => m.cut === cut)?.fps);
  const best = { fps: bestFps };
  const bestMs = 1000 / best.fps;
  // Spans long enough in time as well as in frames: at 20 fps, 10 frames are half a second, and the first frame at
  // a new cut (its sessions loading) or one host hiccup would weigh as much as the cut itself.
  const span = (frames: number, minFrames: number, seconds: number, most: number) =>
    Math.max(
      Math.min(frames, Math.max(minFrames, Math.ceil(15_000 / bestMs))),
      Math.min(most, Math.ceil((seconds * 1000) / bestMs)),
    );
  // The cold start lasts seconds whatever the frame time (the link measured, the new tail loaded): the warm-up is
  // the frames of about 10 s, at least 10.
  const warmup = quick ? 10 : Math.max(10, Math.min(WARMUP_MAX, Math.ceil(WARMUP_MS / bestMs)));
  let autoSequential = keepSequential;
  if (!autoSequential) {
    const seq = await autoRun(s, { window: 1, warmup, measured: quick ? 3 : span(10, 3, 3, 60) });
    seq.run.settledAtFrame = settledAt(seq.frames, fpsOf, best.fps);
    autoSequential = seq.run;
  }
  const pipe = await autoRun(s, {
    window: PIPELINED_WINDOW,
    warmup,
    measured: quick ? 4 : span(20, 4, 4, 80),
  });
  pipe.run.settledAtFrame = settledAt(pipe.frames, fpsOf, best.fps);
  return { autoSequential, autoPipelined: pipe.run };
}

/**
 * Frames in flight of the pipelined contender: one per place a frame spends time (the head, the uplink, the tail and
 * the way back: the broker forwarding the request and the result, and the result's transfer), so each can be busy
 * at once. With three, the way back left a stage idle: SqueezeNet 1.0 in Config II at 100 Mbit/s (stages 13, 15
 * and 9 ms, a frame 50-60 ms from capture to answer) ran 47-56 fps, 0.70-0.84x of its slowest stage's rate, and
 * with four 60-63 fps, 0.90-0.94x, in alternating runs.
 */
export const PIPELINED_WINDOW = 4;

/** The auto runs' warm-up: the frames of this long (ms), at least 10 and at most WARMUP_MAX. */
export const WARMUP_MS = 10_000;
export const WARMUP_MAX = 200;

/**
 * The robot of section III-C: a device with a Neural Compute Stick, busy processes standing in for navigation and
 * video (at nice 19, so they load the device's run queue, which the emulation turns into the Fig. 17 slowdown,
 * without taking CPU from the broker and the server on this shared host), and the planner with each load signal.
 */
async function robotExperiment(model: BenchModel): Promise<NonNullable<PaperResults['robot']>> {
  const busy = 7; // (7 + 1) / 2 cores = 4: the paper's robot ran about 4x slower under its load (20 -> 5 fps)
  // The paper's situation: unloaded, the device alone is the best plan (48 ms per frame against about 70 ms for
  // the best offload at 50 Mbit/s), so a load-unaware planner keeps everything on the loaded device. At 100 Mbit/s
  // the unloaded device and two offloading cuts are within 5% of each other, and which one a load-unaware planner
  // picks is a matter of measurement noise.
  const s: Setup = { model, edge: 'rpi3b-ncs', tail: 'host', uplink: '50mbps', uplinkBps: 50e6 };
  const kill = busyProcesses(busy);
  try {
    // The 1-minute load average needs about a minute to see the load.
    await new Promise((r) => setTimeout(r, 60_000));
    const runs: NonNullable<PaperResults['robot']>['runs'] = [];
    for (const signal of ['none', 'loadavg', 'measured'] as const) {
      const r = await autoRun(s, {
        window: 1,
        warmup: 10,
        measured: 40,
        planner: ['--edge-load', signal],
        edgeExtra: ['--emulate-contention', 'true'],
      });
      runs.push({ signal, run: r.run });
    }
    const only = await drivenRun(
      { ...s, edgeExtra: ['--emulate-contention', 'true'] },
      async (measure, p) => {
        const all = cutTargets(p, s.uplinkBps);
        const last = all[all.length - 1]!;
        await measure({ ...last, predictedMs: 500 });
      },
    );
    void only;
    const n = only.profiles.device.layers.length;
    return {
      model: model.name,
      edge: s.edge,
      tail: s.tail,
      uplink: s.uplink,
      busy,
      emulated: `edge ${only.profiles.device.device.description} with contention on (Fig. 17 from the run queue), tail this host, uplink ${s.uplink}; ${busy} busy processes at nice 19`,
      runs,
      edgeOnly: contender(only.cuts.get(n) ?? [], 0),
      measuredAt: new Date().toISOString(),
    };
  } finally {
    kill();
  }
}

/** Runs jobs, at most `jobs` at once. */
async function runJobs(list: Job[], jobs: number, bar: Progress): Promise<void> {
  const queue = [...list];
  const worker = async () => {
    for (let j = queue.shift(); j; j = queue.shift()) {
      bar.task(j.id);
      // A run that fails (a process that could not start on a busy host) is tried once more before the grid
      // stops; what was measured so far is saved, and the next run resumes from it.
      await j.run().catch((err: unknown) => {
        process.stderr.write(`bench paper: ${j.id} failed (${errorMessage(err)}); trying once more\n`);
        return j.run();
      });
      bar.done(j.weight, j.id);
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, list.length) }, worker));
}

interface Progress {
  task(name: string): void;
  done(weight: number, name: string): void;
  stop(): void;
}

/** A progress bar on a terminal (weights in about-seconds give the time left); a line per job otherwise. */
function progressBar(total: number): Progress {
  const started = Date.now();
  let value = 0;
  if (!process.stderr.isTTY)
    return {
      task: () => undefined,
      done: (w, name) => {
        value += w;
        process.stderr.write(
          `bench paper: ${name} done (${Math.round((100 * value) / total)}%, ${Math.round((Date.now() - started) / 1000)} s)\n`,
        );
      },
      stop: () => undefined,
    };
  const bar = new cliProgress.SingleBar(
    {
      format: 'bench paper |{bar}| {percentage}% | {eta_formatted} left | {task}',
      stream: process.stderr,
      etaBuffer: 50,
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(Math.max(1, Math.round(total)), 0, { task: 'starting' });
  return {
    task: (name) => bar.update({ task: name }),
    done: (w, name) => {
      value += w;
      bar.update(Math.round(value), { task: `${name} done` });
    },
    stop: () => bar.stop(),
  };
}

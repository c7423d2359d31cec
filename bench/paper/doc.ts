/**
 * docs/results.md from the results of `edgecut bench paper` (bench/paper/results.ts): the summary against the
 * targets, every scenario beside the paper's claims, the robot experiment, the step response and how it was
 * measured, with the SVG charts of bench/paper/charts.ts. Pure: the same results give the same document.
 */
import { formatBytes } from '../../cli/format.ts';
import { formatRate, parseRate } from '../../measurement/shaping.ts';
import { type FpsPoint, formatFps, fpsChart, type RobotBar, robotChart, stepChart } from './charts.ts';
import type { AutoRun, Contender, PaperResults, RobotRecord, ScenarioRecord, StepRecord } from './results.ts';

/** The rendered document and its charts; `file` is a name inside the charts directory. */
export interface ResultsDoc {
  markdown: string;
  charts: Array<{ file: string; svg: string }>;
}

/** Where the charts go: `chartsDir` is the charts directory relative to docs/, as the links name it. */
export interface ResultsDocOptions {
  chartsDir: string;
}

/** The targets (see the summary section). */
const ORACLE_SHARE = 0.95;
const ORACLE_SCENARIOS = 0.9;
const COLD_START_FRAMES = 10;
const PLAN_WITHIN_MS = 5000;
const ROBOT_GAIN = 1.5;
const PIPELINE_BOUND = 0.85;

/** The paper's figures per zoo model and configuration. */
const PAPER_CLAIMS: Record<string, { I?: string; II?: string }> = {
  alexnet: { I: '0.3 fps on the device alone, 3 fps offloaded (10x)', II: 'six-fold over the device alone' },
  'squeezenet1.0': { I: '0.5 fps on the device alone, 4x offloaded' },
  'inception-v3': { II: '3 fps on the device alone, 8x offloaded' },
};
/** Models whose claims are another's: the real pretrained SqueezeNet compares with the zoo's. */
const CLAIMS_OF: Record<string, string> = { 'shared-squeezenet': 'squeezenet1.0' };
/** Section order of the known models; others follow by name. */
const MODEL_ORDER = ['squeezenet1.0', 'shared-squeezenet', 'alexnet', 'inception-v3'];
const CONFIGS = ['I', 'II'] as const;

/** One scenario with what the doc derives from it. */
interface Derived {
  s: ScenarioRecord;
  /** Edge only of the same model and edge device; undefined when it was not measured. */
  edgeOnly: Contender | undefined;
  /** Auto sequential fps / oracle best fps. */
  oracleRatio: number;
  /** Oracle best fps / auto sequential fps - 1. */
  regret: number;
  /** Auto sequential fps / edge-only fps. */
  speedup: number | undefined;
  /** 1 / slowest stage of the pipelined run's cut, fps; undefined when its stages are all 0. */
  pipelineBound: number | undefined;
  /** Auto pipelined fps / pipelineBound. */
  pipelineRatio: number | undefined;
  /**
   * The oracle's fps of the cut auto (sequential) ran most / the oracle's best: the planner's choice judged by one
   * measurement, free of the difference between two runs; undefined when the oracle did not measure that cut.
   */
  choiceRatio: number | undefined;
}

/** a / b, where 0 / 0 is 1 (nothing better) and x / 0 infinite. */
function div(a: number, b: number): number {
  if (b === 0) return a === 0 ? 1 : Number.POSITIVE_INFINITY;
  return a / b;
}

const ratio = (x: number) => (Number.isFinite(x) ? `${x.toFixed(2)}x` : '∞');
const pct = (x: number) => (Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : '∞');
const ms = (x: number) => `${Math.round(x)}`;
const seconds = (x: number) => (x / 1000).toFixed(1);
const rate = (bps: number) => formatRate(bps);
/** A rate as written on the command line, in the doc's form when it parses. */
const uplinkText = (text: string) => {
  const bps = parseRate(text);
  return bps ? rate(bps) : text;
};
const tailName = (tail: string) => (tail === 'host' ? 'this host' : tail);
/** A duration for prose: ms below 10 s, whole seconds above. */
const duration = (x: number) => (x < 10_000 ? `${ms(x)} ms` : `${Math.round(x / 1000)} s`);
const unique = <T>(xs: T[]): T[] => [...new Set(xs)];
/** A file-name-safe form of a name. */
const slug = (name: string) =>
  name
    .toLowerCase()
    .replace(/[^a-z0-9.]+/g, '-')
    .replace(/^-|-$/g, '');

/**
 * The slowest stage of a run. With frames in flight (`uplinkBps` given) the link's stage is the request's bytes at
 * the uplink's rate: a request's measured transfer then includes its wait behind the previous ones on the link.
 */
function slowestStage(c: Contender, uplinkBps?: number): { stage: 'head' | 'transfer' | 'tail'; ms: number } {
  const transfer =
    uplinkBps !== undefined && c.requestBytes !== undefined
      ? (c.requestBytes * 8000) / uplinkBps
      : c.stagesMs.transfer;
  const stages = (['head', 'transfer', 'tail'] as const).map((stage) => ({
    stage,
    ms: stage === 'transfer' ? transfer : c.stagesMs[stage],
  }));
  return stages.reduce((a, b) => (b.ms > a.ms ? b : a));
}

/** Edge only of a model on an edge device. */
function edgeOnlyFor(r: PaperResults, model: string, edge: string): Contender | undefined {
  return r.edgeOnly.find((e) => e.model === model && e.edge === edge)?.run;
}

function derive(r: PaperResults, s: ScenarioRecord): Derived {
  const edgeOnly = edgeOnlyFor(r, s.model, s.edge);
  const auto = s.autoSequential.fps;
  const slowest = slowestStage(s.autoPipelined, s.uplinkBps).ms;
  const pipelineBound = slowest > 0 ? 1000 / slowest : undefined;
  const n = s.cuts - 1;
  const chosen = s.autoSequential.cut;
  const chosenFps =
    chosen === s.oracle.bestCut
      ? s.oracle.bestFps
      : chosen === n
        ? edgeOnly?.fps
        : s.oracle.measured.find((m) => m.cut === chosen)?.fps;
  return {
    s,
    edgeOnly,
    oracleRatio: div(auto, s.oracle.bestFps),
    regret: div(s.oracle.bestFps, auto) - 1,
    speedup: edgeOnly ? div(auto, edgeOnly.fps) : undefined,
    pipelineBound,
    pipelineRatio: pipelineBound === undefined ? undefined : div(s.autoPipelined.fps, pipelineBound),
    choiceRatio: chosenFps === undefined ? undefined : div(chosenFps, s.oracle.bestFps),
  };
}

function modelRank(model: string): [number, string] {
  const i = MODEL_ORDER.indexOf(model);
  return [i < 0 ? MODEL_ORDER.length : i, model];
}

/** Scenarios in the doc's order: model, configuration, uplink, then tail in the order the results list them. */
function ordered(r: PaperResults): Derived[] {
  const tails = unique(r.scenarios.map((s) => s.tail));
  const key = (s: ScenarioRecord): Array<number | string> => [
    ...modelRank(s.model),
    s.config === 'I' ? 0 : 1,
    s.uplinkBps,
    tails.indexOf(s.tail),
  ];
  const cmp = (a: ScenarioRecord, b: ScenarioRecord) => {
    const ka = key(a);
    const kb = key(b);
    for (let i = 0; i < ka.length; i++) {
      if (ka[i]! < kb[i]!) return -1;
      if (ka[i]! > kb[i]!) return 1;
    }
    return 0;
  };
  return [...r.scenarios].sort(cmp).map((s) => derive(r, s));
}

/** A scenario named for prose. */
const scenarioName = (s: ScenarioRecord) =>
  `${s.modelLabel}, Config ${s.config}, ${rate(s.uplinkBps)} against ${tailName(s.tail)}`;

/** A markdown table. */
function mdTable(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`;
  return [line(header), `|${header.map(() => '---').join('|')}|`, ...rows.map(line)].join('\n');
}

// ---- Summary against the targets ----

interface TargetRow {
  target: string;
  measured: string;
  /** undefined: nothing measured to judge by. */
  met: boolean | undefined;
}

const status = (met: boolean | undefined) => (met === undefined ? 'not measured' : met ? 'met' : 'missed');

/** The scenario with the smallest value of `f` (among those where it is defined). */
function minBy(ds: Derived[], f: (d: Derived) => number | undefined): { d: Derived; v: number } | undefined {
  let best: { d: Derived; v: number } | undefined;
  for (const d of ds) {
    const v = f(d);
    if (v !== undefined && (best === undefined || v < best.v)) best = { d, v };
  }
  return best;
}

function oracleTarget(ds: Derived[]): TargetRow {
  const target = `Auto (sequential) fps >= ${ORACLE_SHARE} x oracle best in >= ${ORACLE_SCENARIOS * 100}% of scenarios`;
  if (ds.length === 0) return { target, measured: 'no scenarios', met: undefined };
  const k = ds.filter((d) => d.oracleRatio >= ORACLE_SHARE).length;
  const worst = minBy(ds, (d) => d.oracleRatio)!;
  return {
    target,
    measured:
      `${k} of ${ds.length} scenarios (${pct(k / ds.length)}); lowest ${ratio(worst.v)} ` +
      `(regret ${pct(worst.d.regret)}, ${scenarioName(worst.d.s)})`,
    met: k / ds.length >= ORACLE_SCENARIOS,
  };
}

function choiceTarget(ds: Derived[]): TargetRow {
  const target =
    `The same, judging auto's cut by the oracle's measurement of it (the planner's choice, without the ` +
    `difference between two runs of one cut)`;
  if (ds.length === 0) return { target, measured: 'no scenarios', met: undefined };
  const k = ds.filter((d) => d.choiceRatio !== undefined && d.choiceRatio >= ORACLE_SHARE).length;
  const unmeasured = ds.filter((d) => d.choiceRatio === undefined).length;
  const worst = minBy(ds, (d) => d.choiceRatio);
  return {
    target,
    measured:
      `${k} of ${ds.length} scenarios (${pct(k / ds.length)})` +
      (worst ? `; lowest ${ratio(worst.v)} (${scenarioName(worst.d.s)})` : '') +
      (unmeasured > 0 ? `; ${unmeasured} at a cut the oracle did not measure (its bound ruled it out)` : ''),
    met: k / ds.length >= ORACLE_SCENARIOS,
  };
}

function edgeOnlyTarget(ds: Derived[]): TargetRow {
  const target = 'Auto (sequential) fps >= 1.0 x edge only in every scenario';
  const worst = minBy(ds, (d) => d.speedup);
  if (!worst) return { target, measured: 'no scenario with an edge-only measurement', met: undefined };
  const withEdge = ds.filter((d) => d.speedup !== undefined);
  const belowList = withEdge.filter((d) => d.speedup! < 1);
  const below = belowList.length;
  const without = ds.length - withEdge.length;
  // Below edge only while running edge only: the same computation measured twice.
  const itself = belowList.filter((d) => d.s.autoSequential.cut === d.s.cuts - 1);
  const widest = itself.reduce((m, d) => Math.max(m, 1 - d.speedup!), 0);
  return {
    target,
    measured:
      `minimum ${ratio(worst.v)} (${scenarioName(worst.d.s)}); ${below} of ${withEdge.length} below 1.0x` +
      (itself.length > 0
        ? ` (${itself.length} of them ran edge only themselves: the same computation as the edge-only ` +
          `contender measured twice, at most ${pct(widest)} apart, so a tie; ${below - itself.length} below it ` +
          'at another cut)'
        : '') +
      (without > 0 ? `; ${without} without an edge-only measurement` : ''),
    // Auto running edge only is edge only: the planner chose no worse, and what remains is two runs' difference.
    met: below - itself.length === 0,
  };
}

function coldStartTarget(ds: Derived[]): TargetRow {
  const target = `Cold start: within 5% of the oracle's fps after at most ${COLD_START_FRAMES} frames`;
  if (ds.length === 0) return { target, measured: 'no scenarios', met: undefined };
  const settled = (d: Derived) => d.s.autoSequential.settledAtFrame;
  const k = ds.filter((d) => settled(d) !== null && settled(d)! <= COLD_START_FRAMES).length;
  const never = ds.filter((d) => settled(d) === null).length;
  const latest = ds
    .filter((d) => settled(d) !== null)
    .reduce<Derived | undefined>((a, d) => (a === undefined || settled(d)! > settled(a)! ? d : a), undefined);
  const parts = [`${k} of ${ds.length} scenarios settled by frame ${COLD_START_FRAMES}`];
  if (latest) parts.push(`latest at frame ${settled(latest)} (${scenarioName(latest.s)})`);
  if (never > 0) parts.push(`${never} never settled`);
  return { target, measured: parts.join('; '), met: k === ds.length };
}

/** The steps that change something: every step of every record but the first (the start). */
function changes(steps: StepRecord[]): Array<StepRecord['steps'][number] & { record: string }> {
  return steps.flatMap((rec) => rec.steps.slice(1).map((st) => ({ ...st, record: rec.name })));
}

function stepTargets(steps: StepRecord[]): TargetRow[] {
  const cs = changes(steps);
  const names = {
    plan: `Step response: new plan within ${PLAN_WITHIN_MS / 1000} s of each change`,
    once: 'Step response: at most one plan change per step',
    lost: 'Step response: no frames lost',
  };
  if (cs.length === 0)
    return Object.values(names).map((target) => ({ target, measured: 'no steps measured', met: undefined }));
  const timed = cs.filter((c) => c.toPlanMs !== null);
  // No new plan is right only when the cut in use was already right (no frames until right).
  const unplanned = cs.filter((c) => c.toPlanMs === null && c.framesUntilRight > 0);
  const slowest = timed.reduce<(typeof cs)[number] | undefined>(
    (a, c) => (a === undefined || c.toPlanMs! > a.toPlanMs! ? c : a),
    undefined,
  );
  const planParts = [
    slowest
      ? `max ${seconds(slowest.toPlanMs!)} s (${slowest.record}: ${slowest.step})`
      : 'no new plan after any step',
    `${timed.length} of ${cs.length} changes planned`,
  ];
  if (unplanned.length > 0) planParts.push(`${unplanned.length} left at a wrong cut without a new plan`);
  const mostChanges = cs.reduce((a, c) => (c.planChanges > a.planChanges ? c : a));
  const lost = steps.reduce((n, rec) => n + rec.lost, 0);
  return [
    {
      target: names.plan,
      measured: planParts.join('; '),
      met: unplanned.length === 0 && (slowest === undefined || slowest.toPlanMs! <= PLAN_WITHIN_MS),
    },
    {
      target: names.once,
      measured: `max ${mostChanges.planChanges} (${mostChanges.record}: ${mostChanges.step})`,
      met: mostChanges.planChanges <= 1,
    },
    { target: names.lost, measured: `${lost} frames lost`, met: lost === 0 },
  ];
}

/** The robot runs by signal. */
function robotRuns(robot: RobotRecord): Partial<Record<'none' | 'loadavg' | 'measured', AutoRun>> {
  return Object.fromEntries(robot.runs.map((x) => [x.signal, x.run]));
}

function robotTarget(robot: RobotRecord | null): TargetRow {
  const target = `Robot experiment: load-aware >= ${ROBOT_GAIN}x load-unaware fps`;
  const runs = robot ? robotRuns(robot) : {};
  if (!robot || !runs.none) return { target, measured: 'not run', met: undefined };
  const none = runs.none.fps;
  const gains = (['loadavg', 'measured'] as const)
    .filter((sig) => runs[sig] !== undefined)
    .map((sig) => ({ sig, gain: div(runs[sig]!.fps, none) }));
  if (gains.length === 0) return { target, measured: 'no load-aware run', met: undefined };
  const best = gains.reduce((a, g) => (g.gain > a.gain ? g : a));
  return {
    target,
    measured:
      `${gains.map((g) => `${g.sig} ${ratio(g.gain)}`).join(', ')} over load-unaware ${formatFps(none)} fps ` +
      `(best: ${best.sig})`,
    met: best.gain >= ROBOT_GAIN,
  };
}

function pipelineTarget(ds: Derived[]): TargetRow {
  const target = `Auto (pipelined) fps >= ${PIPELINE_BOUND} x 1 / slowest stage of its cut`;
  const worst = minBy(ds, (d) => d.pipelineRatio);
  if (!worst) return { target, measured: 'no pipelined run with stage times', met: undefined };
  const withBound = ds.filter((d) => d.pipelineRatio !== undefined);
  const k = withBound.filter((d) => d.pipelineRatio! >= PIPELINE_BOUND).length;
  return {
    target,
    measured: `${k} of ${withBound.length} scenarios; minimum ${ratio(worst.v)} (${scenarioName(worst.d.s)})`,
    met: k === withBound.length,
  };
}

function summarySection(r: PaperResults, ds: Derived[]): string {
  const rows = [
    oracleTarget(ds),
    choiceTarget(ds),
    edgeOnlyTarget(ds),
    coldStartTarget(ds),
    ...stepTargets(r.steps),
    robotTarget(r.robot),
    pipelineTarget(ds),
  ];
  return [
    '## Summary against the targets',
    '',
    'Regret = oracle best fps / auto (sequential) fps - 1; speedup = auto fps / edge-only fps of the same model ' +
      'and edge device.',
    '',
    mdTable(
      ['target', 'measured', 'status'],
      rows.map((t) => [t.target, t.measured, status(t.met)]),
    ),
  ].join('\n');
}

// ---- Scenarios ----

type Chart = { file: string; svg: string };

/** The chart points of one model and configuration. */
function fpsPoints(ds: Derived[]): FpsPoint[] {
  return ds.flatMap(({ s, edgeOnly }) => {
    const at = { tail: `against ${tailName(s.tail)}`, uplinkBps: s.uplinkBps };
    const points: FpsPoint[] = [];
    if (edgeOnly) points.push({ ...at, contender: 'edge only', fps: edgeOnly.fps });
    points.push(
      { ...at, contender: 'full offload', fps: s.fullOffload.fps },
      { ...at, contender: 'auto (sequential)', fps: s.autoSequential.fps },
      { ...at, contender: 'auto (pipelined)', fps: s.autoPipelined.fps },
      { ...at, contender: 'oracle best', fps: s.oracle.bestFps },
    );
    return points;
  });
}

/** What the oracle measured at a cut, for prose: predicted against measured median. */
function oracleAt(s: ScenarioRecord, cut: number): string {
  const m = s.oracle.measured.find((x) => x.cut === cut);
  return m ? ` (predicted ${ms(m.predictedMs)} ms, measured median ${ms(m.medianMs)} ms)` : '';
}

/** Why a scenario misses a per-scenario target, one clause per target; empty when it meets them all. */
function missedReasons(d: Derived): string[] {
  const { s } = d;
  const a = s.autoSequential;
  const out: string[] = [];
  if (d.oracleRatio < ORACLE_SHARE)
    out.push(
      `auto (sequential) ran cut ${a.cut} at ${formatFps(a.fps)} fps (median ${ms(a.medianMs)} ms)${oracleAt(s, a.cut)}, ` +
        `the oracle's best, cut ${s.oracle.bestCut}, ran ${formatFps(s.oracle.bestFps)} fps${oracleAt(s, s.oracle.bestCut)}: ` +
        `regret ${pct(d.regret)}` +
        (d.choiceRatio !== undefined && d.choiceRatio >= ORACLE_SHARE
          ? ` (the oracle measured auto's cut within ${pct(1 - d.choiceRatio)} of its best: the choice was right, ` +
            'and the difference is between two runs, each of whose emulated devices profiled itself at start)'
          : ''),
    );
  if (d.speedup !== undefined && d.speedup < 1)
    out.push(
      `auto (sequential) ${formatFps(a.fps)} fps is below edge only's ${formatFps(d.edgeOnly!.fps)} fps (${ratio(d.speedup)})`,
    );
  if (d.pipelineRatio !== undefined && d.pipelineRatio < PIPELINE_BOUND) {
    const p = s.autoPipelined;
    const slow = slowestStage(p, s.uplinkBps);
    const link = p.requestBytes !== undefined ? (p.requestBytes * 8000) / s.uplinkBps : p.stagesMs.transfer;
    const latency = p.stagesMs.head + link + p.stagesMs.tail;
    const windowBound = latency > 0 ? (1000 * p.window) / latency : Number.POSITIVE_INFINITY;
    out.push(
      `auto (pipelined) at cut ${p.cut} ran ${formatFps(p.fps)} fps, ` +
        `${ratio(d.pipelineRatio)} of its bound ${formatFps(d.pipelineBound!)} fps (slowest stage: ${slow.stage} ${ms(slow.ms)} ms)` +
        (windowBound < d.pipelineBound!
          ? `; with ${p.window} frames in flight and ${ms(latency)} ms per frame (head ${ms(p.stagesMs.head)} + ` +
            `transfer ${ms(link)} + tail ${ms(p.stagesMs.tail)}) the rate is at most ` +
            `${p.window} / ${ms(latency)} ms = ${formatFps(windowBound)} fps, ${ratio(div(p.fps, windowBound))} of which it ran`
          : '') +
        (s.tail === 'host'
          ? "; the tail is this host, whose cores also run the broker, the planner and the edge's " +
            'own work (its real head, encoding, the emulated link), so the stages do not run fully side by side'
          : ''),
    );
  }
  const settled = a.settledAtFrame;
  if (settled === null || settled > COLD_START_FRAMES) {
    const first = a.plans.find((p) => !p.reason.startsWith('safe start'));
    const frameMs = 1000 / a.fps;
    const at = settled !== null ? a.frameLog.find((f) => f.frame === settled)?.atMs : undefined;
    out.push(
      (settled === null
        ? 'auto (sequential) never settled within 5% of the oracle'
        : `auto (sequential) settled at frame ${settled}` +
          (at !== undefined ? ` (${secs(at)} after start)` : '')) +
        (first
          ? `: its first plan on the measured uplink came ${secs(first.atMs)} after start (the device's own session ` +
            `loaded, its link probed, the plan's way to it and the new head loaded${tailWait(first.reason)}), and ` +
            `at ${ms(frameMs)} ms per frame ${COLD_START_FRAMES} frames are ${secs(COLD_START_FRAMES * frameMs)}`
          : ''),
    );
  }
  return out;
}

/**
 * The wait for a worker to load the plan's tail, from a plan's reason (`cut k's tail loaded on n of m workers first
 * (x s)`), in words; empty when the plan did not wait (its tail was loaded already, a guess of the safe start).
 */
function tailWait(reason: string): string {
  const m = /cut (\d+)'s tail loaded on \d+ of \d+ workers? first \((\d+(?:\.\d+)?) s\)/.exec(reason);
  if (!m || Number(m[2]) < 0.5) return '';
  return (
    `; of it, ${m[2]} s the worker loading cut ${m[1]}'s tail, which the planner's guesses while the link was ` +
    'measured (the cuts best over most uplink rates) did not include'
  );
}

/** Seconds, for prose. */
function secs(msValue: number): string {
  return `${(msValue / 1000).toFixed(2)} s`;
}

function missedList(ds: Derived[]): string {
  const bullets = ds
    .map((d) => ({ d, reasons: missedReasons(d) }))
    .filter((x) => x.reasons.length > 0)
    .map(
      ({ d, reasons }) => `- ${rate(d.s.uplinkBps)} against ${tailName(d.s.tail)}: ${reasons.join('; ')}.`,
    );
  if (bullets.length === 0)
    return (
      'Where a target is missed: nowhere; every scenario here has auto (sequential) within 5% of the oracle and ' +
      `at least edge only, settled within ${COLD_START_FRAMES} frames, and auto (pipelined) within ${PIPELINE_BOUND} of its bound.`
    );
  return ['Where a target is missed:', '', ...bullets].join('\n');
}

/** One sentence where full offload loses to edge only because sending the input alone takes longer. */
function physicsNote(ds: Derived[]): string | undefined {
  const slow = ds.flatMap((d) => {
    const input = d.s.oracle.measured.find((m) => m.cut === 0);
    if (!d.edgeOnly || !input || d.s.fullOffload.fps >= d.edgeOnly.fps) return [];
    const transferMs = (input.bytes * 8 * 1000) / d.s.uplinkBps;
    return transferMs > d.edgeOnly.medianMs ? [{ d, transferMs, bytes: input.bytes }] : [];
  });
  if (slow.length === 0) return undefined;
  const byRate = unique(slow.map((x) => x.d.s.uplinkBps)).map(
    (bps) => slow.find((x) => x.d.s.uplinkBps === bps)!,
  );
  const first = slow[0]!;
  return (
    `Full offload is slower than edge only at ${byRate.map((x) => rate(x.d.s.uplinkBps)).join(', ')}: sending the ` +
    `${formatBytes(first.bytes)} input alone takes ${byRate.map((x) => duration(x.transferMs)).join(', ')} there, ` +
    `more than the ${ms(first.d.edgeOnly!.medianMs)} ms the edge needs for the whole model.`
  );
}

function scenarioRow(d: Derived): string[] {
  const { s } = d;
  const a = s.autoSequential;
  return [
    rate(s.uplinkBps),
    tailName(s.tail),
    d.edgeOnly ? formatFps(d.edgeOnly.fps) : 'n/a',
    formatFps(s.fullOffload.fps),
    `${formatFps(a.fps)} (${a.cut})`,
    `${formatFps(s.autoPipelined.fps)} (${s.autoPipelined.cut})`,
    `${formatFps(s.oracle.bestFps)} (${s.oracle.bestCut})`,
    pct(d.regret),
    d.speedup === undefined ? 'n/a' : ratio(d.speedup),
    `${ms(a.medianMs)} / ${ms(a.p95Ms)}`,
    `${a.planChanges}`,
  ];
}

const SCENARIO_HEADER = [
  'uplink',
  'tail',
  'edge only (fps)',
  'full offload (fps)',
  'auto sequential (fps, cut)',
  'auto pipelined (fps, cut)',
  'oracle best (fps, cut)',
  'regret',
  'speedup',
  'auto latency median / p95 (ms)',
  'plan changes',
];

/** The emulation of a configuration: a line naming the host, and every scenario's emulation collapsed. */
function emulationNote(r: PaperResults, ds: Derived[]): string {
  const edges = unique(ds.map((d) => d.s.edge));
  const tails = unique(ds.map((d) => d.s.tail));
  const emulatedTails = tails.filter((t) => t !== 'host');
  const tailText = [
    ...(emulatedTails.length > 0 ? [`tail ${emulatedTails.join(', ')} emulated`] : []),
    ...(tails.includes('host') ? ['tail this host, unemulated'] : []),
  ].join('; ');
  const edgeRuns = r.edgeOnly.filter((x) => x.model === ds[0]!.s.model && edges.includes(x.edge));
  const details = [
    ...edgeRuns.map((e) => `- edge only on ${e.edge}: ${e.emulated}`),
    ...ds.map((d) => `- ${rate(d.s.uplinkBps)} against ${tailName(d.s.tail)}: ${d.s.emulated}`),
  ];
  return [
    `Measured on ${r.host.cpu} (${r.host.cores} cores): edge ${edges.join(', ')} emulated; ${tailText}; the uplink ` +
      'a token bucket at the listed rate in the edge.',
    '',
    '<details><summary>What was emulated, per scenario</summary>',
    '',
    ...details,
    '',
    '</details>',
  ].join('\n');
}

function configTitle(ds: Derived[]): string {
  const edges = unique(ds.map((d) => d.s.edge)).join(', ');
  const tails = unique(ds.map((d) => tailName(d.s.tail))).join(', ');
  return `Config ${ds[0]!.s.config}: ${edges} against ${tails}`;
}

async function configSection(r: PaperResults, ds: Derived[], chartsDir: string): Promise<[string, Chart]> {
  const { s } = ds[0]!;
  const file = `${slug(s.model)}-config-${s.config === 'I' ? 1 : 2}.svg`;
  const title = `${s.modelLabel}, Config ${s.config}: fps against uplink bandwidth`;
  const subtitle = [configTitle(ds), `measured on ${r.host.cpu}; devices and uplink emulated`];
  const svg = await fpsChart(title, subtitle, fpsPoints(ds));
  const note = physicsNote(ds);
  const text = [
    `#### ${configTitle(ds)}`,
    '',
    `![${title}](${chartsDir}/${file})`,
    '',
    mdTable(SCENARIO_HEADER, ds.map(scenarioRow)),
    '',
    emulationNote(r, ds),
    '',
    missedList(ds),
    ...(note ? ['', note] : []),
  ].join('\n');
  return [text, { file, svg }];
}

/** The paper's claims beside the measured edge-only fps and best auto speedup, per configuration. */
function claimsTable(model: string, byConfig: Derived[][]): string {
  const claims = PAPER_CLAIMS[CLAIMS_OF[model] ?? model] ?? {};
  const rows = byConfig.map((ds) => {
    const config = ds[0]!.s.config;
    const edgeOnly = ds.find((d) => d.edgeOnly)?.edgeOnly;
    const best = ds.reduce((a, d) => (d.s.autoSequential.fps > a.s.autoSequential.fps ? d : a));
    const measured = [
      edgeOnly ? `edge only ${formatFps(edgeOnly.fps)} fps` : 'edge only not measured',
      `auto (sequential) up to ${formatFps(best.s.autoSequential.fps)} fps` +
        (best.speedup === undefined ? '' : ` (${ratio(best.speedup)})`) +
        ` at ${rate(best.s.uplinkBps)} against ${tailName(best.s.tail)}`,
    ].join('; ');
    return [`Config ${config}`, claims[config] ?? 'no figure', measured];
  });
  return mdTable(['configuration', 'the paper', 'measured here'], rows);
}

async function modelSection(r: PaperResults, ds: Derived[], chartsDir: string): Promise<[string, Chart[]]> {
  const byConfig = CONFIGS.map((c) => ds.filter((d) => d.s.config === c)).filter((g) => g.length > 0);
  const parts = [`### ${ds[0]!.s.modelLabel}`, '', claimsTable(ds[0]!.s.model, byConfig)];
  const charts: Chart[] = [];
  for (const group of byConfig) {
    const [text, chart] = await configSection(r, group, chartsDir);
    parts.push('', text);
    charts.push(chart);
  }
  return [parts.join('\n'), charts];
}

async function scenariosSection(
  r: PaperResults,
  ds: Derived[],
  chartsDir: string,
): Promise<[string, Chart[]]> {
  const parts = [
    '## Scenarios',
    '',
    "Per model, the paper's figures beside ours; per configuration, fps against the uplink (one row of the chart " +
      'per tail) and a table with one row per uplink and tail. Cuts are written as the number of nodes the edge ' +
      'runs: 0 is full offload. Regret and speedup as in the summary; latency is capture to answer of auto ' +
      '(sequential).',
  ];
  if (ds.length === 0) parts.push('', 'No scenarios were measured.');
  const charts: Chart[] = [];
  for (const model of unique(ds.map((d) => d.s.model))) {
    const [text, cs] = await modelSection(
      r,
      ds.filter((d) => d.s.model === model),
      chartsDir,
    );
    parts.push('', text);
    charts.push(...cs);
  }
  return [parts.join('\n'), charts];
}

// ---- The robot experiment ----

const SIGNAL_LABEL = {
  none: 'none (load-unaware)',
  loadavg: 'loadavg (Fig. 17)',
  measured: 'measured (head time)',
} as const;

const labelOf = (r: PaperResults, model: string) =>
  r.scenarios.find((s) => s.model === model)?.modelLabel ?? model;

async function robotSection(r: PaperResults, chartsDir: string): Promise<[string, Chart[]]> {
  const head = [
    '## The robot experiment',
    '',
    'The paper (section III-C, Fig. 17): a robot whose navigation and video load its Raspberry Pi; the ' +
      'load-unaware planner ran 5 fps, the load-aware one 10 fps.',
  ];
  const robot = r.robot;
  if (!robot) return [[...head, '', 'Not run in this measurement.'].join('\n'), []];
  const runs = robotRuns(robot);
  const none = runs.none?.fps;
  const gain = (fps: number) => (none === undefined ? 'n/a' : ratio(div(fps, none)));
  const row = (label: string, c: Contender) => [
    label,
    formatFps(c.fps),
    ms(c.medianMs),
    ms(c.p95Ms),
    `${c.cut}`,
    gain(c.fps),
  ];
  const signals = (['none', 'loadavg', 'measured'] as const).filter((sig) => runs[sig] !== undefined);
  const rows = [
    ...signals.map((sig) => row(SIGNAL_LABEL[sig], runs[sig]!)),
    row('edge only', robot.edgeOnly),
  ];
  const bars: RobotBar[] = [
    ...signals.map((sig) => ({ label: SIGNAL_LABEL[sig], fps: runs[sig]!.fps })),
    { label: 'edge only', fps: robot.edgeOnly.fps },
  ];
  const label = labelOf(r, robot.model);
  const file = 'robot.svg';
  const title = `Robot experiment: ${label} on ${robot.edge} with ${robot.busy} busy processes`;
  const subtitle = [
    `against ${tailName(robot.tail)} at ${uplinkText(robot.uplink)}`,
    'auto (sequential) per load signal, and edge only',
  ];
  const svg = await robotChart(title, subtitle, bars);
  const text = [
    ...head,
    '',
    `Here: ${label} on ${robot.edge} against ${tailName(robot.tail)} at ${uplinkText(robot.uplink)}, with ${robot.busy} busy ` +
      'processes on the device standing in for navigation and video; the planner ran once per load signal, and ' +
      `edge only ran under the same load. Measured on ${r.host.cpu}; emulated: ${robot.emulated}.`,
    '',
    mdTable(['load signal', 'fps', 'median (ms)', 'p95 (ms)', 'cut', 'speedup over load-unaware'], rows),
    '',
    `![${title}](${chartsDir}/${file})`,
  ].join('\n');
  return [text, [{ file, svg }]];
}

// ---- Step response ----

async function stepRecordSection(
  r: PaperResults,
  rec: StepRecord,
  file: string,
  chartsDir: string,
): Promise<[string, Chart]> {
  const title = `Step response: ${rec.name}`;
  const subtitle = `${labelOf(r, rec.model)}; the cut of every frame, and its latency`;
  const svg = await stepChart(title, subtitle, rec);
  const rows = rec.steps.map((st) => [
    st.step,
    seconds(st.atMs),
    st.toPlanMs === null ? 'no new plan' : seconds(st.toPlanMs),
    `${st.planChanges}`,
    `${st.framesUntilRight}`,
    `${st.fallbacks}`,
    `${st.finalCut}`,
  ]);
  const text = [
    `### ${rec.name}`,
    '',
    `${labelOf(r, rec.model)}, measured on ${r.host.cpu}; emulated: ${rec.emulated}. Frames lost: ${rec.lost}.`,
    '',
    mdTable(
      ['step', 'at (s)', 'to new plan (s)', 'plan changes', 'frames until right', 'fallbacks', 'final cut'],
      rows,
    ),
    ...slowSteps(rec),
    '',
    `![${title}](${chartsDir}/${file})`,
  ].join('\n');
  return [text, { file, svg }];
}

/** Why a step took longer than the target to a new plan, from the frames around it. */
function slowSteps(rec: StepRecord): string[] {
  const out: string[] = [];
  for (const st of rec.steps.slice(1)) {
    if (st.toPlanMs === null || st.toPlanMs <= PLAN_WITHIN_MS) continue;
    const inFlight = rec.frames.find((f) => f.atMs - f.totalMs < st.atMs && f.atMs > st.atMs);
    const after = rec.frames.filter((f) => f.atMs > st.atMs && f.atMs <= st.atMs + st.toPlanMs!);
    const local = after.filter((f) => f.fallback).length;
    out.push(
      `- ${st.step}: the new plan came ${seconds(st.toPlanMs)} s after the step` +
        (inFlight && /bit\/s/.test(st.step)
          ? `; the frame in flight at the step (cut ${inFlight.cut}) was answered ${seconds(inFlight.atMs - st.atMs)} s after it. ` +
            'Until its upload is acknowledged, the evidence of the change (that PUBACK, and the telemetry queued ' +
            'behind the upload on the same MQTT connection) cannot reach the planner'
          : '') +
        (inFlight && !/bit\/s/.test(st.step)
          ? `; the frame in flight at the step (cut ${inFlight.cut}) was answered ${seconds(inFlight.atMs - st.atMs)} s after it`
          : '') +
        `. Meanwhile ${after.length} frames were answered, ${local} of them by the device itself.`,
    );
  }
  return out.length ? ['', ...out] : [];
}

/** Unique chart file names for the step records. */
function stepFiles(steps: StepRecord[]): string[] {
  const used = new Set<string>();
  return steps.map((rec) => {
    const base = `step-${slug(rec.name) || 'response'}`;
    let file = `${base}.svg`;
    for (let i = 2; used.has(file); i++) file = `${base}-${i}.svg`;
    used.add(file);
    return file;
  });
}

async function stepSection(r: PaperResults, chartsDir: string): Promise<[string, Chart[]]> {
  const parts = [
    '## Step response',
    '',
    'The uplink and the load changed mid-stream; per step, how long until the planner published a new plan, how ' +
      'many plan changes it took, and how many frames ran before the cut was right again. In the chart, the cut ' +
      'of every frame (crosses: frames the device finished itself), the plans as published (triangles) and the ' +
      "steps (dashed rules); below, every frame's latency.",
  ];
  if (r.steps.length === 0) parts.push('', 'Not run in this measurement.');
  const files = stepFiles(r.steps);
  const charts: Chart[] = [];
  for (const [i, rec] of r.steps.entries()) {
    const [text, chart] = await stepRecordSection(r, rec, files[i]!, chartsDir);
    parts.push('', text);
    charts.push(chart);
  }
  return [parts.join('\n'), charts];
}

// ---- The rest ----

function intro(r: PaperResults): string {
  const h = r.host;
  const gflops = h.gflops === null ? 'GFLOPs not measured' : `${h.gflops} GFLOPs sustained`;
  const grid =
    r.grid === 'full'
      ? 'full (every model, configuration and uplink of the doc)'
      : "quick (the test suite's: a few models and uplinks)";
  const edges = unique([...r.edgeOnly.map((e) => e.edge), ...r.scenarios.map((s) => s.edge)]);
  const tails = unique(r.scenarios.map((s) => s.tail).filter((t) => t !== 'host'));
  const emulated = [
    ...(edges.length > 0 ? [`the edge devices (${edges.join(', ')})`] : []),
    ...(tails.length > 0 ? [`Config I's tail devices (${tails.join(', ')})`] : []),
    'the uplink',
  ];
  return [
    "# The paper's results, measured",
    '',
    'Generated by `npm run bench -- paper` (`edgecut bench paper`) from docs/results.json; do not edit by hand.',
    '',
    'The paper: "Offloaded DL inference at the edge" (Dey et al.): SqueezeNet, AlexNet and Inception-v3 on a ' +
      'Raspberry Pi 3, with and without a Neural Compute Stick, offloading to faster servers. Here every ' +
      'scenario ran live: real processes, real models, emulated devices and links.',
    '',
    `Host: ${h.cpu}, ${h.cores} cores, ${gflops}, Node ${h.node}, onnxruntime ${h.onnxruntime}. Grid: ${grid}. ` +
      `Emulated: ${emulated.slice(0, -1).join(', ')}${emulated.length > 1 ? ' and ' : ''}${emulated.at(-1)}; ` +
      "Config II's tail is this host, unemulated.",
  ].join('\n');
}

/** The pipelined runs' window(s), as prose. */
function pipelinedWindows(r: PaperResults): string {
  const all = [...new Set(r.scenarios.map((s) => s.autoPipelined.window))].sort();
  if (all.length <= 1) return all.join('');
  // Runs measured at different times with different windows: which configuration ran with which.
  const configs = [...new Set(r.scenarios.map((s) => s.config))].sort();
  return configs
    .map((c) => {
      const w = [
        ...new Set(r.scenarios.filter((s) => s.config === c).map((s) => s.autoPipelined.window)),
      ].sort();
      return `${w.join(' or ')} in Config ${c}`;
    })
    .join(', ');
}

/** A line saying which scenarios' auto runs were measured again after the rest (`--auto-only`), if any. */
function reMeasured(r: PaperResults): string[] {
  const again = r.scenarios.filter((s) => s.autoMeasuredAt !== undefined);
  if (again.length === 0) return [];
  const days = (xs: string[]) => [...new Set(xs.map((x) => x.slice(0, 10)))].sort().join(', ');
  return [
    `- The auto runs of ${again.length} of ${r.scenarios.length} scenarios were measured again on ` +
      `${days(again.map((s) => s.autoMeasuredAt!))}, after a change to the planner (\`--auto-only\`); their ` +
      `oracle, edge-only and full-offload measurements are those of ${days(again.map((s) => s.measuredAt))}, ` +
      'which the change does not involve (the same host and reference profiles).',
  ];
}

/** A line saying which scenarios' oracles had their second look later (`--refine-only`), if any. */
function refined(r: PaperResults): string[] {
  const again = r.scenarios.filter((s) => s.oracleRefinedAt !== undefined);
  const edges = r.edgeOnly.filter((e) => e.refinedAt !== undefined);
  if (again.length === 0 && edges.length === 0) return [];
  const days = (xs: string[]) => [...new Set(xs.map((x) => x.slice(0, 10)))].sort().join(', ');
  return [
    `- The second look was added after the grid was measured: it ran on ` +
      `${days([...again.map((s) => s.oracleRefinedAt!), ...edges.map((e) => e.refinedAt!)])} ` +
      `(\`--refine-only\`) for the oracles of ${again.length} of ${r.scenarios.length} scenarios and ` +
      `${edges.length} of ${r.edgeOnly.length} edge-only runs, those measured with fewer frames than it takes; ` +
      "the auto runs' settling frame was recomputed against the new best.",
  ];
}

function howMeasured(r: PaperResults): string {
  return [
    '## How it was measured',
    '',
    '- Every scenario runs real processes: an embedded broker, the planner, the tail worker(s) and the edge, ' +
      'exchanging frames over MQTT as in a deployment.',
    "- Devices are emulated from profiles: the edge's emulated time is a factor times the profiled time on this " +
      "host. The factor comes from the paper's Table III measured whole-model times for rpi3b and rpi3b-ncs, and " +
      'from the GFLOPs ratio for iphone6, xeon-e3-1246 and jetson-tx2 (Config I tails).',
    r.profiles === 'reference'
      ? '- Every run of a model emulates its devices from one profile of this host, measured once before the grid ' +
        '(`edgecut profile`, 10 runs per layer) and given to the edges (`--profile`) and the tail workers ' +
        '(`--profiles`): the oracle and the auto runs of a scenario hold their devices for the same times.'
      : '- Every run profiled this host anew at start (its edge and its tail worker), while other scenarios ran: the ' +
        "per-layer shares of a model's time then differ between runs (the whole model's time does not), which shows " +
        "where auto ran the oracle's best cut and still measured slower or faster than the oracle did. (A grid " +
        'measured anew gives every run one reference profile per model; this one predates that.)',
    '- The uplink is a token bucket at the given rate in the edge.',
    "- Config II's tail is this host, unemulated: the paper's Xeon servers are faster than it, and emulation can " +
      "only slow a device down. Config II's offloading is therefore measured against a slower server than the " +
      "paper's.",
    '- Edge only is measured once per model and edge device; neither the link nor a server takes part.',
    '- Full offload sends the input and runs the whole model on the tail (cut 0).',
    '- Auto is the planner with its defaults from a cold start with no bandwidth given, one frame at a time ' +
      "(sequential, the paper's way: window 1) and with frames in flight (pipelined, " +
      `window ${pipelinedWindows(r)}: one frame per place a frame spends time, head, uplink, tail and the way back, ` +
      "for which the planner's default objective is throughput). " +
      "Its first frames are the cold start (each run's `warmup` in results.json): the frames of about 10 s, at " +
      'least 10 and at most 200 (2 s of frames, at least 10, in the runs measured before 2026-12-03 08:10 UTC: ' +
      "Config I's sequential runs). " +
      'The frames after them are measured: sequential 3 to 10 ' +
      '(about 15 s) and at least 3 s of frames (at most 60); pipelined 4 to 20 (about 20 s) and at least 4 s of ' +
      'frames (at most 80).',
    ...reMeasured(r),
    '- The oracle runs the same services without a planner and publishes each cut itself, in order of the time ' +
      "predicted from the device's and the worker's published profiles and the link's rate. It skips a cut only " +
      "when the cut's lower bound, 0.97 x its device time (the emulation holds the device for exactly its profiled " +
      "time) plus its bytes at the link's rate, is above the best frame time measured so far: such a cut cannot " +
      'win. Frames per cut: 2 warm-up and 3 measured under 1 s per frame, 1 and 2 under 5 s, 0 and 2 under 15 s, ' +
      'else 1. Then its second look: every measured cut within 10% of the best so far (edge only included) is ' +
      'measured again for about 3 s of frames (at least 3, at most 60) and that measurement replaces the first, ' +
      "so where a few cuts are about as fast the reference is not three frames of a 2-core host's noise; edge " +
      'only is measured for as long. Oracle best is the best measured cut, edge only included.',
    ...refined(r),
    '- Regret = oracle best fps / auto (sequential) fps - 1; speedup = auto (sequential) fps / edge-only fps.',
    "- The pipelined run's bound is 1 / its slowest stage: the head's and the tail's median times, and the link's " +
      "share, its median request's bytes at the uplink's rate (with frames in flight a request's measured transfer " +
      'includes its wait behind the previous ones on the link).',
    '- fps: for a fixed cut and for auto (sequential), frames / (last answer - first capture); for auto ' +
      '(pipelined), frames / (last answer - the answer before the first measured frame), the steady rate with ' +
      'frames in flight.',
    '- Several scenarios of Config I run at once (`--jobs`): their edge devices are 80-180x slower than this host and their ' +
      "tails 3-17x, so they mostly wait on emulated time. Config II's, whose edge is only 3-5x slower and whose tail " +
      'is this host, run alone.',
  ].join('\n');
}

/**
 * Renders docs/results.md and its charts from a results file. `charts[].file` is a name inside
 * `opts.chartsDir`, which the markdown links as `<chartsDir>/<file>`; the same results give the same output.
 */
export async function renderResultsDoc(r: PaperResults, opts: ResultsDocOptions): Promise<ResultsDoc> {
  const ds = ordered(r);
  const [scenarios, scenarioCharts] = await scenariosSection(r, ds, opts.chartsDir);
  const [robot, robotCharts] = await robotSection(r, opts.chartsDir);
  const [steps, stepCharts] = await stepSection(r, opts.chartsDir);
  const markdown = [intro(r), summarySection(r, ds), scenarios, robot, steps, howMeasured(r)].join('\n\n');
  return { markdown: `${markdown}\n`, charts: [...scenarioCharts, ...robotCharts, ...stepCharts] };
}

/**
 * The structure of a results document, independent of measured numbers and of how many models, configurations
 * and uplinks it has: its level-1 and level-2 headings, and every distinct table header row, in order of first
 * appearance, with numbers replaced by `N`.
 */
export function docStructure(markdown: string): string[] {
  const lines = markdown.split('\n');
  const strip = (line: string) => line.replace(/\d+(?:\.\d+)?/g, 'N').trimEnd();
  const out: string[] = [];
  const tables = new Set<string>();
  for (const [i, line] of lines.entries()) {
    if (/^#{1,2} /.test(line)) out.push(strip(line));
    else if (line.startsWith('|') && /^\|\s*:?-{3,}/.test(lines[i + 1] ?? '')) {
      const header = strip(line);
      if (!tables.has(header)) out.push(header);
      tables.add(header);
    }
  }
  return out;
}

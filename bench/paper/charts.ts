/**
 * The SVG charts of docs/results.md (bench/paper/doc.ts): fps against uplink per model and configuration (the
 * paper's Figs. 5-14), the robot experiment's fps per load signal, and the cut over time of a step response.
 * Vega-Lite specs rendered headless by vega; the same input gives byte-identical SVG.
 */
import * as vega from 'vega';
import type * as vl from 'vega-lite';
import { compile } from 'vega-lite';
import type { StepRecord } from './results.ts';

/** The contenders of a scenario chart, in legend order. */
export const CONTENDERS = [
  'edge only',
  'full offload',
  'auto (sequential)',
  'auto (pipelined)',
  'oracle best',
] as const;
export type ContenderName = (typeof CONTENDERS)[number];

/** One point of a scenario chart: a contender's fps against one tail at one uplink. */
export interface FpsPoint {
  /** The facet: the tail the scenario ran against, as shown. */
  tail: string;
  uplinkBps: number;
  contender: ContenderName;
  fps: number;
}

/** One bar of the robot chart. */
export interface RobotBar {
  label: string;
  fps: number;
}

const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';
const WIDTH = 460;
const CONTENDER_COLORS = ['#7f7f7f', '#ff7f0e', '#1f77b4', '#2ca02c', '#222222'];
const CONTENDER_DASHES = [
  [1, 0],
  [1, 0],
  [1, 0],
  [1, 0],
  [5, 3],
];
const FONT = 'Helvetica, Arial, sans-serif';

/** A vega expression labelling a bit rate (the axis value) in kbit/s or Mbit/s. */
const RATE_LABEL =
  "datum.value >= 1e9 ? format(datum.value / 1e9, '~g') + ' Gbit/s' : " +
  "datum.value >= 1e6 ? format(datum.value / 1e6, '~g') + ' Mbit/s' : " +
  "datum.value >= 1e3 ? format(datum.value / 1e3, '~g') + ' kbit/s' : format(datum.value, '~g') + ' bit/s'";

/** Looks shared by every chart: white background, readable fonts, light grid. */
const CONFIG: vl.Config = {
  background: 'white',
  font: FONT,
  title: { fontSize: 14, anchor: 'start', subtitleFontSize: 11, subtitleColor: '#555555' },
  axis: { labelFontSize: 11, titleFontSize: 12, gridColor: '#e6e6e6' },
  legend: { labelFontSize: 11, titleFontSize: 12 },
  header: { labelFontSize: 12, titleFontSize: 12 },
  view: { stroke: '#cccccc' },
};

/** Renders a Vega-Lite spec to an SVG string, headless (no canvas). */
export async function renderSvg(spec: vl.TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return renumberIds(await view.toSVG());
  } finally {
    view.finalize();
  }
}

/**
 * Vega numbers clip paths and gradients by a counter global to the process; numbering them from 1 in each SVG
 * makes the output independent of what was rendered before.
 */
function renumberIds(svg: string): string {
  const ids = new Map<string, string>();
  return svg.replace(/\b(clip|gradient|pattern)(\d+)\b/g, (id: string, kind: string) => {
    let n = ids.get(id);
    if (n === undefined) {
      n = `${kind}${ids.size + 1}`;
      ids.set(id, n);
    }
    return n;
  });
}

/** A log-scale domain around the rates, padded so that one rate alone still draws. */
function rateDomain(rates: number[]): [number, number] {
  const lo = Math.min(...rates);
  const hi = Math.max(...rates);
  return [lo / 1.6, hi * 1.6];
}

/** The contenders' legend: color and dash merge into one, below the chart. */
const LEGEND = {
  orient: 'bottom',
  direction: 'horizontal',
  columns: 3,
  symbolType: 'stroke',
  symbolStrokeWidth: 2,
} as const;

/**
 * The spec of a scenario chart: fps against uplink (log scale), one line per contender, one row per tail.
 */
export function fpsChartSpec(
  title: string,
  subtitle: string | string[],
  points: FpsPoint[],
): vl.TopLevelSpec {
  const rates = [...new Set(points.map((p) => p.uplinkBps))].sort((a, b) => a - b);
  const tails = [...new Set(points.map((p) => p.tail))];
  return {
    $schema: SCHEMA,
    title: { text: title, subtitle },
    config: CONFIG,
    data: { values: points.map((p) => ({ ...p })) },
    facet: {
      row: {
        field: 'tail',
        type: 'nominal',
        sort: tails,
        title: null,
        header: { labelOrient: 'top', labelAngle: 0, labelAnchor: 'start', labelFontWeight: 'bold' },
      },
    },
    spec: {
      width: WIDTH,
      height: 150,
      mark: { type: 'line', point: { size: 36, filled: true }, strokeWidth: 1.8 },
      encoding: {
        x: {
          field: 'uplinkBps',
          type: 'quantitative',
          title: 'uplink bandwidth (log scale)',
          scale: { type: 'log', domain: rateDomain(rates), nice: false },
          axis: {
            values: rates,
            labelExpr: RATE_LABEL,
            labelAngle: rates.length > 5 ? -40 : 0,
            labelOverlap: false,
            grid: true,
          },
        },
        y: { field: 'fps', type: 'quantitative', title: 'frames per second (fps)', scale: { zero: true } },
        color: {
          field: 'contender',
          type: 'nominal',
          title: null,
          scale: { domain: [...CONTENDERS], range: CONTENDER_COLORS },
          legend: LEGEND,
        },
        strokeDash: {
          field: 'contender',
          type: 'nominal',
          title: null,
          scale: { domain: [...CONTENDERS], range: CONTENDER_DASHES },
          legend: LEGEND,
        },
        order: { field: 'uplinkBps', type: 'quantitative' },
      },
    },
  };
}

/** A scenario chart as SVG (see fpsChartSpec). */
export function fpsChart(title: string, subtitle: string | string[], points: FpsPoint[]): Promise<string> {
  return renderSvg(fpsChartSpec(title, subtitle, points));
}

/** The spec of the robot chart: one horizontal bar per load signal (and edge only), fps written beside it. */
export function robotChartSpec(
  title: string,
  subtitle: string | string[],
  bars: RobotBar[],
): vl.TopLevelSpec {
  return {
    $schema: SCHEMA,
    title: { text: title, subtitle },
    config: CONFIG,
    width: WIDTH - 120,
    height: 30 * bars.length,
    data: { values: bars.map((b) => ({ label: b.label, fps: b.fps, text: formatFps(b.fps) })) },
    encoding: {
      y: {
        field: 'label',
        type: 'nominal',
        sort: bars.map((b) => b.label),
        title: 'run (planner load signal)',
        axis: { labelLimit: 0 },
      },
      x: { field: 'fps', type: 'quantitative', title: 'frames per second (fps)' },
    },
    layer: [
      { mark: { type: 'bar', color: '#1f77b4', height: { band: 0.6 } } },
      {
        mark: { type: 'text', dx: 4, fontSize: 11, align: 'left', baseline: 'middle' },
        encoding: { text: { field: 'text' } },
      },
    ],
  };
}

/** The robot chart as SVG (see robotChartSpec). */
export function robotChart(title: string, subtitle: string | string[], bars: RobotBar[]): Promise<string> {
  return renderSvg(robotChartSpec(title, subtitle, bars));
}

const STEP_KINDS = ['frame cut', 'fallback frame', 'plan published', 'step'] as const;
const STEP_COLORS = ['#1f77b4', '#d62728', '#ff7f0e', '#7f7f7f'];

/**
 * The spec of a step-response chart: above, every frame's cut (a step line; fallback frames as red crosses, plan
 * publications as orange triangles) with a rule at each step; below, every frame's latency. Time in seconds.
 */
export function stepChartSpec(title: string, subtitle: string | string[], rec: StepRecord): vl.TopLevelSpec {
  const rows = [
    ...rec.frames.map((f) => ({ kind: 'frame cut', t: f.atMs / 1000, cut: f.cut, ms: f.totalMs })),
    ...rec.frames
      .filter((f) => f.fallback)
      .map((f) => ({ kind: 'fallback frame', t: f.atMs / 1000, cut: f.cut })),
    ...rec.plans.map((p) => ({ kind: 'plan published', t: p.atMs / 1000, cut: p.cut })),
    ...rec.steps.map((s) => ({ kind: 'step', t: s.atMs / 1000, name: s.step })),
  ];
  const times = rows.map((r) => r.t);
  const tMax = Math.max(1, ...times);
  const x = {
    field: 't',
    type: 'quantitative' as const,
    title: 'time since the stream started (s)',
    scale: { domain: [0, tMax * 1.02], nice: false },
  };
  const color = {
    field: 'kind',
    type: 'nominal' as const,
    title: null,
    scale: { domain: [...STEP_KINDS], range: STEP_COLORS },
    legend: { orient: 'bottom' as const, direction: 'horizontal' as const },
  };
  const only = (kind: string) => ({ filter: `datum.kind === '${kind}'` });
  const cutY = { field: 'cut', type: 'quantitative' as const, title: 'cut (nodes on the edge)' };
  return {
    $schema: SCHEMA,
    title: { text: title, subtitle },
    config: CONFIG,
    data: { values: rows },
    vconcat: [
      {
        width: WIDTH,
        height: 180,
        layer: [
          {
            transform: [only('step')],
            mark: { type: 'rule', strokeDash: [4, 3] },
            encoding: { x, color },
          },
          {
            transform: [only('step')],
            mark: {
              type: 'text',
              align: 'left',
              dx: 3,
              y: 6,
              baseline: 'top',
              fontSize: 10,
              color: '#555555',
            },
            encoding: { x, text: { field: 'name' } },
          },
          {
            transform: [only('frame cut')],
            mark: { type: 'line', interpolate: 'step-after', strokeWidth: 1.5 },
            encoding: { x, y: cutY, color },
          },
          {
            transform: [only('fallback frame')],
            mark: { type: 'point', shape: 'cross', filled: true, size: 40 },
            encoding: { x, y: cutY, color },
          },
          {
            transform: [only('plan published')],
            mark: { type: 'point', shape: 'triangle-down', filled: true, size: 70 },
            encoding: { x, y: cutY, color },
          },
        ],
      },
      {
        width: WIDTH,
        height: 120,
        layer: [
          { transform: [only('step')], mark: { type: 'rule', strokeDash: [4, 3] }, encoding: { x, color } },
          {
            transform: [only('frame cut')],
            mark: { type: 'point', size: 12, filled: true, opacity: 0.8 },
            encoding: {
              x,
              y: { field: 'ms', type: 'quantitative', title: 'frame latency (ms)' },
              color,
            },
          },
        ],
      },
    ],
  };
}

/** A step-response chart as SVG (see stepChartSpec). */
export function stepChart(title: string, subtitle: string | string[], rec: StepRecord): Promise<string> {
  return renderSvg(stepChartSpec(title, subtitle, rec));
}

/** Frames per second to three significant digits (the doc's and the charts' format). */
export function formatFps(fps: number): string {
  if (!Number.isFinite(fps)) return String(fps);
  if (fps === 0) return '0';
  if (Math.abs(fps) >= 100) return fps.toFixed(0);
  return fps.toPrecision(3);
}

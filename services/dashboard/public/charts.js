/**
 * The page's charts, all uPlot (vendored from node_modules, served under /assets/vendor/): small timelines, and the
 * predicted latency of every cut (the paper's Fig. 3) with the chosen cut marked.
 */
import uPlot from '/assets/vendor/uPlot.esm.js';

const WIDTH = 360;
const HEIGHT = 140;

const COLORS = {
  head: '#4c8bf5',
  transfer: '#f5a623',
  tail: '#2bb673',
  total: '#9b59b6',
  chosen: '#e74c3c',
  line: '#4c8bf5',
  alt: '#888888',
  best: '#111111',
};

function axes(yLabel, time = true) {
  const grid = { stroke: 'rgba(128,128,128,0.15)' };
  return [
    { stroke: 'currentColor', grid, ...(time ? {} : { label: 'cut k' }) },
    { stroke: 'currentColor', grid, label: yLabel, size: 50 },
  ];
}

/**
 * A timeline: x in seconds since the epoch, one or more series.
 * @param {HTMLElement} el
 * @param {string} title
 * @param {string} yLabel
 * @param {Array<{label: string, color: string, fill?: boolean, stepped?: boolean}>} series
 */
export function timeline(el, title, yLabel, series) {
  const opts = {
    title,
    width: WIDTH,
    height: HEIGHT,
    legend: { live: false },
    cursor: { show: false },
    scales: {
      x: { time: true },
      y: { range: (_u, min, max) => [Math.min(0, min ?? 0), Math.max(1e-3, max ?? 1)] },
    },
    axes: axes(yLabel),
    series: [
      {},
      ...series.map((s) => ({
        label: s.label,
        stroke: s.color,
        width: 1.5,
        spanGaps: true,
        points: { show: false },
        ...(s.fill ? { fill: `${s.color}55` } : {}),
        ...(s.stepped ? { paths: uPlot.paths.stepped({ align: 1 }) } : {}),
      })),
    ],
  };
  const empty = [[], ...series.map(() => [])];
  return new uPlot(opts, empty, el);
}

/**
 * The predicted stage times of every cut (the planner's predictions now, or the plan's), the chosen cut (the plan's)
 * and, when it differs, the cut Algorithm 1 finds best now.
 * @param {HTMLElement} el
 */
export function curveChart(el) {
  const opts = {
    title: 'predicted latency per cut (ms)',
    width: WIDTH,
    height: HEIGHT + 40,
    legend: { live: false },
    cursor: { show: false },
    scales: { x: { time: false }, y: { range: (_u, _min, max) => [0, Math.max(1e-3, max ?? 1)] } },
    axes: axes('ms', false),
    series: [
      {},
      { label: 'total', stroke: COLORS.total, width: 2, points: { show: false } },
      { label: 'head', stroke: COLORS.head, width: 1, points: { show: false } },
      { label: 'transfer', stroke: COLORS.transfer, width: 1, points: { show: false } },
      { label: 'tail', stroke: COLORS.tail, width: 1, points: { show: false } },
      {
        label: 'chosen',
        stroke: COLORS.chosen,
        width: 0,
        paths: () => null,
        points: { show: true, size: 10, fill: COLORS.chosen, stroke: COLORS.chosen },
      },
      {
        label: 'best now',
        stroke: COLORS.best,
        width: 0,
        paths: () => null,
        points: { show: true, size: 12, width: 2, fill: 'transparent', stroke: COLORS.best },
      },
    ],
  };
  return new uPlot(opts, [[], [], [], [], [], [], []], el);
}

/**
 * uPlot data of a curve.
 * @param {Array<{cut:number, headMs:number, transferMs:number, tailMs:number, totalMs:number}>} curve
 * @param {number | undefined} chosen the plan's cut
 * @param {number | undefined} best Algorithm 1's best cut now, when it is not the chosen one
 */
export function curveData(curve, chosen, best = undefined) {
  const pts = [...curve].sort((a, b) => a.cut - b.cut);
  return [
    pts.map((p) => p.cut),
    pts.map((p) => p.totalMs),
    pts.map((p) => p.headMs),
    pts.map((p) => p.transferMs),
    pts.map((p) => p.tailMs),
    pts.map((p) => (p.cut === chosen ? p.totalMs : null)),
    pts.map((p) => (best !== undefined && best !== chosen && p.cut === best ? p.totalMs : null)),
  ];
}

export { COLORS };

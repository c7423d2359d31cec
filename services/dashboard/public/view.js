/**
 * Renders the state (state.js) into the page: one card per device, the workers' table. Text goes in through
 * textContent only; nothing from a message is parsed as HTML.
 */
import { COLORS, curveChart, curveData, timeline } from '/assets/charts.js';
import { liveCurve } from '/assets/state.js';

/**
 * Creates an element.
 * @param {string} tag
 * @param {Record<string, string>} attrs
 * @param {Array<Node|string>} children
 */
function h(tag, attrs = {}, children = []) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) el.append(c);
  return el;
}

function setText(el, text) {
  const s = String(text);
  if (el.textContent !== s) el.textContent = s;
}

const fmtMs = (v) => (typeof v === 'number' ? `${v.toFixed(1)} ms` : '–');
const fmt = (v, digits = 1) => (typeof v === 'number' ? v.toFixed(digits) : '–');

/** The DOM and charts of one device. */
class DeviceCard {
  constructor(id) {
    this.id = id;
    const field = (name, label) => {
      const value = h('dd', { 'data-testid': name, 'data-device': id }, ['–']);
      this[name] = value;
      return [h('dt', {}, [label]), value];
    };
    this.status = h('span', { class: 'pill', 'data-testid': 'device-status', 'data-device': id }, ['?']);
    this.layers = h('div', { class: 'layers', 'data-testid': 'layers', 'data-device': id });
    this.layersCaption = h('p', { class: 'muted small' });
    this.reason = h('p', { class: 'reason', 'data-testid': 'reason', 'data-device': id }, ['no plan yet']);
    const facts = h('dl', { class: 'facts' }, [
      ...field('cut', 'cut'),
      ...field('plan-seq', 'plan'),
      ...field('predicted', 'predicted'),
      ...field('fps', 'fps'),
      ...field('last-frame', 'last frame'),
      ...field('top1', 'top-1'),
      ...field('fallbacks', 'fallbacks'),
    ]);
    const charts = h('div', { class: 'charts' });
    const box = (testid) => {
      const el = h('div', { class: 'chart', 'data-testid': testid, 'data-device': id });
      charts.append(el);
      return el;
    };
    this.curveBox = box('curve');
    this.curve = curveChart(this.curveBox);
    this.curveCaption = h('p', { class: 'muted small', 'data-testid': 'curve-caption', 'data-device': id });
    this.curveBox.append(this.curveCaption);
    this.fpsChart = timeline(box('fps-chart'), 'frames per second', 'fps', [
      { label: 'fps', color: COLORS.line },
    ]);
    this.latencyChart = timeline(box('latency-chart'), 'latency per frame (ms, stacked)', 'ms', [
      { label: 'tail', color: COLORS.tail, fill: true },
      { label: 'transfer', color: COLORS.transfer, fill: true },
      { label: 'head', color: COLORS.head, fill: true },
    ]);
    this.uplinkChart = timeline(box('uplink-chart'), 'uplink (Mbit/s)', 'Mbit/s', [
      { label: 'measured', color: COLORS.line },
      { label: 'planner', color: COLORS.chosen, stepped: true },
    ]);
    this.loadChart = timeline(box('load-chart'), 'load factor (loadavg / cores)', 'load', [
      { label: 'load', color: COLORS.line },
    ]);
    this.cutChart = timeline(box('cut-chart'), 'cut', 'k', [
      { label: 'cut', color: COLORS.chosen, stepped: true },
    ]);
    this.el = h('article', { class: 'device', 'data-testid': 'device', 'data-device': id }, [
      h('h2', {}, [id, ' ', this.status]),
      this.layers,
      this.layersCaption,
      facts,
      this.reason,
      charts,
    ]);
    this.layerKey = '';
  }

  /** Redraws the strip of layers when the model or the cut changes. */
  renderLayers(d, cut) {
    const layers = Array.isArray(d.profile?.layers) ? d.profile.layers : [];
    const key = `${d.profile?.model?.id ?? ''}:${layers.length}:${cut}`;
    if (key === this.layerKey) return;
    this.layerKey = key;
    const total = layers.reduce((s, l) => s + (typeof l.ms === 'number' ? l.ms : 0), 0) || 1;
    const cells = layers.map((l, i) => {
      const k = i + 1;
      const side = cut !== undefined && k <= cut ? 'head' : 'tail';
      const cell = h('span', {
        class: `layer ${side}`,
        title: `${k}. ${l.name} (${l.op}) ${fmtMs(l.ms)}`,
        'data-index': String(k),
      });
      // Width follows the layer's share of the model's time, with a floor so every layer stays visible.
      cell.style.flexGrow = String(Math.max(0.3, (100 * (l.ms ?? 0)) / total));
      return cell;
    });
    if (cut !== undefined && layers.length > 0) {
      const marker = h('span', { class: 'cut-marker', 'data-testid': 'cut-marker', 'data-cut': String(cut) });
      cells.splice(Math.min(cut, cells.length), 0, marker);
    }
    this.layers.replaceChildren(...cells);
    const name = d.profile?.model?.name ?? 'model';
    setText(
      this.layersCaption,
      layers.length > 0
        ? `${name}: ${layers.length} layers; blue on the device (head), green on the workers (tail)`
        : `${name}: no per-layer profile`,
    );
  }

  update(d) {
    setText(this.status, d.status ?? '?');
    this.status.dataset.state = d.status ?? 'unknown';
    const plan = d.plan;
    const cut = plan?.cut?.index;
    const layers = Array.isArray(d.profile?.layers) ? d.profile.layers.length : undefined;
    const where =
      cut === undefined
        ? ''
        : cut === 0
          ? ' (everything on the workers)'
          : layers !== undefined && cut >= layers
            ? ' (everything on the device)'
            : plan.cut.after
              ? ` after ${plan.cut.after}`
              : '';
    setText(this.cut, cut === undefined ? '–' : `${cut}${where}`);
    this.cut.dataset.cut = cut === undefined ? '' : String(cut);
    setText(this['plan-seq'], plan ? `#${plan.seq} (${plan.objective})` : '–');
    this['plan-seq'].dataset.seq = plan ? String(plan.seq) : '';
    setText(
      this.predicted,
      plan?.predicted
        ? `${fmtMs(plan.predicted.totalMs)} = ${fmtMs(plan.predicted.edgeMs)} head + ${fmtMs(plan.predicted.transferMs)} transfer + ${fmtMs(plan.predicted.serverMs)} tail`
        : '–',
    );
    setText(this.reason, plan ? plan.reason : 'no plan yet');
    const f = d.lastFrame;
    setText(this.fps, f ? fmt(f.fps) : '–');
    setText(
      this['last-frame'],
      f
        ? `#${f.frame} at cut ${f.cut}: ${fmtMs(f.totalMs)} (head ${fmt(f.headMs)}, transfer ${fmt(f.transferMs)}, tail ${fmt(f.tailMs)}) by ${f.tailBy}`
        : 'no frame reports',
    );
    setText(
      this.top1,
      f?.top1
        ? `${f.top1.label ?? `class ${f.top1.index}`} (${(100 * f.top1.probability).toFixed(1)}%)`
        : '–',
    );
    setText(
      this.fallbacks,
      `${d.fallbacks}${d.lastFallback ? `; last: frame #${d.lastFallback.frame}: ${d.lastFallback.reason}` : ''}`,
    );
    this.renderLayers(d, cut);
    // The Fig. 3 curve now (the planner's predictions between plans), else the plan's; the plan's cut marked, and
    // Algorithm 1's best now when the hysteresis still holds it back.
    const live = liveCurve(d);
    this.curveBox.dataset.points = String(live.curve.length);
    this.curveBox.dataset.source = live.source;
    this.curveBox.dataset.best = live.best === undefined ? '' : String(live.best);
    this.curveBox.dataset.at = live.at === undefined ? '' : String(live.at);
    this.curve.setData(curveData(live.curve, cut, live.best));
    setText(
      this.curveCaption,
      live.source === 'none'
        ? 'no predicted curve yet (the link is being measured, or a fixed cut)'
        : `${live.source === 'predictions' ? 'predicted now' : `as of plan #${plan?.seq}`}` +
            (live.at !== undefined ? ` (${new Date(live.at).toLocaleTimeString()})` : '') +
            `; red: the plan's cut ${cut ?? '–'}` +
            (live.best !== undefined
              ? `; ringed: cut ${live.best}, best now (the hysteresis holds the switch)`
              : ''),
    );
    this.fpsChart.setData(d.frames.columns(1));
    this.latencyChart.setData(d.latency.columns(3));
    this.uplinkChart.setData(d.uplink.columns(2));
    this.loadChart.setData(d.load.columns(1));
    this.cutChart.setData(d.cut.columns(1));
  }
}

/** The whole page. */
export class View {
  constructor(doc) {
    this.devicesEl = doc.getElementById('devices');
    this.noDevices = doc.getElementById('no-devices');
    this.workersBody = doc.querySelector('#workers tbody');
    this.planners = doc.getElementById('planners');
    this.ignored = doc.getElementById('ignored');
    this.connection = doc.getElementById('connection');
    /** @type {Map<string, DeviceCard>} */
    this.cards = new Map();
  }

  setConnection(state, text) {
    this.connection.dataset.state = state;
    setText(this.connection, text);
  }

  render(state) {
    const ids = [...state.devices.keys()].sort();
    for (const id of ids) {
      let card = this.cards.get(id);
      if (!card) {
        card = new DeviceCard(id);
        this.cards.set(id, card);
        this.devicesEl.append(card.el);
      }
      card.update(state.devices.get(id));
    }
    this.noDevices.hidden = ids.length > 0;
    const rows = [...state.workers.values()]
      .sort((a, b) => (a.id < b.id ? -1 : 1))
      .map((w) => {
        const t = w.telemetry;
        return h(
          'tr',
          { 'data-testid': 'worker', 'data-worker': w.id, 'data-state': w.status ?? 'unknown' },
          [
            h('td', {}, [w.id]),
            h('td', {}, [
              h('span', { class: 'pill', 'data-state': w.status ?? 'unknown' }, [w.status ?? '?']),
            ]),
            h('td', {}, [t ? String(t.queueDepth) : '–']),
            h('td', {}, [t ? `${t.running}/${t.concurrency}` : '–']),
            h('td', {}, [w.throughput !== undefined ? `${w.throughput.toFixed(1)}/s` : '–']),
            h('td', {}, [t ? fmt(t.loadavg1 / t.cores, 2) : '–']),
          ],
        );
      });
    this.workersBody.replaceChildren(...rows);
    setText(
      this.planners,
      state.planners.size === 0
        ? 'no planner seen'
        : `planners: ${[...state.planners].map(([id, s]) => `${id} ${s}`).join(', ')}`,
    );
    setText(
      this.ignored,
      state.ignored > 0 ? `${state.ignored} messages ignored; last: ${state.lastIgnored}` : '',
    );
  }
}

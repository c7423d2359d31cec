/**
 * The dashboard's state, built only from what arrives from the broker (no I/O here): topic parsing against the
 * patterns the server hands out in /config.json (schemas/topics.ts `DASHBOARD_READS`), and per
 * device and worker the latest retained state and bounded histories for the timelines.
 */

/** Points kept per timeline (a few minutes at the rates devices report). */
export const HISTORY = 600;
/** Largest payload parsed; anything larger is counted and ignored. */
export const MAX_PAYLOAD_BYTES = 1 << 20;

/**
 * A matcher for topic patterns below the root, e.g. `devices/{device}/plan`.
 * @param {string} root
 * @param {Record<string, string>} patterns topic name -> pattern
 */
export function topicMatcher(root, patterns) {
  const rootParts = root.split('/');
  const entries = Object.entries(patterns).map(([name, pattern]) => ({ name, parts: pattern.split('/') }));
  return {
    /** Subscription filters: each pattern with its parameters as `+`. */
    filters: entries.map((e) =>
      [...rootParts, ...e.parts.map((p) => (p.startsWith('{') ? '+' : p))].join('/'),
    ),
    /**
     * The topic's name and parameters, or undefined.
     * @param {string} topic
     */
    match(topic) {
      const got = topic.split('/');
      if (rootParts.some((p, i) => got[i] !== p)) return undefined;
      const rest = got.slice(rootParts.length);
      for (const e of entries) {
        if (e.parts.length !== rest.length) continue;
        /** @type {Record<string, string>} */
        const params = {};
        let ok = true;
        for (let i = 0; i < rest.length; i++) {
          const want = e.parts[i];
          if (want.startsWith('{')) params[want.slice(1, -1)] = rest[i];
          else if (want !== rest[i]) ok = false;
        }
        if (ok) return { name: e.name, params };
      }
      return undefined;
    },
  };
}

/** A bounded series of [time (s), value] points. */
export class Series {
  constructor(limit = HISTORY) {
    this.limit = limit;
    /** @type {number[]} */
    this.t = [];
    /** @type {number[][]} */
    this.v = [];
  }
  /**
   * @param {number} atMs
   * @param {number[]} values
   */
  push(atMs, values) {
    const t = atMs / 1000;
    // Out-of-order points (another clock) are dropped: uPlot needs ascending x.
    if (this.t.length > 0 && t < this.t[this.t.length - 1]) return;
    this.t.push(t);
    this.v.push(values);
    if (this.t.length > this.limit) {
      this.t.shift();
      this.v.shift();
    }
  }
  /** uPlot's columnar data: [xs, ys0, ys1, ...]. */
  columns(width = 1) {
    const out = [this.t.slice()];
    for (let i = 0; i < width; i++) out.push(this.v.map((v) => v[i] ?? null));
    return out;
  }
}

function newDevice(id) {
  return {
    id,
    status: undefined,
    profile: undefined,
    plan: undefined,
    /** The planner's latest predictions message (Algorithm 1's curve now, between plans). */
    predictions: undefined,
    telemetry: undefined,
    lastFrame: undefined,
    lastFallback: undefined,
    fallbacks: 0,
    frames: new Series(),
    latency: new Series(),
    uplink: new Series(),
    load: new Series(),
    cut: new Series(),
  };
}

function newWorker(id) {
  return { id, status: undefined, telemetry: undefined, throughput: undefined, prev: undefined };
}

const isObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);
const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/**
 * The curve the Fig. 3 chart draws for a device: the planner's latest predictions (Algorithm 1 now) when they are
 * newer than the plan in force and about it (same model, its seq or later), else the plan's own curve. `chosen` is
 * the plan's cut; `best` is Algorithm 1's best cut now (from the predictions), undefined when it is the chosen one.
 * @param {{ plan?: any, predictions?: any }} d
 * @returns {{ source: 'predictions' | 'plan' | 'none', curve: any[], chosen: number | undefined, best: number | undefined, at: number | undefined }}
 */
export function liveCurve(d) {
  const plan = d.plan;
  const p = d.predictions;
  const chosen = num(plan?.cut?.index) ?? num(p?.chosen);
  const live =
    p !== undefined &&
    (plan === undefined ||
      (p.modelId === plan.modelId && p.seq >= plan.seq && p.at >= (num(plan.issuedAt) ?? 0)));
  if (live) {
    const best = num(p.best);
    return {
      source: 'predictions',
      curve: p.curve,
      chosen,
      best: best === chosen ? undefined : best,
      at: p.at,
    };
  }
  const curve = Array.isArray(plan?.curve) ? plan.curve : [];
  return {
    source: curve.length > 0 ? 'plan' : 'none',
    curve,
    chosen,
    best: undefined,
    at: num(plan?.issuedAt),
  };
}

/** Mean uplink of a telemetry's samples, bits per second, or undefined without samples. */
export function uplinkBps(transfers) {
  if (!Array.isArray(transfers)) return undefined;
  let bytes = 0;
  let seconds = 0;
  for (const s of transfers) {
    if (num(s?.bytes) === undefined || num(s?.seconds) === undefined) continue;
    bytes += s.bytes;
    seconds += s.seconds;
  }
  return seconds > 0 ? (8 * bytes) / seconds : undefined;
}

/** Everything the page shows, fed message by message. */
export class DashboardState {
  /**
   * @param {string} root
   * @param {Record<string, string>} patterns
   * @param {() => number} now
   */
  constructor(root, patterns, now = () => Date.now()) {
    this.topics = topicMatcher(root, patterns);
    this.now = now;
    /** @type {Map<string, ReturnType<typeof newDevice>>} */
    this.devices = new Map();
    /** @type {Map<string, ReturnType<typeof newWorker>>} */
    this.workers = new Map();
    /** @type {Map<string, string>} */
    this.planners = new Map();
    /** Messages ignored (unknown topic, not JSON, wrong shape, too large), with the last reason. */
    this.ignored = 0;
    this.lastIgnored = '';
    /** Bumped on every change, so the view redraws only when something changed. */
    this.version = 0;
  }

  device(id) {
    let d = this.devices.get(id);
    if (!d) {
      d = newDevice(id);
      this.devices.set(id, d);
    }
    return d;
  }

  worker(id) {
    let w = this.workers.get(id);
    if (!w) {
      w = newWorker(id);
      this.workers.set(id, w);
    }
    return w;
  }

  ignore(why) {
    this.ignored++;
    this.lastIgnored = why;
  }

  /**
   * Applies one MQTT message.
   * @param {string} topic
   * @param {Uint8Array} payload
   */
  apply(topic, payload) {
    const m = this.topics.match(topic);
    if (!m) return this.ignore(`unknown topic ${topic}`);
    // An empty retained message clears retained state.
    if (payload.length === 0) return;
    if (payload.length > MAX_PAYLOAD_BYTES)
      return this.ignore(`${topic}: payload over ${MAX_PAYLOAD_BYTES} bytes`);
    let msg;
    try {
      msg = JSON.parse(new TextDecoder().decode(payload));
    } catch {
      return this.ignore(`${topic}: not JSON`);
    }
    if (!isObject(msg)) return this.ignore(`${topic}: not a JSON object`);
    const { name, params } = m;
    const handler = this[`on_${name}`];
    if (typeof handler !== 'function') return this.ignore(`${topic}: not shown`);
    handler.call(this, params, msg);
    this.version++;
  }

  on_plan({ device }, plan) {
    const cut = num(plan.cut?.index);
    if (cut === undefined || num(plan.seq) === undefined)
      return this.ignore(`plan of ${device}: no cut or seq`);
    const d = this.device(device);
    // A stale plan (lower seq from the same planner) does not replace a newer one.
    if (d.plan && d.plan.seq > plan.seq && d.plan.modelId === plan.modelId) return;
    d.plan = plan;
    d.cut.push(num(plan.issuedAt) ?? this.now(), [cut]);
    const bps = num(plan.inputs?.link?.bandwidthBps);
    if (bps !== undefined) d.uplink.push(num(plan.issuedAt) ?? this.now(), [undefined, bps / 1e6]);
  }

  on_devicePredictions({ device }, p) {
    const fine =
      num(p.seq) !== undefined &&
      num(p.chosen) !== undefined &&
      num(p.best) !== undefined &&
      num(p.at) !== undefined &&
      typeof p.modelId === 'string' &&
      Array.isArray(p.curve) &&
      p.curve.every((c) => isObject(c) && num(c.cut) !== undefined && num(c.totalMs) !== undefined);
    if (!fine) return this.ignore(`predictions of ${device}: no seq, chosen, best, at, modelId or curve`);
    const d = this.device(device);
    // QoS 0 messages of one planner arrive in order; an older one (another planner's clock) is not shown.
    if (d.predictions && d.predictions.at > p.at && d.predictions.modelId === p.modelId) return;
    d.predictions = p;
  }

  on_deviceProfile({ device }, profile) {
    this.device(device).profile = profile;
  }

  on_deviceStatus({ device }, status) {
    this.device(device).status = status.state === 'online' ? 'online' : 'offline';
  }

  on_deviceTelemetry({ device }, t) {
    const d = this.device(device);
    d.telemetry = t;
    const at = num(t.at) ?? this.now();
    const load = num(t.loadavg1) !== undefined && num(t.cores) ? t.loadavg1 / t.cores : undefined;
    if (load !== undefined) d.load.push(at, [load]);
    const bps = uplinkBps(t.transfers);
    if (bps !== undefined) d.uplink.push(at, [bps / 1e6, undefined]);
    if (num(t.fallbacks) !== undefined) d.fallbacks += t.fallbacks;
  }

  on_deviceFrames({ device }, f) {
    const d = this.device(device);
    const at = num(f.at) ?? this.now();
    d.lastFrame = f;
    if (typeof f.fallback === 'string') d.lastFallback = { at, reason: f.fallback, frame: f.frame };
    if (num(f.fps) !== undefined) d.frames.push(at, [f.fps]);
    const head = num(f.headMs) ?? 0;
    const transfer = num(f.transferMs) ?? 0;
    const tail = num(f.tailMs) ?? 0;
    // Stacked: the top of each band is the sum of the stages below it.
    d.latency.push(at, [head + transfer + tail, head + transfer, head]);
  }

  on_workerStatus({ worker }, status) {
    this.worker(worker).status = status.state === 'online' ? 'online' : 'offline';
  }

  on_workerTelemetry({ worker }, t) {
    const w = this.worker(worker);
    const rate = num(t.servedPerSecond);
    if (rate !== undefined) w.throughput = rate;
    else if (w.prev && num(t.served) !== undefined && t.at > w.prev.at)
      w.throughput = (1000 * (t.served - w.prev.served)) / (t.at - w.prev.at);
    w.prev = { at: num(t.at) ?? this.now(), served: num(t.served) ?? 0 };
    w.telemetry = t;
  }

  on_plannerStatus({ planner }, status) {
    this.planners.set(planner, status.state === 'online' ? 'online' : 'offline');
  }
}

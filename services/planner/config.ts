/**
 * Settings of the planner.
 */
import { hostname } from 'node:os';
import { z } from 'zod';
import { parseRate } from '../../planning/link.ts';
import { type ConfigOf, schemas, setting } from '../../runtime/config.ts';
import { metricsPortSetting } from '../../runtime/metrics-setting.ts';
import { commonSettings } from '../../runtime/service-settings.ts';

const fraction = z.coerce
  .number({ message: 'expected a fraction such as 0.1' })
  .min(0, 'expected a fraction from 0 to 1')
  .max(1, 'expected a fraction from 0 to 1');

/** Settings table of `edgecut planner`. */
export const plannerSettings = {
  ...commonSettings,
  connectTimeoutMs: setting({
    env: 'MQTT_CONNECT_TIMEOUT_MS',
    flag: 'connect-timeout-ms',
    schema: schemas.positiveInt,
    default: '30000',
    doc: 'at start, give up with one line naming MQTT_URL when the broker cannot be reached for this long (ms)',
  }),
  plannerId: setting({
    env: 'PLANNER_ID',
    flag: 'planner-id',
    schema: z.union([z.literal('auto'), schemas.id], {
      message: 'expected auto or 1-64 characters from A-Z a-z 0-9 . _ -',
    }),
    default: 'auto',
    doc: 'id of this planner; auto = planner-<hostname>',
  }),
  cut: setting({
    env: 'PLAN_CUT',
    flag: 'cut',
    schema: z.string().regex(/^\S+$/, 'expected auto, middle, a cut index, or a node name'),
    default: 'auto',
    doc: 'auto runs Algorithm 1 per device; middle, a cut index or a node name fixes the cut for every device',
  }),
  objective: setting({
    env: 'PLAN_OBJECTIVE',
    flag: 'objective',
    schema: z.enum(['auto', 'latency', 'throughput', 'energy'], {
      message: 'expected auto, latency, throughput or energy',
    }),
    default: 'auto',
    doc:
      'auto (per device: throughput when it keeps more than one frame in flight, else latency), latency (one ' +
      'frame, the paper), throughput (pipelined stream: the slowest stage) or energy (device-side joules per ' +
      "frame; needs the edge preset's power figures)",
  }),
  edgeLoad: setting({
    env: 'EDGE_LOAD',
    flag: 'edge-load',
    schema: z.enum(['loadavg', 'measured', 'none'], { message: 'expected loadavg, measured or none' }),
    default: 'measured',
    doc: 'edge load factor: loadavg (paper Fig. 17), measured (head latency vs profile, reacts in seconds), none',
  }),
  bandwidth: setting({
    env: 'LINK_BANDWIDTH',
    flag: 'bandwidth',
    schema: z.string().transform((v, ctx) => {
      if (v === 'measure') return undefined;
      const r = parseRate(v);
      if (r === undefined)
        ctx.addIssue({
          code: 'custom',
          message: 'expected measure, or a rate such as 10mbps, 500kbps or 1gbps',
        });
      return r;
    }),
    default: 'measure',
    doc: 'link assumed until a device reports uplink samples; measure assumes none (the device runs everything itself until its link probe reports)',
  }),
  alphaMs: setting({
    env: 'LINK_ALPHA_MS',
    flag: 'alpha-ms',
    schema: schemas.ms,
    default: '0',
    doc: 'channel set-up time per packet (alpha), ms',
  }),
  mtu: setting({
    env: 'LINK_MTU',
    flag: 'mtu',
    schema: schemas.positiveInt,
    default: '1500',
    doc: 'packet size M, bytes',
  }),
  setupMs: setting({
    env: 'LINK_SETUP_MS',
    flag: 'setup-ms',
    schema: schemas.ms,
    default: '1',
    doc: 'fixed cost per message (broker hop), ms, until transfers are measured',
  }),
  minGain: setting({
    env: 'PLAN_MIN_GAIN',
    flag: 'min-gain',
    schema: fraction,
    default: '0.1',
    doc: 'hysteresis: relative gain a new cut must promise (0.1 = 10%)',
  }),
  holdMs: setting({
    env: 'PLAN_HOLD_MS',
    flag: 'hold-ms',
    schema: schemas.ms,
    default: '3000',
    doc: 'hysteresis: how long the gain must hold before switching, ms',
  }),
  prepareMs: setting({
    env: 'PLAN_PREPARE_MS',
    flag: 'prepare-ms',
    schema: schemas.ms,
    default: '20000',
    doc:
      'before moving a device to a new cut, ask the tail workers to load its tail and keep the cut in force until one ' +
      'reports it loaded, at most this long, ms (0: move at once)',
  }),
  tickMs: setting({
    env: 'PLAN_TICK_MS',
    flag: 'tick-ms',
    schema: schemas.positiveInt,
    default: '1000',
    doc: 're-evaluation period, ms',
  }),
  linkWindow: setting({
    env: 'LINK_WINDOW',
    flag: 'link-window',
    schema: schemas.positiveInt,
    default: '64',
    doc: 'transfer samples per device in the link fit’s sliding window',
  }),
  forgetMs: setting({
    env: 'PLAN_FORGET_MS',
    flag: 'forget-ms',
    schema: schemas.positiveInt,
    default: '600000',
    doc: 'a device silent this long (no profile, no telemetry) is forgotten, ms: memory is bounded by live devices',
  }),
  metricsPort: metricsPortSetting,
};

/** Parsed settings of `edgecut planner`. */
export type PlannerConfig = ConfigOf<typeof plannerSettings>;

/** Resolves the `auto` values. */
export function resolvePlanner(cfg: PlannerConfig) {
  return {
    ...cfg,
    plannerId:
      cfg.plannerId === 'auto' ? `planner-${hostname().replace(/[^A-Za-z0-9._-]/g, '-')}` : cfg.plannerId,
  };
}

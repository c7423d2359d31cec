/**
 * Settings of the edge-head.
 */
import { hostname } from 'node:os';
import { z } from 'zod';
import { emulationSettings, resolvePresets } from '../../measurement/device/emulation-settings.ts';
import { parseRateSchedule, type UplinkShape } from '../../measurement/shaping.ts';
import { ConfigError, type ConfigOf, schemas, setting } from '../../runtime/config.ts';
import { metricsPortSetting } from '../../runtime/metrics-setting.ts';
import { commonSettings, resolveWeightsDir, weightsDirSetting } from '../../runtime/service-settings.ts';
import { parseSourceSpec } from './frames.ts';
import { PreprocessSettingSchema } from './images.ts';

/** A string setting parsed by `parse`; `expected` is the one-line message when it returns undefined. */
function parsed<T>(parse: (v: string) => T | undefined, expected: string) {
  return z.string().transform((v, ctx) => {
    const out = parse(v);
    if (out === undefined) {
      ctx.addIssue({ code: 'custom', message: expected });
      return z.NEVER;
    }
    return out;
  });
}

const preprocessJson = z.string().transform((v, ctx) => {
  let raw: unknown;
  try {
    raw = JSON.parse(v);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'expected JSON, e.g. {"channels":"BGR","scale":1}' });
    return z.NEVER;
  }
  const r = PreprocessSettingSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    ctx.addIssue({ code: 'custom', message: `${issue?.path.join('.') || '(root)'}: ${issue?.message}` });
    return z.NEVER;
  }
  return r.data;
});

/** Settings table of `edgecut edge`. */
export const edgeSettings = {
  ...commonSettings,
  deviceId: setting({
    env: 'DEVICE_ID',
    flag: 'device-id',
    schema: z.union([z.literal('auto'), schemas.id], {
      message: 'expected auto or 1-64 characters from A-Z a-z 0-9 . _ -',
    }),
    default: 'auto',
    doc: 'id of this device; auto = edge-<hostname>',
  }),
  model: setting({
    env: 'MODEL',
    flag: 'model',
    schema: schemas.path,
    default: 'demo',
    doc: 'the ONNX model file to run, or demo (the demo CNN) or a zoo model name (squeezenet1.1, alexnet, ...; random weights), built in code and written to --models-dir',
  }),
  modelsDir: setting({
    env: 'MODELS_DIR',
    flag: 'models-dir',
    schema: schemas.path,
    default: './models',
    doc: 'where MODEL=demo or a zoo name writes the model built in code (the tail workers must see the same file)',
  }),
  source: setting({
    env: 'SOURCE',
    flag: 'source',
    schema: parsed(parseSourceSpec, 'expected synthetic, image:<file> or dir:<folder>'),
    default: 'synthetic',
    doc: 'frames from: synthetic (random pixels), image:<file> (one PNG/JPEG), dir:<folder> (its PNG/JPEG files in name order)',
  }),
  loop: setting({
    env: 'LOOP',
    flag: 'loop',
    schema: schemas.bool,
    default: 'true',
    doc: 'image and dir sources: start again after the last image (false: play them once)',
  }),
  preprocess: setting({
    env: 'PREPROCESS',
    flag: 'preprocess',
    schema: preprocessJson.optional(),
    doc: 'image preprocessing as JSON (channels RGB|BGR, size [h,w], scale, mean, std), over the model metadata edgecut.preprocess',
  }),
  labels: setting({
    env: 'LABELS',
    flag: 'labels',
    schema: schemas.path.optional(),
    doc: 'class names of the model output: a text file with one per line, or index,label lines (CSV); each frame then reports its top-1 class and probability. Unset: the model metadata edgecut.labels, if any',
  }),
  frames: setting({
    env: 'FRAMES',
    flag: 'frames',
    schema: schemas.count,
    default: '0',
    doc: 'stop after this many frames; 0 runs until the source ends or the edge is stopped',
  }),
  fps: setting({
    env: 'FPS',
    flag: 'fps',
    schema: z.coerce.number({ message: 'expected a number' }).min(0, 'expected a rate >= 0'),
    default: '0',
    doc: 'frame rate of the source; 0 = as fast as the pipeline takes frames',
  }),
  window: setting({
    env: 'WINDOW',
    flag: 'window',
    schema: schemas.positiveInt,
    default: '2',
    doc: 'frames in flight at once (pipelining: the next head runs while earlier frames are on the wire)',
  }),
  report: setting({
    env: 'REPORT',
    flag: 'report',
    schema: z.enum(['text', 'json'], { message: 'expected text or json' }),
    default: 'text',
    doc: 'per-frame output on stdout: text (one line per frame) or json (one JSON object per frame, for tools)',
  }),
  frameReports: setting({
    env: 'FRAME_REPORTS',
    flag: 'frame-reports',
    schema: schemas.bool,
    default: 'true',
    doc: 'publish each frame’s report (cut, stage times, fps, tail worker, top-1) on edgecut/v1/devices/<id>/frames for dashboards: QoS 0, at most 20 per second (the rest skipped, never the frames), never queued; false = none',
  }),
  threads: setting({
    env: 'ORT_THREADS',
    flag: 'threads',
    schema: schemas.positiveInt,
    default: '1',
    doc: 'onnxruntime intra-op threads (use the tail workers’ value for bit-identical results)',
  }),
  sessionCache: setting({
    env: 'SESSION_CACHE',
    flag: 'session-cache',
    schema: schemas.positiveInt,
    default: '4',
    doc: 'onnxruntime sessions kept on the device (the head of each cut, the tails for fallback, the whole model with VERIFY; least recently used go first): a device the planner moves across many cuts keeps a few, not all',
  }),
  weightsDir: weightsDirSetting,
  verify: setting({
    env: 'VERIFY',
    flag: 'verify',
    schema: schemas.bool,
    default: 'false',
    doc: 'also run the whole model locally and check every offloaded result against it',
  }),
  resultTimeoutMs: setting({
    env: 'RESULT_TIMEOUT_MS',
    flag: 'result-timeout-ms',
    schema: schemas.positiveInt,
    default: '5000',
    doc: 'deadline of a frame under a plan without predicted times, and the upper bound of derived deadlines',
  }),
  deadlineFactor: setting({
    env: 'DEADLINE_FACTOR',
    flag: 'deadline-factor',
    schema: z.coerce.number({ message: 'expected a number' }).min(1, 'expected a factor >= 1'),
    default: '3',
    doc: 'deadline = this x the plan’s predicted transfer + server ms (then clamped); later the device runs the tail itself',
  }),
  deadlineMinMs: setting({
    env: 'DEADLINE_MIN_MS',
    flag: 'deadline-min-ms',
    schema: schemas.ms,
    default: '250',
    doc: 'lower bound of deadlines derived from a plan’s prediction, in milliseconds',
  }),
  emulateUplink: setting({
    env: 'EMULATE_UPLINK',
    flag: 'emulate-uplink',
    schema: parsed(
      parseRateSchedule,
      'expected a bit rate like 10mbps, 512kbps, 2.5Mbit, or off; or a schedule like 100mbps,1mbps@20s,10mbps@40s',
    ),
    default: 'off',
    doc: 'EMULATION for experiments: shape what the device sends to this bit rate (off = the real link); rate,rate@time,... changes it over time (s or ms after start)',
  }),
  ...emulationSettings('the edge device'),
  emulateSetupMs: setting({
    env: 'EMULATE_SETUP_MS',
    flag: 'emulate-setup-ms',
    schema: schemas.ms,
    default: '0',
    doc: 'EMULATION for experiments: extra set-up delay before each message the device publishes, in milliseconds',
  }),
  planWaitMs: setting({
    env: 'PLAN_WAIT_MS',
    flag: 'plan-wait-ms',
    schema: schemas.count,
    default: '10000',
    doc: 'how long to wait for a first plan before running frames on the device alone',
  }),
  telemetryMs: setting({
    env: 'TELEMETRY_MS',
    flag: 'telemetry-ms',
    schema: schemas.positiveInt,
    default: '1000',
    doc: 'telemetry period in milliseconds',
  }),
  probeMs: setting({
    env: 'PROBE_MS',
    flag: 'probe-ms',
    schema: schemas.count,
    default: '15000',
    doc: 'while the plan offloads nothing, time a short burst of probe messages this often (ms) so the planner knows the uplink (also at start and after an upload slower than its deadline); 0 = never',
  }),
  profile: setting({
    env: 'EDGE_PROFILE',
    flag: 'profile',
    schema: schemas.path,
    default: 'measure',
    doc: 'the per-layer profile published for the planner: measure (profile the model at start) or a profile JSON file',
  }),
  profileRuns: setting({
    env: 'PROFILE_RUNS',
    flag: 'profile-runs',
    schema: schemas.positiveInt,
    default: '10',
    doc: 'timed runs per layer when the profile is measured at start',
  }),
  seed: setting({
    env: 'SEED',
    flag: 'seed',
    schema: schemas.count,
    default: '1',
    doc: 'seed of the synthetic source',
  }),
  metricsPort: metricsPortSetting,
  metricsLingerMs: setting({
    env: 'METRICS_LINGER_MS',
    flag: 'metrics-linger-ms',
    schema: schemas.count,
    default: '0',
    doc: 'after the last frame, keep serving /metrics this long (or until a signal) so a last scrape sees the final counts',
  }),
};

/** Parsed settings of `edgecut edge`. */
export type EdgeConfig = ConfigOf<typeof edgeSettings>;

/**
 * Resolves the `auto` values and checks what one setting alone cannot: ConfigError (one line) when settings
 * contradict each other or name an unknown preset.
 */
export function resolveEdge(cfg: EdgeConfig) {
  if (cfg.deadlineMinMs > cfg.resultTimeoutMs)
    throw new ConfigError(
      `DEADLINE_MIN_MS=${cfg.deadlineMinMs} is not allowed: it exceeds RESULT_TIMEOUT_MS=${cfg.resultTimeoutMs}, the upper bound of deadlines`,
    );
  const presets = resolvePresets(cfg);
  const { rateBps, steps } = cfg.emulateUplink;
  const uplink: UplinkShape | undefined =
    rateBps > 0 || steps.length > 0 || cfg.emulateSetupMs > 0
      ? { rateBps, setupMs: cfg.emulateSetupMs, ...(steps.length > 0 ? { steps } : {}) }
      : undefined;
  return {
    ...cfg,
    deviceId: cfg.deviceId === 'auto' ? `edge-${hostname().replace(/[^A-Za-z0-9._-]/g, '-')}` : cfg.deviceId,
    uplink,
    presetList: presets,
    weightsDir: resolveWeightsDir(cfg.weightsDir),
  };
}

/** Settings of `edgecut edge` after {@link resolveEdge}. */
export type ResolvedEdgeConfig = ReturnType<typeof resolveEdge>;

/**
 * Settings of the edge-head.
 */
import { hostname } from 'node:os';
import { z } from 'zod';
import { type ConfigOf, schemas, setting } from '../../common/config.ts';
import { commonSettings } from '../../common/service-settings.ts';

/** Settings table of `edgecut edge`. */
export const edgeSettings = {
  ...commonSettings,
  deviceId: setting({
    env: 'DEVICE_ID',
    flag: 'device-id',
    schema: z.union([z.literal('auto'), schemas.id]),
    default: 'auto',
    doc: 'id of this device; auto = edge-<hostname>',
  }),
  model: setting({
    env: 'MODEL',
    flag: 'model',
    schema: schemas.path,
    default: 'demo',
    doc: 'the ONNX model file to run, or demo (the demo CNN, built in code and written to --models-dir)',
  }),
  modelsDir: setting({
    env: 'MODELS_DIR',
    flag: 'models-dir',
    schema: schemas.path,
    default: './models',
    doc: 'where MODEL=demo writes the demo model (the tail workers must see the same file)',
  }),
  frames: setting({
    env: 'FRAMES',
    flag: 'frames',
    schema: schemas.count,
    default: '0',
    doc: 'stop after this many frames; 0 runs until stopped',
  }),
  fps: setting({
    env: 'FPS',
    flag: 'fps',
    schema: z.coerce.number({ message: 'expected a number' }).min(0, 'expected a rate >= 0'),
    default: '0',
    doc: 'synthetic camera frame rate; 0 = as fast as the pipeline takes frames',
  }),
  window: setting({
    env: 'WINDOW',
    flag: 'window',
    schema: schemas.positiveInt,
    default: '2',
    doc: 'frames in flight at once (pipelining: the next head runs while earlier frames are on the wire)',
  }),
  threads: setting({
    env: 'ORT_THREADS',
    flag: 'threads',
    schema: schemas.positiveInt,
    default: '1',
    doc: 'onnxruntime intra-op threads (use the tail workers’ value for bit-identical results)',
  }),
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
    doc: 'no result after this long: the device runs the tail itself',
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
    doc: 'seed of the synthetic camera',
  }),
};

/** Parsed settings of `edgecut edge`. */
export type EdgeConfig = ConfigOf<typeof edgeSettings>;

/** Resolves the `auto` values. */
export function resolveEdge(cfg: EdgeConfig) {
  return {
    ...cfg,
    deviceId: cfg.deviceId === 'auto' ? `edge-${hostname().replace(/[^A-Za-z0-9._-]/g, '-')}` : cfg.deviceId,
  };
}

/**
 * Settings of the server-tail worker.
 */
import { statSync } from 'node:fs';
import { cpus, hostname } from 'node:os';
import { z } from 'zod';
import { emulationSettings, resolvePresets } from '../../measurement/device/emulation-settings.ts';
import { ConfigError, type ConfigOf, schemas, setting } from '../../runtime/config.ts';
import { metricsPortSetting } from '../../runtime/metrics-setting.ts';
import { commonSettings, resolveWeightsDir, weightsDirSetting } from '../../runtime/service-settings.ts';
import { TAIL_GROUP } from '../../schemas/topics.ts';

/** `auto` or a value of `inner`; `what` says what else is allowed. */
const auto = <T extends z.ZodType>(inner: T, what: string) =>
  z.union([z.literal('auto'), inner], { message: `expected auto or ${what}` });

/** Settings table of `edgecut tail`. */
export const tailSettings = {
  ...commonSettings,
  connectTimeoutMs: setting({
    env: 'MQTT_CONNECT_TIMEOUT_MS',
    flag: 'connect-timeout-ms',
    schema: schemas.positiveInt,
    default: '30000',
    doc: 'at start, give up with one line naming MQTT_URL when the broker cannot be reached for this long (ms)',
  }),
  workerId: setting({
    env: 'WORKER_ID',
    flag: 'worker-id',
    schema: auto(schemas.id, '1-64 characters from A-Z a-z 0-9 . _ -'),
    default: 'auto',
    doc: 'id of this worker; auto = tail-<hostname>-<pid>',
  }),
  modelsDir: setting({
    env: 'MODELS_DIR',
    flag: 'models-dir',
    schema: schemas.path,
    default: './models',
    doc: 'directory of *.onnx models, addressed by content hash',
  }),
  group: setting({
    env: 'TAIL_GROUP',
    flag: 'group',
    schema: z.union([z.literal(''), schemas.id]),
    default: TAIL_GROUP,
    doc: 'shared-subscription group ($share/<group>/...): each request goes to one worker of the group; empty subscribes plainly (every worker answers)',
  }),
  concurrency: setting({
    env: 'TAIL_CONCURRENCY',
    flag: 'concurrency',
    schema: auto(schemas.positiveInt, 'a whole number >= 1'),
    default: 'auto',
    doc: 'inferences at once; auto = one per core',
  }),
  threads: setting({
    env: 'ORT_THREADS',
    flag: 'threads',
    schema: schemas.positiveInt,
    default: '1',
    doc: 'onnxruntime intra-op threads per inference',
  }),
  maxRequestBytes: setting({
    env: 'MAX_REQUEST_BYTES',
    flag: 'max-request-bytes',
    schema: schemas.positiveInt,
    default: String(8 * 1024 * 1024),
    doc: 'largest request accepted, in bytes (as the embedded broker’s BROKER_MAX_PACKET_BYTES: the largest tensor crossing a cut of Inception-v3, 5.3 MiB, with room)',
  }),
  deviceQueue: setting({
    env: 'TAIL_DEVICE_QUEUE',
    flag: 'device-queue',
    schema: schemas.positiveInt,
    default: '32',
    doc: 'requests one device may have waiting on this worker; more are refused with an overloaded reply (the device runs them itself), so one robot cannot starve the others',
  }),
  sessionCache: setting({
    env: 'SESSION_CACHE',
    flag: 'session-cache',
    schema: schemas.positiveInt,
    default: '8',
    doc: 'tail sessions kept per worker (LRU over model and cut)',
  }),
  weightsDir: weightsDirSetting,
  profileRuns: setting({
    env: 'PROFILE_RUNS',
    flag: 'profile-runs',
    schema: schemas.count,
    default: '10',
    doc: 'timed runs per layer when profiling each model at start (published for the planner); 0 = no profiles',
  }),
  profiles: setting({
    env: 'TAIL_PROFILES',
    flag: 'profiles',
    schema: schemas.path,
    default: 'measure',
    doc: 'measure (profile each model at start) or a directory of profiles measured beforehand (edgecut profile MODEL --out FILE): a model whose content hash one names gets that profile, so every run emulates the same device',
  }),
  telemetryMs: setting({
    env: 'TELEMETRY_MS',
    flag: 'telemetry-ms',
    schema: schemas.positiveInt,
    default: '1000',
    doc: 'telemetry period in milliseconds',
  }),
  ...emulationSettings('this tail worker'),
  metricsPort: metricsPortSetting,
};

/** Parsed settings of `edgecut tail`. */
export type TailConfig = ConfigOf<typeof tailSettings>;

/** Resolves the `auto` values. */
export function resolveTail(cfg: TailConfig) {
  const presets = resolvePresets(cfg);
  if (cfg.emulateDevice.kind !== 'none' && cfg.profileRuns === 0)
    throw new ConfigError(
      'EMULATE_DEVICE needs PROFILE_RUNS >= 1: the emulated tail time comes from this host’s profile of each model',
    );
  const profilesDir = cfg.profiles === 'measure' ? undefined : cfg.profiles;
  if (profilesDir !== undefined && !statSync(profilesDir, { throwIfNoEntry: false })?.isDirectory())
    throw new ConfigError(
      `TAIL_PROFILES=${profilesDir} is not allowed: expected measure or a directory of profile JSON files`,
    );
  return {
    ...cfg,
    ...(profilesDir !== undefined ? { profilesDir } : {}),
    presetList: presets,
    workerId:
      cfg.workerId === 'auto'
        ? `tail-${hostname().replace(/[^A-Za-z0-9._-]/g, '-')}-${process.pid}`
        : cfg.workerId,
    concurrency: cfg.concurrency === 'auto' ? cpus().length : cfg.concurrency,
    weightsDir: resolveWeightsDir(cfg.weightsDir),
  };
}

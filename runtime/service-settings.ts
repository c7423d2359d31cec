/**
 * Settings every service shares: where the broker is, credentials, the CA to trust, and the log level.
 */
import { statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { schemas, setting } from './config.ts';
import { LOG_LEVELS } from './log.ts';

/** Linux's shared-memory file system, where the default directory goes when there is one. */
const SHM = '/dev/shm';

/**
 * The default directory of weight files (model/weight-files.ts), one per user: in shared memory (tmpfs) where the system has it, else under the temporary
 * directory. On this project's Linux hosts a session's weights mapped from an ext4 file ran slower now and then: 19 of
 * 200 runs of AlexNet's cut-13 tail took 30-70 ms instead of 8 (from tmpfs 1 of 200, as with the weights inside the
 * session). A tmpfs too small for a model (Docker gives containers 64 MB unless `shm_size` says otherwise) is one
 * warning, and that model's sessions hold their own weights.
 */
export function defaultWeightsDir(): string {
  const uid = process.getuid?.() ?? 'user';
  const base =
    process.platform === 'linux' && statSync(SHM, { throwIfNoEntry: false })?.isDirectory() ? SHM : tmpdir();
  return join(base, `edgecut-weights-${uid}`);
}

/** Settings common to every service. */
export const commonSettings = {
  mqttUrl: setting({
    env: 'MQTT_URL',
    flag: 'mqtt-url',
    schema: schemas.mqttUrl,
    default: 'mqtt://127.0.0.1:1883',
    doc: 'broker URL (mqtt://, mqtts://, ws://, wss://)',
  }),
  username: setting({ env: 'MQTT_USERNAME', flag: 'username', schema: z.string(), doc: 'broker user name' }),
  password: setting({ env: 'MQTT_PASSWORD', flag: 'password', schema: z.string(), doc: 'broker password' }),
  mqttCaFile: setting({
    env: 'MQTT_CA_FILE',
    flag: 'mqtt-ca-file',
    schema: schemas.path,
    doc: 'PEM file of the CA to trust for mqtts:// and wss:// (default: the system CAs)',
  }),
  logLevel: setting({
    env: 'LOG_LEVEL',
    flag: 'log-level',
    schema: z.enum(LOG_LEVELS, { message: `expected one of ${LOG_LEVELS.join(', ')}` }),
    default: 'info',
    doc: `log level: ${LOG_LEVELS.join(', ')}`,
  }),
};

/**
 * Where services that run models keep weight files (model/weight-files.ts): `auto` (a directory of the user's own
 * under the system's temporary directory), `none` (every session holds its own copy of its weights), or a directory.
 */
export const weightsDirSetting = setting({
  env: 'WEIGHTS_DIR',
  flag: 'weights-dir',
  schema: z.string().min(1, { message: 'expected auto, none or a directory' }),
  default: 'auto',
  doc: 'directory of weight files, a copy of each model that sessions map instead of holding the weights themselves (a large tail loads in tens of ms, and the sessions of one model share its weights); auto = /dev/shm/edgecut-weights-<uid> (shared memory; the temporary directory where there is none), none = each session holds its own',
});

/** The weights directory a `weightsDir` setting names; undefined for `none`. */
export function resolveWeightsDir(value: string): string | undefined {
  if (value === 'none') return undefined;
  return value === 'auto' ? defaultWeightsDir() : value;
}

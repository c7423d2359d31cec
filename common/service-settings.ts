/**
 * Settings every service shares: where the broker is, credentials, the CA to trust, and the log level.
 */
import { z } from 'zod';
import { schemas, setting } from './config.ts';
import { LOG_LEVELS } from './log.ts';

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

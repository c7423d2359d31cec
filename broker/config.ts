/**
 * Settings of the embedded broker.
 */
import { z } from 'zod';
import { type ConfigOf, schemas, setting } from '../common/config.ts';
import { commonSettings } from '../common/service-settings.ts';

/** Settings table of `edgecut broker`. */
export const brokerSettings = {
  host: setting({
    env: 'BROKER_HOST',
    flag: 'host',
    schema: z.string().min(1),
    default: '0.0.0.0',
    doc: 'interface to bind',
  }),
  port: setting({
    env: 'BROKER_PORT',
    flag: 'port',
    schema: schemas.port,
    default: '1883',
    doc: 'MQTT TCP port (0 = any free port)',
  }),
  wsPort: setting({
    env: 'BROKER_WS_PORT',
    flag: 'ws-port',
    schema: schemas.port,
    default: '8083',
    doc: 'MQTT-over-WebSocket port (0 = any free port)',
  }),
  sharedQueue: setting({
    env: 'BROKER_SHARED_QUEUE',
    flag: 'shared-queue',
    schema: schemas.positiveInt,
    default: '1000',
    doc: 'QoS 1 messages a shared-subscription group holds while none of its members is connected',
  }),
  logLevel: commonSettings.logLevel,
};

/** Parsed settings of `edgecut broker`. */
export type BrokerConfig = ConfigOf<typeof brokerSettings>;

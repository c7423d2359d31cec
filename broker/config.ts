/**
 * Settings of the embedded broker.
 */
import { z } from 'zod';
import { type ConfigOf, schemas, setting } from '../runtime/config.ts';
import { metricsPortSetting } from '../runtime/metrics-setting.ts';
import { commonSettings } from '../runtime/service-settings.ts';
import { DEFAULT_LIMITS } from './limits.ts';

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
    doc: 'MQTT-over-WebSocket port (0 = any free port); unset = no WebSocket listener (compose.yaml sets 8083)',
  }),
  tlsPort: setting({
    env: 'BROKER_TLS_PORT',
    flag: 'tls-port',
    schema: schemas.port,
    doc: 'MQTT-over-TLS port (0 = any free port); unset = no TLS listener; needs BROKER_TLS_CERT and BROKER_TLS_KEY',
  }),
  tlsCert: setting({
    env: 'BROKER_TLS_CERT',
    flag: 'tls-cert',
    schema: schemas.path,
    doc: 'PEM file of the TLS server certificate (and any intermediates after it)',
  }),
  tlsKey: setting({
    env: 'BROKER_TLS_KEY',
    flag: 'tls-key',
    schema: schemas.path,
    doc: 'PEM file of the TLS private key',
  }),
  tlsOnly: setting({
    env: 'BROKER_TLS_ONLY',
    flag: 'tls-only',
    schema: schemas.bool,
    default: 'false',
    doc: 'only the TLS listener: no plain TCP or WebSocket listener, so no password crosses the network in clear text; needs BROKER_TLS_PORT',
  }),
  users: setting({
    env: 'BROKER_USERS',
    flag: 'users',
    schema: schemas.path,
    doc: 'users file (JSON, written by edgecut users add): enforces passwords and per-role topic access; unset = anonymous clients with full access',
  }),
  dataDir: setting({
    env: 'BROKER_DATA_DIR',
    flag: 'data-dir',
    schema: schemas.path,
    doc: 'directory of the retained-message store (plans, profiles, statuses survive a broker restart; compose.yaml keeps it on a named volume); unset = retained messages in memory only',
  }),
  sharedQueue: setting({
    env: 'BROKER_SHARED_QUEUE',
    flag: 'shared-queue',
    schema: schemas.positiveInt,
    default: '1000',
    doc: 'QoS 1 messages a shared-subscription group holds while none of its members is connected or every member has its in-flight bound (over it, the oldest message of the topic with the most waiting is dropped)',
  }),
  sharedInflight: setting({
    env: 'BROKER_SHARED_INFLIGHT',
    flag: 'shared-inflight',
    schema: schemas.positiveInt,
    default: '8',
    doc: "QoS 1 messages of shared subscriptions a member (a tail worker) may have unacknowledged; the rest wait in the broker in per-topic (per-device) queues served in turns, so one robot's burst does not fill a worker's socket ahead of the others",
  }),
  maxPacketBytes: setting({
    env: 'BROKER_MAX_PACKET_BYTES',
    flag: 'max-packet-bytes',
    schema: schemas.positiveInt,
    default: String(DEFAULT_LIMITS.maxPacketBytes),
    doc: 'largest MQTT packet a connected client may send, bytes (larger: the connection is closed before the packet is buffered); the default holds the largest tensor crossing a cut of Inception-v3',
  }),
  preConnectBytes: setting({
    env: 'BROKER_PRE_CONNECT_BYTES',
    flag: 'pre-connect-bytes',
    schema: schemas.positiveInt,
    default: String(DEFAULT_LIMITS.preConnectBytes),
    doc: 'largest packet before the CONNECT is accepted, bytes',
  }),
  maxRetainedBytes: setting({
    env: 'BROKER_MAX_RETAINED_BYTES',
    flag: 'max-retained-bytes',
    schema: schemas.positiveInt,
    default: String(DEFAULT_LIMITS.maxRetainedBytes),
    doc: 'largest retained payload per topic, bytes (larger: acknowledged and dropped)',
  }),
  connectTimeoutMs: setting({
    env: 'BROKER_CONNECT_TIMEOUT_MS',
    flag: 'connect-timeout-ms',
    schema: schemas.positiveInt,
    default: String(DEFAULT_LIMITS.connectTimeoutMs),
    doc: 'a socket that sends no CONNECT within this time is closed, ms',
  }),
  maxConnectionsPerAddress: setting({
    env: 'BROKER_MAX_CONNECTIONS_PER_ADDRESS',
    flag: 'max-connections-per-address',
    schema: schemas.positiveInt,
    default: String(DEFAULT_LIMITS.maxConnectionsPerAddress),
    doc: 'connections open at once from one client address',
  }),
  connectsPerSecond: setting({
    env: 'BROKER_CONNECTS_PER_SECOND',
    flag: 'connects-per-second',
    schema: schemas.positiveInt,
    default: String(DEFAULT_LIMITS.connectsPerSecond),
    doc: 'new connections per second from one client address (bursts of twice as many pass)',
  }),
  logLevel: commonSettings.logLevel,
  metricsPort: metricsPortSetting,
};

/** Parsed settings of `edgecut broker`. */
export type BrokerConfig = ConfigOf<typeof brokerSettings>;

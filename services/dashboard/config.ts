/**
 * Settings of `edgecut dashboard`: where it listens, which MQTT-over-WebSocket URL the browser should use, and the
 * read-only credentials (role `viewer`, broker/users.ts) it hands to the page.
 */
import { z } from 'zod';
import { type ConfigOf, schemas, setting } from '../../runtime/config.ts';
import { metricsPortSetting } from '../../runtime/metrics-setting.ts';
import { commonSettings } from '../../runtime/service-settings.ts';

/** The broker's WebSocket port the page assumes when DASHBOARD_MQTT_URL is unset (compose.yaml's BROKER_WS_PORT). */
export const DEFAULT_BROKER_WS_PORT = 8083;

/** A ws:// or wss:// URL with a host (the browser speaks MQTT only over WebSocket). */
const wsUrl = z.string().refine((v) => {
  try {
    const u = new URL(v);
    return (u.protocol === 'ws:' || u.protocol === 'wss:') && u.hostname !== '';
  } catch {
    return false;
  }
}, 'expected a WebSocket URL like ws://host:8083 or wss://host:8084 (schemes ws, wss)');

/** Settings table of `edgecut dashboard`. */
export const dashboardSettings = {
  port: setting({
    env: 'DASHBOARD_PORT',
    flag: 'port',
    schema: schemas.port,
    default: '8080',
    doc: 'HTTP port of the page (0 = any free port)',
  }),
  host: setting({
    env: 'DASHBOARD_HOST',
    flag: 'host',
    schema: z.string().min(1, 'expected an interface address such as 0.0.0.0 or 127.0.0.1'),
    default: '0.0.0.0',
    doc: 'interface the page is served on',
  }),
  brokerWsPort: setting({
    env: 'DASHBOARD_BROKER_WS_PORT',
    flag: 'broker-ws-port',
    schema: schemas.port.refine((p) => p > 0, 'expected a port from 1 to 65535'),
    default: String(DEFAULT_BROKER_WS_PORT),
    doc: "when DASHBOARD_MQTT_URL is unset, the page connects to ws://<host the page was loaded from>:<this port> (the broker's BROKER_WS_PORT)",
  }),
  mqttWsUrl: setting({
    env: 'DASHBOARD_MQTT_URL',
    flag: 'mqtt-ws-url',
    schema: wsUrl,
    doc: 'broker URL the browser connects to (MQTT over WebSocket), e.g. wss://mqtt.example:8084/mqtt; unset = ws://<host the page was loaded from>:DASHBOARD_BROKER_WS_PORT',
  }),
  username: setting({
    env: 'DASHBOARD_USERNAME',
    flag: 'username',
    schema: z.string().min(1, 'expected a user name').max(256, 'expected at most 256 characters'),
    doc: 'broker user the page logs in as (role viewer: reads edgecut/v1/, publishes nothing); unset = no login',
  }),
  password: setting({
    env: 'DASHBOARD_PASSWORD',
    flag: 'password',
    schema: z.string().max(1024, 'expected at most 1024 characters'),
    doc: "that user's password; served to every browser that loads the page, so give it only a viewer's",
  }),
  logLevel: commonSettings.logLevel,
  metricsPort: metricsPortSetting,
};

/** Parsed settings of `edgecut dashboard`. */
export type DashboardConfig = ConfigOf<typeof dashboardSettings>;

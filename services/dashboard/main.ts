/**
 * `edgecut dashboard`: the live dashboard as a process (services/dashboard/server.ts serves it; the page in
 * public/ reads the broker over MQTT over WebSocket).
 */
import { runComponent } from '../../runtime/component.ts';
import { createLogger } from '../../runtime/log.ts';
import { MetricSet, Monitored } from '../../runtime/metrics.ts';
import type { DashboardConfig } from './config.ts';
import { DashboardServer } from './server.ts';

/** The dashboard's metrics: requests answered, by status. */
export function dashboardMetrics() {
  const set = new MetricSet();
  const requests = set.counter('edgecut_dashboard_requests_total', 'HTTP requests answered, by status', [
    'status',
  ]);
  return { set, requests };
}

/** Runs the dashboard until SIGINT/SIGTERM. */
export async function runDashboard(cfg: DashboardConfig): Promise<void> {
  const logger = createLogger(cfg.logLevel, { service: 'dashboard' });
  const metrics = dashboardMetrics();
  const server = new DashboardServer({
    port: cfg.port,
    host: cfg.host,
    mqttWsUrl: cfg.mqttWsUrl,
    brokerWsPort: cfg.brokerWsPort,
    username: cfg.username,
    password: cfg.password,
    logger,
    onRequest: (status) => metrics.requests.inc({ status: String(status) }),
  });
  const served = new Monitored(server, {
    port: cfg.metricsPort,
    registry: metrics.set.registry,
    service: 'dashboard',
    logger,
  });
  await runComponent('dashboard', served, logger, () => ({
    port: server.port,
    url: `http://${cfg.host === '0.0.0.0' || cfg.host === '::' ? 'localhost' : cfg.host}:${server.port}/`,
    ...served.server.readyDetails(),
  }));
}

/**
 * `edgecut planner`: the planner as a process.
 */

import { systemClock } from '../../runtime/clock.ts';
import { runComponent } from '../../runtime/component.ts';
import { createLogger } from '../../runtime/log.ts';
import { Monitored } from '../../runtime/metrics.ts';
import { type PlannerConfig, resolvePlanner } from './config.ts';
import { PlannerMetrics } from './metrics.ts';
import { Planner } from './planner.ts';

/** Runs the planner until SIGINT/SIGTERM. */
export async function runPlanner(config: PlannerConfig): Promise<void> {
  const cfg = resolvePlanner(config);
  const logger = createLogger(cfg.logLevel, { service: 'planner', id: cfg.plannerId });
  const metrics = new PlannerMetrics();
  const planner = new Planner(cfg, logger, systemClock, metrics);
  const served = new Monitored(planner, {
    port: cfg.metricsPort,
    registry: metrics.set.registry,
    service: 'planner',
    logger,
    check: () => (planner.connected ? undefined : 'not connected to the broker'),
  });
  await runComponent('planner', served, logger, () => ({
    id: cfg.plannerId,
    ...served.server.readyDetails(),
  }));
}

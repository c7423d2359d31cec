/**
 * `edgecut tail`: one tail worker as a process.
 */

import { systemClock } from '../../runtime/clock.ts';
import { runComponent } from '../../runtime/component.ts';
import { createLogger } from '../../runtime/log.ts';
import { Monitored } from '../../runtime/metrics.ts';
import { resolveTail, type TailConfig } from './config.ts';
import { TailMetrics } from './metrics.ts';
import { TailWorker } from './worker.ts';

/** Runs a tail worker until SIGINT/SIGTERM. */
export async function runTail(config: TailConfig): Promise<void> {
  const cfg = resolveTail(config);
  const logger = createLogger(cfg.logLevel, { service: 'tail', id: cfg.workerId });
  const metrics = new TailMetrics(cfg.workerId);
  const worker = new TailWorker(cfg, logger, systemClock, metrics);
  const served = new Monitored(worker, {
    port: cfg.metricsPort,
    registry: metrics.set.registry,
    service: 'tail',
    logger,
    check: () => (worker.connected ? undefined : 'not connected to the broker'),
  });
  await runComponent('tail', served, logger, () => ({ id: cfg.workerId, ...served.server.readyDetails() }));
}

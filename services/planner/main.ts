/**
 * `edgecut planner`: the planner as a process.
 */
import { runComponent } from '../../cli/service.ts';
import { createLogger } from '../../common/log.ts';
import { type PlannerConfig, resolvePlanner } from './config.ts';
import { Planner } from './planner.ts';

/** Runs the planner until SIGINT/SIGTERM. */
export async function runPlanner(config: PlannerConfig): Promise<void> {
  const cfg = resolvePlanner(config);
  const logger = createLogger(cfg.logLevel, { service: 'planner', id: cfg.plannerId });
  await runComponent('planner', new Planner(cfg, logger), logger, () => ({ id: cfg.plannerId }));
}

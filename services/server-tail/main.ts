/**
 * `edgecut tail`: one tail worker as a process.
 */
import { runComponent } from '../../cli/service.ts';
import { createLogger } from '../../common/log.ts';
import { resolveTail, type TailConfig } from './config.ts';
import { TailWorker } from './worker.ts';

/** Runs a tail worker until SIGINT/SIGTERM. */
export async function runTail(config: TailConfig): Promise<void> {
  const cfg = resolveTail(config);
  const logger = createLogger(cfg.logLevel, { service: 'tail', id: cfg.workerId });
  const worker = new TailWorker(cfg, logger);
  await runComponent('tail', worker, logger, () => ({ id: cfg.workerId }));
}

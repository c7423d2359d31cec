/**
 * `edgecut broker`: the embedded broker as a process.
 */
import { runComponent } from '../cli/service.ts';
import { createLogger } from '../common/log.ts';
import { EmbeddedBroker } from './broker.ts';
import type { BrokerConfig } from './config.ts';

/** Runs the embedded broker until SIGINT/SIGTERM. */
export async function runBroker(cfg: BrokerConfig): Promise<void> {
  const logger = createLogger(cfg.logLevel, { service: 'broker' });
  const broker = new EmbeddedBroker({
    host: cfg.host,
    port: cfg.port,
    wsPort: cfg.wsPort,
    logger,
    shared: { maxQueued: cfg.sharedQueue },
  });
  await runComponent('broker', broker, logger, () => ({ port: broker.port, wsPort: broker.wsPort }));
}

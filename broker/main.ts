/**
 * `edgecut broker`: the embedded broker as a process.
 */
import { runComponent } from '../runtime/component.ts';
import { createLogger } from '../runtime/log.ts';
import { Monitored } from '../runtime/metrics.ts';
import { EmbeddedBroker } from './broker.ts';
import type { BrokerConfig } from './config.ts';
import { BrokerMetrics } from './metrics.ts';

/** Runs the embedded broker until SIGINT/SIGTERM. */
export async function runBroker(cfg: BrokerConfig): Promise<void> {
  const logger = createLogger(cfg.logLevel, { service: 'broker' });
  const broker = new EmbeddedBroker({
    host: cfg.host,
    port: cfg.port,
    wsPort: cfg.wsPort,
    logger,
    shared: { maxQueued: cfg.sharedQueue, maxInflight: cfg.sharedInflight },
    usersFile: cfg.users,
    tls: { port: cfg.tlsPort, certFile: cfg.tlsCert, keyFile: cfg.tlsKey },
    tlsOnly: cfg.tlsOnly,
    dataDir: cfg.dataDir,
    limits: {
      maxPacketBytes: cfg.maxPacketBytes,
      preConnectBytes: cfg.preConnectBytes,
      maxRetainedBytes: cfg.maxRetainedBytes,
      connectTimeoutMs: cfg.connectTimeoutMs,
      maxConnectionsPerAddress: cfg.maxConnectionsPerAddress,
      connectsPerSecond: cfg.connectsPerSecond,
    },
  });
  const metrics = new BrokerMetrics(broker);
  const observed = {
    async start() {
      await broker.start();
      const aedes = broker.events;
      if (aedes) metrics.attach(aedes);
    },
    stop: () => broker.stop(),
  };
  const served = new Monitored(observed, {
    port: cfg.metricsPort,
    registry: metrics.set.registry,
    service: 'broker',
    logger,
  });
  await runComponent('broker', served, logger, () => ({
    port: cfg.tlsOnly ? undefined : broker.port,
    wsPort: broker.wsPort,
    tlsPort: broker.tlsPort,
    ...served.server.readyDetails(),
  }));
}

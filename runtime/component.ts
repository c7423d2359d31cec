/**
 * Runs one long-lived component as a process: starts it, prints one `ready` JSON line on stdout (what `edgecut
 * demo` and `edgecut stack up` wait for), and stops it cleanly on SIGINT/SIGTERM after the work in flight
 * finishes, also when the signal comes while it is still starting. A second signal exits at once.
 */
import type { Logger } from './log.ts';

/** Something with a lifecycle. */
export interface Component {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Resolves on the first SIGINT or SIGTERM; a second one exits the process at once. */
export function untilSignal(logger: Logger): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let seen = false;
    const onSignal = (sig: NodeJS.Signals) => {
      if (seen) {
        logger.warn({ signal: sig }, 'second signal: exiting now');
        process.exit(130);
      }
      seen = true;
      logger.info({ signal: sig }, 'stopping after the work in flight');
      resolve(sig);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

/** Prints the ready line. */
export function announceReady(service: string, details: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ ready: service, pid: process.pid, ...details })}\n`);
}

/** Starts a component, announces it, and stops it on a signal. */
export async function runComponent(
  service: string,
  component: Component,
  logger: Logger,
  details: () => Record<string, unknown> = () => ({}),
): Promise<void> {
  const signal = untilSignal(logger);
  const started = component.start();
  // A signal while still starting (e.g. waiting for an unreachable broker) stops it too: the first one counts.
  const first = await Promise.race([
    started.then(() => 'started' as const),
    signal.then(() => 'signal' as const),
  ]);
  if (first === 'signal') {
    started.catch(() => undefined);
    await component.stop();
    return;
  }
  announceReady(service, details());
  await signal;
  await component.stop();
}

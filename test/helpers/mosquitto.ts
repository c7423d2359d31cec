/**
 * Test helpers: a real Mosquitto (Debian's `/usr/sbin/mosquitto`) on a free loopback port, as the reference broker
 * that the embedded broker's behaviour is compared with, and `forEachBroker` to run one test body against both.
 *
 * Under CI (`CI=true`) a missing binary fails the Mosquitto tests; elsewhere they are registered as skipped, with the
 * reason in their title. `MOSQUITTO_BIN` overrides the binary's path.
 */
import type { Socket } from 'node:net';
import test, { type ExecutionContext } from 'ava';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { hasMosquitto, launchMosquitto, MOSQUITTO_BIN, type MosquittoHandle } from '../../bench/mosquitto.ts';
import { startBroker } from './broker.ts';

export { hasMosquitto, MOSQUITTO_BIN, type MosquittoHandle };

/** True under CI, where a missing Mosquitto is a failure rather than a skip. */
const underCi = process.env.CI === 'true';

/**
 * Starts Mosquitto on a free loopback port (or the given one, to restart a broker where clients expect it), waits
 * until it accepts connections, and stops it at teardown. The process launch lives in bench/mosquitto.ts, which the
 * benchmarks share.
 */
export async function startMosquitto(
  t: ExecutionContext,
  opts: { port?: number } = {},
): Promise<MosquittoHandle> {
  const handle = await launchMosquitto(opts);
  t.teardown(handle.stop);
  return handle;
}

/** The brokers `forEachBroker` runs a test body on. */
export type BrokerName = 'aedes' | 'mosquitto';

/** Options of {@link forEachBroker}. */
export interface ForEachBrokerOptions {
  /**
   * Brokers known to deviate, with the reason: their test is registered with `test.failing`, so it documents the
   * deviation and turns red the day the broker conforms.
   */
  deviates?: Partial<Record<BrokerName, string>>;
}

/**
 * Registers one test per broker, titled `<title> [aedes]` and `<title> [mosquitto]`; each gets the URL of a fresh
 * broker of its kind on a free loopback port, stopped at teardown.
 */
export function forEachBroker(
  title: string,
  fn: (t: ExecutionContext, url: string, broker: BrokerName) => Promise<void>,
  opts: ForEachBrokerOptions = {},
): void {
  const register = (name: BrokerName, body: (t: ExecutionContext) => Promise<void>) => {
    // A missing binary under CI must fail, which a `test.failing` would turn into a pass.
    const reason = name === 'mosquitto' && !hasMosquitto ? undefined : opts.deviates?.[name];
    if (reason) test.failing(`${title} [${name}] (known deviation: ${reason})`, body);
    else test(`${title} [${name}]`, body);
  };
  register('aedes', async (t) => {
    const broker = await startBroker(t);
    await fn(t, broker.url, 'aedes');
  });
  if (!hasMosquitto && !underCi) {
    test.skip(`${title} [mosquitto] (skipped: ${MOSQUITTO_BIN} not installed)`, () => undefined);
    return;
  }
  register('mosquitto', async (t) => {
    const mosquitto = await startMosquitto(t);
    await fn(t, mosquitto.url, 'mosquitto');
  });
}

/** An mqtt.js client with TCP_NODELAY (and no reconnects), ended at teardown. */
export async function connectNoDelay(
  t: ExecutionContext,
  url: string,
  opts: IClientOptions = {},
): Promise<MqttClient> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, ...opts });
  t.teardown(() => client.endAsync(true));
  client.on('connect', () => (client.stream as Partial<Socket>).setNoDelay?.(true));
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  return client;
}

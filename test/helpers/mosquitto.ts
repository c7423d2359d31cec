/**
 * Test helpers: a real Mosquitto (Debian's `/usr/sbin/mosquitto`) on a free loopback port, as the reference broker
 * that the embedded broker's behaviour is compared with, and `forEachBroker` to run one test body against both.
 *
 * Under CI (`CI=true`) a missing binary fails the Mosquitto tests; elsewhere they are registered as skipped, with the
 * reason in their title. `MOSQUITTO_BIN` overrides the binary's path.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { startBroker } from './broker.ts';

/** Path of the Mosquitto binary. */
export const MOSQUITTO_BIN = process.env.MOSQUITTO_BIN ?? '/usr/sbin/mosquitto';

/** True when the Mosquitto binary is installed. */
export const hasMosquitto = existsSync(MOSQUITTO_BIN);

/** True under CI, where a missing Mosquitto is a failure rather than a skip. */
const underCi = process.env.CI === 'true';

/** A running Mosquitto. */
export interface MosquittoHandle {
  /** `mqtt://127.0.0.1:<port>`. */
  url: string;
  /** Stops the broker (also done at teardown). Idempotent. */
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (!address || typeof address === 'string') throw new Error('no port');
  return address.port;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port, noDelay: true });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

async function launch(
  fixedPort?: number,
): Promise<{ child: ChildProcess; port: number; dir: string; log: () => string }> {
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-mosquitto-'));
  const port = fixedPort ?? (await freePort());
  const conf = join(dir, 'mosquitto.conf');
  await writeFile(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      'persistence false',
      // Queue without bound (0) so no test message is dropped while a member holds its acknowledgements.
      'max_queued_messages 0',
      // Enough QoS 1 messages in flight per client that the tests' held-back acknowledgements never stall delivery.
      'max_inflight_messages 1000',
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      '',
    ].join('\n'),
  );
  const child = spawn(MOSQUITTO_BIN, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  return { child, port, dir, log: () => stderr };
}

/**
 * Starts Mosquitto on a free loopback port (or the given one, to restart a broker where clients expect it), waits
 * until it accepts connections, and stops it at teardown.
 */
export async function startMosquitto(
  t: ExecutionContext,
  opts: { port?: number } = {},
): Promise<MosquittoHandle> {
  if (!hasMosquitto) {
    throw new Error(`${MOSQUITTO_BIN} not found: install the mosquitto package (or set MOSQUITTO_BIN)`);
  }
  // A free port can be taken between probing and binding; try a few times.
  for (let attempt = 1; ; attempt++) {
    const { child, port, dir, log } = await launch(opts.port);
    let exited = false;
    child.once('exit', () => {
      exited = true;
    });
    const deadline = Date.now() + 5000;
    while (!exited && Date.now() < deadline && !(await canConnect(port))) {
      await new Promise((r) => setTimeout(r, 20));
    }
    if (!exited && (await canConnect(port))) {
      let stopped: Promise<void> | undefined;
      const stop = () => {
        stopped ??= stopProcess(child).then(() => rm(dir, { recursive: true, force: true }));
        return stopped;
      };
      t.teardown(stop);
      return { url: `mqtt://127.0.0.1:${port}`, stop };
    }
    await stopProcess(child);
    await rm(dir, { recursive: true, force: true });
    if (attempt >= 3) throw new Error(`mosquitto did not start on port ${port}: ${log().trim()}`);
  }
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

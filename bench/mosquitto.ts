/**
 * A real Mosquitto (Debian's `/usr/sbin/mosquitto`) on a free loopback port, started as a child process: the
 * reference broker of the tests (test/helpers/mosquitto.ts wraps this for ava) and of the benchmarks.
 * `MOSQUITTO_BIN` overrides the binary's path.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './processes.ts';

/** Path of the Mosquitto binary. */
export const MOSQUITTO_BIN = process.env.MOSQUITTO_BIN ?? '/usr/sbin/mosquitto';

/** True when the Mosquitto binary is installed. */
export const hasMosquitto = existsSync(MOSQUITTO_BIN);

/** A running Mosquitto. */
export interface MosquittoHandle {
  /** `mqtt://127.0.0.1:<port>`. */
  url: string;
  /** The broker's process id (for its CPU time and memory). */
  pid: number | undefined;
  /** Stops the broker and removes its configuration directory. Idempotent. */
  stop(): Promise<void>;
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
  noDelay = false,
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
      // Mosquitto leaves Nagle's algorithm on by default; a small reply written right after a PUBACK then waits for
      // the peer's delayed ACK (~40 ms on Linux).
      ...(noDelay ? ['set_tcp_nodelay true'] : []),
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
 * Starts Mosquitto on a free loopback port (or the given one, to restart a broker where clients expect it) and
 * waits until it accepts connections. `noDelay` sets `set_tcp_nodelay true` (default: Mosquitto's default, Nagle
 * on). The caller stops it.
 */
export async function launchMosquitto(
  opts: { port?: number; noDelay?: boolean } = {},
): Promise<MosquittoHandle> {
  if (!hasMosquitto) {
    throw new Error(`${MOSQUITTO_BIN} not found: install the mosquitto package (or set MOSQUITTO_BIN)`);
  }
  // A free port can be taken between probing and binding; try a few times.
  for (let attempt = 1; ; attempt++) {
    const { child, port, dir, log } = await launch(opts.port, opts.noDelay);
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
      return { url: `mqtt://127.0.0.1:${port}`, pid: child.pid, stop };
    }
    await stopProcess(child);
    await rm(dir, { recursive: true, force: true });
    if (attempt >= 3) throw new Error(`mosquitto did not start on port ${port}: ${log().trim()}`);
  }
}

/**
 * Test helpers for access control and TLS: a users file in a temporary directory, the embedded broker enforcing
 * it, clients connecting as a user, the CONNACK refusal of a connection, and a self-signed certificate made with
 * the `openssl` CLI.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ExecutionContext } from 'ava';
import mqtt, { type MqttClient } from 'mqtt';
import { type BrokerOptions, EmbeddedBroker } from '../../broker/broker.ts';
import { hashPassword } from '../../broker/passwords.ts';
import { formatUsers, type UserEntry } from '../../broker/users.ts';
import { EDGECUT_BIN } from '../../cli/processes.ts';
import { silentLogger } from '../../runtime/log.ts';

/** A user to write into a users file, with its plain-text password. */
export type TestUser = Omit<UserEntry, 'password'> & { password: string };

/** A temporary directory, removed at teardown. */
export async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-auth-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes a users file with hashed passwords; returns its path. */
export async function writeUsersFile(t: ExecutionContext, users: TestUser[]): Promise<string> {
  const entries = await Promise.all(
    users.map(async (u) => ({ ...u, password: await hashPassword(u.password) })),
  );
  const file = join(await tempDir(t), 'users.json');
  await writeFile(file, formatUsers(entries));
  return file;
}

/** Starts the embedded broker on a free loopback port with the given options; stops it at teardown. */
export async function startSecureBroker(
  t: ExecutionContext,
  opts: Partial<BrokerOptions>,
): Promise<EmbeddedBroker> {
  const broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, logger: silentLogger, ...opts });
  await broker.start();
  t.teardown(() => broker.stop());
  return broker;
}

/** Connects as a user (client id = user name unless given); ended at teardown. */
export async function connectAs(
  t: ExecutionContext,
  url: string,
  username: string,
  password: string,
  opts: mqtt.IClientOptions = {},
): Promise<MqttClient> {
  const client = await mqtt.connectAsync(url, {
    clientId: username,
    username,
    password,
    reconnectPeriod: 0,
    ...opts,
  });
  t.teardown(() => client.endAsync(true));
  return client;
}

/** Connects expecting a refusal; resolves with the error (its `code` is the CONNACK return code, if any). */
export async function refusal(url: string, opts: mqtt.IClientOptions): Promise<Error & { code?: unknown }> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts });
  try {
    return await new Promise<Error>((resolve, reject) => {
      client.once('error', resolve);
      client.once('connect', () => reject(new Error('the connection was accepted')));
    });
  } finally {
    await client.endAsync(true);
  }
}

/** Resolves after `ms`. */
export { sleep } from './wait.ts';

/** A self-signed certificate for localhost and 127.0.0.1, made with the openssl CLI. */
export async function selfSignedCert(dir: string, name = 'server'): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  await promisify(execFile)('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=localhost',
    '-addext',
    'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-days',
    '2',
    '-keyout',
    key,
    '-out',
    cert,
  ]);
  return { cert, key };
}

/** Runs `edgecut <args>` with `input` on stdin; never throws for a non-zero exit. */
export function edgecutWithInput(
  args: string[],
  input: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [EDGECUT_BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.once('error', reject);
    child.once('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.end(input);
  });
}

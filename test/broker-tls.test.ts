/**
 * The broker's TLS listener, the CA plumbing of the services' connection, the one-line errors of the security
 * settings, `edgecut users add|check`, and the commands of docs/security.md run as written.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import test from 'ava';
import { grantsFor, viewerGrants } from '../broker/acl.ts';
import { loadTls } from '../broker/tls.ts';
import { EDGECUT_BIN } from '../cli/processes.ts';
import { ConfigError } from '../runtime/config.ts';
import { silentLogger } from '../runtime/log.ts';
import { Connection } from '../runtime/mqtt.ts';
import { type Role, type TopicSpec, topics } from '../schemas/topics.ts';
import {
  connectAs,
  edgecutWithInput,
  refusal,
  selfSignedCert,
  startSecureBroker,
  tempDir,
  writeUsersFile,
} from './helpers/auth.ts';
import { edgecut } from './helpers/cli.ts';

const oneLine = (s: string) => s.trim().split('\n').length === 1;

test('over TLS with the CA users log in and a wrong password is refused; without the CA the handshake fails', async (t) => {
  const dir = await tempDir(t);
  const { cert, key } = await selfSignedCert(dir);
  const usersFile = await writeUsersFile(t, [{ username: 'robot-1', role: 'device', password: 'pw' }]);
  const broker = await startSecureBroker(t, { usersFile, tls: { port: 0, certFile: cert, keyFile: key } });
  t.true((broker.tlsPort ?? 0) > 0);
  const url = `mqtts://127.0.0.1:${broker.tlsPort}`;
  const ca = await readFile(cert);
  const client = await connectAs(t, url, 'robot-1', 'pw', { ca });
  t.true(client.connected);
  const wrong = await refusal(url, { ca, clientId: 'robot-1', username: 'robot-1', password: 'nope' });
  t.is(wrong.code, 4);
  const untrusted = await refusal(url, { clientId: 'robot-1', username: 'robot-1', password: 'pw' });
  t.regex(untrusted.message, /self[- ]signed certificate/);
  // The services' connection takes the CA as a file (MQTT_CA_FILE).
  const conn = new Connection({
    url,
    clientId: 'robot-1',
    role: 'device',
    statusTopic: topics.deviceStatus.build({ device: 'robot-1' }),
    logger: silentLogger,
    username: 'robot-1',
    password: 'pw',
    caFile: cert,
  });
  await conn.start();
  t.teardown(() => conn.stop());
  await conn.publish(topics.deviceTelemetry.build({ device: 'robot-1' }), '{}', { qos: 1 });
  t.deepEqual(broker.accessStats(), { refusedPublishes: 0, refusedSubscribes: 0, refusedConnects: 1 });
});

test('TLS only: no plain TCP or WebSocket listener, users log in over TLS; without TLS settings it is one line', async (t) => {
  const dir = await tempDir(t);
  const { cert, key } = await selfSignedCert(dir);
  const usersFile = await writeUsersFile(t, [{ username: 'robot-1', role: 'device', password: 'pw' }]);
  const broker = await startSecureBroker(t, {
    usersFile,
    wsPort: 0,
    tlsOnly: true,
    tls: { port: 0, certFile: cert, keyFile: key },
  });
  t.is(broker.port, 0, 'no TCP listener');
  t.is(broker.wsPort, undefined, 'no WebSocket listener');
  t.is(broker.url, `mqtts://127.0.0.1:${broker.tlsPort}`);
  const client = await connectAs(t, broker.url, 'robot-1', 'pw', { ca: await readFile(cert) });
  t.true(client.connected);
  const err = await t.throwsAsync(startSecureBroker(t, { usersFile, tlsOnly: true }), {
    instanceOf: ConfigError,
  });
  t.is(
    err?.message,
    'BROKER_TLS_ONLY (--tls-only) turns the plain listeners off and needs the TLS one: set BROKER_TLS_PORT, BROKER_TLS_CERT and BROKER_TLS_KEY',
  );
});

test('TLS settings are checked before any port opens, one line each', async (t) => {
  const dir = await tempDir(t);
  const { cert, key } = await selfSignedCert(dir);
  const other = await selfSignedCert(dir, 'other');
  const fails = async (s: Parameters<typeof loadTls>[0], re: RegExp) => {
    const err = await t.throwsAsync(loadTls(s), { instanceOf: ConfigError });
    t.true(oneLine(err!.message));
    t.regex(err!.message, re);
  };
  await fails({ port: 0 }, /^BROKER_TLS_PORT=0 needs BROKER_TLS_CERT \(--tls-cert\) and BROKER_TLS_KEY/);
  await fails({ port: 0, certFile: cert }, /needs BROKER_TLS_KEY \(--tls-key\):/);
  await fails(
    { certFile: cert, keyFile: key },
    /^BROKER_TLS_CERT is set but BROKER_TLS_PORT \(--tls-port\) is not/,
  );
  await fails(
    { port: 0, certFile: join(dir, 'missing.crt'), keyFile: key },
    /cannot read the file \(ENOENT\)/,
  );
  await fails({ port: 0, certFile: 'package.json', keyFile: key }, /expected a PEM certificate/);
  await fails({ port: 0, certFile: cert, keyFile: cert }, /BROKER_TLS_KEY=.* expected a PEM private key/);
  await fails(
    { port: 0, certFile: cert, keyFile: other.key },
    /is not the key of the certificate in BROKER_TLS_CERT/,
  );
  t.is(await loadTls({}), undefined);
  t.is((await loadTls({ port: 0, certFile: cert, keyFile: key }))?.port, 0);
});

test('edgecut broker stops with one line on a TLS port without cert and on a bad users file', async (t) => {
  const base = ['broker', '--port', '0', '--ws-port', '0', '--host', '127.0.0.1'];
  const tls = await edgecut([...base, '--tls-port', '0']);
  t.is(tls.code, 2);
  t.true(oneLine(tls.stderr), tls.stderr);
  t.regex(tls.stderr, /^edgecut: BROKER_TLS_PORT=0 needs BROKER_TLS_CERT/);
  const dir = await tempDir(t);
  const bad = join(dir, 'users.json');
  await writeFile(bad, JSON.stringify({ users: [{ username: 'r', role: 'robot', password: 'x' }] }));
  const users = await edgecut(base, { BROKER_USERS: bad });
  t.is(users.code, 2);
  t.true(oneLine(users.stderr), users.stderr);
  t.regex(
    users.stderr,
    /^edgecut: users file .*users.json: entry 1 \("r"\): role "robot" is not allowed: expected one of/,
  );
  const ca = await edgecut(
    [
      'tail',
      '--mqtt-url',
      'mqtts://127.0.0.1:1',
      '--models-dir',
      dir,
      '--mqtt-ca-file',
      join(dir, 'no-ca.pem'),
    ],
    { PROFILE_RUNS: '0' },
  );
  t.is(ca.code, 2);
  t.true(oneLine(ca.stderr), ca.stderr);
  t.regex(ca.stderr, /^edgecut: MQTT_CA_FILE=".*no-ca.pem" is not allowed: cannot read the file \(ENOENT\)/);
});

test('edgecut users add writes hashes and replaces entries; bad arguments are one line; users check', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'users.json');
  const add = (args: string[], input: string) => edgecutWithInput(['users', 'add', file, ...args], input);
  const first = await add(['cam', '--role', 'device', '--device', 'robot-7'], 'first\n');
  t.is(first.code, 0, first.stderr);
  t.is(first.stdout, `added cam (device robot-7) in ${file}\n`);
  const again = await add(['cam', '--role', 'device'], 'second\r\nignored\n');
  t.is(again.stdout, `replaced cam (device cam) in ${file}\n`);
  t.is((await stat(file)).mode & 0o777, 0o600);
  const text = await readFile(file, 'utf8');
  t.false(text.includes('second'));
  t.regex(text, /"password": "scrypt\$N=16384,r=8,p=1\$/);
  for (const [args, input, re] of [
    [
      ['x', '--role', 'robot'],
      'pw\n',
      /^edgecut: --role="robot" is not allowed: expected one of device, worker/,
    ],
    [['x', '--role', 'worker', '--device', 'd'], 'pw\n', /--device is not allowed with --role worker/],
    [['x', '--role', 'device'], '', /no password on stdin/],
    [['a b', '--role', 'device'], 'pw\n', /the new entry \("a b"\): username "a b" is not a valid device id/],
  ] as const) {
    const r = await add([...args], input);
    t.is(r.code, 2, r.stderr);
    t.true(oneLine(r.stderr), r.stderr);
    t.regex(r.stderr, re);
  }
  // --role is a required option: a usage error (exit 1) naming it, like every missing required option.
  const noRole = await add(['x'], 'pw\n');
  t.is(noRole.code, 1, noRole.stderr);
  t.is(noRole.stderr, "edgecut: required option '--role <role>' not specified (run with --help for usage)\n");
  const check = await edgecut(['users', 'check', file]);
  t.is(check.code, 0, check.stderr);
  t.is(check.stdout, `cam\tdevice\tcam\n${file}: 1 user, all valid\n`);
  await writeFile(file, text.replace(/"role": "device"/, '"role": "root"'));
  const bad = await edgecut(['users', 'check', file]);
  t.is(bad.code, 2);
  t.true(oneLine(bad.stderr));
  t.regex(bad.stderr, /entry 1 \("cam"\): role "root" is not allowed/);
});

test('the roles table of docs/security.md is what broker/acl.ts grants', async (t) => {
  const doc = await readFile(new URL('../docs/security.md', import.meta.url), 'utf8');
  const rows = doc
    .split('\n')
    .filter(
      (l) => l.startsWith('| `devices/') || l.startsWith('| `workers/') || l.startsWith('| `planners/'),
    );
  const roles: Array<[Role, string]> = [
    ['device', 'D'],
    ['worker', 'W'],
    ['planner', 'P'],
  ];
  const specs = Object.values(topics) as TopicSpec<string>[];
  t.is(rows.length, specs.length, 'one row per topic');
  const table = {
    device: { publish: [] as string[], subscribe: [] as string[] },
    worker: { publish: [] as string[], subscribe: [] as string[] },
    planner: { publish: [] as string[], subscribe: [] as string[] },
  };
  for (const row of rows) {
    const cells = row
      .split('|')
      .slice(1, -1)
      .map((c) => c.trim());
    const spec = specs.find((s) => `\`${s.pattern}\`` === cells[0]);
    if (!spec) return t.fail(`no topic ${cells[0]}`);
    for (const [i, [role, id]] of roles.entries()) {
      const m = /^(publish|subscribe) \((\w+)/.exec(cells[i + 1] ?? '');
      if (!m) continue;
      const filter = m[2] === 'any' ? spec.filter() : spec.filter({ [role]: id });
      table[role][m[1] as 'publish' | 'subscribe'].push(filter);
    }
  }
  for (const [role, id] of roles) {
    const g = grantsFor(role, id);
    t.deepEqual([...table[role].publish].sort(), [...g.publish].sort(), `${role} publish`);
    t.deepEqual([...table[role].subscribe].sort(), [...g.subscribe].sort(), `${role} subscribe`);
  }
  // The viewer column (the dashboard's read-only role): subscribe (any) where it reads, nothing else.
  const viewer = rows.flatMap((row) => {
    const cells = row.split('|').map((c) => c.trim());
    const spec = specs.find((s) => `\`${s.pattern}\`` === cells[1]);
    return spec && cells[5] === 'subscribe (any)' ? [spec.filter()] : [];
  });
  t.deepEqual(viewer.sort(), [...viewerGrants().subscribe].sort(), 'viewer subscribe');
});

/** Runs a shell command line in the background (own process group) and resolves with its ready line. */
function background(t: Parameters<typeof tempDir>[0], cmd: string, cwd: string, env: Record<string, string>) {
  const child: ChildProcess = spawn('sh', ['-c', cmd], {
    cwd,
    env: { ...process.env, ...env },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      process.kill(-child.pid!, 'SIGTERM');
      await exited;
    }
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise<Record<string, unknown>>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith('{"ready"')) resolve(JSON.parse(line) as Record<string, unknown>);
    });
    void exited.then((code) => reject(new Error(`${cmd} exited with ${code}: ${stderr}`)));
  });
}

test('the commands of docs/security.md run as written, and the broker they start enforces its users over TLS', async (t) => {
  const doc = await readFile(new URL('../docs/security.md', import.meta.url), 'utf8');
  const commands = [...doc.matchAll(/```sh\n([\s\S]*?)```/g)].flatMap((m) => m[1]!.trim().split('\n'));
  t.true(commands.length >= 8);
  const dir = await tempDir(t);
  const env = {
    ROBOT_PASSWORD: 'r-pw',
    TAIL_PASSWORD: 't-pw',
    PLANNER_PASSWORD: 'p-pw',
    OPS_PASSWORD: 'o-pw',
    DASHBOARD_PASSWORD: 'd-pw',
  };
  const local = (cmd: string) => cmd.replaceAll('npx edgecut', `"${process.execPath}" "${EDGECUT_BIN}"`);
  let tlsPort = 0;
  for (const cmd of commands) {
    if (cmd.includes('npx edgecut broker')) {
      // Free ports instead of the well-known ones, on loopback.
      const line = `${local(cmd).replace('--tls-port 8883', '--tls-port 0')} --port 0 --ws-port 0 --host 127.0.0.1`;
      const ready = await background(t, line, dir, env);
      tlsPort = ready.tlsPort as number;
      t.true(tlsPort > 0);
      const url = `mqtts://127.0.0.1:${tlsPort}`;
      const ca = await readFile(join(dir, 'server.crt'));
      t.true((await connectAs(t, url, 'robot-1', env.ROBOT_PASSWORD, { ca })).connected);
      t.is((await refusal(url, { ca, clientId: 'robot-1', username: 'robot-1', password: 'wrong' })).code, 4);
      t.is(
        (await refusal(`mqtt://127.0.0.1:${ready.port as number}`, {})).code,
        5,
        'plain TCP enforces it too',
      );
    } else if (cmd.includes('npx edgecut planner')) {
      const ready = await background(t, local(cmd).replace(':8883', `:${tlsPort}`), dir, env);
      t.is(ready.ready, 'planner');
    } else {
      const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn('sh', ['-c', local(cmd)], { cwd: dir, env: { ...process.env, ...env } });
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
        });
        child.stderr.on('data', (d: Buffer) => {
          out += d.toString();
        });
        child.once('close', (code) => resolve({ code, out }));
      });
      t.is(r.code, 0, `${cmd}\n${r.out}`);
    }
  }
  t.true(tlsPort > 0, 'the broker command ran');
});

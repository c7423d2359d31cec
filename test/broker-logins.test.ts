/**
 * Login cost (broker/logins.ts) on the real broker with a users file: a flood of bogus logins from one address
 * runs a bounded number of password checks, is then refused with CONNACK 0x03 before any hashing, and a real login
 * from another address gets in meanwhile. Loopback has every 127.x.y.z address, so the flood comes from 127.0.0.2.
 */
import { connect } from 'node:net';
import test from 'ava';
import mqtt from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { LoginGate } from '../broker/logins.ts';
import { startSecureBroker, writeUsersFile } from './helpers/auth.ts';
import { sleep } from './helpers/wait.ts';

/** One raw login from `localAddress`: the CONNACK return code, or -1 when the socket closed without one. */
function rawLogin(port: number, localAddress: string, username: string, password: string): Promise<number> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1', localAddress });
    let done = false;
    const finish = (code: number) => {
      if (done) return;
      done = true;
      socket.destroy();
      resolve(code);
    };
    socket.on('error', () => finish(-1));
    socket.on('close', () => finish(-1));
    socket.on('data', (b: Buffer) => finish(b[0] === 0x20 && b.length >= 4 ? b[3]! : -1));
    socket.on('connect', () =>
      socket.write(
        mqttPacket.generate({
          cmd: 'connect',
          protocolId: 'MQTT',
          protocolVersion: 4,
          clean: true,
          clientId: '',
          keepalive: 0,
          username,
          password: Buffer.from(password),
        }),
      ),
    );
    setTimeout(() => finish(-2), 60_000).unref();
  });
}

test('500 bogus logins from one address run a bounded number of password checks; a real login gets in meanwhile', async (t) => {
  const usersFile = await writeUsersFile(t, [
    { username: 'robot-1', role: 'device', password: 'pw-robot-1' },
  ]);
  const broker = await startSecureBroker(t, { usersFile });
  const port = broker.port;
  // The flood: 500 logins for unknown users and wrong passwords, 50 at a time.
  const codes: number[] = [];
  const flood = (async () => {
    for (let i = 0; i < 500; i += 50)
      codes.push(
        ...(await Promise.all(
          Array.from({ length: 50 }, (_, j) =>
            rawLogin(port, '127.0.0.2', j % 2 ? `ghost-${i + j}` : 'robot-1', 'wrong'),
          ),
        )),
      );
  })();
  // The real robot logs in from its own address while the flood goes on.
  await sleep(100);
  const started = performance.now();
  const robot = await mqtt.connectAsync(broker.url, {
    clientId: 'robot-1',
    username: 'robot-1',
    password: 'pw-robot-1',
    reconnectPeriod: 0,
  });
  const loginMs = performance.now() - started;
  t.teardown(() => robot.endAsync(true));
  t.true(robot.connected);
  await flood;
  const stats = broker.loginStats();
  t.log(
    `real login ${loginMs.toFixed(0)} ms during the flood; ${stats.checks} password checks for 501 logins, ` +
      `refused unchecked: ${stats.address} (address), ${stats.user} (user), ${stats.busy} (busy); ` +
      `${broker.limitStats()['connect rate']} sockets over the connect rate`,
  );
  // Before: every login ran scrypt on the one thread pool, 300 of them delayed a real login to 23.5 s.
  t.true(loginMs < 5000, `the real login took ${loginMs.toFixed(0)} ms`);
  t.true(stats.checks <= 40, `${stats.checks} password checks`);
  t.true(
    codes.every((c) => c !== 0),
    'no bogus login got in',
  );
  t.true(codes.filter((c) => c === 3).length > 0, 'throttled logins get CONNACK 0x03');
  // Half the flood named the robot's user: its user bucket (100 failures) is far from empty, so the flood from
  // one address did not lock the robot out.
});

test('the login gate: failures per address and per user throttle, successes cost nothing, the queue is bounded', async (t) => {
  let now = 0;
  const gate = new LoginGate(
    { failures: 2, userFailures: 2, refillMs: 1000, concurrent: 1, queued: 1 },
    () => now,
  );
  const fail = async () => false;
  const pass = async () => true;
  t.deepEqual(await gate.run('a1', 'u1', fail), { ok: false });
  t.deepEqual(await gate.run('a1', 'u2', fail), { ok: false });
  // a1 has used its two failures: refused before checking, whatever the user.
  t.deepEqual(await gate.run('a1', 'u3', pass), { throttled: 'address' });
  // Another address is served; u1 has one failure left, u2 too.
  t.deepEqual(await gate.run('a2', 'u1', fail), { ok: false });
  t.deepEqual(await gate.run('a3', 'u1', pass), { throttled: 'user' });
  t.deepEqual(await gate.run('a4', 'u9', pass), { ok: true });
  // Forgiven with time: one failure per second.
  now += 1000;
  t.deepEqual(await gate.run('a1', 'u3', pass), { ok: true });
  t.deepEqual(await gate.run('a3', 'u1', pass), { ok: true });
  // One check at a time, one waiting: a third is refused at once.
  let release: () => void = () => undefined;
  const slow = () => new Promise<boolean>((r) => (release = () => r(true)));
  const first = gate.run('b1', 'v1', slow);
  const second = gate.run('b2', 'v2', pass);
  t.deepEqual(await gate.run('b3', 'v3', pass), { throttled: 'busy' });
  release();
  t.deepEqual(await first, { ok: true });
  t.deepEqual(await second, { ok: true });
  t.is(gate.counts.checks, 8);
});

/**
 * Every service refuses bad configuration at start with one line naming the variable or flag, the value given and
 * what is allowed, and a non-zero exit: a bad URL, a bad number, an unknown preset or value, an unknown flag, and
 * credentials the broker refuses.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { hashPassword } from '../broker/passwords.ts';
import { startBrokerProcess } from '../cli/processes.ts';
import { edgecut } from './helpers/cli.ts';

/** Nothing listens here: a service that got past its configuration would hang retrying, not exit. */
const NOWHERE = 'mqtt://127.0.0.1:1';

const cases: [title: string, args: string[], env: Record<string, string>, line: RegExp][] = [
  // A bad URL.
  [
    'planner: MQTT_URL',
    ['planner'],
    { MQTT_URL: 'broker:1883' },
    /^MQTT_URL="broker:1883" is not allowed: expected a URL like mqtt:\/\/host:1883/,
  ],
  [
    'tail: MQTT_URL',
    ['tail'],
    { MQTT_URL: 'http://broker' },
    /^MQTT_URL="http:\/\/broker" is not allowed: expected a URL like/,
  ],
  [
    'edge: --mqtt-url',
    ['edge', '--mqtt-url', 'mqtt://'],
    {},
    /^--mqtt-url="mqtt:\/\/" is not allowed: expected a URL like/,
  ],
  // A bad number.
  [
    'broker: BROKER_PORT',
    ['broker'],
    { BROKER_PORT: '18830000' },
    /^BROKER_PORT="18830000" is not allowed: expected a port from 0 to 65535/,
  ],
  [
    'planner: PLAN_TICK_MS',
    ['planner'],
    { PLAN_TICK_MS: 'soon', MQTT_URL: NOWHERE },
    /^PLAN_TICK_MS="soon" is not allowed: expected a whole number -- PLAN_TICK_MS: re-evaluation period, ms$/,
  ],
  [
    'tail: TAIL_CONCURRENCY',
    ['tail'],
    { TAIL_CONCURRENCY: 'many', MQTT_URL: NOWHERE },
    /^TAIL_CONCURRENCY="many" is not allowed: expected auto or a whole number >= 1/,
  ],
  [
    'edge: --fps',
    ['edge', '--fps', 'fast'],
    { MQTT_URL: NOWHERE },
    /^--fps="fast" is not allowed: expected a number -- FPS: frame rate of the source/,
  ],
  [
    'any service: METRICS_PORT',
    ['tail'],
    { METRICS_PORT: '99999', MQTT_URL: NOWHERE },
    /^METRICS_PORT="99999" is not allowed: expected /,
  ],
  // An unknown preset or value.
  [
    'edge: EMULATE_DEVICE',
    ['edge'],
    { EMULATE_DEVICE: 'rpi5', MQTT_URL: NOWHERE },
    /^EMULATE_DEVICE="rpi5" is not allowed: unknown device preset "rpi5"; known presets: rpi3b, /,
  ],
  [
    'planner: PLAN_OBJECTIVE',
    ['planner'],
    { PLAN_OBJECTIVE: 'fastest', MQTT_URL: NOWHERE },
    /^PLAN_OBJECTIVE="fastest" is not allowed: expected auto, latency, throughput or energy/,
  ],
  [
    'planner: EDGE_LOAD',
    ['planner'],
    { EDGE_LOAD: 'cpu', MQTT_URL: NOWHERE },
    /^EDGE_LOAD="cpu" is not allowed: expected loadavg, measured or none/,
  ],
  [
    'broker: LOG_LEVEL',
    ['broker'],
    { LOG_LEVEL: 'loud' },
    /^LOG_LEVEL="loud" is not allowed: expected one of fatal, error, warn, info, debug, trace, silent/,
  ],
  // An unknown flag.
  [
    'tail: unknown flag',
    ['tail', '--modles-dir', 'x'],
    {},
    /^unknown option '--modles-dir' \(Did you mean --models-dir\?\) \(run with --help for usage\)$/,
  ],
];

for (const [title, args, env, line] of cases) {
  test(`one line and a non-zero exit for a bad setting: ${title}`, async (t) => {
    const r = await edgecut(args, { LOG_LEVEL: 'info', ...env });
    t.not(r.code, 0);
    const lines = r.stderr.trimEnd().split('\n');
    t.is(lines.length, 1, r.stderr);
    t.regex(lines[0]?.replace(/^edgecut: /, '') ?? '', line);
    t.true(lines[0]?.startsWith('edgecut: '));
  });
}

test('credentials the broker refuses stop a service with one line', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-cred-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const users = join(dir, 'users.json');
  const hash = await hashPassword('right');
  await writeFile(
    users,
    JSON.stringify({ users: [{ username: 'planner-1', role: 'planner', password: hash }] }),
  );
  const { proc, url } = await startBrokerProcess({
    env: { BROKER_USERS: users, LOG_LEVEL: 'warn' },
    onStderr: () => undefined,
  });
  t.teardown(() => proc.stop());
  for (const service of ['planner', 'tail', 'edge']) {
    const r = await edgecut([service, ...(service === 'tail' ? ['--models-dir', dir] : [])], {
      MQTT_URL: url,
      MQTT_USERNAME: 'intruder',
      MQTT_PASSWORD: 'guess',
      LOG_LEVEL: 'error',
    });
    t.is(r.code, 2, `${service}: ${r.stderr}`);
    const lines = r.stderr.trimEnd().split('\n');
    t.deepEqual(
      lines,
      [`edgecut: broker ${url} refused the connection: Connection refused: Bad username or password`],
      service,
    );
  }
});

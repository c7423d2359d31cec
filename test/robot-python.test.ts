/**
 * docs/robots.md run as a reader runs it: real broker, tail worker and planner processes, the Python robot of
 * examples/python-robot under Debian's /usr/bin/python3 (python3-paho-mqtt, python3-flatbuffers, classes from
 * `flatc --python`), and the mosquitto_sub/mosquitto_pub one-liners. Every command of the doc's `sh` blocks runs
 * here, in a scratch directory; only the broker's port differs (port 0, so tests can run side by side).
 *
 * Under CI (`CI=true`) a missing tool fails these tests; elsewhere they are skipped with the reason in the title.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test, { type ExecutionContext } from 'ava';
import * as ort from 'onnxruntime-node';
import { EDGECUT_BIN, startBrokerProcess } from '../cli/processes.ts';
import { createSession } from '../model/runtime.ts';
import { decodeMessage, tensorElements } from '../schemas/codec.ts';
import { DeviceTelemetrySchema, PlanSchema, StatusSchema } from '../schemas/messages.ts';
import { parseDeviceProfile } from '../schemas/profile.ts';
import { topics } from '../schemas/topics.ts';
import { writeDemoModel } from '../services/edge-head/main.ts';
import { publishPacketBytes } from '../services/edge-head/uplink.ts';
import { connectClient } from './helpers/broker.ts';
import { edgecut } from './helpers/cli.ts';
import { until } from './helpers/wait.ts';

const run = promisify(execFile);
const REPO = fileURLToPath(new URL('..', import.meta.url));
/** Debian's interpreter: the `python3` on PATH may be another build without the apt packages. */
const PYTHON = '/usr/bin/python3';
const ROBOT = join(REPO, 'examples/python-robot/robot.py');
/** The broker port the doc's commands use; the tests substitute the port of their own broker. */
const DOC_PORT = 1883;
/** Largest difference to the whole model run locally that still counts as equal (the demo's bound). */
const BOUND = 1e-5;

/** What the robot tests need from the system that npm does not install. */
async function missingTools(): Promise<string[]> {
  const works = (file: string, args: string[]) =>
    run(file, args).then(
      () => true,
      () => false,
    );
  const missing: string[] = [];
  if (!(await works(PYTHON, ['-c', 'import paho.mqtt.client, flatbuffers'])))
    missing.push(`${PYTHON} with python3-paho-mqtt and python3-flatbuffers`);
  for (const tool of ['flatc', 'mosquitto_sub', 'mosquitto_pub'])
    if (!(await works('sh', ['-c', `command -v ${tool}`]))) missing.push(tool);
  return missing;
}

const missing = await missingTools();

/** Registers a test that needs the tools: skipped without them, except under CI, where it fails. */
function robotTest(title: string, body: (t: ExecutionContext) => Promise<void>): void {
  if (missing.length > 0 && process.env.CI !== 'true') {
    test.skip(`${title} (skipped: missing ${missing.join(', ')}; .ci/run installs them)`, () => undefined);
    return;
  }
  test(title, async (t) => {
    if (missing.length > 0) return t.fail(`missing ${missing.join(', ')}; .ci/run must install them`);
    await body(t);
  });
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a shell command line; never throws for a non-zero exit. */
async function sh(cmd: string, cwd: string, env: NodeJS.ProcessEnv): Promise<Run> {
  try {
    const { stdout, stderr } = await run('sh', ['-c', cmd], {
      cwd,
      env,
      timeout: 120_000,
      maxBuffer: 64 << 20,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** A long-running command: its output lines so far, its `ready` line (edgecut services) and its exit. */
interface Background {
  child: ChildProcess;
  stdout: string[];
  stderr: string[];
  ready: Promise<Record<string, unknown>>;
  exited: Promise<number>;
}

/** Starts a shell command line in the background; stopped (SIGTERM, then SIGKILL) at teardown. */
function background(t: ExecutionContext, cmd: string, cwd: string, env: NodeJS.ProcessEnv): Background {
  // `exec` makes the command itself the child, so the signals of the teardown reach it.
  const child = spawn('sh', ['-c', `exec ${cmd}`], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Background = {
    child,
    stdout: [],
    stderr: [],
    ready: Promise.resolve({}),
    exited: Promise.resolve(0),
  };
  out.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code ?? 128)));
  out.ready = new Promise((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      out.stdout.push(line);
      if (line.startsWith('{"ready"')) resolve(JSON.parse(line) as Record<string, unknown>);
    });
    void out.exited.then((code) => reject(new Error(`${cmd} exited with ${code} before it was ready`)));
  });
  out.ready.catch(() => undefined);
  createInterface({ input: child.stderr! }).on('line', (line) => out.stderr.push(line));
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await out.exited;
    clearTimeout(timer);
  });
  return out;
}

/** The command lines of a Markdown file's ```sh blocks. */
function shCommands(md: string): string[] {
  const blocks = [...md.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
  return blocks.flatMap((b) => b.split('\n')).filter((l) => l.trim() !== '' && !l.trim().startsWith('#'));
}

/** A doc command made runnable here: this checkout's `edgecut`, absolute repository paths, the test's broker. */
function localize(cmd: string, port?: number): string {
  let out = cmd
    .replaceAll('npx edgecut ', `"${process.execPath}" "${EDGECUT_BIN}" `)
    .replaceAll(' schemas/edgecut.fbs', ` "${join(REPO, 'schemas/edgecut.fbs')}"`)
    .replaceAll(' examples/python-robot/robot.py', ` "${ROBOT}"`);
  if (port !== undefined) out = out.replaceAll(` -p ${DOC_PORT} `, ` -p ${port} `);
  return out;
}

/** The robot's input for frame f: element i is ((31 i + 17 f) mod 251) / 250 - 0.5 (robot.py, frame_values). */
function frameInput(frame: number, count: number): Float32Array {
  return Float32Array.from({ length: count }, (_, i) => ((i * 31 + frame * 17) % 251) / 250 - 0.5);
}

function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/** One line the robot prints per frame. */
interface FrameLine {
  frame: number;
  requestId: string;
  cut: number;
  worker: string;
  output: string;
  shape: number[];
  top1: number;
  rttMs: number;
}

robotTest(
  'docs/robots.md: every command runs, and each frame the Python robot gets equals the whole model run locally',
  async (t) => {
    const doc = shCommands(await readFile(join(REPO, 'docs/robots.md'), 'utf8'));
    const executed: string[] = [];
    const take = (prefix: string): string => {
      const found = doc.filter((c) => c.startsWith(prefix));
      if (found.length !== 1)
        throw new Error(`docs/robots.md: ${found.length} commands start with "${prefix}"`);
      executed.push(found[0]!);
      return found[0]!;
    };
    const dir = await mkdtemp(join(tmpdir(), 'edgecut-robot-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));

    // The preparation: model, cut-0 description, Python classes.
    for (const prefix of ['npx edgecut zoo build', 'npx edgecut model split', 'flatc --python']) {
      const r = await sh(localize(take(prefix)), dir, process.env);
      t.is(r.code, 0, `${prefix}: ${r.stderr}`);
    }

    // The services, each a real process; the broker on a free port instead of the doc's 1883.
    const broker = background(
      t,
      `${localize(take('npx edgecut broker'))} --port 0 --ws-port 0 --host 127.0.0.1`,
      dir,
      process.env,
    );
    const port = Number((await broker.ready).port);
    const env = { ...process.env, MQTT_URL: `mqtt://127.0.0.1:${port}` };
    const tail = background(t, localize(take('npx edgecut tail')), dir, env);
    const planner = background(t, localize(take('npx edgecut planner')), dir, env);
    const [tailReady] = await Promise.all([tail.ready, planner.ready]);

    // Everything said on the robot's topics, as a third party sees it on the wire.
    const observer = await connectClient(t, env.MQTT_URL);
    const seen: Array<{ topic: string; payload: Buffer }> = [];
    observer.on('message', (topic, payload) => seen.push({ topic, payload }));
    await observer.subscribeAsync('edgecut/v1/devices/robot-1/#', { qos: 1 });
    const on = (suffix: string) => seen.filter((m) => m.topic === `edgecut/v1/devices/robot-1/${suffix}`);

    // The one-liners: mosquitto_sub waits for the plan; the hand-made telemetry is what the planner parses.
    const planSub = background(t, localize(take('mosquitto_sub'), port), dir, env);
    const pub = await sh(localize(take('printf'), port), dir, env);
    t.is(pub.code, 0, pub.stderr);
    await until(
      () =>
        planner.stderr.find(
          (l) => l.includes('"device":"robot-1"') && l.includes('has published no profile'),
        ),
      'the planner’s "no plan for device" line about robot-1’s telemetry',
      15_000,
    );
    const byHand = await until(() => on('telemetry')[0], 'the hand-made telemetry on the wire', 15_000);
    t.true(DeviceTelemetrySchema.safeParse(JSON.parse(byHand.payload.toString())).success);

    // The robot.
    const robotCmd = take('PYTHONPATH=');
    const frames = Number(/--frames (\d+)/.exec(robotCmd)?.[1]);
    const robot = await sh(localize(robotCmd), dir, env);
    t.is(robot.code, 0, robot.stderr);
    t.regex(robot.stderr, /^robot: plan: cut 0 \(fixed: /m);
    const lines = robot.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as FrameLine);
    t.deepEqual(
      lines.map((l) => l.frame),
      [...Array(frames).keys()],
    );

    // mosquitto_sub printed the robot's plan and exited (-C 1).
    t.is(await planSub.exited, 0, planSub.stderr.join('\n'));
    const model = await readFile(join(dir, 'models/squeezenet1.1.onnx'));
    const modelId = createHash('sha256').update(model).digest('hex');
    const plan = PlanSchema.parse(JSON.parse(planSub.stdout.join('\n')));
    t.like(plan, { device: 'robot-1', modelId, objective: 'fixed', cut: { index: 0 } });

    // Each request the robot sent passes edgecut's own decoder and carries the documented input; each result
    // the robot got equals the whole model run locally on that input.
    const session = await createSession(model, { threads: 1 });
    t.teardown(() => session.release());
    const decoded = (suffix: string) => on(suffix).map((m) => ({ m, msg: decodeMessage(m.payload) }));
    const requests = decoded('request');
    const results = decoded('result');
    let worst = 0;
    for (const line of lines) {
      const req = requests.find((r) => r.msg.kind === 'request' && r.msg.value.requestId === line.requestId);
      const res = results.find((r) => r.msg.kind === 'result' && r.msg.value.requestId === line.requestId);
      if (req?.msg.kind !== 'request' || res?.msg.kind !== 'result') {
        t.fail(`frame ${line.frame}: request or result of ${line.requestId} not seen on the wire`);
        continue;
      }
      const request = req.msg.value;
      t.like(request, { deviceId: 'robot-1', modelId, cutId: 0 });
      const [tensor] = request.tensors;
      if (!tensor || request.tensors.length !== 1) {
        t.fail(`frame ${line.frame}: expected one input tensor`);
        continue;
      }
      t.like(tensor, { name: 'input', dtype: 'float32', shape: [1, 3, 224, 224] });
      t.is((tensor.data.byteOffset - req.m.payload.byteOffset) % 16, 0, 'tensor data 16-byte aligned');
      const input = frameInput(line.frame, 3 * 224 * 224);
      t.true(
        Buffer.from(input.buffer).equals(tensor.data),
        `frame ${line.frame}: input is the documented formula`,
      );
      const local = await session.run({
        [session.inputNames[0]!]: new ort.Tensor('float32', input, tensor.shape),
      });
      const expected = local[session.outputNames[0]!]!.data as Float32Array;
      const got = tensorElements(res.msg.value.tensors[0]!) as Float32Array;
      t.is(got.length, expected.length);
      const diff = Math.max(...Array.from(expected, (v, i) => Math.abs(v - got[i]!)));
      worst = Math.max(worst, diff);
      t.true(diff <= BOUND, `frame ${line.frame}: max abs diff ${diff} exceeds ${BOUND}`);
      t.like(line, {
        cut: 0,
        worker: tailReady.id,
        output: 'probs',
        shape: [1, 1000],
        top1: argmax(expected),
      });
      t.true(line.rttMs > 0);
    }
    t.log(`${lines.length} frames; max abs diff to the whole model run locally: ${worst.toExponential(2)}`);

    // Availability: online while connected, offline (published by the robot, so with a time) after a clean exit.
    const states = on('status').map((m) => StatusSchema.parse(JSON.parse(m.payload.toString())));
    t.like(states[0], { state: 'online', role: 'device', id: 'robot-1' });
    t.like(states.at(-1), { state: 'offline', role: 'device', id: 'robot-1' });
    t.is(typeof states.at(-1)?.at, 'number');
    // Its declared profile (retained, for the planner) and its telemetry with one upload sample per frame: the
    // request's packet bytes (payload, topic and MQTT header, as edgecut's edge counts them) and a time.
    const profile = parseDeviceProfile(JSON.parse(on('profile')[0]!.payload.toString()), 'robot profile');
    t.like(profile, { kind: 'declared', device: { id: 'robot-1' }, model: { id: modelId }, wholeMs: 250 });
    const telemetry = DeviceTelemetrySchema.parse(JSON.parse(on('telemetry').at(-1)!.payload.toString()));
    t.is(telemetry.device, 'robot-1');
    t.deepEqual(
      telemetry.transfers.map((s) => s.bytes),
      lines.map(
        (l) =>
          requests.find((r) => r.msg.kind === 'request' && r.msg.value.requestId === l.requestId)!.m.payload
            .length + publishPacketBytes(topics.request.build({ device: 'robot-1' }), 0),
      ),
    );
    t.true(
      telemetry.transfers.every((s) => s.seconds > 0 && s.seconds < 60),
      'each upload took a time',
    );

    // An Error reply stops the robot with status 1 and one line naming the worker, the code and the problem.
    const cut = JSON.parse(await readFile(join(dir, 'robot-cut0/cut.json'), 'utf8')) as {
      tensors: Array<{ shape: number[] }>;
    };
    cut.tensors[0]!.shape = [1, 3, 224, 223];
    await writeFile(join(dir, 'bad-cut.json'), JSON.stringify(cut));
    const bad = await sh(
      localize(
        robotCmd.replace('robot-cut0/cut.json', 'bad-cut.json').replace(' --whole-ms 250 --plan-wait 60', ''),
      ),
      dir,
      env,
    );
    t.is(bad.code, 1, bad.stderr);
    t.regex(
      bad.stderr.trim().split('\n').at(-1)!,
      /^robot: frame 0: worker \S+ answered Error bad-tensor: .*"input"/,
    );

    t.deepEqual(
      doc.filter((c) => !executed.includes(c)),
      [],
      'every command of docs/robots.md ran',
    );
  },
);

robotTest(
  'without a tail worker the robot exits 3 with one line, and its Last Will says offline when it dies',
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'edgecut-robot-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const model = await writeDemoModel(join(dir, 'models'));
    const split = await edgecut(['model', 'split', model, '--after', '0', '--out', join(dir, 'cut0')]);
    t.is(split.code, 0, split.stderr);
    await run('flatc', ['--python', '-o', join(dir, 'py-gen'), join(REPO, 'schemas/edgecut.fbs')]);
    const { proc, url } = await startBrokerProcess({ onStdout: () => undefined, onStderr: () => undefined });
    t.teardown(() => proc.stop());
    const env = { ...process.env, MQTT_URL: url, PYTHONPATH: join(dir, 'py-gen') };
    const args = (device: string, timeout: string) => [
      ROBOT,
      ...['--model', model, '--cut', join(dir, 'cut0/cut.json'), '--device-id', device],
      ...['--frames', '1', '--timeout', timeout],
    ];

    const started = Date.now();
    const timedOut = await sh([PYTHON, ...args('robot-late', '1')].map((a) => `'${a}'`).join(' '), dir, env);
    t.is(timedOut.code, 3, timedOut.stderr);
    t.regex(
      timedOut.stderr.trim().split('\n').at(-1)!,
      /^robot: frame 0: no result within 1 s \(a real robot/,
    );
    t.true(Date.now() - started < 10_000, 'the timeout is the one given');

    // Killed without a chance to say goodbye, the robot is announced offline by the broker: its Last Will.
    const observer = await connectClient(t, url);
    const states: unknown[] = [];
    observer.on('message', (_topic, payload) => states.push(JSON.parse(payload.toString())));
    await observer.subscribeAsync('edgecut/v1/devices/robot-doomed/status', { qos: 1 });
    const doomed = spawn(PYTHON, args('robot-doomed', '60'), { env, stdio: 'ignore' });
    const exited = new Promise((resolve) => doomed.once('exit', resolve));
    t.teardown(async () => {
      doomed.kill('SIGKILL');
      await exited;
    });
    await until(
      () => states.find((s) => (s as { state?: string }).state === 'online'),
      'the robot’s online status',
      15_000,
    );
    doomed.kill('SIGKILL');
    const will = await until(
      () => states.find((s) => (s as { state?: string }).state === 'offline'),
      'the Last Will on the robot’s status topic',
      15_000,
    );
    t.deepEqual(will, { state: 'offline', role: 'device', id: 'robot-doomed' });
  },
);

/**
 * The commands docs/edge.md shows for the real SqueezeNet (../shared), taken from the doc and run as written (the
 * broker on a free port instead of 1883, the edge stopping after 4 frames): its photos through the broker and a tail
 * worker, every offloaded result equal to the whole model.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test, { type ExecutionContext } from 'ava';
import { EDGECUT_BIN } from '../cli/processes.ts';

const run = promisify(execFile);
const REPO = fileURLToPath(new URL('..', import.meta.url));
const SHARED = resolve(REPO, '../shared');
const MODEL = join(SHARED, 'models/squeezenet1.0-fp16.onnx');
const IMAGES = join(SHARED, 'images');
const present = existsSync(MODEL) && existsSync(IMAGES);

/** The command lines of a Markdown file's ```sh blocks. */
function shCommands(md: string): string[] {
  const blocks = [...md.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
  return blocks.flatMap((b) => b.split('\n')).filter((l) => l.trim() !== '' && !l.trim().startsWith('#'));
}

/** A doc command made runnable here: this checkout's `edgecut`. */
const localize = (cmd: string) => cmd.replaceAll('npx edgecut ', `"${process.execPath}" "${EDGECUT_BIN}" `);

/** Starts a command line in the background; resolves with its ready line; stopped at teardown. */
function background(
  t: ExecutionContext,
  cmd: string,
  cwd: string,
  env: NodeJS.ProcessEnv,
): Promise<Record<string, unknown>> {
  // `exec` makes the command itself the child, so the signals of the teardown reach it.
  const child: ChildProcess = spawn('sh', ['-c', `exec ${cmd}`], {
    cwd,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number>((done) => child.once('exit', (code) => done(code ?? 128)));
  const stderr: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (line) => stderr.push(line));
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  });
  return new Promise((ready, fail) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith('{"ready"')) ready(JSON.parse(line) as Record<string, unknown>);
    });
    void exited.then((code) =>
      fail(new Error(`${cmd} exited with ${code} before it was ready: ${stderr.slice(-3).join(' | ')}`)),
    );
  });
}

const body = async (t: ExecutionContext) => {
  if (!present) {
    t.fail(`CI must provide ../shared next to the repo; missing ${MODEL} or ${IMAGES}`);
    return;
  }
  const doc = shCommands(await readFile(join(REPO, 'docs/edge.md'), 'utf8'));
  const take = (prefix: string): string => {
    const found = doc.filter((c) => c.startsWith(prefix));
    if (found.length !== 1) throw new Error(`docs/edge.md: ${found.length} commands start with "${prefix}"`);
    return found[0]!;
  };
  const order = ['npx edgecut broker', 'npx edgecut tail', 'npx edgecut planner', 'npx edgecut edge'];
  t.deepEqual(
    doc.map((c) => order.find((p) => c.startsWith(p))),
    order,
    'docs/edge.md shows the broker, tail, planner and edge commands, in this order, and nothing else',
  );
  // The doc's relative paths, in a scratch folder that links to ../shared (nothing is copied).
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-real-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await symlink(MODEL, join(dir, 'squeezenet1.0-fp16.onnx'));
  await symlink(IMAGES, join(dir, 'photos'));
  const quiet = { ...process.env, LOG_LEVEL: 'error' };
  const broker = await background(
    t,
    `${localize(take('npx edgecut broker'))} --port 0 --ws-port 0 --host 127.0.0.1`,
    dir,
    quiet,
  );
  const env = { ...quiet, MQTT_URL: `mqtt://127.0.0.1:${Number(broker.port)}`, PROFILE_RUNS: '0' };
  await Promise.all([
    background(t, localize(take('npx edgecut tail')), dir, env),
    background(t, localize(take('npx edgecut planner')), dir, env),
  ]);
  const edge = `${localize(take('npx edgecut edge'))} --frames 4 --verify true --device-id real-robot --profile-runs 2`;
  const { stdout } = await run('sh', ['-c', edge], { cwd: dir, env, timeout: 120_000 });
  t.regex(
    stdout,
    /check: 4\/4 frames offloaded and equal to the whole model run locally, 0 run on the device and equal to it \(0 local fallbacks\) \(max abs diff 0\.00e\+0/,
  );
};

if (present || process.env.CI === 'true')
  test(
    'docs/edge.md: the real SqueezeNet on the shared photos, its four commands as written, split and bit-exact',
    body,
  );
else test.skip('docs/edge.md: the real SqueezeNet (skipped: ../shared missing)', () => undefined);

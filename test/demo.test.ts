/**
 * The README's demo command, run as a user runs it: separate processes, real broker, real sessions, an emulated
 * Raspberry Pi 3 as the device. It runs the model on the device alone, then split by Algorithm 1, checks the split
 * frames against the whole model and ends with the speedup measured in the same run.
 */
import { execFile, spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import test from 'ava';
import { type DemoFrame, parseFrameLine, phaseStats, speedupLines } from '../cli/demo.ts';
import { EDGECUT_BIN } from '../cli/processes.ts';
import { edgecut } from './helpers/cli.ts';
import { sleep, until } from './helpers/wait.ts';

const run = promisify(execFile);

const CHECK =
  /^check: (\d+)\/(\d+) frames offloaded and equal to the whole model run locally, (\d+) run on the device and equal to it \((\d+) local fallbacks\) .* PASS$/;
const DEVICE =
  /^demo: device only: (\d+) frames at cut (\d+) \(everything on the device\): median frame ([\d.]+) ms, ([\d.]+) fps$/;
const SPLIT =
  /^demo: split: +(\d+) frames at cut (\d+) \((?:head on the device, tail|everything) on the worker\): median frame ([\d.]+) ms, ([\d.]+) fps/;
const SPEEDUP =
  /^speedup: ([\d.]+)x fps over running everything on the device \(device only ([\d.]+) fps, split ([\d.]+) fps; cut (\d+) by Algorithm 1\)$/;

test('npm run demo -- --frames 50: the device alone, then split by Algorithm 1; every frame checked; a measured speedup > 1', async (t) => {
  const { stdout } = await run('npm', ['run', '--silent', 'demo', '--', '--frames', '50'], {
    timeout: 180_000,
  });
  const lines = stdout.split('\n').filter((l) => l !== '');
  // The dashboard's URL first (README), then the model and what runs where.
  t.regex(
    lines[0] ?? '',
    /^demo: dashboard http:\/\/127\.0\.0\.1:\d+\/ \(open it to watch the split live\)$/,
  );
  t.regex(lines[1] ?? '', /^demo: model .*demo-cnn\.onnx; the edge emulates a Raspberry Pi 3/);
  const phase2 = lines.findIndex((l) =>
    l.startsWith('demo: 2/2 split: 50 frames with the planner running Algorithm 1'),
  );
  t.true(phase2 > 0, stdout);
  t.regex(
    lines.find((l) => l.startsWith('demo: 1/2 device only')) ?? '',
    /^demo: 1\/2 device only: 20 frames/,
  );
  const alone = lines.slice(0, phase2).filter((l) => l.startsWith('frame '));
  const split = lines.slice(phase2).filter((l) => l.startsWith('frame '));
  t.is(alone.length, 20);
  t.is(split.length, 50);
  const last = Number(/cut\s+(\d+)/.exec(alone[0] ?? '')?.[1]);
  t.true(last > 0);
  t.true(
    alone.every((l) => new RegExp(`cut\\s+${last} `).test(l) && /tail by local(?! fallback)/.test(l)),
    'the first phase runs every layer on the device',
  );
  // Every split-phase frame equals the whole model: offloaded, kept on the device by the plan before it offloads,
  // or (on a loaded host, when a worker misses a deadline) finished by the device as a fallback.
  const offloaded = split.filter((l) => /tail by demo-tail-1 +equal \(max diff/.test(l));
  const onDevice = split.filter((l) => /tail by local +equal \(run locally\)/.test(l));
  const fallbacks = split.filter((l) => /tail by local fallback: .* equal \(run locally\)/.test(l));
  t.is(offloaded.length + onDevice.length + fallbacks.length, 50, split.join('\n'));
  t.true(offloaded.length >= 25, `${offloaded.length}/50 offloaded`);
  const check = CHECK.exec(lines.find((l) => l.startsWith('check: ')) ?? '');
  t.truthy(check, stdout);
  t.deepEqual(check?.slice(1, 5).map(Number), [
    offloaded.length,
    50,
    onDevice.length + fallbacks.length,
    fallbacks.length,
  ]);

  // The closing lines: each phase's figures, then the speedup, the demo's last line.
  const device = DEVICE.exec(lines.at(-3) ?? '');
  const splitLine = SPLIT.exec(lines.at(-2) ?? '');
  const speedup = SPEEDUP.exec(lines.at(-1) ?? '');
  t.truthy(device, lines.at(-3));
  t.truthy(splitLine, lines.at(-2));
  t.truthy(speedup, lines.at(-1));
  t.is(Number(device?.[2]), last);
  const [ratio, deviceFps, splitFps, cut] = (speedup ?? []).slice(1).map(Number) as number[];
  t.is(deviceFps, Number(device?.[4]));
  t.is(splitFps, Number(splitLine?.[4]));
  t.is(cut, Number(splitLine?.[2]));
  t.true(cut! < last, `the plan offloads: cut ${cut} of ${last}`);
  t.is(ratio, Number((splitFps! / deviceFps!).toFixed(1)));
  t.true(ratio! > 1, `speedup ${ratio}x: split ${splitFps} fps, device only ${deviceFps} fps`);
  t.log(lines.slice(-4).join('\n'));
});

test("the README's example output has the demo's closing lines", async (t) => {
  const readme = await readFile('README.md', 'utf8');
  const shown = readme.split('\n');
  t.true(shown.some((l) => CHECK.test(l)));
  t.true(shown.some((l) => DEVICE.test(l)));
  t.true(shown.some((l) => SPLIT.test(l)));
  const speedup = shown.find((l) => SPEEDUP.test(l));
  t.truthy(speedup);
  t.true(Number(SPEEDUP.exec(speedup ?? '')?.[1]) > 1);
});

const frame = (cut: number, totalMs: number, tailBy: string, at: number, fallback = false): DemoFrame => ({
  cut,
  totalMs,
  tailBy,
  fallback,
  at,
});

test('a phase is measured over its frames at its final cut, without the first of them', (t) => {
  const frames = [
    frame(24, 40, 'local', 40),
    frame(24, 30, 'local', 70),
    frame(3, 500, 'tail-1', 600), // loads the tail: left out
    frame(3, 10, 'tail-1', 610, true), // a fallback: left out
    frame(3, 10, 'tail-1', 620),
    frame(3, 12, 'tail-1', 630),
    frame(3, 14, 'tail-1', 640),
  ];
  const s = phaseStats(frames, 24);
  // Frames at 620, 630, 640; the first captured at 610: 3 frames in 30 ms.
  t.deepEqual(s, { frames: 3, cut: 3, offloaded: true, medianMs: 12, fps: 100 });
  const device = phaseStats(
    [
      frame(24, 40, 'local', 40),
      frame(24, 20, 'local', 60),
      frame(24, 20, 'local', 80),
      frame(24, 20, 'local', 100),
    ],
    24,
  );
  t.deepEqual(device, { frames: 3, cut: 24, offloaded: false, medianMs: 20, fps: 50 });
  const lines = speedupLines(device!, s!, { layers: 24, cut: 'auto', splitFrames: frames.length });
  t.regex(lines[0] ?? '', DEVICE);
  t.regex(lines[1] ?? '', SPLIT);
  t.regex(lines[1] ?? '', /the 4 other frames/);
  t.is(
    lines[2],
    'speedup: 2.0x fps over running everything on the device (device only 50.0 fps, split 100.0 fps; cut 3 by Algorithm 1)',
  );
  t.is(phaseStats([], 24), undefined);
});

test("the demo reads the edge's frame lines, fallbacks included", (t) => {
  const ok =
    'frame   31  cut  3 after pool1           head    4.2 ms  transfer    2.9 ms  tail    0.6 ms  total    8.4 ms    61.9 fps  tail by demo-tail-1  equal (max diff 0.0e+0)  top-1 airplane 0.325';
  t.deepEqual(parseFrameLine(ok, 5), { cut: 3, totalMs: 8.4, tailBy: 'demo-tail-1', fallback: false, at: 5 });
  const back =
    'frame    2  cut  3 after pool1           head    4.2 ms  transfer    0.0 ms  tail    0.6 ms  total  260.4 ms     3.9 fps  tail by local fallback: deadline passed  equal (run locally) (max diff 0.0e+0)';
  t.deepEqual(parseFrameLine(back, 6), { cut: 3, totalMs: 260.4, tailBy: 'local', fallback: true, at: 6 });
  t.is(parseFrameLine('done: 50 frames answered', 7), undefined);
});

for (const [flags, message] of [
  [['--device-frames', '-1'], /^edgecut: --device-frames="-1" is not allowed: expected a whole number >= 0$/],
  [['--frames', 'many'], /^edgecut: --frames="many" is not allowed: expected a whole number >= 0$/],
  [['--window', '0'], /^edgecut: --window="0" is not allowed: expected a whole number >= 1$/],
  [
    ['--emulate-device', 'a pi'],
    /^edgecut: --emulate-device="a pi" is not allowed: expected a preset name \(e\.g\. rpi3b\), <g>gflops, x<factor> or none$/,
  ],
  [
    ['--emulate-device', 'rpi9'],
    /^edgecut: --emulate-device="rpi9" is not allowed: unknown device preset "rpi9"; known presets: rpi3b, /,
  ],
] as const)
  test(`demo ${flags.join(' ')} is refused with one line before anything starts`, async (t) => {
    const r = await edgecut(['demo', ...flags]);
    t.is(r.code, 2);
    t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
    t.regex(r.stderr.trim(), message);
    t.is(r.stdout, '');
  });

/** The processes whose command line names `text`, and the children of `parent` (Linux /proc). */
async function processes(o: { naming?: string; childrenOf?: number }): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    if (o.naming !== undefined) {
      const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
      if (cmdline.includes(o.naming)) pids.push(Number(entry));
    } else {
      // /proc/PID/stat: pid (comm) state ppid ...; comm may hold spaces, so read after its closing parenthesis.
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === o.childrenOf) pids.push(Number(entry));
    }
  }
  return pids;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test('npm run demo | head: when its stdout closes, the demo stops every process it started and exits', async (t) => {
  const demo = spawn(process.execPath, [EDGECUT_BIN, 'demo', '--frames', '50'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const exited = new Promise<number | null>((resolve) => demo.once('exit', (code) => resolve(code)));
  t.teardown(() => demo.kill('SIGKILL'));
  // Read the first two lines (the dashboard, then the model in the demo's own directory), then close the pipe, as
  // `head -2` does.
  const lines = createInterface({ input: demo.stdout! });
  const seen: string[] = [];
  for await (const line of lines) {
    seen.push(line);
    if (seen.length === 2) break;
  }
  const dir = /^demo: model (\S+)\/demo-cnn\.onnx;/.exec(seen[1] ?? '')?.[1];
  t.truthy(dir, seen.join('\n'));
  // The tail worker runs from the demo's directory (--models-dir), so it names it.
  await until(async () => (await processes({ naming: dir! })).length > 0, 'the tail worker to start');
  // Its processes so far: the broker, the dashboard and the tail worker.
  const children = await processes({ childrenOf: demo.pid! });
  t.true(children.length >= 3, `the demo's processes: ${children.join(', ')}`);
  demo.stdout!.destroy();
  const code = await Promise.race([exited, sleep(60_000).then(() => 'still running')]);
  t.is(code, 0, 'the demo exits, with 0');
  await until(
    async () => children.every((pid) => !alive(pid)) && (await processes({ naming: dir! })).length === 0,
    'every process of the demo to stop',
    15_000,
  );
});

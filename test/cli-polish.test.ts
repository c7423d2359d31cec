/**
 * The CLI's polish (issue 14): progress (step and elapsed time) on stderr during long waits, never on stdout;
 * `--version`; required options marked in every help and refused in one line when missing.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import test from 'ava';
import { progressAfterMs, startProgress } from '../cli/progress.ts';
import { edgecut } from './helpers/cli.ts';
import { waitFor } from './helpers/wait.ts';

/** A stream that keeps what is written to it. */
function capture(tty = false) {
  const stream = new PassThrough() as PassThrough & { isTTY?: boolean; columns?: number };
  if (tty) {
    stream.isTTY = true;
    stream.columns = 100;
  }
  let text = '';
  stream.on('data', (b: Buffer) => {
    text += b.toString();
  });
  return { stream, text: () => text };
}

/** A plain progress line: `<step> ... <seconds> s`, or the closing `<what> done in <seconds> s`. */
const LINE = /^(.+) \.\.\. (\d+\.\d) s$|^(.+) done in (\d+\.\d) s$/;

test('progress: plain lines with the step and the elapsed time once the wait passes its threshold', async (t) => {
  const out = capture();
  const p = startProgress('the wait', { stream: out.stream, afterMs: 150, everyMs: 60_000 });
  p.step('starting the broker');
  // The first line comes at the threshold, with the time elapsed since the start.
  await waitFor(() => out.text().includes('\n'), 'the first progress line');
  const [first] = out.text().split('\n');
  const m = LINE.exec(first ?? '');
  t.truthy(m, first);
  t.is(m?.[1], 'starting the broker');
  t.true(Number(m?.[2]) >= 0.1, first);
  // A counted step prints as `name done/total`, and a new step name at once.
  p.step('profiling layer', 12, 58);
  await waitFor(() => out.text().includes('profiling layer 12/58 ... '), 'the counted step');
  p.stop();
  p.stop();
  const lines = out.text().trimEnd().split('\n');
  t.regex(lines.at(-1) ?? '', /^the wait done in \d+\.\d s$/);
  for (const l of lines) t.regex(l, LINE);
  t.is(lines.length, 3, out.text());
});

test('progress: a wait shorter than the threshold prints nothing', (t) => {
  const out = capture();
  const p = startProgress('short', { stream: out.stream, afterMs: 60_000 });
  p.step('loading');
  p.step('counting', 1, 2);
  p.stop();
  t.is(out.text(), '');
});

test('progress: counted steps are throttled, a heartbeat line comes while a step lasts', async (t) => {
  const out = capture();
  const p = startProgress('counting', { stream: out.stream, afterMs: 0, everyMs: 300, countEveryMs: 60_000 });
  for (let i = 1; i <= 50; i++) p.step('layer', i, 50);
  t.is(out.text().split('\n').filter(Boolean).length, 1, 'one line for 50 quick counted steps');
  t.regex(out.text(), /^layer 1\/50 \.\.\. 0\.\d s\n$/);
  // The heartbeat shows the latest count.
  await waitFor(() => out.text().includes('layer 50/50 ... '), 'the heartbeat with the latest count');
  p.stop();
  t.pass();
});

test('progress: on a terminal a cli-progress line redraws in place and is cleared at the end', async (t) => {
  const out = capture(true);
  const p = startProgress('the wait', { stream: out.stream, afterMs: 0 });
  p.step('profiling layer', 3, 10);
  await waitFor(() => out.text().includes('3/10 ... '), 'the terminal line');
  t.regex(out.text(), /profiling layer \[[^\]]+\] 3\/10 \.\.\. \d+\.\d s/);
  p.stop();
  t.false(out.text().includes('done in'), 'no closing line on a terminal');
  t.false(out.text().includes('\n'), 'the line is redrawn, not repeated');
});

test('EDGECUT_PROGRESS_AFTER_MS: whole milliseconds, one line naming it otherwise', (t) => {
  t.is(progressAfterMs({}), 2000);
  t.is(progressAfterMs({ EDGECUT_PROGRESS_AFTER_MS: '0' }), 0);
  t.is(progressAfterMs({ EDGECUT_PROGRESS_AFTER_MS: ' 500 ' }), 500);
  for (const bad of ['-1', 'soon', '1.5'])
    t.throws(() => progressAfterMs({ EDGECUT_PROGRESS_AFTER_MS: bad }), {
      message: `EDGECUT_PROGRESS_AFTER_MS=${JSON.stringify(bad)} is not allowed: expected a whole number of milliseconds >= 0`,
    });
});

test('edgecut device bench: a wait of several seconds shows its step and elapsed time on stderr (stock threshold)', async (t) => {
  const cache = await mkdtemp(join(tmpdir(), 'edgecut-progress-'));
  t.teardown(() => rm(cache, { recursive: true, force: true }));
  // Three kernels of at least 1 s each: the wait is longer than the 2 s threshold by construction.
  const r = await edgecut(['device', 'bench', '--seconds', '1', '--json'], {
    EDGECUT_CACHE_DIR: cache,
    EDGECUT_PROGRESS_AFTER_MS: '',
  });
  t.is(r.code, 0, r.stderr);
  t.is(typeof JSON.parse(r.stdout).gflops, 'number', 'stdout is the JSON alone');
  const lines = r.stderr.trimEnd().split('\n');
  for (const l of lines) t.regex(l, LINE);
  const first = LINE.exec(lines[0] ?? '');
  t.is(first?.[1], 'timing GEMM, convolution and memory bandwidth (1 s each)');
  t.true(Number(first?.[2]) >= 2, `not before 2 s: ${lines[0]}`);
  const last = LINE.exec(lines.at(-1) ?? '');
  t.is(last?.[3], 'edgecut device bench');
  t.true(Number(last?.[4]) >= 3, lines.at(-1));
});

test('edgecut plan: its steps on stderr with elapsed times, the JSON alone on stdout', async (t) => {
  const r = await edgecut(
    ['plan', 'squeezenet1.1', '--edge', 'rpi3b', '--server', '100', '--bandwidth', '1mbps', '--json'],
    { EDGECUT_PROGRESS_AFTER_MS: '0' },
  );
  t.is(r.code, 0, r.stderr);
  t.is(JSON.parse(r.stdout).edge, 'rpi3b');
  const lines = r.stderr.trimEnd().split('\n');
  for (const l of lines) t.regex(l, LINE);
  const steps = lines.map((l) => LINE.exec(l)?.[1]);
  t.true(steps.includes('loading the model squeezenet1.1'), r.stderr);
  t.true(steps.includes('predicting the layer times of squeezenet1.1'), r.stderr);
  t.true(
    steps.some((s) => s?.startsWith('calibrating the device presets on zoo model ')),
    r.stderr,
  );
  t.regex(lines.at(-1) ?? '', /^edgecut plan done in \d+\.\d s$/);
});

test('edgecut --version and -V print the package version', async (t) => {
  const { version } = JSON.parse(await readFile('package.json', 'utf8')) as { version: string };
  for (const flag of ['--version', '-V']) {
    const r = await edgecut([flag]);
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout, `${version}\n`);
    t.is(r.stderr, '');
  }
});

/** Every command with required options, the options, and arguments that satisfy everything else. */
const REQUIRED: Array<{ command: string[]; required: string[]; args: string[] }> = [
  {
    command: ['plan'],
    required: ['--edge', '--server', '--bandwidth'],
    args: ['squeezenet1.1', '--edge', 'rpi3b', '--server', '100', '--bandwidth', '1mbps'],
  },
  {
    command: ['model', 'split'],
    required: ['--after', '--out'],
    args: ['m.onnx', '--after', '1', '--out', 'x'],
  },
  { command: ['zoo', 'build'], required: ['--out'], args: ['squeezenet1.1', '--out', 'x.onnx'] },
  { command: ['users', 'add'], required: ['--role'], args: ['users.json', 'u', '--role', 'admin'] },
];

/** The options of a help text, each with its whole (possibly wrapped) description. */
function helpOptions(help: string): Map<string, string> {
  const out = new Map<string, string>();
  const body = help.split(/^Options:\n/m)[1] ?? '';
  let current: string | undefined;
  for (const line of body.split('\n')) {
    const m = /^ {2}(?:-\w, )?(--[\w-]+)/.exec(line);
    if (m) {
      current = m[1]!;
      out.set(current, line.trim());
    } else if (current && /^ {3,}\S/.test(line)) out.set(current, `${out.get(current)} ${line.trim()}`);
    else current = undefined;
  }
  return out;
}

test('help marks every required option (required), and only those', async (t) => {
  for (const { command, required } of REQUIRED) {
    const r = await edgecut([...command, '--help']);
    t.is(r.code, 0, r.stderr);
    const options = helpOptions(r.stdout);
    t.true(options.size > required.length, `${command.join(' ')}: options parsed`);
    for (const [flag, text] of options)
      t.is(text.endsWith('(required)'), required.includes(flag), `${command.join(' ')} ${flag}: ${text}`);
  }
});

test('a missing required option is one line naming it', async (t) => {
  for (const { command, required, args } of REQUIRED) {
    for (const flag of required) {
      const i = args.indexOf(flag);
      const without = [...args.slice(0, i), ...args.slice(i + 2)];
      const r = await edgecut([...command, ...without]);
      t.is(r.code, 1, `${command.join(' ')} without ${flag}`);
      t.is(r.stdout, '');
      t.regex(
        r.stderr,
        new RegExp(
          `^edgecut: required option '${flag} <[a-z-]+>' not specified \\(run with --help for usage\\)\\n$`,
        ),
      );
    }
  }
});

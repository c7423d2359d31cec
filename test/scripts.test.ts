/**
 * Every npm script the README shows runs and succeeds (CONTRIBUTING.md, convention 15).
 */
import { execFile } from 'node:child_process';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import test from 'ava';
import { edgecut } from './helpers/cli.ts';

const run = promisify(execFile);
const npm = (args: string[]) => run('npm', ['run', '--silent', ...args], { timeout: 180_000 });

test('npm run lint passes', async (t) => {
  await t.notThrowsAsync(npm(['lint']));
});

test('npm run typecheck passes', async (t) => {
  await t.notThrowsAsync(npm(['typecheck']));
});

test('npm run schemas regenerates exactly the committed code', async (t) => {
  const file = 'schemas/generated/edgecut_generated.ts';
  const before = await readFile(file);
  await npm(['schemas']);
  const after = await readFile(file);
  if (!before.equals(after)) {
    // Put the committed code back (other tests load it concurrently; the script itself only writes atomically).
    await writeFile(`${file}.restore`, before);
    await rename(`${file}.restore`, file);
  }
  t.true(
    before.equals(after),
    'regenerated code differs from the committed code: run npm run schemas and commit',
  );
});

test('npm run demo -- --help lists the options', async (t) => {
  const { stdout } = await npm(['demo', '--', '--help']);
  for (const opt of ['--frames', '--window', '--cut', '--device-frames', '--emulate-device'])
    t.true(stdout.includes(opt), opt);
});

test('npm run bench -- model measures inspect and split of Inception-v3', async (t) => {
  const { stdout } = await npm(['bench', '--', 'model', '--runs', '1']);
  t.regex(stdout, /^inspect\s+\d+/m);
  t.regex(stdout, /^split\s+\d+\s+\d+/m);
  t.regex(stdout, /split of inception-v3 at cut \d+ of \d+: load\+analyse\+split\+write \d+ ms/);
});

test('npm run bench -- planner times one re-plan over every cut of Inception-v3', async (t) => {
  const { stdout } = await npm(['bench', '--', 'planner', '--iterations', '300']);
  t.regex(stdout, /planner benchmark: inception-v3, \d+ candidate cuts/);
  t.regex(stdout, /median \d+\.\d us, p90/);
});

test('npm run bench -- pipeline --quick runs the split SqueezeNet pipeline and the broker overhead table', async (t) => {
  const { hasMosquitto } = await import('../bench/mosquitto.ts');
  const started = Date.now();
  const { stdout } = await npm(['bench', '--', 'pipeline', '--quick']);
  t.log(`took ${((Date.now() - started) / 1000).toFixed(1)} s`);
  t.regex(stdout, /^pipeline benchmark: squeezenet1\.0 split after features\.7\.cat \(cut 32 of 67; /m);
  const n = '[\\d.]+';
  for (const rate of ['10 Mbit/s', '100 Mbit/s']) {
    // 1a: rate, request size, head, wire, tail, ideal, latency, ratio, overhead, verdict.
    t.regex(
      stdout,
      new RegExp(`^${rate}\\s+${n} KiB(\\s+-?${n}){7}\\s+(met|MISSED)$`, 'm'),
      `latency row ${rate}`,
    );
    // 1b: rate, head, wire, tail, slowest stage, bound, 0.85 x bound, fps, ratio, verdict.
    t.regex(
      stdout,
      new RegExp(`^${rate}(\\s+${n}){3}\\s+(head|uplink|tail)(\\s+${n}){4}\\s+(met|MISSED)$`, 'm'),
      `throughput row ${rate}`,
    );
    t.regex(
      stdout,
      new RegExp(
        `^latency @ ${rate}: ${n} ms = ${n} x ideal ${n} ms \\(target <= 1\\.15: (met|MISSED)\\)$`,
        'm',
      ),
    );
    t.regex(
      stdout,
      new RegExp(
        `^throughput @ ${rate}: ${n} fps = ${n} x bound ${n} fps \\((head|uplink|tail)\\) \\(target >= 0\\.85: (met|MISSED)\\)$`,
        'm',
      ),
    );
  }
  t.regex(stdout, /^frames run on the edge instead of the worker \(fallbacks\): 0$/m);
  const brokers = hasMosquitto ? ['aedes', 'mosquitto', 'mosquitto\\+nodelay'] : ['aedes'];
  for (const broker of brokers)
    for (const qos of [1, 0])
      t.regex(
        stdout,
        new RegExp(`^${broker}\\s+${qos}(\\s+-?${n}){7}\\s+-?\\d+%$`, 'm'),
        `${broker} QoS ${qos}`,
      );
});

test('npm run bench -- predict runs leave-one-out over the zoo (quick sweep, few runs)', async (t) => {
  const { stdout } = await npm(['bench', '--', 'predict', '--quick', '--runs', '2', '--rounds', '1']);
  t.regex(stdout, /predict benchmark: .*leave-one-out over the zoo/);
  for (const name of ['squeezenet1.0', 'alexnet', 'inception-v3', 'mobilenet-v2', 'resnet-50'])
    t.true(stdout.includes(name), name);
  t.regex(stdout, /chosen mix: worst whole-model error \d+\.\d%/);
});

test('npm run bench -- emulation compares the profile-based stretch with the wall-time one', async (t) => {
  const { stdout } = await npm(['bench', '--', 'emulation', '--repeats', '5']);
  t.regex(stdout, /5 repeats at factor 10/);
  // The figures are the benchmark's (on an idle host, for the closing note); here, that every row is measured.
  const cv = (name: string) =>
    Number(new RegExp(`${name}\\s+[\\d.]+ ms\\s+CV\\s+([\\d.]+)%`).exec(stdout)?.[1]);
  for (const row of [
    'real time on this host',
    'emulated: factor x profiled',
    'emulated: factor x wall \\(old rule\\)',
  ])
    t.true(Number.isFinite(cv(row)), `${row}: ${stdout}`);
});

test('npm run bench -- loop --quick: a cold start of the live loop, no frame lost', async (t) => {
  t.timeout(300_000);
  const { stdout } = await npm(['bench', '--', 'loop', '--quick']);
  // Columns: to new plan, frames until right, plan changes (at most 2, as test/loop.test.ts asks of a whole run),
  // fallbacks, final cut, frames lost (0).
  t.regex(stdout, /cold start\s+start\s+[\d.]+ s\s+\d+\s+[012]\s+\d+\s+\d+\s+0\s*$/m, stdout);
});

test('npm run bench -- soak --minutes 0.5: three robots through a worker kill and a broker restart, no frame lost', async (t) => {
  t.timeout(300_000);
  const { stdout } = await npm([
    'bench',
    '--',
    'soak',
    '--minutes',
    '0.5',
    '--out',
    '.cache/bench/soak-test.json',
  ]);
  t.regex(stdout, /fault at .*tail-1 killed \(SIGKILL\), tail-3 started/);
  t.regex(stdout, /fault at .*broker restarted/);
  for (const robot of ['robot-1', 'robot-2', 'robot-3'])
    t.regex(stdout, new RegExp(`\\| ${robot} \\| [1-9]\\d* \\| 0 \\|`));
  // Half a minute is too short for a memory slope (it is taken after each process's first minute): n/a, not a FAIL.
  t.regex(stdout, /^soak: [1-9]\d* frames answered, 0 lost, largest RSS slope n\/a MB\/min: PASS$/m, stdout);
});

test('edgecut bench soak: a bad --minutes is one line, exit 2', async (t) => {
  for (const bad of ['0', 'ten']) {
    const r = await edgecut(['bench', 'soak', '--minutes', bad]);
    t.is(r.code, 2);
    t.is(
      r.stderr.trim(),
      `edgecut: --minutes ${bad} is not allowed: expected a number of minutes above 0, at most 1440`,
    );
  }
});

test('npm run bench -- broker --quick: edgecut broker and Mosquitto side by side, every QoS 1 message delivered', async (t) => {
  t.timeout(300_000);
  const { stdout } = await npm(['bench', '--', 'broker', '--quick']);
  // Each row: msg/s of both brokers and their ratio, ..., and the messages lost by each (QoS 1: none).
  for (const clients of ['1 -> 1', '3 -> \\$share of 3', '3 -> 3 \\(plain pairs\\)'])
    t.regex(
      stdout,
      new RegExp(
        `^\\| 64 KiB \\| 1 \\| ${clients} \\| [1-9][\\d.]* \\| [1-9][\\d.]* \\| [\\d.]+x \\|.* \\| 0 / 0 \\|$`,
        'm',
      ),
      stdout,
    );
  // The group against one subscriber and against three plain pairs, for each broker.
  t.regex(
    stdout,
    /^64 KiB QoS 1, \$share of 3: edgecut [\d.]+x of 1 -> 1, [\d.]+x of 3 plain pairs; mosquitto [\d.]+x of 1 -> 1, [\d.]+x of 3 plain pairs$/m,
  );
});

/** Runs `npm run bench -- <args>` expecting it to fail: its exit code and stderr (code 0 when it did not fail). */
const benchFails = (args: string[]) =>
  npm(['bench', '--', ...args]).then(
    () => ({ code: 0, stderr: '' }),
    (err: { code: number; stderr: string }) => err,
  );

test('npm run bench -- broker: a bad flag is one line, exit 2', async (t) => {
  const r = await benchFails(['broker', '--rounds', '0']);
  t.is(r.code, 2);
  t.is(r.stderr.trim(), 'bench broker: --rounds 0 is not allowed: expected a whole number >= 1');
  const c = await benchFails(['broker', '--clients', 'one,three']);
  t.is(c.code, 2);
  t.is(
    c.stderr.trim(),
    'bench broker: --clients one,three is not allowed: expected a list of one, share, pairs (one to one, a $share group of three, three plain pairs)',
  );
  const p = await benchFails(['broker', '--processes', 'each']);
  t.is(p.code, 2);
  t.is(
    p.stderr.trim(),
    'bench broker: --processes each is not allowed: expected per-role or per-client (the publishers in one process and the subscribers in another, or every client a process of its own)',
  );
});

test('npm run bench: an unknown flag, a missing value or a stray argument is one line naming the allowed flags; --help prints them', async (t) => {
  const paper =
    'usage: npm run bench -- paper [--quick] [--out FILE] [--doc DIR] [--jobs N] [--fresh] [--render-only] [--only ID] [--auto-only] [--pipelined-only] [--refine-only]';
  for (const [args, line] of [
    [['paper', '--bogus'], `bench paper: Unknown option '--bogus'; ${paper}`],
    [['paper', '--jobs'], `bench paper: Option '--jobs <value>' argument missing; ${paper}`],
    [
      ['soak', '10'],
      "bench soak: Unexpected argument '10'. This command does not take positional arguments; usage: npm run bench -- soak [--minutes N] [--out FILE]",
    ],
  ] as const) {
    const r = await benchFails([...args]);
    t.is(r.code, 2, args.join(' '));
    t.is(r.stderr.trim(), line);
  }
  const help = await npm(['bench', '--', 'paper', '--help']);
  t.is(help.stdout.trim(), paper);
});

test('npm run bench -- fairness --burst 200: the other robot is answered throughout the burst', async (t) => {
  t.timeout(300_000);
  // Every wait of the benchmark is bounded (at most about 4 min in all), so it reports even when it stalls.
  const { stdout } = await run('npm', ['run', '--silent', 'bench', '--', 'fairness', '--burst', '200'], {
    timeout: 280_000,
  });
  t.notRegex(stdout, /unanswered/, stdout);
  t.regex(stdout, /\| alone \| (\d+) \| \1 \|/, stdout);
  t.regex(stdout, /\| during A's burst of 200 \| (\d+) \| \1 \|/, stdout);
  t.regex(stdout, /A's burst: .*served/);
  t.regex(stdout, /B's p95 under the burst: [\d.]+x its idle p95/);
});

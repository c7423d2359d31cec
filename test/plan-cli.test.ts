/**
 * `edgecut plan`, the what-if command, and the generated paper reproduction.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import test from 'ava';
import { edgecut } from './helpers/cli.ts';

const run = promisify(execFile);

interface Cand {
  index: number;
  after: string | null;
  op: string;
  bytes: number;
  edgeMs: number;
  transferMs: number;
  serverMs: number;
  totalMs: number;
}

test('plan --json: every candidate, k = 0 first and edge-only last, and the best is the minimum', async (t) => {
  const r = await edgecut([
    'plan',
    'alexnet',
    '--edge',
    'rpi3b',
    '--server',
    'jetson-tx2',
    '--bandwidth',
    '1mbps',
    '--json',
  ]);
  t.is(r.code, 0, r.stderr);
  const plan = JSON.parse(r.stdout) as { best: Cand; candidates: Cand[] };
  const first = plan.candidates[0]!;
  const last = plan.candidates.at(-1)!;
  t.like(first, { index: 0, after: null, op: 'input', edgeMs: 0 });
  t.is(last.transferMs, 0);
  t.is(last.serverMs, 0);
  t.is(plan.candidates.length, last.index + 1);
  const min = Math.min(...plan.candidates.map((c) => c.totalMs));
  t.is(plan.best.totalMs, min);
  for (const c of plan.candidates) t.true(Math.abs(c.edgeMs + c.transferMs + c.serverMs - c.totalMs) < 1e-6);
  for (const key of [
    'index',
    'after',
    'op',
    'bytes',
    'edgeMs',
    'transferMs',
    'serverMs',
    'totalMs',
    'energyJ',
  ])
    t.true(key in plan.best, key);
  // The rpi3b's whole AlexNet is Table III's 3200 ms.
  t.true(Math.abs(last.edgeMs - 3200) < 1, `${last.edgeMs}`);
});

test('plan: extremes of bandwidth pick the extremes of the split', async (t) => {
  const slow = JSON.parse(
    (
      await edgecut([
        'plan',
        'squeezenet1.0',
        '--edge',
        'rpi3b-ncs',
        '--server',
        'i7-7500u',
        '--bandwidth',
        '8kbps',
        '--json',
      ])
    ).stdout,
  ) as { best: Cand; candidates: Cand[] };
  t.is(slow.best.index, slow.candidates.at(-1)!.index, 'edge only at 8 kbit/s on the NCS');
  const fast = JSON.parse(
    (
      await edgecut([
        'plan',
        'squeezenet1.0',
        '--edge',
        '1',
        '--server',
        'xeon-e5-2696',
        '--bandwidth',
        '10gbps',
        '--json',
      ])
    ).stdout,
  ) as { best: Cand };
  t.is(fast.best.index, 0, 'full offload from a 1-GFLOPs device over a 10 Gbit/s link');
});

test('plan prints a table with a bar chart and the choice', async (t) => {
  const r = await edgecut([
    'plan',
    'squeezenet1.0',
    '--edge',
    'rpi3b',
    '--server',
    'jetson-tx2',
    '--bandwidth',
    '1mbps',
  ]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /k\s+after\s+op\s+D_k\s+edge ms\s+transfer ms\s+server ms\s+total ms/);
  t.regex(r.stdout, /[█▒░]+ ◀ best/);
  t.regex(r.stdout, /\nbest: cut \d+ /);
});

test('plan: bad flags are one line naming the flag, the value and what is allowed', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['--bandwidth', 'fast'], /--bandwidth="fast" is not allowed: expected a rate such as 1mbps/],
    [['--edge', 'rpi9'], /unknown device preset "rpi9"; known presets: rpi3b/],
    [['--load', '0.5'], /--load="0.5" is not allowed: expected a load factor >= 1/],
    [['--objective', 'cost'], /--objective="cost" is not allowed: expected latency, throughput or energy/],
  ];
  for (const [flags, message] of cases) {
    const args = [
      'plan',
      'squeezenet1.1',
      '--edge',
      'rpi3b',
      '--server',
      'jetson-tx2',
      '--bandwidth',
      '1mbps',
    ];
    for (let i = 0; i < flags.length; i += 2) {
      const at = args.indexOf(flags[i]!);
      if (at >= 0) args[at + 1] = flags[i + 1]!;
      else args.push(flags[i]!, flags[i + 1]!);
    }
    const r = await edgecut(args);
    t.is(r.code, 2, flags.join(' '));
    t.regex(r.stderr, message);
    t.is(r.stderr.trim().split('\n').length, 1);
  }
});

test('docs/paper-reproduction.md is what the script generates', async (t) => {
  const { stdout } = await run('npm', ['run', '--silent', 'docs:paper', '--', '--check'], {
    timeout: 300_000,
  });
  t.regex(stdout, /up to date/);
});

/**
 * Device speed, presets and load scaling (paper Fig. 17).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { benchDevice } from '../measurement/device/bench.ts';
import { hostBench, hostBenchPath } from '../measurement/device/host.ts';
import { allPresets, BUILTIN_PRESETS, findPreset } from '../measurement/device/presets.ts';
import { loadFactor, scaleByLoad } from '../measurement/load.ts';
import { UserError } from '../runtime/errors.ts';
import { edgecut } from './helpers/cli.ts';

test('the paper presets carry Tables I-III', (t) => {
  const g = Object.fromEntries(BUILTIN_PRESETS.map((p) => [p.name, p.gflops]));
  t.deepEqual(g, {
    rpi3b: 2,
    iphone6: 10,
    'xeon-e3-1246': 20,
    'jetson-tx2': 50,
    'rpi3b-ncs': 36,
    'i7-7500u': 44,
    'xeon-e5-2695': 130,
    'xeon-e5-2696': 330,
  });
  t.deepEqual(findPreset('rpi3b').measured, { 'squeezenet1.0': 2032, alexnet: 3200, 'inception-v3': 7000 });
  t.deepEqual(findPreset('rpi3b-ncs').measured, { 'squeezenet1.0': 48, alexnet: 91, 'inception-v3': 326 });
  const err = t.throws(() => findPreset('rpi5'), { instanceOf: UserError });
  t.regex(err.message, /unknown device preset "rpi5"; known presets: rpi3b, iphone6/);
});

test('user presets are added, override built-ins, and a bad file is one clear line', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-presets-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const good = join(dir, 'good.json');
  await writeFile(
    good,
    JSON.stringify([
      { name: 'rpi5', description: 'Raspberry Pi 5', gflops: 30, measured: { 'squeezenet1.0': 120 } },
      { name: 'rpi3b', description: 'mine', gflops: 2.5 },
    ]),
  );
  const all = allPresets(good);
  t.is(findPreset('rpi5', all).measured['squeezenet1.0'], 120);
  t.is(findPreset('rpi3b', all).gflops, 2.5);
  const bad = join(dir, 'bad.json');
  await writeFile(bad, JSON.stringify([{ name: 'x', description: 'y', gflops: -1 }]));
  const err = t.throws(() => allPresets(bad), { instanceOf: UserError });
  t.is(err.message, `${bad}: 0.gflops: expected GFLOPs > 0`);
  const notJson = join(dir, 'nope.json');
  await writeFile(notJson, '{');
  t.regex(t.throws(() => allPresets(notJson))?.message ?? '', new RegExp(`^${notJson}: cannot read presets`));
});

test('load factor: max(1, loadavg1 / cores), paper Fig. 17', (t) => {
  t.is(loadFactor(0.5, 2), 1);
  t.is(loadFactor(2, 2), 1);
  t.is(loadFactor(3, 2), 1.5);
  t.is(loadFactor(8, 4), 2);
  t.deepEqual(scaleByLoad([1, 2.5], 2), [2, 5]);
  t.throws(() => loadFactor(1, 0), { instanceOf: RangeError });
  t.throws(() => loadFactor(Number.NaN, 2), { instanceOf: RangeError });
});

test('device bench measures GEMM, convolution and memory bandwidth', async (t) => {
  const r = await benchDevice({ threads: 1, seconds: 0.2 });
  t.is(r.kernels.length, 3);
  t.true(r.gflops > 0.5, `${r.gflops} GFLOPs`);
  t.true(r.bandwidthGBs > 0.1);
  t.true(r.kernels.every((k) => k.ms > 0 && Number.isFinite(k.rate)));
});

test('edgecut device bench and device presets run; bad flags are one line', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-dev-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const env = { EDGECUT_CACHE_DIR: dir };
  const bench = await edgecut(['device', 'bench', '--seconds', '0.2'], env);
  t.is(bench.code, 0, bench.stderr);
  t.regex(
    bench.stdout,
    /sustained \d+(\.\d)? GFLOPs \(median of GEMM and convolution\), memory \d+(\.\d)? GB\/s/,
  );
  const presets = await edgecut(['device', 'presets']);
  t.regex(presets.stdout, /rpi3b-ncs\s+36\s+squeezenet1\.0 48 ms, alexnet 91 ms, inception-v3 326 ms/);
  const bad = await edgecut(['device', 'bench', '--threads', 'x']);
  t.is(bad.code, 2);
  t.is(bad.stderr.trim(), 'edgecut: --threads="x" is not allowed: expected a whole number');
});

test('edgecut profile --sweep --quick --out writes the samples the predictors train on', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-sweep-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const out = join(dir, 'sweep.json');
  const r = await edgecut(['profile', '--sweep', '--quick', '--out', out]);
  t.is(r.code, 0, r.stderr);
  const { readFile } = await import('node:fs/promises');
  const sweep = JSON.parse(await readFile(out, 'utf8')) as { samples: Array<{ op: string; ms: number }> };
  t.true(sweep.samples.length >= 20);
  t.true(sweep.samples.every((s) => typeof s.op === 'string' && s.ms >= 0));
});

test.serial(
  'a host speed measured while the host is busy is used but not saved; an idle one is saved',
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'edgecut-hostbench-'));
    const saved = process.env.EDGECUT_CACHE_DIR;
    process.env.EDGECUT_CACHE_DIR = dir;
    t.teardown(async () => {
      if (saved === undefined) delete process.env.EDGECUT_CACHE_DIR;
      else process.env.EDGECUT_CACHE_DIR = saved;
      await rm(dir, { recursive: true, force: true });
    });
    // Two other runnable threads per core: busy.
    const busy = await hostBench(1, () => 1 + 2 * cpus().length);
    t.true(busy.gflops > 0);
    t.false(existsSync(hostBenchPath(1)), 'not saved');
    // Only the reader runnable: idle, saved, and read back the next time.
    const idle = await hostBench(1, () => 1);
    t.true(existsSync(hostBenchPath(1)), 'saved');
    t.deepEqual(await hostBench(1, () => 1 + 2 * cpus().length), idle);
  },
);

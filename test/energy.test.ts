/**
 * The energy objective of Algorithm 1 (device-side joules per frame), the presets' power figures and
 * `edgecut plan --objective energy`.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import {
  allPresets,
  BUILTIN_PRESETS,
  PresetSchema,
  presetPower,
  presetsWithPower,
} from '../measurement/device/presets.ts';
import { searchPartition } from '../planning/search.ts';
import { UserError } from '../runtime/errors.ts';
import { PlanSchema } from '../schemas/messages.ts';
import { decide } from '../services/planner/decide.ts';
import { edgecut } from './helpers/cli.ts';
import { THREE_LAYERS } from './helpers/profiles.ts';

const base = THREE_LAYERS;

const close = (a: number | null, b: number) => a !== null && Math.abs(a - b) < 1e-12;

test('energy of every candidate as computed by hand: compute, uplink at radio power, the wait at idle', (t) => {
  const r = searchPartition({ ...base, power: { computeW: 4, radioW: 2, idleW: 1 } });
  // E_k = (4 * edge + 2 * uplink + 1 * (server + 1.1)) / 1000, in joules (times in ms).
  const expected = [
    (0 + 2 * 11 + (6 + 1.1)) / 1000, // k = 0: uplink T(1000) = 11
    (4 * 10 + 2 * 6 + (5 + 1.1)) / 1000, // k = 1: uplink T(500) = 6
    (4 * 30 + 2 * 22 + (3 + 1.1)) / 1000, // k = 2: uplink T(2000) = 22
    (4 * 60) / 1000, // k = 3: edge only, nothing sent, nothing awaited
  ];
  r.candidates.forEach((c, i) => {
    t.true(close(c.energyJ, expected[i]!), `cut ${i}: ${c.energyJ} J, expected ${expected[i]}`);
  });
  // transferMs stays the sum of the two ways, as without power.
  t.deepEqual(
    r.candidates.map((c) => Math.round(c.transferMs * 10) / 10),
    [12.1, 7.1, 23.1, 0],
  );
  // The objective is still latency: power only adds the figure.
  t.is(r.objective, 'latency');
  t.is(r.best.index, 0);
});

test('without power every candidate has energyJ null', (t) => {
  const r = searchPartition(base);
  t.true(r.candidates.every((c) => c.energyJ === null));
});

test('the energy objective picks another cut than latency when the radio costs far more than compute', (t) => {
  const input = { ...base, edgeMs: [10, 10, 10], serverMs: [1, 1, 1] };
  // Latency: full offload 15.1 ms beats edge-only 30 ms.
  t.is(searchPartition(input).best.index, 0);
  // A power-hungry radio (20 W) against a frugal processor (2 W): sending 1000 bytes for 11 ms costs 0.22 J,
  // computing the whole model for 30 ms 0.06 J.
  const costly = searchPartition({
    ...input,
    objective: 'energy',
    power: { computeW: 2, radioW: 20, idleW: 1 },
  });
  t.is(costly.objective, 'energy');
  t.is(costly.best.index, 3);
  t.true(close(costly.best.energyJ, 0.06));
  const min = Math.min(...costly.candidates.map((c) => c.energyJ!));
  t.is(costly.best.energyJ, min);
  // A cheap radio makes offloading the thrifty choice again.
  const cheap = searchPartition({
    ...input,
    objective: 'energy',
    power: { computeW: 2, radioW: 0.5, idleW: 0.1 },
  });
  t.is(cheap.best.index, 0);
});

test('energy ties are broken by the one-frame latency', (t) => {
  const r = searchPartition({ ...base, objective: 'energy', power: { computeW: 0, radioW: 0, idleW: 0 } });
  t.true(r.candidates.every((c) => c.energyJ === 0));
  t.is(r.best.index, searchPartition(base).best.index);
});

test('the energy objective without power, or with a negative figure, is a RangeError', (t) => {
  t.throws(() => searchPartition({ ...base, objective: 'energy' }), {
    instanceOf: RangeError,
    message: "objective 'energy' needs the edge's power figures (computeW, radioW, idleW); none were given",
  });
  t.throws(() => searchPartition({ ...base, power: { computeW: 1, radioW: -1, idleW: 1 } }), {
    instanceOf: RangeError,
    message: 'power radioW must be >= 0 W, got -1',
  });
});

test("the planner's hysteresis measures the energy objective in joules", (t) => {
  const result = searchPartition({
    ...base,
    edgeMs: [10, 10, 10],
    serverMs: [1, 1, 1],
    objective: 'energy',
    power: { computeW: 2, radioW: 20, idleW: 1 },
  });
  const d = decide({ current: 0 }, result, 0, { minGain: 0.1, holdMs: 0 });
  t.is(d.switchTo?.index, 3);
  t.regex(d.reason, /switched from cut 0: cut 3 predicted 73\.2% lower energy/);
});

test('the edge presets carry power figures with their sources; presetPower finds them by name', (t) => {
  t.deepEqual(presetsWithPower(), ['rpi3b', 'rpi3b-ncs']);
  for (const p of BUILTIN_PRESETS) {
    t.true(PresetSchema.safeParse(p).success, p.name);
    if (!p.power) continue;
    t.true(p.power.computeW > p.power.idleW && p.power.radioW > p.power.idleW, p.name);
    t.regex(p.power.source, /estimate/, `${p.name} says which figures are estimates`);
  }
  t.like(presetPower('rpi3b'), { computeW: 3.7, radioW: 1.9, idleW: 1.4 });
  t.like(presetPower('rpi3b-ncs'), { computeW: 2.6, radioW: 2.2, idleW: 1.7 });
  t.is(presetPower('jetson-tx2'), undefined);
  t.is(presetPower('no-such-preset'), undefined);
  t.is(presetPower(undefined), undefined);
});

test('user presets may carry power; a figure <= 0 or a missing one is one clear line', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-power-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const good = join(dir, 'good.json');
  await writeFile(
    good,
    JSON.stringify([
      {
        name: 'rpi5',
        description: 'Raspberry Pi 5',
        gflops: 30,
        power: { computeW: 7, radioW: 3.5, idleW: 2.7, source: 'my bench meter' },
      },
    ]),
  );
  const all = allPresets(good);
  t.deepEqual(presetPower('rpi5', all), { computeW: 7, radioW: 3.5, idleW: 2.7, source: 'my bench meter' });
  const cases: Array<[unknown, string]> = [
    [{ computeW: 3, radioW: -1, idleW: 1 }, '0.power.radioW: expected radio watts > 0'],
    [{ computeW: 0, radioW: 1, idleW: 1 }, '0.power.computeW: expected compute watts > 0'],
    [{ computeW: 3, radioW: 1 }, '0.power.idleW: expected idle watts > 0'],
  ];
  for (const [power, message] of cases) {
    const bad = join(dir, 'bad.json');
    await writeFile(bad, JSON.stringify([{ name: 'x', description: 'y', gflops: 1, power }]));
    const err = t.throws(() => allPresets(bad), { instanceOf: UserError });
    t.is(err.message, `${bad}: ${message}`);
  }
});

test('plans carry the predicted energy; older plans without it still parse', (t) => {
  const plan = {
    version: 1,
    device: 'robot-1',
    modelId: 'a'.repeat(64),
    seq: 1,
    cut: { index: 4, after: 'conv', bytes: 100, tensors: ['t'] },
    objective: 'energy',
    predicted: { edgeMs: 1, transferMs: 2, serverMs: 3, totalMs: 6, energyJ: 0.5 },
    reason: 'test',
    inputs: {},
    issuedAt: 0,
  };
  t.is(PlanSchema.parse(plan).predicted?.energyJ, 0.5);
  t.is(
    PlanSchema.parse({ ...plan, predicted: { ...plan.predicted, energyJ: null } }).predicted?.energyJ,
    null,
  );
  const { energyJ: _, ...old } = plan.predicted;
  t.is(PlanSchema.parse({ ...plan, objective: 'latency', predicted: old }).predicted?.energyJ, undefined);
});

interface Cand {
  index: number;
  totalMs: number;
  energyJ: number | null;
}

const squeeze = [
  'plan',
  'squeezenet1.0',
  '--edge',
  'rpi3b',
  '--server',
  'jetson-tx2',
  '--bandwidth',
  '1mbps',
];

test('edgecut plan --objective energy: a J/frame column, the joules of the best, and energyJ in --json', async (t) => {
  const [text, json, latency] = await Promise.all([
    edgecut([...squeeze, '--objective', 'energy']),
    edgecut([...squeeze, '--objective', 'energy', '--json']),
    edgecut([...squeeze, '--json']),
  ]);
  t.is(text.code, 0, text.stderr);
  t.regex(text.stdout, /objective energy; edge power 3\.7 W computing, 1\.9 W sending, 1\.4 W waiting/);
  t.regex(text.stdout, /total ms\s+J\/frame\s+█ edge/);
  t.regex(text.stdout, /\d+\.\d{3}\s+[█▒░]+ ◀ best/);
  t.regex(text.stdout, /\nbest: cut \d+ .*; \d+\.\d{3} J per frame on the device\n/);
  t.is(json.code, 0, json.stderr);
  const plan = JSON.parse(json.stdout) as { objective: string; best: Cand; candidates: Cand[] };
  t.is(plan.objective, 'energy');
  t.true(plan.candidates.every((c) => typeof c.energyJ === 'number' && c.energyJ > 0));
  t.is(plan.best.energyJ, Math.min(...plan.candidates.map((c) => c.energyJ!)));
  // Edge-only: the whole model at compute power, Table III's 2032 ms on the rpi3b.
  t.true(Math.abs(plan.candidates.at(-1)!.energyJ! - 3.7 * 2.032) < 1e-3);
  // The latency objective shows the energy too, and at 1 Mbit/s chooses a cut that costs more joules.
  const lat = JSON.parse(latency.stdout) as { best: Cand };
  t.true(lat.best.energyJ! > plan.best.energyJ!);
  t.true(lat.best.totalMs <= plan.best.totalMs);
});

test('edgecut plan --objective energy with an edge without power figures is one line naming it', async (t) => {
  const r = await edgecut([
    'plan',
    'squeezenet1.1',
    '--edge',
    'jetson-tx2',
    '--server',
    'xeon-e5-2696',
    '--bandwidth',
    '1mbps',
    '--objective',
    'energy',
  ]);
  t.is(r.code, 2);
  t.is(
    r.stderr.trim(),
    'edgecut: --objective energy needs the edge\'s power figures, and preset "jetson-tx2" has none; ' +
      'presets with power figures: rpi3b, rpi3b-ncs',
  );
  // Without the energy objective the table has the column, empty.
  const plain = await edgecut([
    'plan',
    'squeezenet1.1',
    '--edge',
    '1',
    '--server',
    '50',
    '--bandwidth',
    '1mbps',
  ]);
  t.is(plain.code, 0, plain.stderr);
  t.regex(plain.stdout, /total ms\s+J\/frame/);
  t.regex(plain.stdout, /\s-\s+[█▒░]+ ◀ best/);
  t.notRegex(plain.stdout, /J per frame/);
});

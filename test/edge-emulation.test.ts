/**
 * Emulation for experiments: the uplink shaped to a rate and set-up time changes the measured transfer time by the
 * expected amount (real broker, real worker); the device's compute stretched by a factor stretches head and local
 * tail times by it, and the published profile is the emulated device's.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import {
  ComputeStretch,
  type DeviceEmulation,
  emulatedProfile,
  modelNames,
  parseDeviceSpec,
  profiledSpan,
  RUN_QUEUE,
  RunQueue,
  resolveEmulation,
  runQueueContention,
} from '../measurement/device/emulation.ts';
import { BUILTIN_PRESETS } from '../measurement/device/presets.ts';
import { profileModel } from '../measurement/profiler.ts';
import { GraphBuilder } from '../model/builder.ts';
import { ModelHandle } from '../model/handle.ts';
import { mulberry32 } from '../model/random.ts';
import { median, quantile } from '../planning/stats.ts';
import { parseConfig } from '../runtime/config.ts';
import { UserError } from '../runtime/errors.ts';
import { silentLogger } from '../runtime/log.ts';
import { decodeMessage, emptyTimes, encodeRequest, type InferenceRequest } from '../schemas/codec.ts';
import { type Profile, parseProfile } from '../schemas/profile.ts';
import { topics } from '../schemas/topics.ts';
import { EdgeHead, type EdgeOptions, type FrameReport } from '../services/edge-head/edge.ts';
import { type Frame, randomInputs } from '../services/edge-head/frames.ts';
import { resolveTail, tailSettings } from '../services/server-tail/config.ts';
import { TailWorker } from '../services/server-tail/worker.ts';
import { collect, connectClient, startBroker } from './helpers/broker.ts';
import { planFor, waitFor } from './helpers/edge.ts';
import { demoModelDir } from './helpers/models.ts';
import { edgeOptions, tailOptions } from './helpers/services.ts';

async function* frames(model: ModelHandle, n: number): AsyncGenerator<Frame> {
  const rand = mulberry32(3);
  for (let i = 0; i < n; i++)
    yield { index: i, capturedAt: Date.now(), inputs: randomInputs(model.inputs, rand) };
}

async function runFrames(edge: EdgeHead, model: ModelHandle, n: number): Promise<FrameReport[]> {
  const reports: FrameReport[] = [];
  await edge.run(frames(model, n), (r) => reports.push(r));
  return reports;
}

async function startEdge(
  t: ExecutionContext,
  model: ModelHandle,
  o: Pick<EdgeOptions, 'mqttUrl' | 'deviceId'> & Partial<EdgeOptions>,
  profile?: Profile,
): Promise<EdgeHead> {
  const p = profile ?? (await profileModel(model, { runs: 1, warmup: 1, checkCuts: 0 }));
  const edge = new EdgeHead(model, p, edgeOptions({ verify: false, ...o }), silentLogger);
  await edge.start();
  t.teardown(() => edge.stop());
  return edge;
}

test('EMULATE_DEVICE values', (t) => {
  t.deepEqual(parseDeviceSpec('none'), { kind: 'none' });
  t.deepEqual(parseDeviceSpec('x4'), { kind: 'factor', factor: 4 });
  t.deepEqual(parseDeviceSpec('2.5gflops'), { kind: 'gflops', gflops: 2.5 });
  t.deepEqual(parseDeviceSpec('12'), { kind: 'gflops', gflops: 12 });
  t.deepEqual(parseDeviceSpec('rpi3b'), { kind: 'preset', name: 'rpi3b' });
  t.is(parseDeviceSpec('x0.5'), undefined);
  t.is(parseDeviceSpec('0gflops'), undefined);
  t.is(parseDeviceSpec('a b'), undefined);
  t.deepEqual(modelNames('squeezenet1.0-fp16', {}), ['squeezenet1.0-fp16', 'squeezenet1.0']);
  t.deepEqual(modelNames('net', { 'edgecut.zoo': 'alexnet' }), ['alexnet', 'net']);
});

test('the factor: measured time for this model, else the GFLOPs ratio; faster devices are refused', async (t) => {
  let benched = 0;
  const host = (names: string[], wholeMs: number) => ({
    modelNames: names,
    wholeMs,
    presets: BUILTIN_PRESETS,
    gflops: async () => {
      benched++;
      return 50;
    },
  });
  t.is(await resolveEmulation({ kind: 'none' }, host([], 1)), undefined);
  t.is((await resolveEmulation({ kind: 'factor', factor: 4 }, host([], 1)))!.factor, 4);
  // rpi3b has a measured 2032 ms for squeezenet1.0 (Table III).
  const rpi = (await resolveEmulation({ kind: 'preset', name: 'rpi3b' }, host(['squeezenet1.0'], 8)))!;
  t.is(rpi.factor, 2032 / 8);
  t.is(rpi.preset, 'rpi3b');
  t.regex(rpi.rule, /^measured/);
  t.is(benched, 0, 'no bench needed for a measured time');
  const phone = (await resolveEmulation({ kind: 'preset', name: 'iphone6' }, host(['demo'], 1)))!;
  t.is(phone.factor, 50 / 10);
  t.is((await resolveEmulation({ kind: 'gflops', gflops: 2 }, host(['demo'], 1)))!.factor, 25);
  const fast = await t.throwsAsync(
    resolveEmulation({ kind: 'preset', name: 'xeon-e5-2696' }, host(['demo'], 1)),
    {
      instanceOf: UserError,
    },
  );
  t.regex(fast.message, /^cannot emulate xeon-e5-2696 .*faster than this host/);
});

test('the compute stretch: factor x the profiled time, not the real one; factor x real without a profile (injected clock)', async (t) => {
  let now = 1000;
  const slept: number[] = [];
  const clock = { now: () => now };
  const sleep = async (ms: number) => {
    slept.push(ms);
    now += ms;
  };
  const stretch = new ComputeStretch(4, clock, sleep);
  const run = (realMs: number, profiledMs?: number) =>
    stretch.run(async () => {
      now += realMs;
      return 'out';
    }, profiledMs);
  // Without a profiled time: factor x the real time.
  t.deepEqual(await run(10), { value: 'out', start: 1000, ms: 40, realMs: 10 });
  t.deepEqual(slept, [30]);
  // With one: factor x profiled, whatever the real time did (a hiccup is not multiplied).
  for (const real of [10, 11, 25, 9]) t.is((await run(real, 10)).ms, 40);
  // The real time is never cut short.
  t.is((await run(50, 10)).ms, 50);
  // Factor 1 is no emulation.
  t.deepEqual(
    await new ComputeStretch(1, clock, sleep).run(async () => {
      now += 7;
      return 1;
    }, 100),
    { value: 1, start: now - 7, ms: 7, realMs: 7 },
  );
  t.throws(() => new ComputeStretch(0.5), { instanceOf: RangeError });
});

test('the compute stretch: contention (a busy run queue) slows the emulated device in proportion', async (t) => {
  let now = 0;
  let load = 1;
  const marks: boolean[] = [];
  const stretch = new ComputeStretch(
    10,
    { now: () => now },
    async (ms) => {
      now += ms;
    },
    { factor: () => load, computing: (on) => marks.push(on), stop: () => undefined },
  );
  const run = async () =>
    (
      await stretch.run(async () => {
        now += 2;
      }, 2)
    ).ms;
  t.is(await run(), 20);
  load = 2.5;
  t.is(await run(), 50);
  t.deepEqual(marks, [true, false, true, false], 'the device is marked computing while it computes');
});

test('the compute stretch: load that comes or goes during a computation slows only the part that ran under it', async (t) => {
  let now = 0;
  let loadOnAt = Number.POSITIVE_INFINITY;
  let loadOffAt = Number.POSITIVE_INFINITY;
  const load = () => (now >= loadOnAt && now < loadOffAt ? 2.5 : 1);
  const stretch = new ComputeStretch(
    100,
    { now: () => now },
    async (ms) => {
      now += ms;
    },
    { factor: load, computing: () => undefined, stop: () => undefined },
  );
  // 10 ms profiled x 100 = 1000 ms of work.
  const run = async () => {
    const start = now;
    return (
      await stretch.run(async () => {
        now = start + 2;
      }, 10)
    ).ms;
  };
  t.is(await run(), 1000, 'idle throughout');
  // Load on 400 ms into a head: 400 ms of work done, the other 600 take 2.5x: 400 + 1500.
  loadOnAt = now + 400;
  const on = await run();
  t.true(Math.abs(on - 1900) <= 5, `${on}`);
  // Load gone 500 ms into a head: 200 ms of work done under it, the other 800 at full speed: 500 + 800.
  loadOnAt = 0;
  loadOffAt = now + 500;
  const off = await run();
  t.true(Math.abs(off - 1300) <= 5, `${off}`);
});

test('run-queue contention: the other processes runnable, averaged, as Fig. 17 slows a head', async (t) => {
  let running = 1; // only the reader itself
  const queue = RunQueue.start(() => running, false);
  if (!queue) return t.fail('a reader was given');
  const c = runQueueContention(queue, 2);
  t.teardown(() => c.stop());
  const second = () => {
    for (let i = 0; i < RUN_QUEUE.overMs / RUN_QUEUE.everyMs; i++) queue.sample();
  };
  t.is(c.factor(), 1, 'no sample yet: no slowdown');
  second();
  t.is(c.factor(), 1, 'idle: no slowdown');
  // Four busy processes besides the reader on two cores: (4 + 1) / 2.
  running = 5;
  queue.sample();
  t.true(
    queue.others() > 0 && queue.others() < 1,
    'one sample of the last second moves the average a little',
  );
  second();
  t.is(queue.others(), 4);
  t.true(Math.abs(c.factor() - 2.5) < 0.01, `${c.factor()}`);
  // The device's own computing thread is not load.
  c.computing(true);
  running = 2;
  second();
  t.is(c.factor(), 1);
  // Timed sampling reads the real run queue on its own.
  const timed = RunQueue.start(() => 3);
  t.teardown(() => timed?.stop());
  await waitFor(() => timed?.others() === 2, 'the timed run queue to see 2 others');
  t.is(timed?.others(), 2);
  t.is(
    RunQueue.start(() => undefined),
    undefined,
    'no /proc/stat: no run queue',
  );
});

test('the emulated profile: every time scaled, the device said to be emulated', async (t) => {
  const { model } = await demoModelDir(t);
  const profile = await profileModel(model, { runs: 1, warmup: 1, checkCuts: 2 });
  const e: DeviceEmulation = {
    factor: 5,
    description: 'rpi3b (Raspberry Pi 3)',
    gflops: 2,
    preset: 'rpi3b',
    rule: 'x',
  };
  const p = parseProfile(emulatedProfile(profile, e), 'emulated', model.analysis.nodes);
  t.regex(p.device.description, /^EMULATED rpi3b/);
  t.is(p.device.gflops, 2);
  t.is(p.device.preset, 'rpi3b');
  t.is(p.wholeMs.median, profile.wholeMs.median * 5);
  for (const [i, l] of p.layers.entries()) t.is(l.ms, profile.layers[i]!.ms * 5);
  t.is(p.check?.cuts[0]?.measuredMs, (profile.check?.cuts[0]?.measuredMs ?? 0) * 5);
});

/** Runs frames one at a time, alternating between two edges; their reports after `warm` frames each. */
async function alternate(
  a: EdgeHead,
  b: EdgeHead,
  model: ModelHandle,
  warm: number,
  n: number,
): Promise<{ real: FrameReport[]; slow: FrameReport[] }> {
  const rand = mulberry32(9);
  const real: FrameReport[] = [];
  const slow: FrameReport[] = [];
  for (let i = 0; i < warm + n; i++) {
    const frame = () => ({ index: i, capturedAt: Date.now(), inputs: randomInputs(model.inputs, rand) });
    const ra = await a.process(frame());
    const rb = await b.process(frame());
    if (i < warm) continue;
    real.push(ra);
    slow.push(rb);
  }
  return { real, slow };
}

/**
 * Checks a stretch: each emulated frame took factor x its own real time (tight: only timer overshoot), and, with
 * `crossCheck`, the emulated edge's median is about factor x the real edge's fastest frame (loose: other test files
 * load the CPU meanwhile).
 */
function checkStretch(
  t: ExecutionContext,
  what: string,
  factor: number,
  runs: { real: FrameReport[]; slow: FrameReport[] },
  pick: (r: FrameReport) => { ms: number; hostMs: number | undefined },
  crossCheck: boolean,
  profiledMs: number,
): void {
  const expected = factor * profiledMs;
  const real = median(runs.real.map((r) => pick(r).ms));
  const slow = median(runs.slow.map((r) => pick(r).ms));
  t.log(
    `${what}: real ${real.toFixed(2)} ms, emulated ${slow.toFixed(2)} ms; expected factor x profiled = ${expected.toFixed(2)} ms`,
  );
  t.true(
    runs.real.every((r) => r.hostMs === undefined),
    'no host times without emulation',
  );
  // Every emulated frame: factor x the profiled time, or its own real time when longer; never less, and no more
  // than timer overshoot: tight for the median, looser for single frames (other test files load the CPU).
  const over: number[] = [];
  for (const r of runs.slow) {
    const { ms, hostMs } = pick(r);
    const floor = Math.max(expected, hostMs!);
    over.push(ms / floor);
    t.true(
      ms >= floor * 0.99 && ms <= floor * 1.3 + 20,
      `${what}: ${ms.toFixed(2)} ms, expected ${floor.toFixed(2)}`,
    );
  }
  t.true(
    median(over) <= 1.05 + 3 / expected,
    `${what}: median ${median(over).toFixed(3)}x the expected time`,
  );
  if (!crossCheck) return;
  // Against the real edge's fastest frame, the host's own speed: the emulated time is factor x the profile by
  // design, whatever load slows the real frames meanwhile (their median once came out 3.3x the profile in a full run).
  const fastest = Math.min(...runs.real.map((r) => pick(r).ms));
  t.true(
    slow / fastest > factor * 0.5 && slow / fastest < factor * 2,
    `${what}: ${(slow / fastest).toFixed(2)}x the real edge's fastest frame (${fastest.toFixed(2)} ms)`,
  );
}

/** A CNN heavy enough (several ms per run) that timer granularity does not blur the stretch. */
async function heavyModel(): Promise<ModelHandle> {
  const b = new GraphBuilder({ name: 'heavy', seed: 2 });
  let x = b.input('x', [1, 3, 96, 96]);
  x = b.relu(b.conv(x, 32, { kernel: 3, pad: 1, name: 'c1' }), 'r1');
  x = b.relu(b.conv(x, 32, { kernel: 3, pad: 1, name: 'c2' }), 'r2');
  x = b.relu(b.conv(x, 32, { kernel: 3, pad: 1, name: 'c3' }), 'r3');
  b.output(b.relu(b.conv(x, 32, { kernel: 3, pad: 1, name: 'c4' }), 'r4'));
  return ModelHandle.fromBytes(b.toBytes(), 'heavy.onnx');
}

test.serial(
  'compute emulation stretches heads and local tails by the factor, and publishes the emulated profile',
  async (t) => {
    const broker = await startBroker(t);
    const model = await heavyModel();
    const client = await connectClient(t, broker.url);
    const factor = 3;
    const emulation: DeviceEmulation = {
      factor,
      description: `${factor}x slower than this host`,
      gflops: null,
      rule: 'factor',
    };
    const real = await startEdge(t, model, {
      mqttUrl: broker.url,
      deviceId: 'robot-real',
      resultTimeoutMs: 50,
    });
    // The emulated time is factor x this profile by design, and the cross-check below compares it with this host's
    // speed. A profile taken while other test files load both cores comes out slow (the median of 10 runs per layer
    // once came out 2x the real edge's fastest frame), so it is taken again, up to twice, while it is more than
    // 1.5x the fastest of a few real frames taken just before.
    const rand = mulberry32(5);
    let fastestReal = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 6; i++) {
      const r = await real.process({
        index: i,
        capturedAt: Date.now(),
        inputs: randomInputs(model.inputs, rand),
      });
      if (i > 0) fastestReal = Math.min(fastestReal, r.headMs);
    }
    let profile = await profileModel(model, { runs: 10, warmup: 1, checkCuts: 0 });
    for (let i = 0; i < 2 && profiledSpan(profile, 0, model.layers) > 1.5 * fastestReal; i++) {
      t.log(
        `profile ${profiledSpan(profile, 0, model.layers).toFixed(2)} ms against a real frame of ${fastestReal.toFixed(2)} ms: profiling again`,
      );
      profile = await profileModel(model, { runs: 10, warmup: 1, checkCuts: 0 });
    }
    const slow = await startEdge(
      t,
      model,
      { mqttUrl: broker.url, deviceId: 'robot-slow', resultTimeoutMs: 50, emulation },
      profile,
    );
    const span = (from: number, to: number) => profiledSpan(profile, from, to);
    const profiles = await collect(client, topics.deviceProfile.build({ device: 'robot-slow' }));
    const published = parseProfile(JSON.parse((await profiles.next()).payload.toString()), 'published');
    t.regex(published.device.description, /^EMULATED 3x slower than this host/);
    t.is(published.device.id, 'robot-slow');

    // No plan: the whole model runs as the head. Frames alternate between the two edges, so both see the same
    // background load (other test files run in parallel).
    const heads = await alternate(real, slow, model, 3, 12);
    t.is(heads.real[0]!.cut.index, model.layers);
    checkStretch(
      t,
      'head',
      factor,
      heads,
      (r) => ({ ms: r.headMs, hostMs: r.hostMs?.head }),
      true,
      span(0, model.layers),
    );

    // A plan with no worker: the tail of every frame runs locally after the 50 ms deadline, stretched too.
    for (const device of ['robot-real', 'robot-slow'])
      await client.publishAsync(topics.plan.build({ device }), JSON.stringify(planFor(model, device, 4)), {
        qos: 1,
        retain: true,
      });
    t.true(await real.waitForPlan(5000));
    t.true(await slow.waitForPlan(5000));
    const tails = await alternate(real, slow, model, 2, 8);
    for (const r of [...tails.real, ...tails.slow]) t.is(r.tailBy, 'local');
    // Only each frame against its own real time: a local tail is short, and under parallel test load the two
    // edges' real tail times alone can differ by 2x.
    checkStretch(
      t,
      'local tail',
      factor,
      tails,
      (r) => ({ ms: r.tailMs, hostMs: r.hostMs?.tail }),
      false,
      span(4, model.layers),
    );
  },
);

test.serial('uplink shaping changes the measured transfer time by the expected ratio', async (t) => {
  const broker = await startBroker(t);
  const { dir, model } = await demoModelDir(t);
  const worker = new TailWorker(
    tailOptions({ mqttUrl: broker.url, workerId: 'tail-u', modelsDir: dir }),
    silentLogger,
  );
  await worker.start();
  t.teardown(() => worker.stop());
  const client = await connectClient(t, broker.url);
  const transfer = async (device: string, uplink: EdgeOptions['uplink']) => {
    // No link probe: only the requests cross the shaped link while they are timed.
    const edge = await startEdge(t, model, {
      mqttUrl: broker.url,
      deviceId: device,
      window: 1,
      uplink,
      probeMs: 0,
    });
    await client.publishAsync(topics.plan.build({ device }), JSON.stringify(planFor(model, device, 0)), {
      qos: 1,
      retain: true,
    });
    t.true(await edge.waitForPlan(5000));
    await runFrames(edge, model, 1);
    const reports = await runFrames(edge, model, 5);
    for (const r of reports) t.is(r.tailBy, 'tail-u');
    return { ms: median(reports.map((r) => r.transferMs)), bytes: reports[0]!.requestBytes };
  };
  const slow = await transfer('robot-4m', { rateBps: 4e6, setupMs: 0 });
  const fast = await transfer('robot-16m', { rateBps: 16e6, setupMs: 0 });
  const setup = await transfer('robot-16m-setup', { rateBps: 16e6, setupMs: 40 });
  // The full-offload request is ~49 kB: ~98 ms at 4 Mbit/s, ~25 ms at 16 Mbit/s, plus 40 ms of set-up.
  const expected = (rate: number) => (slow.bytes * 8 * 1000) / rate;
  t.log(
    `request ${slow.bytes} B: 4 Mbit/s ${slow.ms.toFixed(1)} ms (expected ${expected(4e6).toFixed(1)}), ` +
      `16 Mbit/s ${fast.ms.toFixed(1)} ms (expected ${expected(16e6).toFixed(1)}), with 40 ms set-up ${setup.ms.toFixed(1)} ms`,
  );
  // The emulated link makes each transfer at least its schedule (D / rate + set-up); the rest is loopback, broker
  // and timer overshoot, a few ms unless other test files load the CPU.
  const within = (ms: number, min: number) => ms >= min * 0.98 && ms < min + 30;
  t.true(within(slow.ms, expected(4e6)), `4 Mbit/s: ${slow.ms.toFixed(1)} ms`);
  t.true(within(fast.ms, expected(16e6)), `16 Mbit/s: ${fast.ms.toFixed(1)} ms`);
  t.true(within(setup.ms, expected(16e6) + 40), `16 Mbit/s + 40 ms set-up: ${setup.ms.toFixed(1)} ms`);
  const ratio = slow.ms / fast.ms;
  t.true(
    ratio > 2.8 && ratio < 4.8,
    `ratio ${ratio.toFixed(2)}, expected ~4 minus the fixed overhead (unshaped: ~1)`,
  );
});

test.serial(
  'the same head repeated 20 times at factor 10 varies little (coefficient of variation <= 15% under test load; the idle benchmark targets 10%)',
  async (t) => {
    const broker = await startBroker(t);
    const model = await heavyModel();
    const profile = await profileModel(model, { runs: 3, warmup: 1, checkCuts: 0 });
    const emulation: DeviceEmulation = { factor: 10, description: '10x', gflops: null, rule: 'factor' };
    const edge = await startEdge(t, model, { mqttUrl: broker.url, deviceId: 'robot-cv', emulation }, profile);
    const rand = mulberry32(3);
    const inputs = randomInputs(model.inputs, rand);
    const heads: number[] = [];
    const real: number[] = [];
    for (let i = 0; i < 22; i++) {
      const r = await edge.process({ index: i, capturedAt: Date.now(), inputs });
      if (i < 2) continue;
      heads.push(r.headMs);
      real.push(r.hostMs!.head);
    }
    const cv = (xs: number[]) => {
      const m = xs.reduce((a, b) => a + b, 0) / xs.length;
      return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / xs.length) / m;
    };
    t.log(
      `emulated head: median ${median(heads).toFixed(1)} ms, CV ${(cv(heads) * 100).toFixed(2)}%; ` +
        `real head: median ${median(real).toFixed(2)} ms (p90 ${quantile(real, 0.9).toFixed(2)}), CV ${(cv(real) * 100).toFixed(1)}%`,
    );
    // The target, 10% on an idle host, is the benchmark's (npm run bench -- emulation: about 1%); other test files
    // load the CPU here, so a real run can outlast its emulated time now and then.
    t.true(cv(heads) <= 0.15, `CV ${(cv(heads) * 100).toFixed(2)}%`);
  },
);

test.serial(
  'a tail worker emulates a slower server: tails take factor x its profile, the profile says EMULATED',
  async (t) => {
    const broker = await startBroker(t);
    const model = await heavyModel();
    const dir = await mkdtemp(join(tmpdir(), 'edgecut-tail-emu-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, 'heavy.onnx'), model.bytes);
    const client = await connectClient(t, broker.url);
    const profiles = await collect(
      client,
      topics.workerProfile.build({ worker: 'tail-slow', model: model.id }),
    );
    const worker = new TailWorker(
      tailOptions({
        mqttUrl: broker.url,
        workerId: 'tail-slow',
        modelsDir: dir,
        profileRuns: 3,
        // Far slower than this host, so the real tail (slowed by other test files on a busy host) stays below the
        // emulated time, which is what this test checks.
        emulateDevice: { kind: 'factor', factor: 16 },
      }),
      silentLogger,
    );
    await worker.start();
    t.teardown(() => worker.stop());
    const published = parseProfile(JSON.parse((await profiles.next()).payload.toString()), 'worker profile');
    t.regex(published.device.description, /^EMULATED 16x slower than this host/);
    const edge = await startEdge(t, model, { mqttUrl: broker.url, deviceId: 'robot-t', window: 1 });
    await client.publishAsync(
      topics.plan.build({ device: 'robot-t' }),
      JSON.stringify(planFor(model, 'robot-t', 2)),
      {
        qos: 1,
        retain: true,
      },
    );
    t.true(await edge.waitForPlan(5000));
    const reports = (await runFrames(edge, model, 6)).slice(1);
    // The published (emulated) profile's tail from cut 2: what each tail must take, to within timer overshoot.
    const expected = profiledSpan(published, 2, model.layers);
    // Never less; no more than timer overshoot: tight for the median, looser for single frames (other test files
    // load the CPU).
    for (const r of reports) {
      t.is(r.tailBy, 'tail-slow');
      t.true(
        r.tailMs >= expected * 0.99 && r.tailMs <= expected * 1.3 + 20,
        `tail ${r.tailMs.toFixed(2)} ms, expected ${expected.toFixed(2)} ms`,
      );
    }
    const med = median(reports.map((r) => r.tailMs));
    t.true(
      med <= expected * 1.05 + 3,
      `median tail ${med.toFixed(2)} ms, expected ${expected.toFixed(2)} ms`,
    );
  },
);

test.serial(
  'a request that reaches an emulating tail worker while it still profiles the model waits for the profile and is stretched',
  async (t) => {
    const broker = await startBroker(t);
    const model = await heavyModel();
    const dir = await mkdtemp(join(tmpdir(), 'edgecut-tail-early-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, 'heavy.onnx'), model.bytes);
    const client = await connectClient(t, broker.url);
    const profiles = await collect(
      client,
      topics.workerProfile.build({ worker: 'tail-early', model: model.id }),
    );
    const results = await collect(
      await connectClient(t, broker.url),
      topics.result.build({ device: 'robot-early' }),
    );
    const worker = new TailWorker(
      tailOptions({
        mqttUrl: broker.url,
        workerId: 'tail-early',
        modelsDir: dir,
        // Enough timed runs that profiling takes a while: the request below arrives during it.
        profileRuns: 20,
        emulateDevice: { kind: 'factor', factor: 16 },
      }),
      silentLogger,
    );
    await worker.start();
    t.teardown(() => worker.stop());
    const sent = Date.now();
    const request: InferenceRequest = {
      requestId: 'early',
      deviceId: 'robot-early',
      modelId: model.id,
      cutId: 0,
      tensors: randomInputs(model.inputs, mulberry32(5)),
      times: { ...emptyTimes(), sent },
      deadlineMs: 0,
    };
    await client.publishAsync(
      topics.request.build({ device: 'robot-early' }),
      Buffer.from(encodeRequest(request)),
      {
        qos: 1,
      },
    );
    const reply = decodeMessage((await results.next(60_000)).payload);
    const published = parseProfile(JSON.parse((await profiles.next()).payload.toString()), 'worker profile');
    t.is(reply.kind, 'result');
    if (reply.kind !== 'result') return;
    // Its tail (the whole model, from cut 0) took the emulated time, not this host's.
    const expected = profiledSpan(published, 0, model.layers);
    const tailMs = reply.value.times.tailEnd - reply.value.times.tailStart;
    t.true(tailMs >= expected * 0.99, `tail ${tailMs.toFixed(2)} ms, expected ${expected.toFixed(2)} ms`);
    t.log(
      `received ${(reply.value.times.tailReceived - sent).toFixed(0)} ms after it was sent, run ${(reply.value.times.tailStart - reply.value.times.tailReceived).toFixed(0)} ms later (the profile), tail ${tailMs.toFixed(1)} ms (expected ${expected.toFixed(1)})`,
    );
  },
);

test('a tail worker refuses to emulate a device faster than this host, in one line', async (t) => {
  const worker = new TailWorker(
    tailOptions({
      mqttUrl: 'mqtt://127.0.0.1:1',
      workerId: 'tail-fast',
      modelsDir: tmpdir(),
      profileRuns: 1,
      emulateDevice: { kind: 'gflops', gflops: 1e6 },
    }),
    silentLogger,
  );
  await t.throwsAsync(() => worker.start(), { instanceOf: UserError, message: /faster than this host/ });
});

test('run queue: the other processes averaged since a mark (over one head), the last second without a sample since', (t) => {
  let running = 1;
  const queue = RunQueue.start(() => running, false);
  if (!queue) return t.fail('a reader was given');
  t.teardown(() => queue.stop());
  queue.sample();
  const mark = queue.mark();
  t.is(queue.othersSince(mark), 0, 'no sample since: the last second');
  running = 5;
  queue.sample();
  running = 3;
  queue.sample();
  t.is(queue.othersSince(mark), 3, '(4 + 2) / 2');
  // The device's own computing thread is not counted.
  queue.computing(true);
  const during = queue.mark();
  queue.sample();
  t.is(queue.othersSince(during), 1);
});

test('a tail worker given a directory of profiles (TAIL_PROFILES) publishes the one naming its model, scaled, instead of measuring', async (t) => {
  const broker = await startBroker(t);
  const model = await heavyModel();
  const { model: other } = await demoModelDir(t);
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-tail-given-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, 'models'));
  await mkdir(join(dir, 'profiles'));
  await writeFile(join(dir, 'models', 'heavy.onnx'), model.bytes);
  const given = await profileModel(model, { runs: 1, warmup: 0, checkCuts: 0 });
  // A recognisable profile: every layer 2 ms. Beside it, another model's profile and a file that is not one.
  const fixed = { ...given, layers: given.layers.map((l) => ({ ...l, ms: 2, p90: 2 })) };
  await writeFile(
    join(dir, 'profiles', 'a-other.json'),
    JSON.stringify(await profileModel(other, { runs: 1, warmup: 0, checkCuts: 0 })),
  );
  await writeFile(join(dir, 'profiles', 'b-junk.json'), '{"not": "a profile"}');
  await writeFile(join(dir, 'profiles', 'c-heavy.json'), JSON.stringify(fixed));
  const client = await connectClient(t, broker.url);
  const profiles = await collect(
    client,
    topics.workerProfile.build({ worker: 'tail-given', model: model.id }),
  );
  const resolved = resolveTail(
    parseConfig(tailSettings, {
      MQTT_URL: broker.url,
      WORKER_ID: 'tail-given',
      MODELS_DIR: join(dir, 'models'),
      PROFILE_RUNS: '3',
      EMULATE_DEVICE: '4',
      TAIL_PROFILES: join(dir, 'profiles'),
    }),
  );
  t.is(resolved.profilesDir, join(dir, 'profiles'));
  const worker = new TailWorker(
    tailOptions({ ...resolved, emulateDevice: { kind: 'factor', factor: 4 } }),
    silentLogger,
  );
  await worker.start();
  t.teardown(() => worker.stop());
  const published = parseProfile(JSON.parse((await profiles.next()).payload.toString()), 'worker profile');
  t.regex(published.device.description, /^EMULATED 4x slower/);
  t.is(published.device.id, 'tail-given');
  for (const l of published.layers) t.is(l.ms, 8, 'the given 2 ms, x 4');
  // A directory that is not there is refused at start, in one line.
  const err = t.throws(() => resolveTail(parseConfig(tailSettings, { TAIL_PROFILES: join(dir, 'nowhere') })));
  t.is(
    err?.message,
    `TAIL_PROFILES=${join(dir, 'nowhere')} is not allowed: expected measure or a directory of profile JSON files`,
  );
});

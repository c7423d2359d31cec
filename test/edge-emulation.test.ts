/**
 * Emulation for experiments: the uplink shaped to a rate and set-up time changes the measured transfer time by the
 * expected amount (real broker, real worker); the device's compute stretched by a factor stretches head and local
 * tail times by it, and the published profile is the emulated device's.
 */
import test, { type ExecutionContext } from 'ava';
import { BUILTIN_PRESETS } from '../common/device/presets.ts';
import { UserError } from '../common/errors.ts';
import { silentLogger } from '../common/log.ts';
import { GraphBuilder } from '../common/model/builder.ts';
import { ModelHandle } from '../common/model-handle.ts';
import { profileModel } from '../common/profile/profiler.ts';
import { mulberry32 } from '../common/random.ts';
import { median } from '../common/stats.ts';
import { parseProfile } from '../schemas/profile.ts';
import { topics } from '../schemas/topics.ts';
import { EdgeHead, type EdgeOptions, type FrameReport } from '../services/edge-head/edge.ts';
import {
  ComputeStretch,
  type DeviceEmulation,
  emulatedProfile,
  modelNames,
  parseDeviceSpec,
  resolveEmulation,
} from '../services/edge-head/emulation.ts';
import { type Frame, randomInputs } from '../services/edge-head/frames.ts';
import { TailWorker } from '../services/server-tail/worker.ts';
import { collect, connectClient, startBroker } from './helpers/broker.ts';
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

function planFor(model: ModelHandle, device: string, k: number) {
  const cut = model.cuts[k]!;
  return {
    version: 1,
    device,
    modelId: model.id,
    seq: 1,
    cut: { index: k, after: cut.after, bytes: cut.bytes, tensors: cut.tensors.map((x) => x.name) },
    objective: 'fixed',
    predicted: null,
    reason: 'test plan',
    inputs: {},
    issuedAt: Date.now(),
  };
}

async function startEdge(
  t: ExecutionContext,
  model: ModelHandle,
  o: Pick<EdgeOptions, 'mqttUrl' | 'deviceId'> & Partial<EdgeOptions>,
): Promise<EdgeHead> {
  const profile = await profileModel(model, { runs: 1, warmup: 1, checkCuts: 0 });
  const edge = new EdgeHead(model, profile, edgeOptions({ verify: false, ...o }), silentLogger);
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

test('the compute stretch waits until factor x the real time (injected clock)', async (t) => {
  let now = 1000;
  const slept: number[] = [];
  const stretch = new ComputeStretch(4, { now: () => now }, async (ms) => {
    slept.push(ms);
    now += ms;
  });
  const r = await stretch.run(async () => {
    now += 10;
    return 'out';
  });
  t.deepEqual(r, { value: 'out', start: 1000, ms: 40, realMs: 10 });
  t.deepEqual(slept, [30]);
  t.throws(() => new ComputeStretch(0.5), { instanceOf: RangeError });
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
 * `crossCheck`, the emulated edge's median is about factor x the real edge's (loose: other test files load the
 * CPU meanwhile).
 */
function checkStretch(
  t: ExecutionContext,
  what: string,
  factor: number,
  runs: { real: FrameReport[]; slow: FrameReport[] },
  pick: (r: FrameReport) => { ms: number; hostMs: number | undefined },
  crossCheck: boolean,
): void {
  const own = median(runs.slow.map((r) => pick(r).ms / pick(r).hostMs!));
  const real = median(runs.real.map((r) => pick(r).ms));
  const slow = median(runs.slow.map((r) => pick(r).ms));
  t.log(
    `${what}: real ${real.toFixed(2)} ms, emulated ${slow.toFixed(2)} ms; each emulated frame ${own.toFixed(3)}x its real time`,
  );
  t.true(
    runs.real.every((r) => r.hostMs === undefined),
    'no host times without emulation',
  );
  t.true(
    own >= factor * 0.99 && own < factor * 1.15,
    `${what}: stretched ${own.toFixed(3)}x its own real time`,
  );
  if (!crossCheck) return;
  t.true(
    slow / real > factor * 0.5 && slow / real < factor * 2,
    `${what}: ${(slow / real).toFixed(2)}x the real edge`,
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
    const slow = await startEdge(t, model, {
      mqttUrl: broker.url,
      deviceId: 'robot-slow',
      resultTimeoutMs: 50,
      emulation,
    });
    const profiles = await collect(client, topics.deviceProfile.build({ device: 'robot-slow' }));
    const published = parseProfile(JSON.parse((await profiles.next()).payload.toString()), 'published');
    t.regex(published.device.description, /^EMULATED 3x slower than this host/);
    t.is(published.device.id, 'robot-slow');

    // No plan: the whole model runs as the head. Frames alternate between the two edges, so both see the same
    // background load (other test files run in parallel).
    const heads = await alternate(real, slow, model, 3, 12);
    t.is(heads.real[0]!.cut.index, model.layers);
    checkStretch(t, 'head', factor, heads, (r) => ({ ms: r.headMs, hostMs: r.hostMs?.head }), true);

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
    checkStretch(t, 'local tail', factor, tails, (r) => ({ ms: r.tailMs, hostMs: r.hostMs?.tail }), false);
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
    const edge = await startEdge(t, model, { mqttUrl: broker.url, deviceId: device, window: 1, uplink });
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

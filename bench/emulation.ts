/**
 * `npm run bench -- emulation [--repeats N] [--factor F]`: how steady the emulated device is. The same head (the zoo
 * SqueezeNet 1.1 up to its middle cut) runs N times at factor F, stretched two ways in the same run: from this host's
 * calibrated profile (what the edge does, measurement/device/emulation.ts), and, for comparison, factor x the wall time of
 * each run (the old rule, which multiplies every host hiccup by the factor). Prints the median and the coefficient of
 * variation of each; the target is a CV of at most 10% at factor >= 10 on an idle host.
 */
import { ComputeStretch, profiledSpan } from '../measurement/device/emulation.ts';
import { profileModel } from '../measurement/profiler.ts';
import { ModelHandle } from '../model/handle.ts';
import { mulberry32 } from '../model/random.ts';
import { createSession, runWire } from '../model/runtime.ts';
import { ZOO } from '../model/zoo/index.ts';
import { median } from '../planning/stats.ts';
import { randomInputs } from '../services/edge-head/frames.ts';

function flag(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(name);
  const v = i >= 0 ? Number(args[i + 1]) : Number.NaN;
  return Number.isFinite(v) && v > 0 ? v : fallback;
}

const cv = (xs: number[]) => {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / xs.length) / m;
};

export async function run(args: string[]): Promise<void> {
  const repeats = flag(args, '--repeats', 20);
  const factor = flag(args, '--factor', 10);
  const model = await ModelHandle.fromBytes(ZOO['squeezenet1.1'].build(), 'squeezenet1.1.onnx');
  const k = Math.floor(model.layers / 2);
  const profile = await profileModel(model, { runs: 10, warmup: 2, checkCuts: 0 });
  const session = await createSession(model.part(k, 'head'), { threads: 1 });
  const inputs = randomInputs(model.inputs, mulberry32(1));
  const profiled = profiledSpan(profile, 0, k);
  const byProfile = new ComputeStretch(factor);
  const byWall = new ComputeStretch(factor);
  const a: number[] = [];
  const b: number[] = [];
  const real: number[] = [];
  for (let i = 0; i < repeats + 2; i++) {
    const p = await byProfile.run(() => runWire(session, inputs), profiled);
    const w = await byWall.run(() => runWire(session, inputs));
    if (i < 2) continue;
    a.push(p.ms);
    b.push(w.ms);
    real.push(p.realMs, w.realMs);
  }
  await session.release();
  const row = (name: string, xs: number[]) =>
    `${name.padEnd(34)} ${median(xs).toFixed(1).padStart(8)} ms  CV ${(cv(xs) * 100).toFixed(1).padStart(5)}%`;
  process.stdout.write(
    `squeezenet1.1 head to cut ${k} of ${model.layers}, ${repeats} repeats at factor ${factor}; ` +
      `profiled ${profiled.toFixed(2)} ms on this host\n` +
      `${row('real time on this host', real)}\n` +
      `${row('emulated: factor x profiled', a)}\n` +
      `${row('emulated: factor x wall (old rule)', b)}\n`,
  );
}

/**
 * `npm run bench -- planner [--model NAME] [--iterations N]`: the time of one re-plan over every cut of a model
 * (Inception-v3 by default): building the search input from a profile, Algorithm 1 over all cuts, and the
 * hysteresis decision. Target (issue 5): median <= 100 microseconds.
 */
import { loadModelRef } from '../cli/model-source.ts';
import { linkFromBandwidth } from '../planning/link.ts';
import { searchPartition } from '../planning/search.ts';
import { quantile } from '../planning/stats.ts';
import { decide } from '../services/planner/decide.ts';
import { toSearchInput } from '../services/planner/inputs.ts';
import { makeProfileFromCosts } from './profile-fixture.ts';

/** Runs the benchmark. */
export async function run(args: string[]): Promise<void> {
  const name = args.includes('--model') ? args[args.indexOf('--model') + 1]! : 'inception-v3';
  const iterations =
    Number(args.includes('--iterations') ? args[args.indexOf('--iterations') + 1] : 5000) || 5000;
  const handle = await loadModelRef(name);
  const profile = makeProfileFromCosts(handle, 2);
  const serverMs = makeProfileFromCosts(handle, 100).layers.map((l) => l.ms);
  const link = {
    link: linkFromBandwidth(10e6, 0.5, 1500),
    bandwidthBps: 10e6,
    samples: 0,
    source: 'configured' as const,
  };
  const times: number[] = [];
  let state = {};
  let sink = 0;
  for (let i = 0; i < iterations + 200; i++) {
    // Vary the load a little so no call is a repeat of the last.
    const load = 1 + (i % 7) * 0.01;
    const t0 = process.hrtime.bigint();
    const input = toSearchInput({
      profile,
      serverMs,
      link,
      edgeLoad: { factor: load, source: 'bench' },
      serverLoad: { factor: 1, source: 'bench' },
      objective: 'latency',
    });
    const result = searchPartition(input);
    const d = decide(state, result, i, { minGain: 0.1, holdMs: 3000 });
    const t1 = process.hrtime.bigint();
    state = d.state;
    sink += result.best.index;
    if (i >= 200) times.push(Number(t1 - t0) / 1000);
  }
  const med = quantile(times, 0.5);
  process.stdout.write(
    `planner benchmark: ${handle.name}, ${handle.cuts.length} candidate cuts, ${iterations} re-plans (after 200 warm-up)\n\n` +
      `median ${med.toFixed(1)} us, p90 ${quantile(times, 0.9).toFixed(1)} us, p99 ${quantile(times, 0.99).toFixed(1)} us per re-plan ` +
      `(target median <= 100 us: ${med <= 100 ? 'met' : 'MISSED'})\n`,
  );
  if (sink < 0) process.stdout.write('\n');
}

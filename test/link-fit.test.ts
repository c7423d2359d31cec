/**
 * Online link fitting: robust to outliers, follows the configured prior until samples exist; the estimator follows a
 * changing link within a few transfers and takes lower bounds from PUBLISHes still waiting for their PUBACK.
 */
import test, { type ExecutionContext } from 'ava';
import { mulberry32 } from '../model/random.ts';
import { transferMs } from '../planning/link.ts';
import {
  CHANGE_STREAK,
  type FittedLink,
  fitLink,
  LinkEstimator,
  SampleWindow,
  type TransferSample,
} from '../planning/link-fit.ts';

const configured = { setupMs: 1, alphaMs: 0, mtu: 1500, betaMsPerByte: 8000 / 10e6 };

test('no samples: the configured link', (t) => {
  const f = fitLink([], configured);
  t.is(f.source, 'configured');
  t.is(f.bandwidthBps, 10e6);
});

test('recovers set-up and bandwidth from noisy samples with outliers', (t) => {
  const rand = mulberry32(5);
  // True link: 3 ms set-up, 2 Mbit/s.
  const samples = Array.from({ length: 60 }, (_, i) => {
    const bytes = 1000 + Math.floor(rand() * 20_000);
    const ms = 3 + (bytes * 8000) / 2e6;
    const noise = i % 10 === 0 ? 5 * ms : ms * (1 + (rand() - 0.5) * 0.02);
    return { bytes, seconds: noise / 1000 };
  });
  const f = fitLink(samples, configured);
  t.is(f.source, 'fitted');
  t.true(Math.abs(f.bandwidthBps - 2e6) / 2e6 < 0.05, `${f.bandwidthBps}`);
  t.true(Math.abs((f.link.setupMs ?? 0) - 3) < 1, `${f.link.setupMs}`);
});

test('equal-size samples keep the configured set-up and fit the per-byte cost', (t) => {
  const samples = Array.from({ length: 10 }, () => ({ bytes: 100_000, seconds: (1 + 80) / 1000 }));
  const f = fitLink(samples, configured);
  t.is(f.link.setupMs, 1);
  t.true(Math.abs(f.bandwidthBps - 10e6) / 10e6 < 1e-9);
});

test('the window keeps the most recent samples', (t) => {
  const w = new SampleWindow(3);
  w.push({ bytes: 1, seconds: 1 }, { bytes: 2, seconds: 1 });
  w.push({ bytes: 3, seconds: 1 }, { bytes: 4, seconds: 1 });
  t.deepEqual(
    w.samples.map((s) => s.bytes),
    [2, 3, 4],
  );
});

// --- LinkEstimator ---

const base = { alphaMs: 0, mtu: 1500 };

/** A transfer of `bytes` over a link of `setupMs` and `bps`, its time multiplied by `factor`. */
const sample = (bytes: number, bps: number, setupMs: number, factor = 1): TransferSample => ({
  bytes,
  seconds: ((setupMs + (bytes * 8000) / bps) * factor) / 1000,
});

const within = (t: ExecutionContext, actual: number, expected: number, tolerance: number, what: string) =>
  t.true(
    Math.abs(actual - expected) / expected <= tolerance,
    `${what}: ${actual} is not within ${tolerance * 100}% of ${expected}`,
  );

/**
 * One telemetry message's samples on a steady link: a telemetry publish (~600 bytes), two requests, and on every
 * fourth message a probe burst (4-32 KiB); ±3% noise.
 */
function steadyMessage(i: number, bps: number, setupMs: number, rand: () => number): TransferSample[] {
  const noisy = (bytes: number) => sample(bytes, bps, setupMs, 1 + (rand() - 0.5) * 0.06);
  const out = [noisy(560 + Math.floor(rand() * 80)), noisy(40_000 + Math.floor(rand() * 30_000))];
  out.push(noisy(40_000 + Math.floor(rand() * 30_000)));
  if (i % 4 === 0) for (const kib of [4, 8, 16, 32]) out.push(noisy(kib * 1024));
  return out;
}

/** An estimator warmed up on `messages` steady messages. */
function warmedUp(bps: number, setupMs: number, seed: number, messages = 10): LinkEstimator {
  const rand = mulberry32(seed);
  const e = new LinkEstimator(64, base);
  for (let i = 0; i < messages; i++) e.update({ samples: steadyMessage(i, bps, setupMs, rand) });
  return e;
}

test('estimator: no samples and no configured link is no fit; a configured link is the prior', (t) => {
  const none = new LinkEstimator(64, base);
  t.is(none.current, undefined);
  t.is(none.update({ samples: [] }), undefined);
  // A lower bound alone tells nothing without a fit to raise.
  t.is(none.update({ samples: [], censored: [{ bytes: 10_000, seconds: 1 }] }), undefined);
  // Samples that are not transfers are not evidence.
  t.is(
    none.update({
      samples: [
        { bytes: 0, seconds: 0.1 },
        { bytes: 100, seconds: Number.NaN },
      ],
    }),
    undefined,
  );

  const configured = new LinkEstimator(64, base, {
    setupMs: 2,
    alphaMs: 0,
    mtu: 1500,
    betaMsPerByte: 8000 / 5e6,
  });
  const f = configured.update({ samples: [] });
  t.is(f?.source, 'configured');
  t.is(f?.samples, 0);
  t.is(f?.bandwidthBps, 5e6);
  t.is(configured.current?.source, 'configured');
});

test('estimator: recovers set-up and bandwidth from mixed sizes with noise and outliers', (t) => {
  const rand = mulberry32(11);
  const e = new LinkEstimator(64, base);
  // True link: 4 ms set-up, 2 Mbit/s. Every 7th sample is an outlier (4x slow, a retransmission or busy broker).
  let n = 0;
  let fit: FittedLink | undefined;
  for (let i = 0; i < 20; i++) {
    const samples = steadyMessage(i, 2e6, 4, rand).map((s) =>
      ++n % 7 === 0 ? { ...s, seconds: s.seconds * 4 } : s,
    );
    fit = e.update({ samples });
  }
  t.is(fit?.source, 'fitted');
  t.is(fit?.samples, 64);
  within(t, fit!.bandwidthBps, 2e6, 0.05, 'bandwidth');
  t.true(Math.abs((fit!.link.setupMs ?? 0) - 4) < 1, `set-up ${fit!.link.setupMs}`);
  t.is(fit?.change, undefined, 'a steady link with isolated outliers is not a change');
  t.is(fit?.bounded, undefined);
});

for (const [from, to, direction] of [
  [1e6, 10e6, 'faster'],
  [10e6, 1e6, 'slower'],
] as const) {
  test(`estimator: a step ${from / 1e6} -> ${to / 1e6} Mbit/s is followed within ${CHANGE_STREAK} significant samples`, (t) => {
    const setupMs = 5;
    const e = warmedUp(from, setupMs, 21);
    const before = e.current!;
    within(t, before.bandwidthBps, from, 0.05, 'bandwidth before the step');
    t.is(before.change, undefined);
    const rand = mulberry32(22);
    const noisy = (bytes: number) => sample(bytes, to, setupMs, 1 + (rand() - 0.5) * 0.06);
    // Requests and probes at the new rate, with small telemetry publishes (too short to judge by) between them.
    const sizes = [20_000, 400, 50_000, 8_192, 400, 30_000, 16_384, 60_000];
    let significant = 0;
    let followedAt: number | undefined;
    let fit: FittedLink | undefined;
    for (const bytes of sizes) {
      fit = e.update({ samples: [noisy(bytes)] });
      if (bytes > 1000) significant++;
      if (followedAt === undefined && Math.abs(fit!.bandwidthBps - to) / to <= 0.2) followedAt = significant;
      // One sample off the fit is not yet a change: it might be an outlier.
      if (significant === 1) {
        t.is(fit?.change, undefined, 'no change after one sample');
        within(t, fit!.bandwidthBps, from, 0.05, 'bandwidth after one sample');
      }
    }
    t.not(followedAt, undefined, `never followed: ${fit?.bandwidthBps}`);
    t.true(followedAt! <= CHANGE_STREAK, `followed after ${followedAt} significant samples`);
    within(t, fit!.bandwidthBps, to, 0.2, 'bandwidth after the step');
    t.regex(fit?.change ?? '', new RegExp(`the uplink became ${direction}`));
  });
}

test('estimator: a step delivered in one telemetry message is followed at once', (t) => {
  const e = warmedUp(1e6, 5, 31);
  const rand = mulberry32(32);
  const fit = e.update({
    samples: [20_000, 50_000, 30_000].map((b) => sample(b, 10e6, 5, 1 + (rand() - 0.5) * 0.06)),
  });
  within(t, fit!.bandwidthBps, 10e6, 0.2, 'bandwidth');
  t.regex(fit?.change ?? '', /faster/);
});

test('estimator: a single outlier among steady samples changes nothing', (t) => {
  const setupMs = 5;
  const e = warmedUp(2e6, setupMs, 41);
  const b0 = e.current!.bandwidthBps;
  within(t, b0, 2e6, 0.05, 'bandwidth before');
  const rand = mulberry32(42);
  const noisy = (bytes: number, factor = 1) =>
    sample(bytes, 2e6, setupMs, factor * (1 + (rand() - 0.5) * 0.06));
  const outlier = e.update({ samples: [noisy(50_000, 5)] });
  within(t, outlier!.bandwidthBps, b0, 0.05, 'bandwidth with the outlier');
  t.is(outlier?.change, undefined);
  for (let i = 0; i < 10; i++) {
    const fit = e.update({ samples: [noisy(30_000 + i * 3000)] });
    within(t, fit!.bandwidthBps, 2e6, 0.05, 'bandwidth after the outlier');
    t.is(fit?.change, undefined);
  }
});

test('estimator: a lower bound above the prediction raises the per-byte cost to meet it', (t) => {
  const e = warmedUp(2e6, 5, 51);
  const plain = e.update({ samples: [] })!;
  t.is(plain.bounded, undefined);
  // Below the prediction: nothing changes.
  const predicted = transferMs(plain.link, 50_000);
  const below = e.update({ samples: [], censored: [{ bytes: 50_000, seconds: (predicted * 0.5) / 1000 }] });
  t.deepEqual(below, plain);
  // Above: a 50 kB PUBLISH has waited 2 s (the fit predicts ~205 ms).
  t.true(predicted < 500, `${predicted}`);
  const bounded = e.update({ samples: [], censored: [{ bytes: 50_000, seconds: 2 }] })!;
  t.truthy(bounded.bounded);
  t.regex(bounded.bounded!, /50000 bytes has waited 2000 ms/);
  t.true(transferMs(bounded.link, 50_000) >= 2000 * (1 - 1e-9), `${transferMs(bounded.link, 50_000)}`);
  t.true(bounded.link.betaMsPerByte > plain.link.betaMsPerByte);
  t.true(bounded.bandwidthBps < plain.bandwidthBps / 5, `${bounded.bandwidthBps}`);
  // Set-up and alpha are the fit's.
  t.is(bounded.link.setupMs, plain.link.setupMs);
  t.is(bounded.link.alphaMs, plain.link.alphaMs);
});

test('right after a change nothing is determined: the old window does not pin the new link down', (t) => {
  const at = (bps: number, bytes: number) => ({ bytes, seconds: (bytes * 8) / bps + 0.002 });
  const e = new LinkEstimator(64, base);
  const before = e.update({ samples: [at(100e6, 4096), at(100e6, 65_536), at(100e6, 1 << 20)] });
  t.true(before?.determined);
  // 100 -> 1 Mbit/s: one 588 KiB transfer took 4.8 s where the fit said 50 ms: a change, not yet determined.
  const after = e.update({ samples: [at(1e6, 602_112)] });
  t.regex(after?.change ?? '', /became slower/);
  t.false(after?.determined);
  // The transfer under way when the link changed stays a lower bound: the fit predicts at least its 4.8 s.
  t.true(transferMs(after!.link, 602_112) >= 4800, `${transferMs(after!.link, 602_112)}`);
  // Two sizes 4x apart on the new link pin it down.
  const pinned = e.update({ samples: [at(1e6, 4096), at(1e6, 32_768)] });
  t.true(pinned?.determined);
});

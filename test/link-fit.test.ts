/**
 * Online link fitting: robust to outliers, follows the configured prior until samples exist.
 */
import test from 'ava';
import { fitLink, SampleWindow } from '../common/plan/link-fit.ts';
import { mulberry32 } from '../common/random.ts';

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

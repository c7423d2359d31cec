/**
 * Algorithm 1 (PartitionSelection) against hand-computed cases.
 */
import test from 'ava';
import { linkFromBandwidth, parseRate, transferMs } from '../planning/link.ts';
import { searchPartition } from '../planning/search.ts';
import { returnExcess } from '../services/planner/inputs.ts';
import { THREE_LAYERS } from './helpers/profiles.ts';

const base = THREE_LAYERS;

test('T(D) = alpha * ceil(D / M) + beta * D', (t) => {
  t.is(transferMs(base.link, 0), 0);
  t.is(transferMs(base.link, 1), 1.01);
  t.is(transferMs(base.link, 1000), 11);
  t.is(transferMs(base.link, 1001), 2 + 10.01);
});

test('latency objective: every candidate as computed by hand, full offload wins', (t) => {
  const r = searchPartition(base);
  // back = T(10) = 1 + 0.1
  const expected = [
    { index: 0, edgeMs: 0, transferMs: 11 + 1.1, serverMs: 6, totalMs: 18.1 },
    { index: 1, edgeMs: 10, transferMs: 6 + 1.1, serverMs: 5, totalMs: 22.1 },
    { index: 2, edgeMs: 30, transferMs: 22 + 1.1, serverMs: 3, totalMs: 56.1 },
    { index: 3, edgeMs: 60, transferMs: 0, serverMs: 0, totalMs: 60 },
  ];
  r.candidates.forEach((c, i) => {
    const e = expected[i]!;
    t.is(c.index, e.index);
    for (const f of ['edgeMs', 'transferMs', 'serverMs', 'totalMs'] as const)
      t.true(Math.abs(c[f] - e[f]) < 1e-9, `${f} of cut ${i}`);
    t.is(c.energyJ, null, 'no power figures, no energy');
  });
  t.is(r.best.index, 0);
  t.is(r.objective, 'latency');
});

test('throughput objective: the slowest stage bounds the rate', (t) => {
  const r = searchPartition({ ...base, objective: 'throughput' });
  t.deepEqual(
    r.candidates.map((c) => Math.round(c.periodMs * 10) / 10),
    [12.1, 10, 30, 60],
  );
  t.is(r.best.index, 1);
  t.is(r.objective, 'throughput');
});

test('a very slow link makes edge-only win', (t) => {
  const r = searchPartition({ ...base, link: linkFromBandwidth(8_000, 5, 1500) });
  t.is(r.best.index, 3);
  t.is(r.best.transferMs, 0);
  t.is(r.best.totalMs, 60);
});

test('a slow edge and a fast link make full offload win; edge load moves the cut earlier', (t) => {
  const slowEdge = { ...base, edgeMs: [1, 1, 100], link: linkFromBandwidth(1e9) };
  // Cut 2 avoids the heavy third layer on the edge and sends little.
  t.is(searchPartition(slowEdge).best.index, 2);
  // Under edge load 50 the two light layers cost more on the edge than sending the input.
  t.is(searchPartition({ ...slowEdge, edgeLoad: 50 }).best.index, 0);
});

test('server load moves the cut later', (t) => {
  const input = { ...base, edgeMs: [2, 2, 2], serverMs: [1, 1, 1], link: linkFromBandwidth(1e9) };
  t.is(searchPartition(input).best.index, 0);
  t.is(searchPartition({ ...input, serverLoad: 10 }).best.index, 3);
});

test('mismatched profiles and empty cut lists are refused', (t) => {
  t.throws(() => searchPartition({ ...base, serverMs: [1, 2] }), {
    message: /3 layers but server profile has 2/,
  });
  t.throws(() => searchPartition({ ...base, cuts: [] }), { message: /no cuts/ });
  t.throws(() => searchPartition({ ...base, cuts: [{ index: 7, bytes: 1 }] }), {
    message: /cut 7 is outside 0..3/,
  });
});

test('rates parse with units', (t) => {
  t.is(parseRate('1mbps'), 1e6);
  t.is(parseRate('8kbps'), 8e3);
  t.is(parseRate('100 Mbit/s'), 1e8);
  t.is(parseRate('2.5gbps'), 2.5e9);
  t.is(parseRate('fast'), undefined);
  t.is(parseRate('0mbps'), undefined);
});

test("throughput with a window: the period is max(slowest stage, latency / window) (Little's law)", (t) => {
  const input = {
    edgeMs: [10, 4],
    serverMs: [10, 1],
    cuts: [
      { index: 0, bytes: 100 },
      { index: 1, bytes: 10 },
      { index: 2, bytes: 0 },
    ],
    link: { setupMs: 0, alphaMs: 0, mtu: 1500, betaMsPerByte: 1 },
    objective: 'throughput' as const,
  };
  // Cut 1: stages 10, 10, 1 (latency 21); edge only: 14 (latency 14).
  const free = searchPartition(input);
  t.is(free.best.index, 1);
  t.is(free.best.periodMs, 10);
  const two = searchPartition({ ...input, window: 2 });
  t.is(two.best.index, 1);
  t.is(two.best.periodMs, 10.5);
  // One frame at a time: the period is the latency, and the edge alone is faster.
  const one = searchPartition({ ...input, window: 1 });
  t.is(one.best.index, 2);
  t.is(one.best.periodMs, 14);
  t.throws(() => searchPartition({ ...input, window: 0 }), { message: 'window must be >= 1 frame, got 0' });
});

test('returnMs, the measured cost of an offloaded frame beyond the link model, is paid by every k < N', (t) => {
  const plain = searchPartition(base);
  const r = searchPartition({ ...base, returnMs: 50 });
  t.deepEqual(
    r.candidates.map((c) => Math.round(c.totalMs * 10) / 10),
    [68.1, 72.1, 106.1, 60],
  );
  // Full offload won by 42 ms over the device alone; 50 ms more per offloaded frame turns that around.
  t.is(plain.best.index, 0);
  t.is(r.best.index, 3);
  t.throws(() => searchPartition({ ...base, returnMs: -1 }), { message: /returnMs must be >= 0/ });
});

test('returnExcess: the median way back less the predicted return, never below 0, only from 3 samples', (t) => {
  t.is(returnExcess([12, 9], 2), undefined);
  t.is(returnExcess([12, 9, 30], 2), 10);
  t.is(returnExcess([12, 9, 30, 11], 2), 9.5);
  t.is(returnExcess([1, 1, 1], 2), 0);
});

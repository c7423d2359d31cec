/**
 * The edge's closing lines: frames are counted as offloaded only when a worker ran their tail, so `--verify`
 * fails a run in which the plan kept frames on the device or a worker failed and the device fell back.
 */
import test from 'ava';
import type { FrameReport } from '../services/edge-head/frame-report.ts';
import { formatFrame, Tally } from '../services/edge-head/report.ts';

const frame = (index: number, tailBy: string, fallback?: string): FrameReport => ({
  index,
  requestId: `r${index}`,
  cut: { index: 3, after: 'relu', tensors: [] } as unknown as FrameReport['cut'],
  tailBy,
  ...(fallback ? { fallback } : {}),
  headMs: 1,
  tailMs: 1,
  transferMs: 1,
  totalMs: 3,
  requestBytes: 100,
  outputs: [],
  maxAbsDiff: 0,
});

test('offloaded, kept on the device by plan, and fallen back are told apart', (t) => {
  const tally = new Tally();
  tally.add(frame(0, 'tail-1'), 10);
  tally.add(frame(1, 'local'), 20);
  tally.add(frame(2, 'local', 'deadline passed'), 30);
  t.is(
    tally.done(),
    'done: 3 frames answered (1 by tail workers, 1 on the device by plan, 1 local fallbacks)',
  );
  t.false(tally.passed);
  // The frames the device finished itself were checked too, and counted as verified local results.
  t.is(tally.localEqual, 2);
  t.regex(
    tally.summary(),
    /^check: 1\/3 frames offloaded and equal to the whole model run locally, 2 run on the device and equal to it \(1 local fallbacks\) .* FAIL$/,
  );
  t.regex(
    formatFrame(frame(2, 'local', 'deadline passed'), 1),
    /equal \(run locally\) \(max diff 0\.0e\+0\)$/,
  );
});

test('a run where a worker answered every frame equal to the whole model passes', (t) => {
  const tally = new Tally();
  for (let i = 0; i < 4; i++) tally.add(frame(i, `tail-${i % 2}`), 10 * (i + 1));
  t.true(tally.passed);
  t.regex(tally.summary(), /^check: 4\/4 frames offloaded and equal .* PASS$/);
});

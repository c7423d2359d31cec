/**
 * The edge's closing lines: frames are counted as offloaded only when a worker ran their tail. `--verify` passes
 * when every frame equals the whole model, whether a worker or the device ran its tail (kept there by the plan: cut
 * N or before the first plan; or a fallback, counted apart), and at least one was offloaded; it fails a run with a
 * frame that differs or with nothing offloaded, and says which.
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
  // The frames the device finished itself were checked too, and counted as verified local results.
  t.is(tally.localEqual, 2);
  t.true(tally.passed);
  t.regex(
    tally.summary(),
    /^check: 1\/3 frames offloaded and equal to the whole model run locally, 2 run on the device and equal to it \(1 local fallbacks\) .* PASS$/,
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

test('frames the plan kept on the device count as checked: offloaded and on-device frames equal to the model pass', (t) => {
  const tally = new Tally();
  // The first frames before the plan offloads, then a worker answers.
  tally.add(frame(0, 'local'), 10);
  tally.add(frame(1, 'local'), 20);
  for (let i = 2; i < 6; i++) tally.add(frame(i, 'tail-1'), 10 * (i + 1));
  t.true(tally.passed);
  t.is(tally.failure, undefined);
  t.regex(
    tally.summary(),
    /^check: 4\/6 frames offloaded and equal to the whole model run locally, 2 run on the device and equal to it \(0 local fallbacks\) .* PASS$/,
  );
});

test('the check fails, saying why, when a frame differs or nothing was offloaded', (t) => {
  const alone = new Tally();
  alone.add(frame(0, 'local'), 10);
  alone.add(frame(1, 'local'), 20);
  t.false(alone.passed);
  t.regex(alone.summary(), /FAIL: no frame was offloaded, so the split was never checked$/);

  const wrong = new Tally();
  wrong.add(frame(0, 'tail-1'), 10);
  wrong.add({ ...frame(1, 'tail-1'), maxAbsDiff: 0.5 }, 20);
  wrong.add({ ...frame(2, 'local'), maxAbsDiff: 0.5 }, 30);
  t.false(wrong.passed);
  t.regex(wrong.summary(), /^check: 1\/3 frames offloaded .* FAIL: 2 frames differ from the whole model$/);

  t.false(new Tally().passed);
  t.is(new Tally().failure, 'no frames');
});

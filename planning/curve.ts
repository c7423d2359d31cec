/**
 * The predicted curve of a plan: the stage times of the cuts Algorithm 1 considered, in cut order, so a dashboard can
 * draw the paper's Fig. 3 (latency per cut) with the chosen cut marked. A model with thousands of cuts would make
 * every retained plan large: past a bound the curve is thinned to evenly spaced cuts, always keeping both ends and
 * the cuts asked for (the chosen one, the search's best). Pure.
 */
import { type CurvePoint, PLAN_CURVE_MAX } from '../schemas/messages.ts';
import type { Candidate } from './search.ts';

/** One candidate as a curve entry; undefined when a time is not finite (JSON has no Infinity). */
function point(c: Candidate): CurvePoint | undefined {
  const p = {
    cut: c.index,
    headMs: c.edgeMs,
    transferMs: c.transferMs,
    tailMs: c.serverMs,
    totalMs: c.totalMs,
  };
  return [p.headMs, p.transferMs, p.tailMs, p.totalMs].every(Number.isFinite) ? p : undefined;
}

/**
 * The curve of a search's candidates: every cut, in cut order, or at most `max` of them (evenly spaced, plus both
 * ends and the cuts of `keep`). Candidates with a time that is not finite (no link measured) are left out.
 */
export function predictedCurve(
  candidates: readonly Candidate[],
  keep: readonly number[] = [],
  max: number = PLAN_CURVE_MAX,
): CurvePoint[] {
  const points = candidates
    .map(point)
    .filter((p): p is CurvePoint => p !== undefined)
    .sort((a, b) => a.cut - b.cut);
  const n = points.length;
  if (n <= max) return points;
  const wanted = new Set(keep);
  const kept = new Set<number>([0, n - 1]);
  points.forEach((p, i) => {
    if (wanted.has(p.cut)) kept.add(i);
  });
  // Evenly spaced positions (ends included) fill what the kept ones leave; never more than `max` in all.
  const slots = Math.max(2, max - (kept.size - 2));
  for (let j = 0; j < slots; j++) kept.add(Math.round((j * (n - 1)) / (slots - 1)));
  return [...kept].sort((a, b) => a - b).map((i) => points[i]!);
}

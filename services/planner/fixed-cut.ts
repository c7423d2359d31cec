/**
 * The fixed-cut policy: one configured cut for every device. Pure, so it is tested directly.
 */
import type { CutSummary } from '../../schemas/messages.ts';

/** Picks the configured cut from a device's cut list, or explains why none fits. */
export function chooseFixedCut(cuts: readonly CutSummary[], ref: string): CutSummary | { error: string } {
  if (cuts.length === 0) return { error: 'the device reported no cuts' };
  if (ref === 'middle') {
    const n = cuts.length - 1;
    // Single-tensor cuts strictly inside the graph; the one nearest the middle position.
    const inner = cuts.filter((c) => c.index > 0 && c.index < n && c.tensors.length === 1);
    const pool = inner.length > 0 ? inner : cuts;
    return pool.reduce((best, c) => (Math.abs(c.index - n / 2) < Math.abs(best.index - n / 2) ? c : best));
  }
  if (/^\d+$/.test(ref)) {
    const cut = cuts.find((c) => c.index === Number(ref));
    return cut ?? { error: `cut ${ref} does not exist: the device's model has cuts 0..${cuts.length - 1}` };
  }
  const cut = cuts.find((c) => c.after === ref);
  return cut ?? { error: `no cut after a node named "${ref}" in the device's model` };
}

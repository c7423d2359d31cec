/**
 * The plan message (schemas/messages.ts `Plan`): every plan the planner publishes, whether Algorithm 1 chose its cut
 * or the configuration fixed it, is built here.
 */
import type { CutSummary, Plan } from '../../schemas/messages.ts';

/** What a plan says beyond its version; `cut` may be a richer cut record, of which the summary's fields are kept. */
export type PlanFields = Omit<Plan, 'version' | 'cut'> & { cut: CutSummary };

/** A plan for one device. */
export function buildPlan(p: PlanFields): Plan {
  const { index, after, bytes, tensors } = p.cut;
  return {
    version: 1,
    device: p.device,
    modelId: p.modelId,
    seq: p.seq,
    cut: { index, after, bytes, tensors },
    objective: p.objective,
    predicted: p.predicted,
    reason: p.reason,
    inputs: p.inputs,
    issuedAt: p.issuedAt,
    ...(p.curve ? { curve: p.curve } : {}),
  };
}

// Resolves what a user typed as a cut (`--after conv1` or `--after 12`) to a cut of the model, or explains in one
// line why it is not one and which cuts are near. Pure.

import { UserError } from '../runtime/errors.ts';
import type { AnalyzedNode } from './graph.ts';
import type { GraphProto } from './onnx.ts';

/** The minimum a cut list must provide. */
export interface CutLike {
  index: number;
  after: string | null;
}

/** Edit distance between two strings (Levenshtein), for "did you mean" suggestions. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

// The top-level node whose subgraph (at any depth) contains a node with this name.
function enclosingNode(nodes: readonly AnalyzedNode[], name: string): AnalyzedNode | undefined {
  const contains = (g: GraphProto): boolean =>
    (g.node ?? []).some(
      (n) =>
        n.name === name || n.attribute.some((a) => (a.g && contains(a.g)) || (a.graphs ?? []).some(contains)),
    );
  return nodes.find((n) =>
    n.proto.attribute.some((a) => (a.g && contains(a.g)) || (a.graphs ?? []).some(contains)),
  );
}

const label = (c: CutLike) => (c.after === null ? `0 (input)` : `${c.index} (${c.after})`);

/** Finds the cut `ref` names (an index 0..N or the name of the node it follows); UserError otherwise. */
export function resolveCutRef<C extends CutLike>(
  cuts: readonly C[],
  nodes: readonly AnalyzedNode[],
  ref: string,
  source: string,
): C {
  const last = cuts.length - 1;
  if (/^\d+$/.test(ref)) {
    const cut = cuts[Number(ref)];
    if (!cut) throw new UserError(`${source}: cut ${ref} does not exist; cuts are numbered 0 to ${last}`);
    return cut;
  }
  const hit = cuts.find((c) => c.after === ref);
  if (hit) return hit;
  const outer = enclosingNode(nodes, ref);
  if (outer) {
    const at = cuts[outer.index];
    const before = cuts[outer.index - 1];
    throw new UserError(
      `${source}: node "${ref}" is inside a subgraph of ${outer.op} node "${outer.name}", which runs as one ` +
        `step and cannot be cut through; nearest valid cuts: ${[before, at]
          .filter((c) => c !== undefined)
          .map(label)
          .join(', ')}`,
    );
  }
  const nearest = cuts
    .filter((c) => c.after !== null)
    .map((c) => ({ c, d: editDistance(ref.toLowerCase(), (c.after ?? '').toLowerCase()) }))
    .sort((x, y) => x.d - y.d || x.c.index - y.c.index)
    .slice(0, 3)
    .map((x) => label(x.c));
  throw new UserError(
    `${source}: no node named "${ref}"; nearest valid cuts: ${nearest.join(', ')} (or an index 0 to ${last})`,
  );
}

// Cuts of an analysed graph (graph.ts). A cut k (0..N) runs nodes 1..k of the topological order on the edge (head)
// and k+1..N on a tail worker. What has to travel is the crossing set: every non-initializer tensor that exists by
// position k (a graph input, or produced at a position <= k) and is still needed after it (consumed at a position
// > k, or a graph output). Initializers never travel: each side keeps the weights it uses; outputs of Constant nodes
// are ordinary tensors and may cross. Quantized graphs are cut by their QDQ placement (qdq.ts); float fusions no
// placement keeps whole are marked in Cut.fusedAcross. Pure functions: no I/O.

import type { AnalyzedNode, GraphAnalysis } from './graph.ts';
import { tensorBytes } from './graph.ts';
import { ModelError } from './onnx.ts';
import { derive, qdqPlacement } from './qdq.ts';

/** One tensor of a crossing set, with its size as sent (dims that are unknown count as 1: batch 1). */
export interface CutTensor {
  name: string;
  dtype: string;
  elemType: number;
  shape: number[];
  bytes: number;
}

/** Cut k: head runs positions 1..k, tail k+1..N; `tensors` is what crosses, in a stable order. */
export interface Cut {
  index: number;
  /** Name of the node at position k; null for k = 0 (everything runs on the tail). */
  after: string | null;
  tensors: CutTensor[];
  bytes: number;
  singleTensor: boolean;
  /**
   * Crossing tensors that onnxruntime computes inside a fused kernel in the whole model, so head + tail may differ
   * from it in the last bits at this cut (see {@link fusedAcross}); absent when there are none.
   */
  fusedAcross?: string[];
}

/**
 * The nodes each side of cut k runs, in a valid order: head = positions 1..k, tail = k+1..N, adjusted by
 * {@link qdqPlacement} (a DequantizeLinear copied to the tail, one the head no longer reads dropped from it,
 * QuantizeLinear groups moved to the head).
 */
export function sidesAt(a: GraphAnalysis, k: number): { head: AnalyzedNode[]; tail: AnalyzedNode[] } {
  const { placement, toHead } = derive(a);
  const head = a.nodes.slice(0, k).filter((n) => (placement.dq.get(n.index)?.firstUse ?? 0) <= k);
  const tail: AnalyzedNode[] = [];
  for (const d of placement.dq.values()) if (d.index <= k && k < d.lastUse) tail.push(a.nodes[d.index - 1]!);
  for (const n of a.nodes.slice(k)) {
    if ((toHead.get(n.index) ?? k + 1) <= k) head.push(n);
    else tail.push(n);
  }
  return { head, tail };
}

/**
 * The tensors of `names` crossing cut k whose producer and only reader onnxruntime fuses into one kernel with other
 * rounding, so that a cut between them cannot match the whole model bit for bit. The producer is a Conv with
 * initializer weights, or a node onnxruntime folds into such a Conv (BatchNormalization, Add or Mul with an
 * initializer operand: ConvBNFusion, ConvAddFusion, ConvMulFusion, level 'basic' and up); the reader is one of those
 * foldable nodes, or an Add of another tensor (a residual connection, which level 'all' computes inside the Conv).
 * Measured with onnxruntime-node 1.30 and createSession defaults: such cuts differed by up to 1e-5
 * (test/model-opsets.test.ts); of the zoo's mobilenet-v2 exactly the 62 inner cuts so marked were not bit-identical
 * (by up to 6e-9 there), the other 91 were, and the same held on every 3rd cut of resnet-50 (27 marked, 32 not) and
 * every 4th of inception-v3 (30 and 49).
 */
export function fusedAcross(a: GraphAnalysis, k: number, names: string[]): string[] {
  const { readers } = derive(a);
  const initializer = (i: string | undefined) => !!i && a.initializers.has(i);
  const producerOf = (t: string | undefined) => a.nodes[(a.birth.get(t ?? '') ?? 0) - 1];
  const folds = (n: AnalyzedNode, input: string) =>
    n.op === 'BatchNormalization'
      ? n.inputs[0] === input && n.inputs.slice(1).every(initializer)
      : (n.op === 'Add' || n.op === 'Mul') && n.inputs.some((i) => i !== input && initializer(i));
  // A fused Conv computes this node's output.
  const convLike = (n: AnalyzedNode | undefined): boolean => {
    if (!n) return false;
    if (n.op === 'Conv') return n.inputs.slice(1).every((i) => i === '' || initializer(i));
    const src = n.inputs.find((i) => !initializer(i));
    return !!src && folds(n, src) && readers.get(src)?.length === 1 && convLike(producerOf(src));
  };
  return names.filter((t) => {
    const uses = readers.get(t) ?? [];
    const reader = a.nodes[(uses[0] ?? 0) - 1];
    if (!reader || uses.length !== 1 || reader.index <= k || !convLike(producerOf(t))) return false;
    return folds(reader, t) || (reader.op === 'Add' && reader.inputs.every((i) => !initializer(i)));
  });
}

// Crossing candidates in a stable order: graph inputs first, then node outputs by position. Lifetimes
// follow qdqPlacement: a moved DequantizeLinear's output never crosses and its input lives as long as
// the output is read; a moved QuantizeLinear group's float tensors never cross and its output exists
// from `from`.
function lifetimes(a: GraphAnalysis): { name: string; birth: number; death: number }[] {
  const { dq, q } = qdqPlacement(a);
  const death = new Map(a.lastUse);
  const birth = new Map(a.birth);
  for (const d of dq.values()) {
    death.delete(d.output);
    if (!a.initializers.has(d.input)) death.set(d.input, Math.max(death.get(d.input) ?? 0, d.lastUse));
  }
  for (const g of q.values()) {
    for (const t of g.hidden) death.delete(t);
    birth.set(g.output, g.from);
  }
  const names = [...a.inputs, ...a.nodes.flatMap((n) => n.outputs.filter((o) => o !== ''))];
  return names.flatMap((name) => {
    const d = death.get(name);
    return d === undefined ? [] : [{ name, birth: birth.get(name) ?? 0, death: d }];
  });
}

function cutFrom(a: GraphAnalysis, k: number, names: string[]): Cut {
  const tensors = names.map((name): CutTensor => {
    const t = a.tensors.get(name);
    if (!t || t.elemType === 0 || !t.shape)
      throw new ModelError(
        a.source,
        `tensor ${name} crosses cut ${k} but its type/shape is unknown (run inferShapes from shapes.ts first)`,
      );
    const bytes = tensorBytes(t.elemType, t.shape);
    return { name, dtype: t.dtype, elemType: t.elemType, shape: [...t.shape], bytes };
  });
  const cut: Cut = {
    index: k,
    after: k === 0 ? null : (a.nodes[k - 1]?.name ?? null),
    tensors,
    bytes: tensors.reduce((s, t) => s + t.bytes, 0),
    singleTensor: tensors.length === 1,
  };
  const fused = fusedAcross(a, k, names);
  if (fused.length > 0) cut.fusedAcross = fused;
  return cut;
}

/** Cut k (0..N) of an analysed graph; RangeError outside 0..N, ModelError if a crossing type is unknown. */
export function cutAt(a: GraphAnalysis, k: number): Cut {
  if (!Number.isInteger(k) || k < 0 || k > a.nodes.length)
    throw new RangeError(`cut ${k} is out of range 0..${a.nodes.length} for ${a.source}`);
  return cutFrom(
    a,
    k,
    lifetimes(a)
      .filter((t) => t.birth <= k && k < t.death)
      .map((t) => t.name),
  );
}

/** Every cut k = 0..N with its crossing set (k = 0: needed graph inputs; k = N: graph outputs). */
export function enumerateCuts(a: GraphAnalysis): Cut[] {
  const lives = lifetimes(a);
  const cuts: Cut[] = [];
  for (let k = 0; k <= a.nodes.length; k++)
    cuts.push(
      cutFrom(
        a,
        k,
        lives.filter((t) => t.birth <= k && k < t.death).map((t) => t.name),
      ),
    );
  return cuts;
}

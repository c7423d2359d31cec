// Quantized (QDQ) graphs: where QuantizeLinear and DequantizeLinear run. A DequantizeLinear of initializers runs on
// the side of each reader and a QuantizeLinear right after the op it quantizes, so every QDQ group stays whole for
// onnxruntime's integer kernels and the 1-byte tensor crosses (docs/model-toolkit.md, "Bit-exact results"). Pure
// functions of a graph analysis (graph.ts); cuts.ts cuts by this placement.

import type { AnalyzedNode, GraphAnalysis } from './graph.ts';

/** A DequantizeLinear (at `index`) whose float output never crosses: each side that reads it runs its own copy. */
export interface DqToReaders {
  index: number;
  /** The quantized input, which crosses instead (unless it is an initializer). */
  input: string;
  output: string;
  /** First and last positions reading `output`. */
  firstUse: number;
  lastUse: number;
}

/**
 * A QuantizeLinear, with the Relu or Clip feeding it if any, that runs right after the node producing its float input:
 * the head runs it from cut `from` on, so `output` crosses instead of a float tensor. (onnxruntime folds such a Relu or
 * Clip into the quantization, and the QuantizeLinear into the integer kernel of the node before.)
 */
export interface QToProducer {
  /** Positions of the moved nodes, in order: [Relu or Clip, QuantizeLinear] or [QuantizeLinear]. */
  indices: number[];
  /** The float tensors inside the group, read by nothing else; they never cross. */
  hidden: string[];
  output: string;
  /** Position of the node producing the group's float input. */
  from: number;
}

/** The QuantizeLinear / DequantizeLinear nodes that do not stay at their position (see the top of this file). */
export interface QdqPlacement {
  /** By position of the DequantizeLinear. */
  dq: Map<number, DqToReaders>;
  /** By position of the QuantizeLinear. */
  q: Map<number, QToProducer>;
}

/** What {@link derive} computes from an analysis, once: the readers of every tensor and the QDQ placement. */
export interface Derived {
  /** Positions reading each tensor, ascending. */
  readers: Map<string, number[]>;
  placement: QdqPlacement;
  /** Position of each node moved to the head -> the cut from which it runs there. */
  toHead: Map<number, number>;
}

const derived = new WeakMap<GraphAnalysis, Derived>();

/** The readers, QDQ placement and nodes moved to the head of an analysed graph (cached per analysis). */
export function derive(a: GraphAnalysis): Derived {
  const known = derived.get(a);
  if (known) return known;
  const readers = new Map<string, number[]>();
  for (const n of a.nodes)
    for (const t of new Set([...n.inputs, ...n.implicitInputs])) {
      if (!t) continue;
      const list = readers.get(t);
      if (list) list.push(n.index);
      else readers.set(t, [n.index]);
    }
  const outputs = new Set(a.outputs);
  // Default-domain op whose inputs after the first are initializers (or omitted), with one output.
  const simple = (n: AnalyzedNode | undefined, ops: string[]): n is AnalyzedNode =>
    !!n &&
    ops.includes(n.op) &&
    (n.domain === '' || n.domain === 'ai.onnx') &&
    !!n.inputs[0] &&
    n.outputs.length === 1 &&
    !!n.outputs[0] &&
    n.implicitInputs.length === 0 &&
    n.inputs.slice(1).every((i) => i === '' || a.initializers.has(i));
  // A float tensor that only `n` reads, produced by a node (not a graph input), and not a graph output.
  const privateInput = (n: AnalyzedNode) => {
    const t = n.inputs[0]!;
    return (a.birth.get(t) ?? 0) > 0 && !outputs.has(t) && readers.get(t)?.length === 1;
  };
  const dq = new Map<number, DqToReaders>();
  for (const n of a.nodes) {
    const uses = readers.get(n.outputs[0] ?? '') ?? [];
    if (simple(n, ['DequantizeLinear']) && uses.length > 0 && !outputs.has(n.outputs[0]!))
      dq.set(n.index, {
        index: n.index,
        input: n.inputs[0]!,
        output: n.outputs[0]!,
        firstUse: uses[0]!,
        lastUse: uses[uses.length - 1]!,
      });
  }
  const q = new Map<number, QToProducer>();
  const toHead = new Map<number, number>();
  for (const n of a.nodes) {
    if (!simple(n, ['QuantizeLinear']) || !privateInput(n)) continue;
    const from = a.birth.get(n.inputs[0]!)!;
    const group: QToProducer = { indices: [n.index], hidden: [n.inputs[0]!], output: n.outputs[0]!, from };
    const act = a.nodes[group.from - 1];
    if (simple(act, ['Relu', 'Clip']) && privateInput(act) && !dq.has(a.birth.get(act.inputs[0]!)!)) {
      group.indices.unshift(act.index);
      group.hidden.unshift(act.inputs[0]!);
      group.from = a.birth.get(act.inputs[0]!)!;
    }
    // A moved DequantizeLinear already keeps its float output from crossing.
    if (dq.has(group.from)) continue;
    q.set(n.index, group);
    for (const i of group.indices) toHead.set(i, group.from);
  }
  const d = { readers, placement: { dq, q }, toHead };
  derived.set(a, d);
  return d;
}

/**
 * The QDQ placement of a graph: DequantizeLinear nodes with initializer scale/zero point whose output is read (and is
 * not a graph output) run next to their readers; a QuantizeLinear with initializer scale/zero point that is the only
 * reader of a node's output (not a graph output) runs next to that node, together with the Relu or Clip between them
 * if that is the only reader of its own input.
 */
export function qdqPlacement(a: GraphAnalysis): QdqPlacement {
  return derive(a).placement;
}

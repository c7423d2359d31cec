// Graph analysis and cut enumeration. Pure functions over an already-decoded model: no I/O,
// so the planner can call them as often as it likes and tests can use hand-built graphs.
//
// A cut k (0..N) runs nodes 1..k of the topological order on the edge (head) and k+1..N on a
// tail worker. What has to travel is the crossing set: every non-initializer tensor that exists
// by position k (a graph input, or produced at a position <= k) and is still needed after it
// (consumed at a position > k, or a graph output). Initializers never travel: each side keeps
// the weights it uses; outputs of Constant nodes are ordinary tensors and may cross.
//
// Quantized (QDQ) graphs: a DequantizeLinear of initializers runs on the side of each reader and a
// QuantizeLinear right after the op it quantizes (qdqPlacement), so every QDQ group stays whole for
// onnxruntime's integer kernels and the 1-byte tensor crosses (docs/model-toolkit.md, "Bit-exact
// results"). Float fusions no placement keeps whole are marked in Cut.fusedAcross.

import type { GraphProto, NodeProto, OnnxModel, TypeProto, ValueInfoProto } from './onnx.ts';
import { dtypeByteSize, ModelError, ortTypeName } from './onnx.ts';

/** What is known about one tensor: element type and shape (-1 = unknown or symbolic dim). */
export interface TensorInfo {
  name: string;
  /** ONNX element type (TensorProto.DataType), 0 when unknown. */
  elemType: number;
  /** onnxruntime type name ("float32", ...), "unknown" when elemType is 0 or has no ORT name. */
  dtype: string;
  /** Dimensions, -1 where unknown or symbolic; null when even the rank is unknown. */
  shape: number[] | null;
}

/** A node at its position in the deterministic topological order. */
export interface AnalyzedNode {
  /** 1-based position in the topological order (the cut index that ends with this node). */
  index: number;
  /** node.name, or a generated unique `<op>_<index>` when the file leaves it empty or repeats it. */
  name: string;
  op: string;
  domain: string;
  /** Declared inputs ('' = omitted optional input). */
  inputs: string[];
  outputs: string[];
  /** Outer-scope tensors read by subgraphs (If/Loop/Scan bodies): dependencies too. */
  implicitInputs: string[];
  proto: NodeProto;
}

/** Everything the cut/split code needs to know about a graph. */
export interface GraphAnalysis {
  /** Label used in error messages. */
  source: string;
  nodes: AnalyzedNode[];
  /** Graph inputs that are not initializers (what a caller must feed), in declaration order. */
  inputs: string[];
  /** Graph outputs in declaration order. */
  outputs: string[];
  /** Names of dense and sparse initializers. */
  initializers: Set<string>;
  /** Type/shape of every tensor that has one (inputs, outputs, value_info, initializers). */
  tensors: Map<string, TensorInfo>;
  /** The declared ValueInfoProto of a tensor (keeps symbolic dims for split parts). */
  valueInfo: Map<string, ValueInfoProto>;
  /** Position where a non-initializer tensor appears: 0 for graph inputs, else its producer's index. */
  birth: Map<string, number>;
  /** Last position that reads a tensor; N + 1 for graph outputs; absent when nothing reads it. */
  lastUse: Map<string, number>;
}

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

/** Element type and shape of a TypeProto (tensor types only; others are "unknown"). */
export function typeInfo(type: TypeProto | undefined): { elemType: number; shape: number[] | null } {
  const tt = type?.tensor_type;
  if (!tt) return { elemType: 0, shape: null };
  const shape = tt.shape
    ? (tt.shape.dim ?? []).map((d) => (typeof d.dim_value === 'number' ? d.dim_value : -1))
    : null;
  return { elemType: tt.elem_type ?? 0, shape };
}

function info(name: string, elemType: number, shape: number[] | null): TensorInfo {
  return { name, elemType, dtype: (elemType && ortTypeName(elemType)) || 'unknown', shape };
}

function subgraphs(node: NodeProto): GraphProto[] {
  const out: GraphProto[] = [];
  for (const a of node.attribute) {
    if (a.g) out.push(a.g);
    for (const g of a.graphs ?? []) out.push(g);
  }
  return out;
}

// Names a subgraph reads from enclosing scopes (recursively), i.e. not defined inside it.
function outerRefs(g: GraphProto, acc: Set<string>): void {
  const local = new Set<string>();
  for (const v of g.input ?? []) if (v.name) local.add(v.name);
  for (const t of g.initializer ?? []) if (t.name) local.add(t.name);
  for (const s of g.sparse_initializer ?? []) if (s.values?.name) local.add(s.values.name);
  for (const n of g.node ?? []) for (const o of n.output) if (o) local.add(o);
  const use = (name: string) => {
    if (name && !local.has(name)) acc.add(name);
  };
  for (const n of g.node ?? []) {
    for (const i of n.input) use(i);
    for (const sub of subgraphs(n)) {
      const inner = new Set<string>();
      outerRefs(sub, inner);
      for (const r of inner) use(r);
    }
  }
  for (const o of g.output ?? []) use(o.name ?? '');
}

/** All tensors a node reads: declared inputs (minus '') plus subgraph outer-scope references. */
function readsOf(node: NodeProto): string[] {
  const acc = new Set<string>();
  for (const sub of subgraphs(node)) outerRefs(sub, acc);
  for (const i of node.input) acc.delete(i);
  return [...node.input.filter((i) => i !== ''), ...acc];
}

// Binary min-heap of node indices, so Kahn's algorithm always takes the ready node that came
// first in the file: an already-sorted graph keeps its order, and the result is deterministic.
class MinHeap {
  private a: number[] = [];
  get size(): number {
    return this.a.length;
  }
  push(v: number): void {
    const a = this.a;
    a.push(v);
    for (let i = a.length - 1; i > 0; ) {
      const p = (i - 1) >> 1;
      if (a[p]! <= a[i]!) break;
      [a[p], a[i]] = [a[i]!, a[p]!];
      i = p;
    }
  }
  pop(): number {
    const a = this.a;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && a[l]! < a[m]!) m = l;
        if (r < a.length && a[r]! < a[m]!) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i]!, a[m]!];
        i = m;
      }
    }
    return top;
  }
}

/** Node indices (into graph.node) in topological order; ModelError on cycles or undefined tensors. */
export function topologicalOrder(graph: GraphProto, source = 'model'): number[] {
  const nodes = graph.node;
  const defined = new Set<string>([
    ...graph.input.map((v) => v.name ?? ''),
    ...graph.initializer.map((t) => t.name ?? ''),
  ]);
  for (const s of graph.sparse_initializer ?? []) defined.add(s.values?.name ?? '');
  const producer = new Map<string, number>();
  nodes.forEach((n, i) => {
    for (const o of n.output) {
      if (!o) continue;
      if (producer.has(o) || defined.has(o))
        throw new ModelError(source, `tensor ${o} is defined more than once`);
      producer.set(o, i);
    }
  });
  const users: number[][] = nodes.map(() => []);
  const pending = nodes.map((n, i) => {
    const deps = new Set<number>();
    for (const t of readsOf(n)) {
      const p = producer.get(t);
      if (p !== undefined) deps.add(p);
      else if (!defined.has(t))
        throw new ModelError(source, `node ${n.name || n.op_type} reads tensor ${t}, which nothing defines`);
    }
    for (const d of deps) users[d]!.push(i);
    return deps.size;
  });
  const ready = new MinHeap();
  pending.forEach((c, i) => {
    if (c === 0) ready.push(i);
  });
  const order: number[] = [];
  while (ready.size > 0) {
    const i = ready.pop();
    order.push(i);
    for (const u of users[i]!) if (--pending[u]! === 0) ready.push(u);
  }
  if (order.length !== nodes.length) {
    const stuck = nodes.find((_, i) => pending[i]! > 0);
    throw new ModelError(source, `graph has a cycle (through node ${stuck?.name || stuck?.op_type})`);
  }
  return order;
}

// Unique names: explicit names win (first occurrence), then `<op>_<index>` for the rest.
function nodeNames(ordered: NodeProto[]): string[] {
  const used = new Set<string>();
  const names: (string | null)[] = ordered.map((n) => {
    if (!n.name || used.has(n.name)) return null;
    used.add(n.name);
    return n.name;
  });
  return names.map((name, i) => {
    if (name !== null) return name;
    const base = `${ordered[i]!.op_type}_${i + 1}`;
    let candidate = base;
    for (let s = 2; used.has(candidate); s++) candidate = `${base}_${s}`;
    used.add(candidate);
    return candidate;
  });
}

/** Orders the nodes, names them, and collects tensor types and lifetimes (pure; no onnxruntime). */
export function analyzeGraph(model: OnnxModel, source = model.graph.name || 'model'): GraphAnalysis {
  const g = model.graph;
  const ordered = topologicalOrder(g, source).map((i) => g.node[i]!);
  const names = nodeNames(ordered);
  const nodes: AnalyzedNode[] = ordered.map((n, i) => {
    const reads = readsOf(n);
    return {
      index: i + 1,
      name: names[i]!,
      op: n.op_type ?? '',
      domain: n.domain ?? '',
      inputs: [...n.input],
      outputs: [...n.output],
      implicitInputs: reads.slice(n.input.filter((x) => x !== '').length),
      proto: n,
    };
  });

  const initializers = new Set<string>(g.initializer.map((t) => t.name ?? ''));
  for (const s of g.sparse_initializer ?? []) initializers.add(s.values?.name ?? '');
  const tensors = new Map<string, TensorInfo>();
  const valueInfo = new Map<string, ValueInfoProto>();
  // Later sources win: declared graph inputs/outputs are the most authoritative.
  for (const t of g.initializer) tensors.set(t.name ?? '', info(t.name ?? '', t.data_type ?? 0, [...t.dims]));
  for (const v of [...g.value_info, ...g.input, ...g.output]) {
    if (!v.name) continue;
    const { elemType, shape } = typeInfo(v.type);
    const known = tensors.get(v.name);
    if (known && elemType === 0) continue;
    tensors.set(v.name, info(v.name, elemType, shape ?? known?.shape ?? null));
    if (v.type?.tensor_type) valueInfo.set(v.name, v);
  }

  const inputs = g.input.map((v) => v.name ?? '').filter((n) => !initializers.has(n));
  const outputs = g.output.map((v) => v.name ?? '');
  const birth = new Map<string, number>();
  const lastUse = new Map<string, number>();
  for (const name of inputs) birth.set(name, 0);
  for (const n of nodes) {
    for (const t of [...n.inputs, ...n.implicitInputs])
      if (t && !initializers.has(t)) lastUse.set(t, n.index);
    for (const o of n.outputs) if (o) birth.set(o, n.index);
  }
  for (const o of outputs) {
    if (!birth.has(o) && !initializers.has(o))
      throw new ModelError(source, `graph output ${o} is never produced`);
    if (!initializers.has(o)) lastUse.set(o, nodes.length + 1);
  }
  return { source, nodes, inputs, outputs, initializers, tensors, valueInfo, birth, lastUse };
}

/** Bytes of one tensor of the given type and shape; unknown/symbolic dims (-1) count as 1 (batch 1). */
export function tensorBytes(elemType: number, shape: readonly number[]): number {
  return dtypeByteSize(
    elemType,
    shape.reduce((a, d) => a * (d < 0 ? 1 : d), 1),
  );
}

// ---------------------------------------------------------------------------------------------
// Quantized graphs: where QuantizeLinear and DequantizeLinear run

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

interface Derived {
  /** Positions reading each tensor, ascending. */
  readers: Map<string, number[]>;
  placement: QdqPlacement;
  /** Position of each node moved to the head -> the cut from which it runs there. */
  toHead: Map<number, number>;
}

const derived = new WeakMap<GraphAnalysis, Derived>();

function derive(a: GraphAnalysis): Derived {
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

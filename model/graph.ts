// Graph analysis: the deterministic topological order of a model's nodes, their names, and the type, shape and
// lifetime of every tensor. Pure functions over an already-decoded model: no I/O, so the planner can call them as
// often as it likes and tests can use hand-built graphs. The cuts of an analysed graph are in cuts.ts; where the
// QuantizeLinear and DequantizeLinear nodes of a quantized graph run, in qdq.ts.

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

// Splits a model at cut k into a head model (nodes 1..k) and a tail model (nodes k+1..N).
// Pure: works on decoded objects and shares (never copies) weight buffers with the input
// model, so splitting a big model costs only the protobuf structure.
//
// Contract, checked by test/model-split.test.ts with onnxruntime: running head, then tail on
// the head's outputs, gives the whole model's outputs bit for bit. onnxruntime accepts graphs with
// no nodes and graphs whose output is directly an input, so k = 0 and k = N need no Identity
// nodes, and tensor names stay the same on both sides of the wire. Quantized graphs follow
// qdq.ts's QDQ placement (sidesAt in cuts.ts); float16 models may carry their crossing tensors as float32
// (`carry`, chosen per model by `exactCarry`): docs/model-toolkit.md, "Bit-exact results", gives
// why and the measurements.

import type { Cut } from './cuts.ts';
import { cutAt, sidesAt } from './cuts.ts';
import type { AnalyzedNode, GraphAnalysis } from './graph.ts';
import { analyzeGraph } from './graph.ts';
import { halfToFloat } from './half.ts';
import type {
  AttributeProto,
  GraphProto,
  NodeProto,
  OnnxModel,
  SparseTensorProto,
  TensorProto,
  TypeProto,
  ValueInfoProto,
} from './onnx.ts';
import { AttributeType, DataType, ModelError } from './onnx.ts';

/** The two halves of a model at one cut, plus the cut itself (what crosses and how big it is). */
export interface SplitResult {
  head: OnnxModel;
  tail: OnnxModel;
  /** The crossing set as it travels: with carry 'float32', the carried tensors' dtype and bytes. */
  cut: Cut;
}

/**
 * How crossing tensors travel. 'native': in their declared type. 'float32': float16 intermediates travel as float32
 * and both halves compute in float32, as onnxruntime's CPU provider does inside a whole float16 model (see the top of
 * this file); other tensors, graph inputs and graph outputs stay native.
 */
export type Carry = 'native' | 'float32';

/** Options of {@link splitModel}. */
export interface SplitOptions {
  /** Default 'native'; {@link exactCarry} says which one keeps head + tail bit-identical to the whole model. */
  carry?: Carry;
}

const F16 = DataType.FLOAT16;
const F32 = DataType.FLOAT;

// A typed ValueInfoProto for a crossing tensor: the declared one if any (keeps symbolic dims),
// else one built from the analysis (filled in by shapes.ts for models without value_info).
function typedInfo(a: GraphAnalysis, name: string): ValueInfoProto {
  const declared = a.valueInfo.get(name);
  if (declared?.type?.tensor_type?.elem_type) return { name, type: declared.type };
  const t = a.tensors.get(name);
  if (!t || t.elemType === 0)
    throw new ModelError(a.source, `tensor ${name} has no known type (run inferShapes from shapes.ts first)`);
  const type: TypeProto = { tensor_type: { elem_type: t.elemType } };
  if (t.shape && type.tensor_type)
    type.tensor_type.shape = { dim: t.shape.map((d) => (d >= 0 ? { dim_value: d } : {})) };
  return { name, type };
}

interface Side {
  nodes: NodeProto[];
  /** Tensors the side's nodes read, including subgraph outer-scope reads. */
  reads: Set<string>;
  /** Tensors the side's nodes produce. */
  produces: Set<string>;
}

function side(picked: AnalyzedNode[]): Side {
  const reads = new Set<string>();
  const produces = new Set<string>();
  for (const n of picked) {
    for (const t of [...n.inputs, ...n.implicitInputs]) if (t) reads.add(t);
    for (const o of n.outputs) if (o) produces.add(o);
  }
  // Generated names are written back so both halves agree with the analysis (and Cut.after).
  const nodes = picked.map((n) => (n.proto.name === n.name ? n.proto : { ...n.proto, name: n.name }));
  return { nodes, reads, produces };
}

function buildGraph(
  model: OnnxModel,
  suffix: string,
  s: Side,
  inputs: ValueInfoProto[],
  outputs: ValueInfoProto[],
  extraInits: Set<string>,
): GraphProto {
  const g = model.graph;
  const needs = (name: string | undefined) => !!name && (s.reads.has(name) || extraInits.has(name));
  const initializer: TensorProto[] = g.initializer.filter((t) => needs(t.name));
  const sparse: SparseTensorProto[] = (g.sparse_initializer ?? []).filter((t) => needs(t.values?.name));
  const kept = new Set<string>([
    ...s.reads,
    ...s.produces,
    ...inputs.map((v) => v.name ?? ''),
    ...outputs.map((v) => v.name ?? ''),
  ]);
  const boundary = new Set([...inputs, ...outputs].map((v) => v.name));
  const graph: GraphProto = {
    node: s.nodes,
    name: `${g.name || 'graph'}_${suffix}`,
    initializer,
    input: inputs,
    output: outputs,
    // value_info describes intermediates; pruned to the ones this side computes.
    value_info: g.value_info.filter((v) => v.name && s.produces.has(v.name) && !boundary.has(v.name)),
  };
  if (sparse.length > 0) graph.sparse_initializer = sparse;
  if (g.doc_string) graph.doc_string = g.doc_string;
  const qa = (g.quantization_annotation ?? []).filter((q) => q.tensor_name && kept.has(q.tensor_name));
  if (qa.length > 0) graph.quantization_annotation = qa;
  if (g.metadata_props?.length) graph.metadata_props = g.metadata_props;
  return graph;
}

// Model-level fields are kept on both halves (opsets, IR version, producer, metadata, local
// functions); training_info is dropped because a half is an inference graph only.
function wrap(model: OnnxModel, graph: GraphProto): OnnxModel {
  const { training_info: _t, configuration: _c, graph: _g, ...rest } = model;
  return { ...rest, graph };
}

/**
 * Splits `model` at cut k (0..N): head = nodes 1..k, tail = nodes k+1..N, joined by `cut.tensors` (with the QDQ
 * placement of qdq.ts: a DequantizeLinear may run on both sides, a QuantizeLinear on the head before its position).
 */
export function splitModel(
  model: OnnxModel,
  k: number,
  analysis: GraphAnalysis = analyzeGraph(model),
  opts: SplitOptions = {},
): SplitResult {
  const a = analysis;
  const nativeCut = cutAt(a, k);
  const widened = widenedAt(a, nativeCut, opts.carry ?? 'native');
  const cut = carried(nativeCut, widened);
  const crossing = new Set(cut.tensors.map((t) => t.name));
  const crossingInfos = nativeCut.tensors.map((t) => typedInfo(a, t.name));
  const sides = sidesAt(a, k);
  const head = side(sides.head);
  const tail = side(sides.tail);
  const g = model.graph;

  // Old IR (< 4) models list initializers among graph inputs; such an entry stays with the
  // initializer on each side that uses it and never becomes a crossing tensor.
  const initInputs = g.input.filter((v) => v.name && a.initializers.has(v.name));
  const realInputs = new Set(a.inputs);

  // Head inputs: original inputs it reads or passes straight through (an input read only by
  // the tail crosses every cut before its use, so the head must forward it).
  const headInputs = g.input.filter(
    (v) =>
      v.name &&
      ((realInputs.has(v.name) && (head.reads.has(v.name) || crossing.has(v.name))) ||
        (a.initializers.has(v.name) && head.reads.has(v.name))),
  );
  // A graph output that is an initializer never crosses; the tail serves it from its own copy.
  const outputInits = new Set(a.outputs.filter((o) => a.initializers.has(o)));
  const tailInputs = [
    ...crossingInfos,
    ...initInputs.filter((v) => tail.reads.has(v.name ?? '') || outputInits.has(v.name ?? '')),
  ];

  let headGraph = buildGraph(model, 'head', head, headInputs, crossingInfos, new Set());
  let tailGraph = buildGraph(model, 'tail', tail, tailInputs, g.output, outputInits);
  if (widened.size > 0) {
    headGraph = computeInFloat32(headGraph, widened, a.source);
    tailGraph = computeInFloat32(tailGraph, widened, a.source);
  }
  return { head: wrap(model, headGraph), tail: wrap(model, tailGraph), cut };
}

// ---------------------------------------------------------------------------------------------
// Float32 carry

/**
 * The crossing tensors of `cut` that travel as float32 under `carry`: float16 tensors produced by a head node and read
 * by a tail node. Graph inputs stay float16 (widening them is exact on either side), and so do graph outputs: the whole
 * model rounds them to float16 too, and a tail input and output of one name cannot have two types. (A float16 graph
 * output that later nodes also read therefore crosses rounded, and such cuts may differ in the last bit.)
 */
function widenedAt(a: GraphAnalysis, cut: Cut, carry: Carry): Set<string> {
  const out = new Set<string>();
  if (carry !== 'float32') return out;
  const outputs = new Set(a.outputs);
  const tailReads = new Set<string>();
  for (const n of sidesAt(a, cut.index).tail)
    for (const t of [...n.inputs, ...n.implicitInputs]) tailReads.add(t);
  for (const t of cut.tensors)
    if (t.elemType === F16 && (a.birth.get(t.name) ?? 0) > 0 && !outputs.has(t.name) && tailReads.has(t.name))
      out.add(t.name);
  return out;
}

function carried(cut: Cut, widened: Set<string>): Cut {
  if (widened.size === 0) return cut;
  const tensors = cut.tensors.map((t) =>
    widened.has(t.name) ? { ...t, elemType: F32, dtype: 'float32', bytes: t.bytes * 2 } : t,
  );
  return { ...cut, tensors, bytes: tensors.reduce((s, t) => s + t.bytes, 0) };
}

/** Cut k as it travels under `carry` (dtype and bytes of float32-carried tensors); {@link cutAt} for 'native'. */
export function carriedCutAt(a: GraphAnalysis, k: number, carry: Carry): Cut {
  const cut = cutAt(a, k);
  return carried(cut, widenedAt(a, cut, carry));
}

/** Every cut k = 0..N as it travels under `carry` (for D_k and for checking received tensors). */
export function carriedCuts(a: GraphAnalysis, carry: Carry): Cut[] {
  return Array.from({ length: a.nodes.length + 1 }, (_, k) => carriedCutAt(a, k, carry));
}

/**
 * The carry that keeps head + tail bit-identical to the whole model on onnxruntime's CPU provider: 'float32' when
 * some node produces a float16 tensor (the provider computes float16 graphs in float32 and rounds only at the
 * outputs), else 'native', so float32, integer and quantised models keep their payload size. Models with subgraphs
 * stay 'native' ({@link splitModel} cannot widen a subgraph).
 */
export function exactCarry(a: GraphAnalysis): Carry {
  if (a.nodes.some((n) => n.proto.attribute.some((at) => at.g || at.graphs?.length))) return 'native';
  const f16 = a.nodes.some((n) => n.outputs.some((o) => o && a.tensors.get(o)?.elemType === F16));
  return f16 ? 'float32' : 'native';
}

function widenType(type: TypeProto | undefined): TypeProto | undefined {
  const tt = type?.tensor_type;
  if (!tt || tt.elem_type !== F16) return type;
  return { ...type, tensor_type: { ...tt, elem_type: F32 } };
}

function widenInfo(v: ValueInfoProto): ValueInfoProto {
  const type = widenType(v.type);
  return type === v.type ? v : { ...v, type };
}

// A float16 tensor (raw_data or int32_data, which holds one half per element) as float32 values: exact.
function widenTensor(t: TensorProto, source: string): TensorProto {
  if (t.data_type !== F16) return t;
  if (t.data_location === 1 || t.external_data?.length)
    throw new ModelError(
      source,
      `float16 tensor ${t.name} has external data, which float32 carry cannot widen`,
    );
  const n = t.dims.reduce((x, y) => x * y, 1);
  const out = new Float32Array(n);
  if (t.raw_data) {
    const r = t.raw_data;
    for (let i = 0; i < n; i++) out[i] = halfToFloat(r[2 * i]! | (r[2 * i + 1]! << 8));
  } else for (let i = 0; i < n; i++) out[i] = halfToFloat(t.int32_data?.[i] ?? 0);
  const { int32_data: _i, raw_data: _r, ...rest } = t;
  return { ...rest, data_type: F32, raw_data: Buffer.from(out.buffer) };
}

function widenNode(n: NodeProto, rename: Map<string, string>, source: string): NodeProto {
  const attribute = n.attribute.map((at) => {
    if (at.g || at.graphs?.length)
      throw new ModelError(source, `node ${n.name} has a subgraph, which float32 carry cannot widen`);
    // Cast to float16 becomes Cast to float32 (between float32-computed nodes onnxruntime removes that rounding
    // too), and so does a float16 `dtype` (RandomNormal, EyeLike, ...), so every float16 value is computed in float32.
    if (((n.op_type === 'Cast' && at.name === 'to') || at.name === 'dtype') && Number(at.i) === F16)
      return { ...at, i: F32 };
    if (at.t?.data_type === F16) return { ...at, t: widenTensor(at.t, source) };
    return at;
  });
  return { ...n, input: n.input.map((i) => rename.get(i) ?? i), attribute };
}

/**
 * Rewrites one half as a float32 graph: float16 weights, constants and intermediates become float32; the crossing
 * tensors in `widened` are float32 inputs/outputs; other float16 inputs and outputs keep their type, with a Cast
 * inside the graph (which is what onnxruntime inserts for the whole model).
 */
function computeInFloat32(g: GraphProto, widened: Set<string>, source: string): GraphProto {
  if (g.sparse_initializer?.some((t) => t.values?.data_type === F16))
    throw new ModelError(source, 'float32 carry cannot widen float16 sparse initializers');
  const used = new Set<string>();
  for (const n of g.node) for (const t of [...n.input, ...n.output]) used.add(t);
  for (const v of [...g.input, ...g.output]) used.add(v.name ?? '');
  for (const t of g.initializer) used.add(t.name ?? '');
  const fresh = (base: string) => {
    let name = `${base}_f32`;
    for (let i = 2; used.has(name); i++) name = `${base}_f32_${i}`;
    used.add(name);
    return name;
  };
  const inits = new Set(g.initializer.map((t) => t.name));
  const isF16 = (v: ValueInfoProto) => v.type?.tensor_type?.elem_type === F16;
  const rename = new Map<string, string>();
  const before: NodeProto[] = [];
  const after: NodeProto[] = [];
  const input = g.input.map((v) => {
    if (!isF16(v) || inits.has(v.name) || widened.has(v.name ?? '')) return widenInfo(v);
    const wide = fresh(v.name!);
    rename.set(v.name!, wide);
    before.push({ name: wide, op_type: 'Cast', input: [v.name!], output: [wide], attribute: [castTo(F32)] });
    return v;
  });
  const passThrough = new Set(g.input.map((v) => v.name));
  const outputRename = new Map<string, string>();
  for (const v of g.output) {
    if (!isF16(v) || widened.has(v.name ?? '') || passThrough.has(v.name) || inits.has(v.name)) continue;
    const wide = fresh(v.name!);
    outputRename.set(v.name!, wide);
    after.push({ name: wide, op_type: 'Cast', input: [wide], output: [v.name!], attribute: [castTo(F16)] });
  }
  const nodes = g.node.map((n) => {
    const w = widenNode(n, rename, source);
    if (n.output.some((o) => outputRename.has(o))) w.output = n.output.map((o) => outputRename.get(o) ?? o);
    // Nodes that read a float16 graph output read its float32 value, as in the whole model.
    w.input = w.input.map((i) => outputRename.get(i) ?? i);
    return w;
  });
  return {
    ...g,
    node: [...before, ...nodes, ...after],
    initializer: g.initializer.map((t) => widenTensor(t, source)),
    input,
    output: g.output.map((v) => (widened.has(v.name ?? '') ? widenInfo(v) : v)),
    value_info: g.value_info.map(widenInfo),
  };
}

function castTo(to: number): AttributeProto {
  return { name: 'to', type: AttributeType.INT, i: to };
}

// Splits a model at cut k into a head model (nodes 1..k) and a tail model (nodes k+1..N).
// Pure: works on decoded objects and shares (never copies) weight buffers with the input
// model, so splitting a big model costs only the protobuf structure.
//
// Contract, checked by test/model-split.test.ts with onnxruntime: running head, then tail on
// the head's outputs, gives the whole model's outputs. onnxruntime accepts graphs with no
// nodes and graphs whose output is directly an input, so k = 0 and k = N need no Identity
// nodes, and tensor names stay the same on both sides of the wire.

import type { Cut, GraphAnalysis } from './graph.ts';
import { analyzeGraph, cutAt } from './graph.ts';
import type {
  GraphProto,
  NodeProto,
  OnnxModel,
  SparseTensorProto,
  TensorProto,
  TypeProto,
  ValueInfoProto,
} from './onnx.ts';
import { ModelError } from './onnx.ts';

/** The two halves of a model at one cut, plus the cut itself (what crosses and how big it is). */
export interface SplitResult {
  head: OnnxModel;
  tail: OnnxModel;
  cut: Cut;
}

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

function side(a: GraphAnalysis, from: number, to: number): Side {
  const picked = a.nodes.slice(from, to);
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

/** Splits `model` at cut k (0..N): head = nodes 1..k, tail = nodes k+1..N, joined by `cut.tensors`. */
export function splitModel(
  model: OnnxModel,
  k: number,
  analysis: GraphAnalysis = analyzeGraph(model),
): SplitResult {
  const a = analysis;
  const cut = cutAt(a, k);
  const crossing = new Set(cut.tensors.map((t) => t.name));
  const crossingInfos = cut.tensors.map((t) => typedInfo(a, t.name));
  const head = side(a, 0, k);
  const tail = side(a, k, a.nodes.length);
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

  const headGraph = buildGraph(model, 'head', head, headInputs, crossingInfos, new Set());
  const tailGraph = buildGraph(model, 'tail', tail, tailInputs, g.output, outputInits);
  return { head: wrap(model, headGraph), tail: wrap(model, tailGraph), cut };
}

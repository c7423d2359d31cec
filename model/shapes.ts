// Fills in missing tensor types/shapes by running the model once in onnxruntime with every
// unknown intermediate added as an extra graph output. Separate from graph.ts because it
// does I/O (native inference); the result is an ordinary model with value_info, so every
// pure function downstream (cuts, splits) stays pure.
//
// Dynamic dims are fed as 1 (batch 1, the edge use case), so filled shapes are concrete for
// batch 1. Declared shapes, including symbolic ones, are never overwritten.

// onnxruntime is loaded only when a model lacks shapes: inspecting or splitting a complete model never pays for it.
import type * as Ort from 'onnxruntime-node';
import type { GraphAnalysis } from './graph.ts';
import { analyzeGraph } from './graph.ts';
import type { OnnxModel, ValueInfoProto } from './onnx.ts';
import { DataType, dtypeFromOrt, ModelError, writeModel } from './onnx.ts';
import { seededUniform } from './random.ts';

/** Options for {@link inferShapes}. */
export interface InferShapesOptions {
  /** Seed of the random float inputs (values only matter for data-dependent shapes). */
  seed?: number;
  /** Label for error messages; defaults to the graph name. */
  source?: string;
}

// Names whose type or rank nobody declared: node outputs and graph outputs.
function unknownTensors(a: GraphAnalysis): string[] {
  const names = new Set<string>();
  for (const n of a.nodes) for (const o of n.outputs) if (o) names.add(o);
  for (const o of a.outputs) names.add(o);
  return [...names].filter((name) => {
    const t = a.tensors.get(name);
    return !t || t.elemType === 0 || t.shape === null;
  });
}

/** A seeded input tensor for a graph input; unknown/symbolic dims become 1. */
export function sampleInput(ort: typeof Ort, a: GraphAnalysis, name: string, seed = 1): Ort.Tensor {
  const t = a.tensors.get(name);
  if (!t || t.elemType === 0 || !t.shape)
    throw new ModelError(a.source, `graph input ${name} has no tensor type`);
  const dims = t.shape.map((d) => (d < 0 ? 1 : d));
  const count = dims.reduce((x, y) => x * y, 1);
  switch (t.elemType) {
    case DataType.FLOAT:
      return new ort.Tensor('float32', seededUniform(count, seed), dims);
    case DataType.DOUBLE:
      return new ort.Tensor('float64', Float64Array.from(seededUniform(count, seed)), dims);
    case DataType.FLOAT16:
      // 0x3800 = 0.5 in IEEE half precision: a harmless constant, no conversion code needed.
      return new ort.Tensor('float16', new Uint16Array(count).fill(0x3800), dims);
    case DataType.INT64:
      return new ort.Tensor('int64', new BigInt64Array(count), dims);
    case DataType.INT32:
      return new ort.Tensor('int32', new Int32Array(count), dims);
    case DataType.UINT8:
      return new ort.Tensor('uint8', new Uint8Array(count), dims);
    case DataType.INT8:
      return new ort.Tensor('int8', new Int8Array(count), dims);
    case DataType.BOOL:
      return new ort.Tensor('bool', new Uint8Array(count), dims);
    default:
      throw new ModelError(
        a.source,
        `graph input ${name} has element type ${t.elemType}, which cannot be sampled`,
      );
  }
}

/** Fills value_info for tensors of unknown type/rank from one onnxruntime run; returns `model` itself if none. */
export async function inferShapes(model: OnnxModel, opts: InferShapesOptions = {}): Promise<OnnxModel> {
  const source = opts.source ?? (model.graph.name || 'model');
  const a = analyzeGraph(model, source);
  const missing = unknownTensors(a);
  if (missing.length === 0) return model;

  const declared = new Set(model.graph.output.map((v) => v.name));
  const probe: OnnxModel = {
    ...model,
    graph: {
      ...model.graph,
      // Untyped extra outputs are fine for onnxruntime: it types them from the node.
      output: [...model.graph.output, ...missing.filter((n) => !declared.has(n)).map((name) => ({ name }))],
    },
  };
  const ort = await import('onnxruntime-node');
  const feeds: Record<string, Ort.Tensor> = {};
  a.inputs.forEach((name, i) => {
    feeds[name] = sampleInput(ort, a, name, (opts.seed ?? 1) + i);
  });
  let results: Ort.InferenceSession.OnnxValueMapType;
  let session: Ort.InferenceSession | undefined;
  try {
    session = await ort.InferenceSession.create(writeModel(probe), { intraOpNumThreads: 1 });
    results = await session.run(feeds, missing);
  } catch (err) {
    throw new ModelError(source, `cannot infer shapes with onnxruntime (${(err as Error).message})`);
  } finally {
    await session?.release();
  }

  const found = new Map<string, ValueInfoProto>();
  for (const name of missing) {
    const v = results[name] as Ort.Tensor | undefined;
    const elemType = v ? dtypeFromOrt(v.type) : null;
    if (!v || elemType === null) throw new ModelError(source, `onnxruntime gave no tensor value for ${name}`);
    found.set(name, {
      name,
      type: { tensor_type: { elem_type: elemType, shape: { dim: v.dims.map((d) => ({ dim_value: d })) } } },
    });
  }
  const g = model.graph;
  const valueInfo = g.value_info.filter((v) => !v.name || !found.has(v.name) || declared.has(v.name));
  for (const [name, v] of found) if (!declared.has(name)) valueInfo.push(v);
  const output = g.output.map((o) =>
    o.name && found.has(o.name) ? { ...o, type: found.get(o.name)!.type } : o,
  );
  return { ...model, graph: { ...g, value_info: valueInfo, output } };
}

/**
 * A model as the services use it: its bytes, its content hash (the model id on the wire), its cuts, and its head
 * and tail parts, split on demand and kept so each cut is split once.
 */
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { errorMessage } from '../runtime/errors.ts';
import type { DType } from '../schemas/codec.ts';
import { modelCost, type NodeCost, nodeCost } from './cost.ts';
import { referencingWeights } from './external.ts';
import { analyzeGraph, type GraphAnalysis } from './graph.ts';
import { ModelError, modelId, type OnnxModel, readModel, writeModel, writeModelFile } from './onnx.ts';
import { countParams } from './params.ts';
import { inferShapes } from './shapes.ts';
import { type Carry, carriedCuts, exactCarry, splitModel } from './split.ts';

/** A tensor that crosses a cut. */
export interface CrossingTensor {
  name: string;
  dtype: DType;
  /** Dimensions; -1 where unknown. */
  shape: number[];
  bytes: number;
}

/** A cut of the model: the split after position `index` of the topological order. */
export interface CutInfo {
  index: number;
  /** Name of the node at position `index`, null for full offload (k = 0). */
  after: string | null;
  /** Op type of that node, `input` for k = 0. */
  op: string;
  tensors: CrossingTensor[];
  /** D_k: total bytes of the crossing tensors. */
  bytes: number;
  singleTensor: boolean;
  /**
   * Crossing tensors onnxruntime computes inside a fused kernel in the whole model (Conv+BatchNormalization,
   * Conv+Add), so the split result can differ from the whole model's in the last bits; empty when exact.
   */
  fusedAcross: string[];
}

/** A loaded model. */
export class ModelHandle {
  private constructor(
    /** The model file's bytes. */
    readonly bytes: Uint8Array,
    /** Hex sha256 of the bytes: the model id on the wire. */
    readonly id: string,
    /** Human name (file name without extension, or the graph name). */
    readonly name: string,
    /** Parsed model. */
    readonly model: OnnxModel,
    /** Every cut, index 0..N. */
    readonly cuts: CutInfo[],
    /** Graph inputs (what a frame must provide). */
    readonly inputs: CrossingTensor[],
    /** Graph outputs. */
    readonly outputs: CrossingTensor[],
    /** Metadata properties of the model. */
    readonly metadata: Record<string, string>,
    /** Topological order, tensor types and shapes. */
    readonly analysis: GraphAnalysis,
    /** Static cost of each node, in topological order. */
    readonly costs: NodeCost[],
    /** Whole-model MACs, FLOPs and parameters. */
    readonly totals: { macs: number; flops: number; params: number },
    /** How crossing tensors travel: in their declared dtype, or float32 (float16 models). */
    readonly carry: Carry,
  ) {}

  /** The same model under another display name (zoo models are shown by their zoo name). */
  renamed(name: string): ModelHandle {
    const h = Object.create(ModelHandle.prototype) as ModelHandle;
    Object.assign(h, this, { name });
    return h;
  }

  /** Number of nodes N (the last cut index). */
  get layers(): number {
    return this.cuts.length - 1;
  }

  /** Parses and analyses model bytes; `source` names the file in error messages. */
  static async fromBytes(bytes: Uint8Array, source: string, name?: string): Promise<ModelHandle> {
    // Shapes the file does not declare are found by running it once (batch 1).
    const model = await inferShapes(readModel(bytes, source), { source });
    const analysis = analyzeGraph(model, source);
    const costs = analysis.nodes.map((n) => nodeCost(analysis, n));
    // Float16 models cross in float32 where the runtime computes in float32, so splits stay bit-exact (split.ts).
    const carry = exactCarry(analysis);
    const cuts = carriedCuts(analysis, carry).map(
      (c): CutInfo => ({
        index: c.index,
        after: c.after,
        op: c.index === 0 ? 'input' : (analysis.nodes[c.index - 1]?.op ?? 'unknown'),
        tensors: c.tensors.map((t) => ({
          name: t.name,
          dtype: t.dtype as DType,
          shape: t.shape,
          bytes: t.bytes,
        })),
        bytes: c.bytes,
        singleTensor: c.singleTensor,
        fusedAcross: c.fusedAcross ?? [],
      }),
    );
    const metadata: Record<string, string> = {};
    for (const p of model.metadata_props ?? []) metadata[p.key] = p.value;
    return new ModelHandle(
      bytes,
      modelId(bytes),
      name ?? (source.endsWith('.onnx') ? basename(source, '.onnx') : model.graph?.name || source),
      model,
      cuts,
      cuts[0]?.tensors ?? [],
      cuts[cuts.length - 1]?.tensors ?? [],
      metadata,
      analysis,
      costs,
      { ...modelCost(costs), params: countParams(model) },
      carry,
    );
  }

  /** Reads and analyses a model file. */
  static async fromFile(path: string): Promise<ModelHandle> {
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (err) {
      throw new ModelError(
        path,
        `cannot read the model file (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)})`,
      );
    }
    return ModelHandle.fromBytes(bytes, path);
  }

  /**
   * The head (nodes 1..k) or tail (nodes k+1..N) of cut k, as ONNX bytes (callers cache the sessions). With
   * `weightsIn`, the name of a file holding this model's bytes, its large weights are references into that file
   * (model/external.ts): a few kilobytes instead of a copy of the weights.
   */
  part(k: number, side: 'head' | 'tail', weightsIn?: string): Uint8Array {
    const split = splitModel(this.model, k, this.analysis, { carry: this.carry });
    const part = side === 'head' ? split.head : split.tail;
    return writeModel(weightsIn === undefined ? part : referencingWeights(part, this.bytes, weightsIn));
  }

  /** The whole model with its large weights as references into `weightsIn`, a file holding this model's bytes. */
  referencing(weightsIn: string): Uint8Array {
    return writeModel(referencingWeights(this.model, this.bytes, weightsIn));
  }

  /** Writes the head or tail of cut k to a file, streaming the weights instead of assembling the file in memory. */
  async writePart(k: number, side: 'head' | 'tail', path: string): Promise<void> {
    const split = splitModel(this.model, k, this.analysis, { carry: this.carry });
    await writeModelFile(path, side === 'head' ? split.head : split.tail);
  }

  /** Looks a cut up by index or by the name of the node it follows. */
  findCut(ref: string | number): CutInfo | undefined {
    if (typeof ref === 'number' || /^\d+$/.test(ref)) return this.cuts[Number(ref)];
    return this.cuts.find((c) => c.after === ref);
  }
}

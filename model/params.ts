// Parameter counting for ONNX models, matching how papers and torchvision count them.

import type { OnnxModel } from './onnx.ts';
import { tensorElementCount } from './onnx.ts';

// Input slots that hold buffers or operator arguments rather than learned weights. The
// BatchNormalization running mean/variance are buffers in PyTorch (not in parameters()), so
// torchvision's published counts leave them out; the rest are arguments an exporter stores as
// initializers (Clip bounds, Reshape shapes, ...).
const NON_PARAMETER_INPUTS: Record<string, readonly number[]> = {
  BatchNormalization: [3, 4],
  Clip: [1, 2],
  Dropout: [1, 2],
  Reshape: [1],
  Expand: [1],
  Tile: [1],
  Pad: [1, 2, 3],
  Slice: [1, 2, 3, 4],
  Squeeze: [1],
  Unsqueeze: [1],
  Resize: [1, 2, 3],
  Upsample: [1],
  ReduceMean: [1],
  ReduceSum: [1],
};

/** True when input `i` of a node holds an operator argument or a statistic rather than a learned weight. */
export function isArgumentInput(op: string, domain: string | undefined, i: number): boolean {
  const std = !domain || domain === 'ai.onnx';
  return std && (NON_PARAMETER_INPUTS[op]?.includes(i) ?? false);
}

/**
 * Number of parameters of a model: the elements of every initializer, except initializers that
 * are only ever used as BatchNormalization running mean/var (inputs 3 and 4) or as an operator
 * argument (Clip min/max, Reshape shape, Pad pads, Slice starts/ends/axes/steps, ...). BN scale
 * and bias count, as in PyTorch's `sum(p.numel() for p in model.parameters())`. Sparse
 * initializers and Constant nodes are not counted.
 */
export function countParams(model: OnnxModel): number {
  const used = new Set<string>();
  const argument = new Set<string>();
  for (const node of model.graph.node) {
    node.input.forEach((name, i) => {
      if (!name) return;
      if (isArgumentInput(node.op_type ?? '', node.domain, i)) argument.add(name);
      else used.add(name);
    });
  }
  let total = 0;
  for (const t of model.graph.initializer)
    if (used.has(t.name ?? '') || !argument.has(t.name ?? '')) total += tensorElementCount(t);
  return total;
}

/**
 * FastDeepIoT's tree-structured linear regression: the feature space is split recursively, one feature at one
 * threshold at a time, and each region (leaf) gets its own linear model (linear.ts) on FLOPs, input, output and
 * parameter bytes. A split is chosen to minimise the children's summed fitting loss (each child refitted), among
 * thresholds at quantiles of each split feature (the raw features plus FLOPs per byte and FLOPs per output byte,
 * which separate e.g. depthwise from dense convolutions); it is kept only if both children have at least `minLeaf`
 * samples and it lowers the loss by more than `minGain` (relative). Depth is capped at `maxDepth`.
 *
 * Predictions are smoothed as in M5 model trees (Quinlan 1992; Wang & Witten 1997): every internal node keeps the
 * linear model fitted on all its samples, and on the way back up from the leaf the prediction is blended with each
 * ancestor's, p = (n p + k p_node) / (n + k), n the samples below the child. A leaf of a dozen samples then cannot
 * extrapolate far from its parent's trend (measured in bench/predict.ts: without it, MobileNetV2's depthwise
 * convolutions held out were predicted at 0.2-0.3x).
 */
import { type FeatureName, SPLIT_FEATURE_NAMES } from './features.ts';
import { evalLinear, fitLinear, type LinearFitOptions, type LinearModel, linearLoss } from './linear.ts';

/** Tree-growing options. */
export interface TreeFitOptions extends LinearFitOptions {
  maxDepth: number;
  minLeaf: number;
  /** Smallest relative loss reduction a split must bring. */
  minGain: number;
  /** Candidate thresholds per feature and node (quantiles). */
  thresholds: number;
  /** M5 smoothing constant k (0: none). */
  smoothing: number;
}

export const DEFAULT_TREE_FIT: TreeFitOptions = {
  space: 'time',
  weightPower: 2,
  ridge: 1e-4,
  maxDepth: 4,
  minLeaf: 12,
  minGain: 0.03,
  thresholds: 24,
  smoothing: 15,
};

/** A node of a fitted tree (JSON-serialisable). */
export type TreeNode =
  | { leaf: LinearModel; n: number }
  | {
      /** Index into SPLIT_FEATURE_NAMES. */
      split: (typeof SPLIT_FEATURE_NAMES)[number];
      threshold: number;
      n: number;
      /** The linear model of all the node's samples (for smoothing). */
      model: LinearModel;
      /** Samples with feature <= threshold. */
      left: TreeNode;
      right: TreeNode;
    };

/** A fitted tree: the features its leaves regress on, and the root. */
export interface TreeModel {
  features: FeatureName[];
  /** M5 smoothing constant the tree predicts with. */
  smoothing: number;
  root: TreeNode;
}

/**
 * Fits a tree. `X` are full feature vectors, `S` the split vectors (splitVector in features.ts) of the same
 * samples, `y` the times in ms.
 */
export function fitTree(
  X: readonly number[][],
  S: readonly number[][],
  y: readonly number[],
  features: readonly FeatureName[],
  opts: TreeFitOptions = DEFAULT_TREE_FIT,
  /** Per-sample weights (default 1). */
  sampleWeights?: readonly number[],
): TreeModel {
  const idx = X.map((_, i) => i);
  return { features: [...features], smoothing: opts.smoothing, root: grow(idx, 0) };

  function fitOn(ids: number[]): { model: LinearModel; loss: number } {
    const Xs = ids.map((i) => X[i]!);
    const ys = ids.map((i) => y[i]!);
    const ws = sampleWeights ? ids.map((i) => sampleWeights[i]!) : undefined;
    const model = fitLinear(Xs, ys, features, opts, ws);
    return { model, loss: linearLoss(model, Xs, ys, opts, ws) };
  }

  function grow(ids: number[], depth: number): TreeNode {
    const here = fitOn(ids);
    if (depth >= opts.maxDepth || ids.length < 2 * opts.minLeaf || !(here.loss > 0)) {
      return { leaf: here.model, n: ids.length };
    }
    let best: { f: number; t: number; loss: number; left: number[]; right: number[] } | undefined;
    for (let f = 0; f < SPLIT_FEATURE_NAMES.length; f++) {
      const sorted = ids.map((i) => S[i]![f]!).sort((a, b) => a - b);
      const candidates = new Set<number>();
      for (let q = 1; q < opts.thresholds; q++) {
        const at = Math.floor((q * sorted.length) / opts.thresholds);
        if (at < opts.minLeaf || sorted.length - at < opts.minLeaf) continue;
        // Split between two distinct values: threshold = the lower one (samples <= it go left).
        const lo = sorted[at - 1]!;
        if (lo !== sorted[at]) candidates.add(lo);
      }
      for (const t of candidates) {
        const left = ids.filter((i) => S[i]![f]! <= t);
        const right = ids.filter((i) => S[i]![f]! > t);
        if (left.length < opts.minLeaf || right.length < opts.minLeaf) continue;
        const loss = fitOn(left).loss + fitOn(right).loss;
        if (!best || loss < best.loss) best = { f, t, loss, left, right };
      }
    }
    if (!best || !(best.loss < here.loss * (1 - opts.minGain))) return { leaf: here.model, n: ids.length };
    return {
      split: SPLIT_FEATURE_NAMES[best.f]!,
      threshold: best.t,
      n: ids.length,
      model: here.model,
      left: grow(best.left, depth + 1),
      right: grow(best.right, depth + 1),
    };
  }
}

/** The leaf model a split vector falls into. */
export function treeLeaf(tree: TreeModel, s: readonly number[]): LinearModel {
  let node = tree.root;
  while (!('leaf' in node)) node = goesLeft(node, s) ? node.left : node.right;
  return node.leaf;
}

function goesLeft(node: Extract<TreeNode, { split: string }>, s: readonly number[]): boolean {
  return (s[SPLIT_FEATURE_NAMES.indexOf(node.split)] ?? 0) <= node.threshold;
}

/**
 * Predicted ms of a tree for a sample's full feature and split vectors, smoothed with constant `k` (default the
 * tree's; 0: the leaf's model alone): finite and >= 0.
 */
export function evalTree(
  tree: TreeModel,
  x: readonly number[],
  s: readonly number[],
  k = tree.smoothing,
): number {
  const path: Extract<TreeNode, { split: string }>[] = [];
  let node = tree.root;
  while (!('leaf' in node)) {
    path.push(node);
    node = goesLeft(node, s) ? node.left : node.right;
  }
  let p = evalLinear(node.leaf, x);
  let n = node.n;
  for (let i = path.length - 1; i >= 0 && k > 0; i--) {
    p = (n * p + k * evalLinear(path[i]!.model, x)) / (n + k);
    n = path[i]!.n;
  }
  return Number.isFinite(p) && p > 0 ? p : 0;
}

/** Number of leaves. */
export function treeLeaves(node: TreeNode): number {
  return 'leaf' in node ? 1 : treeLeaves(node.left) + treeLeaves(node.right);
}

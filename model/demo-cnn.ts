// The demo model: a small SqueezeNet-like CNN built in code (no download), so the demo and
// the tests always have a real model. It is DAG-shaped on purpose: each fire module
// branches into two expand convolutions joined by Concat, so some cuts carry two tensors.
// Weights are random (seeded), so its "classes" are arbitrary; it exists to be split.

import { GraphBuilder, type Value } from './builder.ts';

/** Preprocessing the demo model expects, stored as metadata key `edgecut.preprocess`. */
export const DEMO_PREPROCESS = {
  layout: 'NCHW',
  channels: 'RGB',
  size: [64, 64],
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
  scale: 1 / 255,
} as const;

/** Names of the demo model's 10 outputs, stored as metadata key `edgecut.labels`. */
export const DEMO_LABELS = [
  'airplane',
  'automobile',
  'bird',
  'cat',
  'deer',
  'dog',
  'frog',
  'horse',
  'ship',
  'truck',
] as const;

// SqueezeNet's fire module: 1x1 squeeze, then parallel 1x1 and 3x3 expands, concatenated.
function fire(b: GraphBuilder, x: Value, name: string, squeeze: number, expand: number): Value {
  const s = b.relu(b.conv(x, squeeze, { kernel: 1, name: `${name}_squeeze` }), `${name}_squeeze_relu`);
  const e1 = b.relu(b.conv(s, expand, { kernel: 1, name: `${name}_expand1x1` }), `${name}_expand1x1_relu`);
  const e3 = b.relu(
    b.conv(s, expand, { kernel: 3, pad: 1, name: `${name}_expand3x3` }),
    `${name}_expand3x3_relu`,
  );
  return b.concat([e1, e3], 1, `${name}_concat`);
}

/** Builds the demo CNN (input `input` float32 [1,3,64,64] -> `probs` float32 [1,10]); same seed, same bytes. */
export function buildDemoCnn(seed = 1): Uint8Array {
  const b = new GraphBuilder({ name: 'edgecut_demo_cnn', opset: 13, seed });
  const input = b.input('input', [1, 3, 64, 64]);
  let x = b.relu(b.conv(input, 16, { kernel: 3, stride: 2, pad: 1, name: 'conv1' }), 'conv1_relu');
  x = b.maxpool(x, { kernel: 3, stride: 2, pad: 1, name: 'pool1' });
  x = fire(b, x, 'fire2', 8, 16);
  x = b.relu(b.conv(x, 32, { kernel: 3, stride: 2, pad: 1, name: 'conv3' }), 'conv3_relu');
  x = fire(b, x, 'fire4', 16, 32);
  x = b.dropout(x, 'dropout');
  x = b.flatten(b.gap(x, 'gap'), 'flatten');
  const probs = b.softmax(b.gemm(x, 10, 'fc'), 'probs');
  b.output(probs);
  b.metadata('edgecut.model', 'demo-cnn');
  b.metadata('edgecut.seed', String(seed));
  b.metadata('edgecut.preprocess', JSON.stringify(DEMO_PREPROCESS));
  b.metadata('edgecut.labels', JSON.stringify(DEMO_LABELS));
  return b.toBytes();
}

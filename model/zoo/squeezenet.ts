// SqueezeNet 1.0 and 1.1 (Iandola et al. 2016) in torchvision's layout: fire modules of a 1x1
// squeeze and parallel 1x1 / 3x3 expands joined by Concat, ceil-mode max pools, and a 1x1
// conv classifier averaged globally. 1.0: 1,248,424 parameters; 1.1: 1,235,496.

import type { Value } from '../builder.ts';
import type { Net } from './net.ts';

type Layer = 'M' | [number, number];

function fire(net: Net, x: Value, name: string, squeeze: number, expand: number): Value {
  const s = net.relu(
    net.conv(x, squeeze, { kernel: 1, name: `${name}.squeeze` }),
    `${name}.squeeze_activation`,
  );
  const e1 = net.relu(
    net.conv(s, expand, { kernel: 1, name: `${name}.expand1x1` }),
    `${name}.expand1x1_activation`,
  );
  const e3 = net.relu(
    net.conv(s, expand, { kernel: 3, pad: 1, name: `${name}.expand3x3` }),
    `${name}.expand3x3_activation`,
  );
  return net.concat([e1, e3], `${name}.cat`);
}

/** SqueezeNet on `input` [1,3,224,224]; returns the logits [1,1000]. */
export function defineSqueezeNet(net: Net, version: '1.0' | '1.1'): Value {
  let x = net.input('input', [1, 3, 224, 224]);
  // [squeeze, expand] per fire module; 'M' is a 3x3/2 ceil-mode max pool (features.N numbering).
  const v10: Layer[] = [
    [16, 64],
    [16, 64],
    [32, 128],
    'M',
    [32, 128],
    [48, 192],
    [48, 192],
    [64, 256],
    'M',
    [64, 256],
  ];
  const v11: Layer[] = [
    'M',
    [16, 64],
    [16, 64],
    'M',
    [32, 128],
    [32, 128],
    'M',
    [48, 192],
    [48, 192],
    [64, 256],
    [64, 256],
  ];
  if (version === '1.0') {
    x = net.relu(net.conv(x, 96, { kernel: 7, stride: 2, name: 'features.0' }), 'features.1');
    x = net.maxpool(x, { kernel: 3, stride: 2, ceil: true, name: 'features.2' });
  } else {
    x = net.relu(net.conv(x, 64, { kernel: 3, stride: 2, name: 'features.0' }), 'features.1');
  }
  const layers = version === '1.0' ? v10 : v11;
  let index = version === '1.0' ? 3 : 2;
  for (const l of layers) {
    const name = `features.${index++}`;
    if (l === 'M') x = net.maxpool(x, { kernel: 3, stride: 2, ceil: true, name });
    else x = fire(net, x, name, l[0], l[1]);
  }
  x = net.dropout(x, 'classifier.0');
  x = net.relu(net.conv(x, 1000, { kernel: 1, name: 'classifier.1' }), 'classifier.2');
  return net.flatten(net.gap(x, 'classifier.3'), 'flatten');
}

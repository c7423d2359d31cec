// ResNet-50 (He et al. 2016) in torchvision's layout (v1.5: the stride sits on the 3x3 conv of
// each bottleneck), BatchNorm after every conv, projection shortcuts (1x1 conv + BN) where the
// shape changes, residual Add then Relu. 25,557,032 parameters.

import type { Value } from '../builder.ts';
import type { Net } from './net.ts';

function convBn(net: Net, x: Value, conv: string, bn: string, out: number, kernel: number, stride = 1) {
  const c = net.conv(x, out, { kernel, stride, pad: (kernel - 1) / 2, bias: false, name: conv });
  return net.bn(c, bn);
}

function bottleneck(net: Net, x: Value, name: string, planes: number, stride: number): Value {
  const out = planes * 4;
  let y = net.relu(convBn(net, x, `${name}.conv1`, `${name}.bn1`, planes, 1), `${name}.relu1`);
  y = net.relu(convBn(net, y, `${name}.conv2`, `${name}.bn2`, planes, 3, stride), `${name}.relu2`);
  y = convBn(net, y, `${name}.conv3`, `${name}.bn3`, out, 1);
  const identity =
    stride !== 1 || x.shape[1] !== out
      ? convBn(net, x, `${name}.downsample.0`, `${name}.downsample.1`, out, 1, stride)
      : x;
  return net.relu(net.add(y, identity, `${name}.add`), `${name}.relu`);
}

/** ResNet-50 on `input` [1,3,224,224]; returns the logits [1,1000]. */
export function defineResNet50(net: Net): Value {
  let x = net.input('input', [1, 3, 224, 224]);
  x = net.relu(convBn(net, x, 'conv1', 'bn1', 64, 7, 2), 'relu');
  x = net.maxpool(x, { kernel: 3, stride: 2, pad: 1, name: 'maxpool' });
  const stages = [
    [64, 3, 1],
    [128, 4, 2],
    [256, 6, 2],
    [512, 3, 2],
  ] as const;
  for (const [i, [planes, blocks, stride]] of stages.entries())
    for (let j = 0; j < blocks; j++)
      x = bottleneck(net, x, `layer${i + 1}.${j}`, planes, j === 0 ? stride : 1);
  x = net.flatten(net.gap(x, 'avgpool'), 'flatten');
  return net.linear(x, 1000, 'fc');
}

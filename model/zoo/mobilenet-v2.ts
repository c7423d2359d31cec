// MobileNetV2 (Sandler et al. 2018), width 1.0, in torchvision's layout: inverted residual
// blocks (1x1 expand, 3x3 depthwise, linear 1x1 projection) with BatchNorm after every conv,
// ReLU6 as Clip(0, 6), and a residual Add where stride is 1 and channels match.
// 3,504,872 parameters.

import type { Value } from '../builder.ts';
import type { Net } from './net.ts';

// Conv (no bias) + BatchNorm (+ ReLU6): torchvision's Conv2dNormActivation.
function convBn(
  net: Net,
  x: Value,
  name: string,
  out: number,
  o: { kernel: number; stride?: number; group?: number; act?: boolean },
): Value {
  const pad = (o.kernel - 1) / 2;
  const c = net.conv(x, out, {
    kernel: o.kernel,
    stride: o.stride ?? 1,
    pad,
    group: o.group ?? 1,
    bias: false,
    name: `${name}.0`,
  });
  const y = net.bn(c, `${name}.1`);
  return o.act === false ? y : net.relu6(y, `${name}.2`);
}

function invertedResidual(net: Net, x: Value, name: string, out: number, stride: number, t: number): Value {
  const inp = x.shape[1]!;
  const hidden = inp * t;
  let y = x;
  let i = 0;
  if (t !== 1) y = convBn(net, y, `${name}.conv.${i++}`, hidden, { kernel: 1 });
  y = convBn(net, y, `${name}.conv.${i++}`, hidden, { kernel: 3, stride, group: hidden });
  const proj = net.conv(y, out, { kernel: 1, bias: false, name: `${name}.conv.${i++}` });
  y = net.bn(proj, `${name}.conv.${i}`);
  return stride === 1 && inp === out ? net.add(x, y, `${name}.add`) : y;
}

/** MobileNetV2 on `input` [1,3,224,224]; returns the logits [1,1000]. */
export function defineMobileNetV2(net: Net): Value {
  let x = net.input('input', [1, 3, 224, 224]);
  x = convBn(net, x, 'features.0', 32, { kernel: 3, stride: 2 });
  // expansion t, output channels c, repeats n, first stride s
  const settings = [
    [1, 16, 1, 1],
    [6, 24, 2, 2],
    [6, 32, 3, 2],
    [6, 64, 4, 2],
    [6, 96, 3, 1],
    [6, 160, 3, 2],
    [6, 320, 1, 1],
  ] as const;
  let index = 1;
  for (const [t, c, n, s] of settings)
    for (let r = 0; r < n; r++) x = invertedResidual(net, x, `features.${index++}`, c, r === 0 ? s : 1, t);
  x = convBn(net, x, `features.${index}`, 1280, { kernel: 1 });
  x = net.flatten(net.gap(x, 'avgpool'), 'flatten');
  x = net.dropout(x, 'classifier.0');
  return net.linear(x, 1000, 'classifier.1');
}

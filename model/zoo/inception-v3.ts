// Inception-v3 (Szegedy et al. 2016) in torchvision's layout without the auxiliary classifier
// (aux_logits=False, transform_input=False), input 299x299. BasicConv2d = Conv (no bias) +
// BatchNormalization (eps 0.001) + Relu. 23,834,568 parameters counting BN scale and bias
// (torchvision's convention); Keras' often-quoted 23,851,784 is the same network with BN beta,
// moving mean and moving variance counted instead (scale=False there): +17,216.

import type { Pair, Value } from '../builder.ts';
import type { Net } from './net.ts';

function basic(
  net: Net,
  x: Value,
  name: string,
  out: number,
  kernel: Pair,
  o: { stride?: number; pad?: Pair } = {},
): Value {
  const c = net.conv(x, out, { kernel, ...o, bias: false, name: `${name}.conv` });
  return net.relu(net.bn(c, `${name}.bn`, 0.001), `${name}.relu`);
}

function inceptionA(net: Net, x: Value, name: string, poolFeatures: number): Value {
  const b1 = basic(net, x, `${name}.branch1x1`, 64, 1);
  let b5 = basic(net, x, `${name}.branch5x5_1`, 48, 1);
  b5 = basic(net, b5, `${name}.branch5x5_2`, 64, 5, { pad: 2 });
  let b3 = basic(net, x, `${name}.branch3x3dbl_1`, 64, 1);
  b3 = basic(net, b3, `${name}.branch3x3dbl_2`, 96, 3, { pad: 1 });
  b3 = basic(net, b3, `${name}.branch3x3dbl_3`, 96, 3, { pad: 1 });
  let bp = net.avgpool(x, { kernel: 3, stride: 1, pad: 1, name: `${name}.avg_pool` });
  bp = basic(net, bp, `${name}.branch_pool`, poolFeatures, 1);
  return net.concat([b1, b5, b3, bp], `${name}.cat`);
}

function inceptionB(net: Net, x: Value, name: string): Value {
  const b3 = basic(net, x, `${name}.branch3x3`, 384, 3, { stride: 2 });
  let bd = basic(net, x, `${name}.branch3x3dbl_1`, 64, 1);
  bd = basic(net, bd, `${name}.branch3x3dbl_2`, 96, 3, { pad: 1 });
  bd = basic(net, bd, `${name}.branch3x3dbl_3`, 96, 3, { stride: 2 });
  const bp = net.maxpool(x, { kernel: 3, stride: 2, name: `${name}.max_pool` });
  return net.concat([b3, bd, bp], `${name}.cat`);
}

function inceptionC(net: Net, x: Value, name: string, c7: number): Value {
  const b1 = basic(net, x, `${name}.branch1x1`, 192, 1);
  let b7 = basic(net, x, `${name}.branch7x7_1`, c7, 1);
  b7 = basic(net, b7, `${name}.branch7x7_2`, c7, [1, 7], { pad: [0, 3] });
  b7 = basic(net, b7, `${name}.branch7x7_3`, 192, [7, 1], { pad: [3, 0] });
  let bd = basic(net, x, `${name}.branch7x7dbl_1`, c7, 1);
  bd = basic(net, bd, `${name}.branch7x7dbl_2`, c7, [7, 1], { pad: [3, 0] });
  bd = basic(net, bd, `${name}.branch7x7dbl_3`, c7, [1, 7], { pad: [0, 3] });
  bd = basic(net, bd, `${name}.branch7x7dbl_4`, c7, [7, 1], { pad: [3, 0] });
  bd = basic(net, bd, `${name}.branch7x7dbl_5`, 192, [1, 7], { pad: [0, 3] });
  let bp = net.avgpool(x, { kernel: 3, stride: 1, pad: 1, name: `${name}.avg_pool` });
  bp = basic(net, bp, `${name}.branch_pool`, 192, 1);
  return net.concat([b1, b7, bd, bp], `${name}.cat`);
}

function inceptionD(net: Net, x: Value, name: string): Value {
  let b3 = basic(net, x, `${name}.branch3x3_1`, 192, 1);
  b3 = basic(net, b3, `${name}.branch3x3_2`, 320, 3, { stride: 2 });
  let b7 = basic(net, x, `${name}.branch7x7x3_1`, 192, 1);
  b7 = basic(net, b7, `${name}.branch7x7x3_2`, 192, [1, 7], { pad: [0, 3] });
  b7 = basic(net, b7, `${name}.branch7x7x3_3`, 192, [7, 1], { pad: [3, 0] });
  b7 = basic(net, b7, `${name}.branch7x7x3_4`, 192, 3, { stride: 2 });
  const bp = net.maxpool(x, { kernel: 3, stride: 2, name: `${name}.max_pool` });
  return net.concat([b3, b7, bp], `${name}.cat`);
}

function inceptionE(net: Net, x: Value, name: string): Value {
  const b1 = basic(net, x, `${name}.branch1x1`, 320, 1);
  const b3 = basic(net, x, `${name}.branch3x3_1`, 384, 1);
  const b3cat = net.concat(
    [
      basic(net, b3, `${name}.branch3x3_2a`, 384, [1, 3], { pad: [0, 1] }),
      basic(net, b3, `${name}.branch3x3_2b`, 384, [3, 1], { pad: [1, 0] }),
    ],
    `${name}.branch3x3_cat`,
  );
  let bd = basic(net, x, `${name}.branch3x3dbl_1`, 448, 1);
  bd = basic(net, bd, `${name}.branch3x3dbl_2`, 384, 3, { pad: 1 });
  const bdcat = net.concat(
    [
      basic(net, bd, `${name}.branch3x3dbl_3a`, 384, [1, 3], { pad: [0, 1] }),
      basic(net, bd, `${name}.branch3x3dbl_3b`, 384, [3, 1], { pad: [1, 0] }),
    ],
    `${name}.branch3x3dbl_cat`,
  );
  let bp = net.avgpool(x, { kernel: 3, stride: 1, pad: 1, name: `${name}.avg_pool` });
  bp = basic(net, bp, `${name}.branch_pool`, 192, 1);
  return net.concat([b1, b3cat, bdcat, bp], `${name}.cat`);
}

/** Inception-v3 on `input` [1,3,299,299]; returns the logits [1,1000]. */
export function defineInceptionV3(net: Net): Value {
  let x = net.input('input', [1, 3, 299, 299]);
  x = basic(net, x, 'Conv2d_1a_3x3', 32, 3, { stride: 2 }); // 149
  x = basic(net, x, 'Conv2d_2a_3x3', 32, 3); // 147
  x = basic(net, x, 'Conv2d_2b_3x3', 64, 3, { pad: 1 }); // 147
  x = net.maxpool(x, { kernel: 3, stride: 2, name: 'maxpool1' }); // 73
  x = basic(net, x, 'Conv2d_3b_1x1', 80, 1);
  x = basic(net, x, 'Conv2d_4a_3x3', 192, 3); // 71
  x = net.maxpool(x, { kernel: 3, stride: 2, name: 'maxpool2' }); // 35
  x = inceptionA(net, x, 'Mixed_5b', 32); // 256
  x = inceptionA(net, x, 'Mixed_5c', 64); // 288
  x = inceptionA(net, x, 'Mixed_5d', 64); // 288
  x = inceptionB(net, x, 'Mixed_6a'); // 768 x 17x17
  x = inceptionC(net, x, 'Mixed_6b', 128);
  x = inceptionC(net, x, 'Mixed_6c', 160);
  x = inceptionC(net, x, 'Mixed_6d', 160);
  x = inceptionC(net, x, 'Mixed_6e', 192);
  x = inceptionD(net, x, 'Mixed_7a'); // 1280 x 8x8
  x = inceptionE(net, x, 'Mixed_7b'); // 2048
  x = inceptionE(net, x, 'Mixed_7c'); // 2048
  x = net.dropout(net.gap(x, 'avgpool'), 'dropout');
  x = net.flatten(x, 'flatten');
  return net.linear(x, 1000, 'fc');
}

// AlexNet in torchvision's single-tower layout (Krizhevsky 2014, "one weird trick"): five convs,
// three max pools, and three fully connected layers; 61,100,840 parameters, ~244 MB of float32.
// torchvision's AdaptiveAvgPool2d(6) sees a 6x6 map at 224x224, so it is the identity pool an
// export produces (AveragePool 1x1, stride 1).

import type { Value } from '../builder.ts';
import type { Net } from './net.ts';

/** AlexNet on `input` [1,3,224,224]; returns the logits [1,1000]. */
export function defineAlexNet(net: Net): Value {
  let x = net.input('input', [1, 3, 224, 224]);
  x = net.relu(net.conv(x, 64, { kernel: 11, stride: 4, pad: 2, name: 'features.0' }), 'features.1');
  x = net.maxpool(x, { kernel: 3, stride: 2, name: 'features.2' });
  x = net.relu(net.conv(x, 192, { kernel: 5, pad: 2, name: 'features.3' }), 'features.4');
  x = net.maxpool(x, { kernel: 3, stride: 2, name: 'features.5' });
  x = net.relu(net.conv(x, 384, { kernel: 3, pad: 1, name: 'features.6' }), 'features.7');
  x = net.relu(net.conv(x, 256, { kernel: 3, pad: 1, name: 'features.8' }), 'features.9');
  x = net.relu(net.conv(x, 256, { kernel: 3, pad: 1, name: 'features.10' }), 'features.11');
  x = net.maxpool(x, { kernel: 3, stride: 2, name: 'features.12' });
  x = net.avgpool(x, { kernel: 1, stride: 1, name: 'avgpool' });
  x = net.flatten(x, 'flatten');
  x = net.dropout(x, 'classifier.0');
  x = net.relu(net.linear(x, 4096, 'classifier.1'), 'classifier.2');
  x = net.dropout(x, 'classifier.3');
  x = net.relu(net.linear(x, 4096, 'classifier.4'), 'classifier.5');
  return net.linear(x, 1000, 'classifier.6');
}

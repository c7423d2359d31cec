/**
 * The host side of predicted device profiles (planning/preset-profile.ts): per-layer latencies predicted for the host
 * the predictors were trained on, and that host's GFLOPs, so presets can be scaled from it.
 */

import type { ModelHandle } from '../model/handle.ts';
import { isZooName, zooModelPath } from '../model/zoo/index.ts';
import { type Predictors, predictProfile } from '../planning/predict/predictors.ts';
import type { HostModel } from '../planning/preset-profile.ts';

/** A HostModel backed by trained predictors; `gflops` is the training host's (device bench). */
export function predictorHost(p: Predictors, gflops: number): HostModel {
  const totals = new Map<string, Promise<number | undefined>>();
  return {
    gflops,
    async layers(handle: ModelHandle) {
      return { ms: predictProfile(p, handle).layers, source: 'regression predictors' };
    },
    total(name: string) {
      let t = totals.get(name);
      if (!t) {
        t = (async () => {
          if (!isZooName(name)) return undefined;
          // Imported here: model-handle pulls in the model toolkit, which host-model's users already have loaded.
          const { ModelHandle } = await import('../model/handle.ts');
          const handle = await ModelHandle.fromFile(await zooModelPath(name));
          return predictProfile(p, handle).total;
        })();
        totals.set(name, t);
      }
      return t;
    },
  };
}

/**
 * Head then tail equals the whole model for zoo models (inception-v3): at 30+ cuts spread over the graph, single- and multi-tensor.
 */
import test from 'ava';
import { loadModelRef } from '../cli/model-source.ts';
import { checkCuts, spreadCuts } from './helpers/split-check.ts';

for (const name of ['inception-v3']) {
  test(`${name}: head then tail equals the whole model at 30+ cuts, single- and multi-tensor`, async (t) => {
    const m = await loadModelRef(name);
    const cuts = spreadCuts(m, 22, 10);
    t.true(cuts.length >= 30, `only ${cuts.length} cuts`);
    await checkCuts(t, m, cuts);
  });
}

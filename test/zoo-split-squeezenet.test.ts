/**
 * Head then tail equals the whole model for zoo models (squeezenet1.0 squeezenet1.1): at every single-tensor cut.
 */
import test from 'ava';
import { loadModelRef } from '../cli/model-source.ts';
import { checkCuts } from './helpers/split-check.ts';

for (const name of ['squeezenet1.0', 'squeezenet1.1']) {
  test(`${name}: head then tail equals the whole model at every single-tensor cut`, async (t) => {
    const m = await loadModelRef(name);
    const cuts = m.cuts.filter((c) => c.singleTensor).map((c) => c.index);
    await checkCuts(t, m, cuts);
  });
}

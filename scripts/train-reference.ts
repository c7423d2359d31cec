/**
 * `npm run train:reference`: trains the predictors on this host (the sweep plus the six zoo models' profiles,
 * measured or taken from the .cache of `npm run bench -- predict`) and writes data/reference-host.json with this
 * host's GFLOPs. Run it on the reference host only; `edgecut plan` and the paper reproduction read that file.
 */
import { writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import * as ort from 'onnxruntime-node';
import { loadData } from '../bench/predict.ts';
import { hostBench } from '../measurement/device/host.ts';
import { hostInfo } from '../measurement/host-info.ts';
import { REFERENCE_HOST_PATH } from '../measurement/reference-host.ts';
import { trainPredictors } from '../planning/predict/predictors.ts';

const data = await loadData({ quick: false, fresh: false, runs: 20 });
const samples = [...data.sweep, ...data.models.flatMap((m) => m.samples)];
const predictors = trainPredictors(samples, { referenceMs: data.referenceMs, host: hostInfo() });
const bench = await hostBench(1);
const cpu = cpus()[0]?.model.trim() ?? 'unknown CPU';
const file = {
  version: 1,
  description: `${cpu}, ${cpus().length} cores, 1 onnxruntime thread, ${bench.gflops.toFixed(0)} GFLOPs sustained`,
  gflops: Math.round(bench.gflops * 10) / 10,
  runtime: ort.env.versions.common,
  predictors,
};
await writeFile(REFERENCE_HOST_PATH, `${JSON.stringify(file)}\n`);
process.stdout.write(
  `wrote ${REFERENCE_HOST_PATH}: ${samples.length} samples, ${Object.keys(predictors.types).length} layer types\n`,
);

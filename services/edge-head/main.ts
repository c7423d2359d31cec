/**
 * `edgecut edge`: an edge-head device as a process. It streams frames from the synthetic camera through the
 * pipeline, prints one line per frame and, with `--verify`, checks every offloaded result against the whole model.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { untilSignal } from '../../cli/service.ts';
import { systemClock } from '../../common/clock.ts';
import { createLogger } from '../../common/log.ts';
import { buildDemoCnn } from '../../common/model/demo-cnn.ts';
import { ModelHandle } from '../../common/model-handle.ts';
import { readProfileFile } from '../../common/profile/io.ts';
import { profileModel } from '../../common/profile/profiler.ts';
import { type EdgeConfig, resolveEdge } from './config.ts';
import { EdgeHead } from './edge.ts';
import { syntheticCamera } from './frames.ts';
import { formatFrame, Tally } from './report.ts';

/** Writes the demo CNN into a directory (unless an identical file is there) and returns its path. */
export async function writeDemoModel(dir: string): Promise<string> {
  const bytes = buildDemoCnn();
  const path = join(dir, 'demo-cnn.onnx');
  await mkdir(dir, { recursive: true });
  const existing = await readFile(path).catch(() => undefined);
  if (!existing?.equals(bytes)) await writeFile(path, bytes);
  return path;
}

/** Runs the edge until its frames are done or a signal arrives; returns the process exit code. */
export async function runEdge(config: EdgeConfig): Promise<number> {
  const cfg = resolveEdge(config);
  const logger = createLogger(cfg.logLevel, { service: 'edge', id: cfg.deviceId });
  const path = cfg.model === 'demo' ? await writeDemoModel(cfg.modelsDir) : cfg.model;
  const model = await ModelHandle.fromFile(path);
  const profile =
    cfg.profile === 'measure'
      ? await profileModel(model, { runs: cfg.profileRuns, warmup: 2, threads: cfg.threads, checkCuts: 0 })
      : await readProfileFile(cfg.profile, model.analysis.nodes);
  const edge = new EdgeHead(model, profile, cfg, logger);
  const stop = new AbortController();
  void untilSignal(logger).then(() => stop.abort());
  await edge.start();
  process.stdout.write(
    `${JSON.stringify({ ready: 'edge', id: cfg.deviceId, model: model.name, modelId: model.id })}\n`,
  );
  if (!(await edge.waitForPlan()))
    logger.warn({ waitedMs: cfg.planWaitMs }, 'no plan yet: running frames on the device alone');
  const tally = new Tally();
  const frames = syntheticCamera(model.inputs, {
    count: cfg.frames,
    fps: cfg.fps,
    seed: cfg.seed,
    now: systemClock.now,
    signal: stop.signal,
  });
  try {
    await edge.run(frames, (r) => {
      const fps = tally.add(r, systemClock.now());
      process.stdout.write(`${formatFrame(r, fps)}\n`);
    });
  } finally {
    await edge.stop();
  }
  process.stdout.write(`${tally.done()}\n`);
  if (!cfg.verify) return 0;
  process.stdout.write(`${tally.summary()}\n`);
  return tally.passed ? 0 : 1;
}

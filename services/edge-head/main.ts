/**
 * `edgecut edge`: an edge-head device as a process. It streams frames from its source (synthetic, an image, or a
 * directory of images) through the pipeline, prints one line per frame and, with `--verify`, checks every offloaded
 * result against the whole model.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { untilSignal } from '../../cli/service.ts';
import { systemClock } from '../../common/clock.ts';
import { hostBench } from '../../common/device/host.ts';
import { createLogger, type Logger } from '../../common/log.ts';
import { buildDemoCnn } from '../../common/model/demo-cnn.ts';
import { ModelHandle } from '../../common/model-handle.ts';
import { readProfileFile } from '../../common/profile/io.ts';
import { profileModel } from '../../common/profile/profiler.ts';
import { formatRate } from '../../common/shaping.ts';
import { type EdgeConfig, type ResolvedEdgeConfig, resolveEdge } from './config.ts';
import { EdgeHead } from './edge.ts';
import { type DeviceEmulation, modelNames, resolveEmulation } from './emulation.ts';
import { describeSource, openFrameSource } from './frames.ts';
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
  const stop = new AbortController();
  const sourceOpts = {
    count: cfg.frames,
    fps: cfg.fps,
    loop: cfg.loop,
    seed: cfg.seed,
    preprocess: cfg.preprocess,
    now: systemClock.now,
    signal: stop.signal,
    logger,
  };
  // Opened before profiling, so a bad source stops the edge at once.
  const frames = await openFrameSource(cfg.source, model, sourceOpts);
  logger.info({ source: describeSource(cfg.source, sourceOpts) }, 'frame source');
  const profile =
    cfg.profile === 'measure'
      ? await profileModel(model, { runs: cfg.profileRuns, warmup: 2, threads: cfg.threads, checkCuts: 0 })
      : await readProfileFile(cfg.profile, model.analysis.nodes);
  const emulation = await resolveEmulation(cfg.emulateDevice, {
    modelNames: modelNames(model.name, model.metadata),
    wholeMs: profile.wholeMs.median,
    gflops: async () => {
      logger.info('measuring this host’s GFLOPs for EMULATE_DEVICE (kept for next time)');
      return (await hostBench(cfg.threads)).gflops;
    },
    presets: cfg.presetList,
  });
  announceEmulation(cfg, emulation, logger);
  const edge = new EdgeHead(model, profile, { ...cfg, emulation }, logger);
  void untilSignal(logger).then(() => stop.abort());
  await edge.start();
  process.stdout.write(
    `${JSON.stringify({ ready: 'edge', id: cfg.deviceId, model: model.name, modelId: model.id })}\n`,
  );
  if (!(await edge.waitForPlan()))
    logger.warn({ waitedMs: cfg.planWaitMs }, 'no plan yet: running frames on the device alone');
  const tally = new Tally();
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

/** Says plainly, at start, what is emulated. */
function announceEmulation(
  cfg: ResolvedEdgeConfig,
  emulation: DeviceEmulation | undefined,
  logger: Logger,
): void {
  if (cfg.uplink) {
    const { rateBps, setupMs } = cfg.uplink;
    logger.warn(
      { rateBps, setupMs },
      `EMULATION: the uplink is shaped to ${formatRate(rateBps)} plus ${setupMs} ms per published message; ` +
        'this is an emulated link, not the real one',
    );
  }
  if (emulation) {
    logger.warn(
      { factor: emulation.factor, rule: emulation.rule },
      `EMULATION: compute is stretched ${emulation.factor.toFixed(2)}x to emulate ${emulation.description}; ` +
        'heads and local tails take the emulated device’s time, and the published profile is scaled to match',
    );
  }
}

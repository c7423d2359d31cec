/**
 * `edgecut edge`: an edge-head device as a process. It streams frames from its source (synthetic, an image, or a
 * directory of images) through the pipeline, prints one line per frame and, with `--verify`, checks every offloaded
 * result against the whole model.
 */
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type DeviceEmulation, modelNames, resolveEmulation } from '../../measurement/device/emulation.ts';
import { hostBench } from '../../measurement/device/host.ts';
import { readProfileFile } from '../../measurement/profile-io.ts';
import { profileModel } from '../../measurement/profiler.ts';
import { formatRate } from '../../measurement/shaping.ts';
import { buildDemoCnn } from '../../model/demo-cnn.ts';
import { ModelHandle } from '../../model/handle.ts';
import { modelClasses } from '../../model/labels.ts';
import { isZooName, ZOO, ZOO_NAMES } from '../../model/zoo/index.ts';
import { systemClock } from '../../runtime/clock.ts';
import { untilSignal } from '../../runtime/component.ts';
import { ConfigError } from '../../runtime/config.ts';
import { createLogger, type Logger } from '../../runtime/log.ts';
import { Monitored } from '../../runtime/metrics.ts';
import { type EdgeConfig, type ResolvedEdgeConfig, resolveEdge } from './config.ts';
import { EdgeHead } from './edge.ts';
import { describeSource, openFrameSource } from './frames.ts';
import { EdgeMetrics } from './metrics.ts';
import { formatFrame, frameJson, Tally } from './report.ts';

/** Writes a model built in code into a directory as `file` (unless an identical file is there); returns its path. */
async function writeBuiltModel(dir: string, file: string, bytes: Uint8Array): Promise<string> {
  const path = join(dir, file);
  await mkdir(dir, { recursive: true });
  const existing = await readFile(path).catch(() => undefined);
  if (!existing?.equals(bytes)) {
    // Written beside and renamed, so a tail worker scanning the directory never reads half a model.
    const partial = `${path}.${process.pid}.partial`;
    await writeFile(partial, bytes);
    await rename(partial, path);
  }
  return path;
}

/** Writes the demo CNN into a directory (unless an identical file is there) and returns its path. */
export function writeDemoModel(dir: string): Promise<string> {
  return writeBuiltModel(dir, 'demo-cnn.onnx', buildDemoCnn());
}

/**
 * The model file MODEL names: `demo` (the demo CNN) and zoo names (`squeezenet1.1`, ...; random weights of a fixed
 * seed, built in code) are written into the models directory, where the tail workers find them; anything else is a
 * path to an ONNX file.
 */
export async function edgeModelPath(model: string, modelsDir: string): Promise<string> {
  if (model === 'demo') return writeDemoModel(modelsDir);
  if (isZooName(model)) return writeBuiltModel(modelsDir, `${model}.onnx`, ZOO[model].build());
  const found = await stat(model).catch(() => undefined);
  if (!found)
    throw new ConfigError(
      `model ${JSON.stringify(model)} (--model, MODEL): no such file; expected an ONNX model file, demo, or a zoo model name (${ZOO_NAMES.join(', ')})`,
    );
  return model;
}

/** Runs the edge until its frames are done or a signal arrives; returns the process exit code. */
export async function runEdge(config: EdgeConfig): Promise<number> {
  const cfg = resolveEdge(config);
  const logger = createLogger(cfg.logLevel, { service: 'edge', id: cfg.deviceId });
  const path = await edgeModelPath(cfg.model, cfg.modelsDir);
  const model = await ModelHandle.fromFile(path);
  // Checked before anything starts, so bad labels stop the edge at once with one line.
  const classes = await modelClasses(model, cfg.labels);
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
  if (classes)
    logger.info(
      { output: classes.name, classes: classes.classes, labels: classes.source ?? null },
      'each frame reports the top-1 class of this output',
    );
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
  if (emulation) emulation.contention = cfg.emulateContention;
  announceEmulation(cfg, emulation, logger);
  const metrics = new EdgeMetrics(cfg.deviceId);
  const edge = new EdgeHead(model, profile, { ...cfg, emulation, classes }, logger, systemClock, metrics);
  metrics.watch({ inFlight: () => edge.inFlight, cut: () => edge.currentPlan?.cut.index ?? model.layers });
  let finished = false;
  const served = new Monitored(edge, {
    port: cfg.metricsPort,
    registry: metrics.set.registry,
    service: 'edge',
    logger,
    check: () => (finished ? 'frames done' : edge.connected ? undefined : 'not connected to the broker'),
  });
  void untilSignal(logger).then(() => stop.abort());
  await served.start();
  try {
    const ready = { ready: 'edge', pid: process.pid, id: cfg.deviceId, model: model.name, modelId: model.id };
    process.stdout.write(`${JSON.stringify({ ...ready, ...served.server.readyDetails() })}\n`);
    // Without a broker there is no plan to wait for: frames run on the device until it is reachable.
    if (edge.connected && !(await edge.waitForPlan()))
      logger.warn({ waitedMs: cfg.planWaitMs }, 'no plan yet: running frames on the device alone');
    const tally = new Tally();
    try {
      await edge.run(frames, (r) => {
        const fps = tally.add(r, systemClock.now());
        metrics.frame(r, fps);
        const line = cfg.report === 'json' ? frameJson(r, fps, systemClock.now()) : formatFrame(r, fps);
        process.stdout.write(`${line}\n`);
      });
    } finally {
      finished = true;
      await edge.stop();
    }
    process.stdout.write(`${tally.done()}\n`);
    if (cfg.verify) process.stdout.write(`${tally.summary()}\n`);
    if (served.server.port !== undefined) await linger(cfg.metricsLingerMs, stop.signal, logger);
    return !cfg.verify || tally.passed ? 0 : 1;
  } finally {
    await served.stop();
  }
}

/** Keeps /metrics up after the frames for `ms` or until a signal, so a last scrape sees the final counts. */
async function linger(ms: number, signal: AbortSignal, logger: Logger): Promise<void> {
  if (ms <= 0 || signal.aborted) return;
  logger.info({ lingerMs: ms }, 'frames done: still serving /metrics until the linger ends or a signal');
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Says plainly, at start, what is emulated. */
function announceEmulation(
  cfg: ResolvedEdgeConfig,
  emulation: DeviceEmulation | undefined,
  logger: Logger,
): void {
  if (cfg.uplink) {
    const { rateBps, setupMs, steps = [] } = cfg.uplink;
    const later = steps.map((s) => `, ${formatRate(s.rateBps)} from ${s.afterMs / 1000} s`).join('');
    logger.warn(
      { rateBps, setupMs, steps },
      `EMULATION: the uplink is shaped to ${formatRate(rateBps)}${later} plus ${setupMs} ms per published message; ` +
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

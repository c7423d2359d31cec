/**
 * What `edgecut bench paper` measures, as stored in its results file (docs/results.json for the full grid): the
 * record of every scenario, written after each one so that an interrupted run resumes where it stopped, and the
 * input of docs/results.md (bench/paper/doc.ts).
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { UserError } from '../../runtime/errors.ts';

/** Frames of one contender: throughput and latency. */
export const ContenderSchema = z.object({
  /** Frames measured (after the warm-up). */
  frames: z.number().int().min(0),
  /**
   * Frames per second over the measured frames: frames / (last answer - first capture), or, after a warm-up,
   * frames / (last answer - the answer before the first measured frame), the steady rate with frames in flight.
   */
  fps: z.number().min(0),
  /** Per-frame latency, capture to answer, ms. */
  medianMs: z.number().min(0),
  p95Ms: z.number().min(0),
  /** The cut most measured frames ran at. */
  cut: z.number().int().min(0),
  /** Frames whose tail a worker ran. */
  offloaded: z.number().int().min(0),
  /** Frames the device finished itself because of a fault (deadline, link, worker). */
  fallbacks: z.number().int().min(0),
  /** Frames asked for and never answered. */
  lost: z.number().int().min(0),
  /** Median stage times of the measured frames, ms. */
  stagesMs: z.object({ head: z.number(), transfer: z.number(), tail: z.number() }),
  /**
   * Median bytes of the requests the measured frames sent (0 when none was sent): the link's share of a frame is
   * these bytes at the uplink's rate, which with frames in flight the measured transfer (which includes the wait
   * behind the previous requests on the link) is not.
   */
  requestBytes: z.number().min(0).optional(),
});
export type Contender = z.infer<typeof ContenderSchema>;

/** The auto planner's run, from a cold start with no bandwidth given. */
export const AutoRunSchema = ContenderSchema.extend({
  /** Frames the edge kept in flight (1: the paper's one frame at a time). */
  window: z.number().int().min(1),
  /** Frames skipped before measuring (the cold start). */
  warmup: z.number().int().min(0),
  /** Plans published, with the frame index at which each was first used. */
  plans: z.array(z.object({ cut: z.number().int().min(0), atMs: z.number(), reason: z.string() })),
  planChanges: z.number().int().min(0),
  /** Every frame of the run, warm-up included: ms after the edge was up, cut, stage times, fallback or not. */
  frameLog: z.array(
    z.object({
      frame: z.number().int().min(0),
      atMs: z.number(),
      cut: z.number().int().min(0),
      totalMs: z.number(),
      headMs: z.number(),
      transferMs: z.number(),
      tailMs: z.number(),
      fallback: z.boolean(),
    }),
  ),
  /** 1-based index of the first frame from which on every frame ran at a cut the oracle measured within 5% of its best; null if none. */
  settledAtFrame: z.number().int().min(1).nullable(),
});
export type AutoRun = z.infer<typeof AutoRunSchema>;

/** One cut the oracle measured. */
export const OracleCutSchema = z.object({
  cut: z.number().int().min(0),
  after: z.string().nullable(),
  bytes: z.number().min(0),
  /** Predicted from the device's and the worker's (emulated) profiles and the emulated link's rate, ms. */
  predictedMs: z.number().min(0),
  fps: z.number().min(0),
  medianMs: z.number().min(0),
  p95Ms: z.number().min(0),
  frames: z.number().int().min(0),
});
export type OracleCut = z.infer<typeof OracleCutSchema>;

/** One scenario: a model, a configuration (edge and tail device) and an uplink. */
export const ScenarioRecordSchema = z.object({
  /** `model|edge|tail|uplink`, the key an interrupted run resumes by. */
  id: z.string(),
  /** Zoo name, or `shared-squeezenet` for the real SqueezeNet of ../shared. */
  model: z.string(),
  modelLabel: z.string(),
  /** The paper's configuration: I (Raspberry Pi 3 against Config I servers) or II (with the NCS). */
  config: z.enum(['I', 'II']),
  /** Edge device preset (emulated). */
  edge: z.string(),
  /** Tail device preset (emulated), or `host` for this host unemulated. */
  tail: z.string(),
  /** Uplink rate, bits per second, and as written on the command line. */
  uplinkBps: z.number().positive(),
  uplink: z.string(),
  /** What was emulated, in words (device factors and their rules, the link). */
  emulated: z.string(),
  /** Cuts of the model (candidates of the oracle): positions 0..N. */
  cuts: z.number().int().min(1),
  fullOffload: ContenderSchema,
  autoSequential: AutoRunSchema,
  autoPipelined: AutoRunSchema,
  oracle: z.object({
    /** Every cut measured, in the order measured. */
    measured: z.array(OracleCutSchema),
    /** The best measured cut (edge only, measured once per model and edge device, included). */
    bestCut: z.number().int().min(0),
    bestFps: z.number().min(0),
    /** Cuts not measured because their lower bound (device time + transfer at the link's rate) cannot beat the best. */
    pruned: z.number().int().min(0),
  }),
  /** When it was measured (ISO 8601) and how long it took, s. */
  measuredAt: z.string(),
  seconds: z.number().min(0),
  /** When the auto runs alone were measured again (`--auto-only`), if they were. */
  autoMeasuredAt: z.string().optional(),
  /** When the oracle's cuts near its best were measured again for longer (`--refine-only`), if they were. */
  oracleRefinedAt: z.string().optional(),
});
export type ScenarioRecord = z.infer<typeof ScenarioRecordSchema>;

/** Edge only, measured once per model and edge device (neither the link nor a server takes part). */
export const EdgeOnlyRecordSchema = z.object({
  id: z.string(),
  model: z.string(),
  edge: z.string(),
  emulated: z.string(),
  run: ContenderSchema,
  measuredAt: z.string(),
  /** When it was measured again for longer (`--refine-only`), if it was. */
  refinedAt: z.string().optional(),
});
export type EdgeOnlyRecord = z.infer<typeof EdgeOnlyRecordSchema>;

/** The robot experiment of the paper's section III-C: busy processes on the device, three load signals. */
export const RobotRecordSchema = z.object({
  model: z.string(),
  edge: z.string(),
  tail: z.string(),
  uplink: z.string(),
  /** Busy processes standing in for navigation and video, and the contention they caused (Fig. 17 factor). */
  busy: z.number().int().min(0),
  emulated: z.string(),
  /** Per planner load signal (`none` is load-unaware): the run, measured after the warm-up. */
  runs: z.array(z.object({ signal: z.enum(['none', 'loadavg', 'measured']), run: AutoRunSchema })),
  /** Edge only under the same load, for reference. */
  edgeOnly: ContenderSchema,
  measuredAt: z.string(),
});
export type RobotRecord = z.infer<typeof RobotRecordSchema>;

/** The step response: uplink and load changed mid-stream. */
export const StepRecordSchema = z.object({
  name: z.string(),
  model: z.string(),
  emulated: z.string(),
  steps: z.array(
    z.object({
      step: z.string(),
      /** Ms after the stream started. */
      atMs: z.number(),
      toPlanMs: z.number().nullable(),
      planChanges: z.number().int().min(0),
      framesUntilRight: z.number().int().min(0),
      fallbacks: z.number().int().min(0),
      finalCut: z.number().int(),
    }),
  ),
  lost: z.number().int().min(0),
  /** The cut over time: every frame (ms after the stream started, cut, total ms, fallback or not) and every plan. */
  frames: z.array(
    z.object({ atMs: z.number(), cut: z.number().int(), totalMs: z.number(), fallback: z.boolean() }),
  ),
  plans: z.array(z.object({ atMs: z.number(), cut: z.number().int() })),
  measuredAt: z.string(),
});
export type StepRecord = z.infer<typeof StepRecordSchema>;

/** The whole results file. */
export const PaperResultsSchema = z.object({
  version: z.literal(1),
  /** `full` (the doc's grid) or `quick` (the test suite's). */
  grid: z.enum(['full', 'quick']),
  /**
   * Where the emulated devices' per-layer times come from: `reference`, one profile of this host per model measured
   * before the grid and given to every run (the oracle and the auto runs of a scenario then hold their devices for
   * the same times); `per-run`, each run's edge and tail profiled this host at start.
   */
  profiles: z.enum(['reference', 'per-run']).default('per-run'),
  host: z.object({
    cpu: z.string(),
    cores: z.number().int().min(1),
    gflops: z.number().nullable(),
    node: z.string(),
    onnxruntime: z.string(),
  }),
  edgeOnly: z.array(EdgeOnlyRecordSchema),
  scenarios: z.array(ScenarioRecordSchema),
  robot: RobotRecordSchema.nullable(),
  steps: z.array(StepRecordSchema),
});
export type PaperResults = z.infer<typeof PaperResultsSchema>;

/** Reads a results file; undefined when there is none. A file that does not parse is an error naming it. */
export async function readResults(path: string): Promise<PaperResults | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${path} is not an edgecut bench paper results file: ${(e as Error).message}`);
  }
  const parsed = PaperResultsSchema.safeParse(json);
  if (!parsed.success)
    throw new UserError(
      `${path} is not an edgecut bench paper results file: ${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message}`,
    );
  return parsed.data;
}

/** Writes the results file atomically (a temporary file, then a rename), so an interrupted write loses nothing. */
export async function writeResults(path: string, r: PaperResults): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(r, null, 1)}\n`);
  await rename(tmp, path);
}

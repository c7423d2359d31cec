/**
 * JSON payloads of the control plane (plans, profiles, telemetry, status). Data-plane payloads (requests, results,
 * errors) are FlatBuffers, see `edgecut.fbs` and `codec.ts`. Each JSON payload has a zod schema so receivers check
 * it where it enters (CONTRIBUTING.md, convention 5) and the docs can describe it.
 */
import { z } from 'zod';

/** Availability of a service (retained; `offline` is also the Last Will). */
export const StatusSchema = z.object({
  state: z.enum(['online', 'offline']),
  role: z.string(),
  id: z.string(),
  at: z.number().optional(),
});
/** Availability of a service. */
export type Status = z.infer<typeof StatusSchema>;

/** One cut as devices and planners describe it. */
export const CutSummarySchema = z.object({
  /** Position k: the cut after the k-th node of the topological order (0 = full offload). */
  index: z.number().int().min(0),
  /** Name of the node at position k; null for k = 0. */
  after: z.string().nullable(),
  /** Total bytes of the crossing tensors, D_k. */
  bytes: z.number().min(0),
  /** Names of the crossing tensors. */
  tensors: z.array(z.string()),
});
/** One cut as devices and planners describe it. */
export type CutSummary = z.infer<typeof CutSummarySchema>;

/** Predicted stage times of a plan, in milliseconds, and the device-side energy of one frame. */
export const StageTimesSchema = z.object({
  edgeMs: z.number(),
  transferMs: z.number(),
  serverMs: z.number(),
  totalMs: z.number(),
  /** Device-side joules per frame; null when the edge has no power figures; absent in older plans. */
  energyJ: z.number().nullable().optional(),
});

/** Entries of a plan's predicted curve at most: a longer cut list is thinned to this many (planning/curve.ts). */
export const PLAN_CURVE_MAX = 512;

/** One cut's predicted stage times in a plan's curve, in milliseconds (the paper's Fig. 3, one point per cut). */
export const CurvePointSchema = z.object({
  /** Position k of the cut (as `Plan.cut.index`). */
  cut: z.number().int().min(0),
  /** Head on the device (layers 1..k), under the edge load factor. */
  headMs: z.number().min(0),
  /** Uplink of D_k plus the result's way back; 0 for k = N. */
  transferMs: z.number().min(0),
  /** Tail on a worker (layers k+1..N), under the server load factor. */
  tailMs: z.number().min(0),
  /** headMs + transferMs + tailMs: one frame's latency. */
  totalMs: z.number().min(0),
});
/** One cut's predicted stage times in a plan's curve. */
export type CurvePoint = z.infer<typeof CurvePointSchema>;

/** The planner's choice of cut for one device (retained). */
export const PlanSchema = z.object({
  version: z.literal(1),
  device: z.string(),
  modelId: z.string(),
  /** Monotonic per planner and device, so a device can ignore a stale plan. */
  seq: z.number().int().min(0),
  cut: CutSummarySchema,
  /**
   * `latency` (one frame), `throughput` (pipelined stream), `energy` (device-side joules per frame) or `fixed`
   * (configured).
   */
  objective: z.enum(['latency', 'throughput', 'energy', 'fixed']),
  predicted: StageTimesSchema.nullable(),
  /** Why this cut, one sentence. */
  reason: z.string(),
  /** Inputs the decision used. */
  inputs: z.record(z.string(), z.unknown()),
  issuedAt: z.number(),
  /**
   * The predicted stage times of the cuts Algorithm 1 considered for this plan, in cut order (the paper's Fig. 3):
   * every cut, or with more than 512 cuts (PLAN_CURVE_MAX) 512 evenly spaced ones that keeps both ends, the chosen
   * cut and the search's best. The chosen cut's entry equals `predicted`. Absent when no prediction was made (a
   * fixed cut, older planners) and in the safe start, where no uplink is measured yet.
   */
  curve: z.array(CurvePointSchema).max(PLAN_CURVE_MAX).optional(),
});
/** The planner's choice of cut for one device. */
export type Plan = z.infer<typeof PlanSchema>;

/** Predictions messages the planner publishes per device at most, per second (the rest are dropped, never queued). */
export const PREDICTIONS_PER_SECOND = 1;

/** Largest predictions payload a reader accepts, in bytes (512 curve points of five numbers fit well below). */
export const PREDICTIONS_MAX_BYTES = 128 * 1024;

/**
 * Algorithm 1's prediction for one device now, published on its `predictions` topic (QoS 0, not retained) each time
 * the planner evaluates new telemetry, at most {@link PREDICTIONS_PER_SECOND} per second, only while the device has a
 * plan of Algorithm 1 on a measured link. A plan is published only when the cut changes (hysteresis); this is the
 * curve between plans (the paper's Fig. 3, live).
 */
export const PredictionsMessageSchema = z.object({
  /** Version of this message (1). */
  version: z.literal(1),
  /** The device's id (as the topic's `{device}`). */
  device: z.string().max(64),
  /** The model the prediction is for (as `Plan.modelId`). */
  modelId: z.string().max(200),
  /** When the planner evaluated it, ms since the Unix epoch (the planner's clock). */
  at: z.number(),
  /** The `seq` of the plan in force. */
  seq: z.number().int().min(0),
  /** The cut of the plan in force (`Plan.cut.index`). */
  chosen: z.number().int().min(0),
  /** The cut Algorithm 1 finds best now; it differs from `chosen` while the hysteresis holds a switch back. */
  best: z.number().int().min(0),
  /** Every cut's predicted stage times now, in cut order, bounded as `Plan.curve`. */
  curve: z.array(CurvePointSchema).max(PLAN_CURVE_MAX),
  /** Some of what the prediction rests on. */
  inputs: z
    .object({
      /** The uplink estimate, kbit/s. */
      linkKbps: z.number().min(0).optional(),
      /** The edge load factor (1 = as profiled). */
      edgeLoad: z.number().min(0).optional(),
      /** The server load factor (1 = as profiled). */
      serverLoad: z.number().min(0).optional(),
    })
    .optional(),
});
/** Algorithm 1's prediction for one device now. */
export type PredictionsMessage = z.infer<typeof PredictionsMessageSchema>;

/** Parses a predictions message; a payload over {@link PREDICTIONS_MAX_BYTES} is refused before it is read. */
export function parsePredictions(payload: Buffer | string, what = 'predictions'): PredictionsMessage {
  const bytes = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  if (bytes > PREDICTIONS_MAX_BYTES)
    throw new Error(`${what}: payload of ${bytes} bytes exceeds the limit of ${PREDICTIONS_MAX_BYTES} bytes`);
  return parseJson(PredictionsMessageSchema, what, payload);
}

/** A device's periodic telemetry. */
export const DeviceTelemetrySchema = z.object({
  device: z.string(),
  at: z.number(),
  loadavg1: z.number(),
  cores: z.number().int().min(1),
  cpuPercent: z.number(),
  /** Median head latency of the most recent frames (up to 3), per cut index. */
  headMs: z.record(z.string(), z.number()),
  /** Heads run at each cut since the last telemetry (absent from older devices: then every cut counts as fresh). */
  headCounts: z.record(z.string(), z.number().int().min(0)).optional(),
  /**
   * Per cut of `headMs`: the other processes' runnable threads averaged over the head `headMs` reports (the median
   * head, or the two middle ones averaged), so the planner can carry a head measured under one load over to the load
   * now (`othersRunnable`).
   */
  headOthers: z.record(z.string(), z.number().min(0)).optional(),
  /**
   * Uplink samples since the last telemetry: packet bytes of a QoS 1 PUBLISH and seconds from when it could start
   * on the link to its PUBACK (services/edge-head/uplink.ts).
   */
  transfers: z.array(z.object({ bytes: z.number(), seconds: z.number() })).max(1024),
  /** Lower bounds: the PUBLISH on the link now has waited this long for its PUBACK (a slow or dead link). */
  censored: z
    .array(z.object({ bytes: z.number(), seconds: z.number() }))
    .max(64)
    .optional(),
  /**
   * Frames offloaded since the last telemetry that missed their deadline: at least `waitedMs` passed between
   * sending the request and giving up, a lower bound on transfer + server time.
   */
  late: z
    .array(z.object({ cut: z.number().int().min(0), bytes: z.number(), waitedMs: z.number() }))
    .max(64)
    .optional(),
  /**
   * Answered requests since the last telemetry: ms from the request's PUBACK to its answer, less the worker's own
   * span (receipt to reply): the way to the worker and the result's way back, which the uplink samples do not see.
   */
  returns: z.array(z.number().min(0)).max(64).optional(),
  /**
   * Runnable threads of other processes, averaged over the last second (Linux `procs_running` less the device's
   * own): the load of everything else within a second, where the load average takes a minute.
   */
  othersRunnable: z.number().min(0).optional(),
  /** This process's own CPU use in cores, averaged like the 1-minute load average (so the planner can leave it out). */
  ownLoad1: z.number().min(0).optional(),
  framesInFlight: z.number().int().min(0),
  /** Frames the device keeps in flight at most (its pipeline); absent from older devices (then 1). */
  window: z.number().int().min(1).optional(),
  fallbacks: z.number().int().min(0),
});
/** A device's periodic telemetry. */
export type DeviceTelemetry = z.infer<typeof DeviceTelemetrySchema>;

/** Top-1 class of a frame whose model output is a class vector. */
export const FrameTop1Schema = z.object({
  /** Index of the most probable class in the output vector. */
  index: z.number().int().min(0),
  /** Its label, when the device has labels (`--labels`, or the model's metadata). */
  label: z.string().max(200).optional(),
  /** Its probability (softmax applied when the output is not already a probability vector). */
  probability: z.number().min(0).max(1),
});
/** Top-1 class of a frame. */
export type FrameTop1 = z.infer<typeof FrameTop1Schema>;

/** Largest frame report payload a device publishes, and readers accept, in bytes. */
export const FRAME_REPORT_MAX_BYTES = 4096;

/**
 * What happened to one frame, as the device publishes it on its `frames` topic (QoS 0, not retained, at most
 * FRAME_REPORTS_PER_SECOND per device: the reports beyond are skipped, never the frames).
 */
export const FrameReportMessageSchema = z.object({
  /** The device's id (as the topic's `{device}`). */
  device: z.string().max(64),
  /** Frame number, from 1 (as the edge's printed line and `REPORT=json`). */
  frame: z.number().int().min(1),
  /** When the frame finished, ms since the Unix epoch (the device's clock). */
  at: z.number(),
  /** The cut it ran at (k: the head ran layers 1..k). */
  cut: z.number().int().min(0),
  /** Name of the node the cut follows; null for k = 0. */
  after: z.string().max(200).nullable(),
  /** Head on the device (layers 1..k), ms. */
  headMs: z.number().min(0),
  /** Network and broker both ways (0 when the tail ran on the device). */
  transferMs: z.number().min(0),
  /** Tail (layers k+1..N) as timed by whoever ran it: the worker, or the device (0 at k = N). */
  tailMs: z.number().min(0),
  /** Capture to answer. */
  totalMs: z.number().min(0),
  /** Frames per second finished by the device lately (its last frames, over the time they took). */
  fps: z.number().min(0),
  /** Where the tail ran: a worker id, or `local` (the plan kept it on the device, or a fallback). */
  tailBy: z.string().max(200),
  /** Why the tail ran on the device although the plan offloaded it; null when it did not fall back. */
  fallback: z.string().max(500).nullable(),
  /** The frame's top-1 class, when the model output is a class vector. */
  top1: FrameTop1Schema.optional(),
  /** Reports the device did not publish since its previous one (rate limit, or the link busy or down). */
  skipped: z.number().int().min(0).optional(),
});
/** What happened to one frame, as published on the device's `frames` topic. */
export type FrameReportMessage = z.infer<typeof FrameReportMessageSchema>;

/** Parses a frame report; a payload over {@link FRAME_REPORT_MAX_BYTES} is refused before it is read. */
export function parseFrameReport(payload: Buffer | string, what = 'frame report'): FrameReportMessage {
  const bytes = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  if (bytes > FRAME_REPORT_MAX_BYTES)
    throw new Error(
      `${what}: payload of ${bytes} bytes exceeds the limit of ${FRAME_REPORT_MAX_BYTES} bytes`,
    );
  return parseJson(FrameReportMessageSchema, what, payload);
}

/** A tail worker's periodic telemetry. */
export const WorkerTelemetrySchema = z.object({
  worker: z.string(),
  at: z.number(),
  loadavg1: z.number(),
  cores: z.number().int().min(1),
  /** Requests waiting for a slot (taken from the broker, not yet running). */
  queueDepth: z.number().int().min(0),
  /** Requests waiting per device (devices with none absent); each device's queue is bounded (TAIL_DEVICE_QUEUE). */
  deviceQueues: z.record(z.string(), z.number().int().min(0)).optional(),
  /** Requests running now (in flight on the worker's sessions). */
  running: z.number().int().min(0),
  /** Inferences the worker runs at once. */
  concurrency: z.number().int().min(1),
  /** Median tail latency per `<modelId>:<cut>`. */
  tailMs: z.record(z.string(), z.number()),
  /** Requests answered with a result since the worker started. */
  served: z.number().int().min(0),
  /**
   * Throughput: results per second since the worker's previous periodic telemetry (since its start for the first
   * one); absent from older workers (then the difference of `served` over `at` between two messages).
   */
  servedPerSecond: z.number().min(0).optional(),
  errors: z.number().int().min(0),
  /**
   * Tail sessions loaded and ready, as `<modelId>:<cut>` (at most the worker's session cache, TAIL_SESSION_CACHE):
   * the planner moves a device to a new cut once a worker has its tail ready (see TailPrepare).
   */
  warm: z.array(z.string().max(200)).max(1024).optional(),
});
/** A tail worker's periodic telemetry. */
export type WorkerTelemetry = z.infer<typeof WorkerTelemetrySchema>;

/**
 * The planner asks the tail workers to load the tail of a cut it is about to give a device, so the device's first
 * frame at that cut does not wait for (and miss its deadline on) a session being built; not retained.
 */
export const TailPrepareSchema = z.object({
  version: z.literal(1),
  /** The device the cut is for (for the workers' logs). */
  device: z.string().max(200),
  /** Content hash of the model. */
  modelId: z.string().max(200),
  /** The cut whose tail to load. */
  cut: z.number().int().min(0),
  /**
   * Asked before the device's uplink is measured, for a cut the device will likely use: a worker loads it only
   * while its session cache has room, after the prepares of plans.
   */
  speculative: z.boolean().optional(),
  issuedAt: z.number(),
});
/** A request to load one tail ahead of a plan change. */
export type TailPrepare = z.infer<typeof TailPrepareSchema>;

/** Parses a JSON payload with a schema; the error names the topic's message type and the first problem. */
export function parseJson<T>(schema: z.ZodType<T>, what: string, payload: Buffer | string): T {
  let raw: unknown;
  try {
    raw = JSON.parse(payload.toString());
  } catch {
    throw new Error(`${what}: payload is not JSON`);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`${what}: ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data;
}

/**
 * The edge-head: runs the head of the model (nodes 1..k of the planner's cut) on each frame, publishes the crossing
 * tensors as a request, and waits for a tail worker's result. Up to `window` frames are in flight, so the next
 * frame's head runs while earlier frames are on the wire or in a tail. When a worker answers with an error or not
 * at all before the deadline, the device runs the tail itself: no frame is lost.
 */
import { randomUUID } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import type { InferenceSession } from 'onnxruntime-node';
import { type Clock, systemClock } from '../../common/clock.ts';
import { errorMessage } from '../../common/errors.ts';
import type { Logger } from '../../common/log.ts';
import type { CutInfo, ModelHandle } from '../../common/model-handle.ts';
import { Connection } from '../../common/mqtt.ts';
import { createSession, maxAbsDiff, runWire } from '../../common/runtime.ts';
import { Semaphore } from '../../common/semaphore.ts';
import { median } from '../../common/stats.ts';
import { decodeMessage, emptyTimes, encodeRequest, type WireTensor } from '../../schemas/codec.ts';
import { type DeviceTelemetry, type Plan, PlanSchema, parseJson } from '../../schemas/messages.ts';
import type { Profile } from '../../schemas/profile.ts';
import { topics } from '../../schemas/topics.ts';
import type { Frame } from './frames.ts';
import { PendingResults } from './pending.ts';

/** Settings of the edge-head component. */
export interface EdgeOptions {
  mqttUrl: string;
  deviceId: string;
  window: number;
  threads: number;
  verify: boolean;
  resultTimeoutMs: number;
  planWaitMs: number;
  telemetryMs: number;
  username?: string | undefined;
  password?: string | undefined;
}

/** What happened to one frame. */
export interface FrameReport {
  index: number;
  requestId: string;
  cut: CutInfo;
  /** Where the tail ran: a worker id, or `local` (edge only, or fallback). */
  tailBy: string;
  /** Why the tail ran locally, when it was meant to be offloaded. */
  fallback?: string;
  headMs: number;
  /** Tail compute time as measured by whoever ran it. */
  tailMs: number;
  /** Round trip minus the tail's own time: network, broker and queueing (same-clock differences only). */
  transferMs: number;
  totalMs: number;
  /** Bytes sent for this frame (the request message). */
  requestBytes: number;
  outputs: WireTensor[];
  /** With `verify`: largest difference to the whole model run locally. */
  maxAbsDiff?: number;
}

/** The edge-head component. */
export class EdgeHead {
  private readonly conn: Connection;
  private readonly pending: PendingResults;
  private readonly window: Semaphore;
  private readonly compute = new Semaphore(1);
  private readonly sessions = new Map<string, Promise<InferenceSession>>();
  private plan: Plan | undefined;
  private planWaiters: Array<() => void> = [];
  private telemetryTimer: NodeJS.Timeout | undefined;
  private readonly headSamples = new Map<number, number[]>();
  private transfers: Array<{ bytes: number; seconds: number }> = [];
  private fallbacks = 0;
  private running = new Set<Promise<unknown>>();

  constructor(
    private readonly model: ModelHandle,
    /** The model's per-layer latency on this device, published for the planner. */
    private readonly profile: Profile,
    private readonly opts: EdgeOptions,
    private readonly logger: Logger,
    private readonly clock: Clock = systemClock,
  ) {
    this.conn = new Connection({
      url: opts.mqttUrl,
      clientId: opts.deviceId,
      role: 'device',
      statusTopic: topics.deviceStatus.build({ device: opts.deviceId }),
      logger,
      username: opts.username,
      password: opts.password,
    });
    this.pending = new PendingResults(logger);
    this.window = new Semaphore(opts.window);
  }

  /** The plan in force, if any. */
  get currentPlan(): Plan | undefined {
    return this.plan;
  }

  /** Frames sent and not yet answered. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Connects, listens for its plan and results, and publishes its profile. */
  async start(): Promise<void> {
    const device = this.opts.deviceId;
    await this.conn.start();
    await this.conn.subscribe(topics.result.build({ device }), (_t, payload) => this.onResult(payload));
    await this.conn.subscribe(topics.plan.build({ device }), (_t, payload) => this.onPlan(payload));
    const profile: Profile = { ...this.profile, device: { ...this.profile.device, id: device } };
    await this.conn.publish(topics.deviceProfile.build({ device }), JSON.stringify(profile), {
      qos: 1,
      retain: true,
    });
    this.telemetryTimer = setInterval(() => void this.publishTelemetry(), this.opts.telemetryMs);
    this.telemetryTimer.unref();
  }

  /** Waits until a plan for this device's model is in force, or the timeout passes; true if one is. */
  async waitForPlan(timeoutMs = this.opts.planWaitMs): Promise<boolean> {
    if (this.plan) return true;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.planWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    return this.plan !== undefined;
  }

  /** Runs frames from a source with up to `window` in flight; reports each frame as it completes. */
  async run(frames: AsyncIterable<Frame>, onReport: (r: FrameReport) => void): Promise<void> {
    let failure: unknown;
    for await (const frame of frames) {
      if (failure) break;
      const release = await this.window.acquire();
      const job = this.process(frame)
        .then(onReport)
        .catch((err: unknown) => {
          failure = err;
        })
        .finally(release);
      this.running.add(job);
      void job.finally(() => this.running.delete(job));
    }
    await Promise.all([...this.running]);
    if (failure) throw failure;
  }

  /** Processes one frame end to end. */
  async process(frame: Frame): Promise<FrameReport> {
    const cut = this.cutInForce();
    const requestId = randomUUID();
    const times = { ...emptyTimes(), captured: frame.capturedAt };
    const crossing = await this.compute.run(async () => {
      times.headStart = this.clock.now();
      const out =
        cut.index === 0
          ? frame.inputs
          : await runWire(await this.session(`head:${cut.index}`, cut.index, 'head'), frame.inputs);
      times.headEnd = this.clock.now();
      return out;
    });
    const headMs = times.headEnd - times.headStart;
    this.sample(cut.index, headMs);
    const base = { index: frame.index, requestId, cut, headMs, requestBytes: 0 };
    let report: FrameReport;
    if (cut.index === this.model.layers) {
      report = {
        ...base,
        tailBy: 'local',
        tailMs: 0,
        transferMs: 0,
        totalMs: this.clock.now() - frame.capturedAt,
        outputs: crossing,
      };
    } else {
      report = await this.offload(frame, cut, crossing, requestId, times, base);
    }
    if (this.opts.verify) {
      const whole = await this.compute.run(async () =>
        runWire(await this.session('whole', 0, 'whole'), frame.inputs),
      );
      report.maxAbsDiff = Math.max(
        ...whole.map((t, i) =>
          report.outputs[i] ? maxAbsDiff(t, report.outputs[i]!) : Number.POSITIVE_INFINITY,
        ),
      );
    }
    return report;
  }

  private async offload(
    frame: Frame,
    cut: CutInfo,
    crossing: WireTensor[],
    requestId: string,
    times: ReturnType<typeof emptyTimes>,
    base: Pick<FrameReport, 'index' | 'requestId' | 'cut' | 'headMs' | 'requestBytes'>,
  ): Promise<FrameReport> {
    const device = this.opts.deviceId;
    times.sent = this.clock.now();
    const payload = encodeRequest({
      requestId,
      deviceId: device,
      modelId: this.model.id,
      cutId: cut.index,
      tensors: crossing,
      times,
      deadlineMs: times.sent + this.opts.resultTimeoutMs,
    });
    const answer = this.pending.expect(requestId, this.opts.resultTimeoutMs);
    let fallback: string | undefined;
    try {
      await this.conn.publish(topics.request.build({ device }), payload, { qos: 1 });
      const result = await answer;
      const received = this.clock.now();
      const tailMs = result.times.tailEnd - result.times.tailStart;
      const workerSpan = result.times.replied - result.times.tailReceived;
      const transferMs = Math.max(0, received - times.sent - workerSpan);
      this.transfers.push({ bytes: payload.length, seconds: transferMs / 1000 });
      if (this.transfers.length > 64) this.transfers.shift();
      return {
        ...base,
        requestBytes: payload.length,
        tailBy: result.workerId,
        tailMs,
        transferMs,
        totalMs: received - frame.capturedAt,
        outputs: result.tensors,
      };
    } catch (err) {
      this.pending.cancel(requestId);
      fallback = errorMessage(err);
    }
    this.fallbacks++;
    this.logger.warn({ requestId, cut: cut.index, reason: fallback }, 'running the tail locally');
    const t0 = this.clock.now();
    const outputs = await this.compute.run(async () =>
      runWire(await this.session(`tail:${cut.index}`, cut.index, 'tail'), crossing),
    );
    const tailMs = this.clock.now() - t0;
    return {
      ...base,
      requestBytes: payload.length,
      tailBy: 'local',
      fallback,
      tailMs,
      transferMs: 0,
      totalMs: this.clock.now() - frame.capturedAt,
      outputs,
    };
  }

  private cutInForce(): CutInfo {
    const index = this.plan?.cut.index ?? this.model.layers;
    return this.model.cuts[index]!;
  }

  private session(key: string, k: number, side: 'head' | 'tail' | 'whole'): Promise<InferenceSession> {
    let s = this.sessions.get(key);
    if (!s) {
      const bytes = side === 'whole' ? this.model.bytes : this.model.part(k, side);
      s = createSession(bytes, { threads: this.opts.threads });
      this.sessions.set(key, s);
    }
    return s;
  }

  private onResult(payload: Buffer): void {
    const msg = decodeMessage(payload);
    if (msg.kind === 'result') this.pending.resolve(msg.value);
    else if (msg.kind === 'error') this.pending.fail(msg.value);
  }

  private onPlan(payload: Buffer): void {
    if (payload.length === 0) return;
    const plan = parseJson(PlanSchema, `plan for ${this.opts.deviceId}`, payload);
    if (plan.modelId !== this.model.id) {
      this.logger.warn(
        { planModel: plan.modelId, model: this.model.id },
        'plan is for another model; ignored',
      );
      return;
    }
    const cut = this.model.cuts[plan.cut.index];
    if (!cut || cut.after !== plan.cut.after) {
      this.logger.warn({ cut: plan.cut }, 'plan names a cut this model does not have; ignored');
      return;
    }
    const previous = this.plan?.cut.index;
    this.plan = plan;
    if (previous !== plan.cut.index)
      this.logger.info({ cut: plan.cut.index, after: plan.cut.after, reason: plan.reason }, 'plan applied');
    for (const w of this.planWaiters.splice(0)) w();
  }

  private sample(cut: number, ms: number): void {
    const list = this.headSamples.get(cut) ?? [];
    list.push(ms);
    if (list.length > 64) list.shift();
    this.headSamples.set(cut, list);
  }

  private async publishTelemetry(): Promise<void> {
    if (!this.conn.connected) return;
    const headMs: Record<string, number> = {};
    for (const [cut, list] of this.headSamples) headMs[String(cut)] = median(list);
    const t: DeviceTelemetry = {
      device: this.opts.deviceId,
      at: this.clock.now(),
      loadavg1: loadavg()[0] ?? 0,
      cores: cpus().length,
      cpuPercent: 0,
      headMs,
      transfers: this.transfers.splice(0),
      framesInFlight: this.pending.size,
      fallbacks: this.fallbacks,
    };
    await this.conn
      .publish(topics.deviceTelemetry.build({ device: this.opts.deviceId }), JSON.stringify(t), { qos: 0 })
      .catch(() => undefined);
  }

  /** Waits for frames in flight, then disconnects and releases sessions. Idempotent. */
  async stop(): Promise<void> {
    if (this.telemetryTimer) clearInterval(this.telemetryTimer);
    this.telemetryTimer = undefined;
    await Promise.allSettled([...this.running]);
    await this.conn.stop();
    for (const s of this.sessions.values()) void s.then((x) => x.release()).catch(() => undefined);
    this.sessions.clear();
  }
}

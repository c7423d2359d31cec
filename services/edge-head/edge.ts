/**
 * The edge-head: runs the head of the model (nodes 1..k of the planner's cut) on each frame, publishes the crossing
 * tensors as a request, and waits for a tail worker's result. Up to `window` frames are in flight, so the next
 * frame's head runs while earlier frames are on the wire or in a tail. When a worker answers with an error or not
 * at all before the deadline, or the broker is unreachable, the device runs the tail itself: no frame is lost
 * (faults.ts). The device times what it sends (uplink.ts) and probes its link while it offloads nothing, so the planner
 * knows the link before it ever offloads, and after an upload slower than its deadline, so a slower link is confirmed
 * (or a stall told apart from it) at once. For experiments the uplink and the device's speed can be emulated
 * (measurement/shaping.ts, measurement/device/emulation.ts).
 */
import { randomUUID } from 'node:crypto';
import { cpus } from 'node:os';
import {
  ComputeStretch,
  type DeviceEmulation,
  emulatedProfile,
  profiledSpan,
  RunQueue,
  runQueueContention,
} from '../../measurement/device/emulation.ts';
import { shapeUplink, type UplinkShape } from '../../measurement/shaping.ts';
import type { CutInfo, ModelHandle } from '../../model/handle.ts';
import { type ClassOutput, frameTop1 } from '../../model/labels.ts';
import { maxAbsDiff, zeroTensors } from '../../model/runtime.ts';
import { SessionThread } from '../../model/session-thread.ts';
import { WeightFiles } from '../../model/weight-files.ts';
import { type Clock, realTimers, systemClock, type Timers } from '../../runtime/clock.ts';
import { errorMessage } from '../../runtime/errors.ts';
import type { Logger } from '../../runtime/log.ts';
import { LruCache } from '../../runtime/lru.ts';
import { type Connection, serviceConnection } from '../../runtime/mqtt.ts';
import { Semaphore } from '../../runtime/semaphore.ts';
import { emptyTimes, encodeRequest, type InferenceResult, type WireTensor } from '../../schemas/codec.ts';
import { type Plan, PlanSchema, parseJson } from '../../schemas/messages.ts';
import type { Profile } from '../../schemas/profile.ts';
import { topics } from '../../schemas/topics.ts';
import { type DeadlineOptions, frameDeadline, RequestChannel } from './faults.ts';
import type { FrameReport } from './frame-report.ts';
import { FRAME_REPORT_BACKLOG_BYTES, FrameReportStream } from './frame-stream.ts';
import type { Frame } from './frames.ts';
import { LoopStalls } from './loop-stalls.ts';
import { EdgeMetrics } from './metrics.ts';
import { FallbackError, fallbackKind } from './pending.ts';
import { LoadMeter, TelemetryRecorder } from './telemetry.ts';
import { probeBurst, publishPacketBytes, UplinkMeter } from './uplink.ts';

/** Settings of the edge-head component. */
export interface EdgeOptions {
  /** Timers of the periodic telemetry and the waits (tests drive them); default real ones. */
  timers?: Timers;
  mqttUrl: string;
  /** How long `start` waits for the broker before frames run on the device alone (default BROKER_WAIT_MS). */
  brokerWaitMs?: number;
  deviceId: string;
  window: number;
  threads: number;
  /** Sessions kept (heads, fallback tails, the whole model), least recently used evicted. Default 4. */
  sessionCache?: number;
  /**
   * Weight files (model/weight-files.ts): sessions reference a copy of the model's weights here instead of holding
   * their own. Absent: each session holds its own.
   */
  weightsDir?: string | undefined;
  verify: boolean;
  /** Deadline without a predicted plan, and the upper bound of derived deadlines (ms). */
  resultTimeoutMs: number;
  planWaitMs: number;
  telemetryMs: number;
  username?: string | undefined;
  password?: string | undefined;
  /** PEM file of the CA to trust for mqtts:// and wss:// (MQTT_CA_FILE). */
  mqttCaFile?: string | undefined;
  /** Deadline = factor x predicted (transfer + server) ms, at least `deadlineMinMs` (faults.ts). Default 3. */
  deadlineFactor?: number;
  /** Lower bound of derived deadlines (ms). Default 250. */
  deadlineMinMs?: number;
  /** EMULATION: shape what the device sends (rate and per-message set-up). */
  uplink?: UplinkShape | undefined;
  /** EMULATION: stretch the device's compute to a slower device's. */
  emulation?: DeviceEmulation | undefined;
  /** While nothing is offloaded, probe the uplink this often (ms); 0 never probes. Default 15000. */
  probeMs?: number;
  /**
   * Publish each frame's report on the device's `frames` topic (frame-stream.ts), rate-limited; default false here,
   * true in `edgecut edge` (FRAME_REPORTS).
   */
  frameReports?: boolean;
  /** The model's class-vector output and its names (model/labels.ts): each report then carries its top-1. */
  classes?: ClassOutput | undefined;
}

export type { FrameReport } from './frame-report.ts';

/** Sessions the device keeps by default (SESSION_CACHE). */
export const DEFAULT_SESSION_CACHE = 4;

/** A probe burst spoiled by a stall of the device's own loop runs again after this long (ms). */
export const PROBE_AGAIN_MS = 1000;
/** Telemetry waits for a probe burst to end for at most this long (ms). */
const PROBE_HOLD_MS = 2000;

/** How long `start` waits for the broker before frames start on the device alone (ms). */
export const BROKER_WAIT_MS = 5000;

/** How long offloading pauses after an upload slower than its deadline, unless a new plan comes first (ms). */
export const SLOW_UPLINK_PAUSE_MS = 5000;

type ReportBase = Pick<
  FrameReport,
  'index' | 'requestId' | 'cut' | 'headMs' | 'requestBytes' | 'hostMs' | 'waitMs'
>;

/** The edge-head component. */
export class EdgeHead {
  private readonly conn: Connection;
  private readonly channel: RequestChannel;
  private readonly window: Semaphore;
  private readonly compute = new Semaphore(1);
  private readonly stretch: ComputeStretch;
  private readonly load: LoadMeter;
  private readonly telemetry: TelemetryRecorder;
  private readonly runQueue: RunQueue | undefined;
  private readonly uplink: UplinkMeter;
  private readonly stalls: LoopStalls;
  /** The per-frame reports for dashboards, when on. */
  private readonly frameStream: FrameReportStream | undefined;
  private probing: Promise<void> | undefined;
  private lastProbeAt = Number.NEGATIVE_INFINITY;
  private readonly stopProbe = new AbortController();
  /** An upload took longer than its frame's deadline under plan `seq`: offloading pauses until a new plan. */
  private slowUplink: { seq: number; until: number; uploadMs: number } | undefined;
  private readonly deadlines: DeadlineOptions;
  /** Sessions, each in a thread of its own (model/session-thread.ts): loading and running one never stalls the loop. */
  /** Copies of the model's weights that sessions map instead of holding their own (model/weight-files.ts). */
  private readonly weights: WeightFiles;
  private readonly sessions: LruCache<string, Promise<SessionThread>>;
  /** Keys of the sessions that finished loading. */
  private readonly loaded = new Set<string>();
  /** The newest plan received, which may wait for its head session before it is put in force. */
  private incoming: Plan | undefined;
  private plan: Plan | undefined;
  private planWaiters: Array<() => void> = [];
  /** Cancels the periodic telemetry. */
  private stopTelemetry: (() => void) | undefined;
  private readonly timers: Timers;
  private fallbackCount = 0;
  /** When the first request at each cut missed its deadline (later requests that miss there are reported late). */
  private readonly firstMiss = new Map<number, number>();
  private started = false;
  private stopping: Promise<void> | undefined;
  private running = new Set<Promise<unknown>>();

  constructor(
    private readonly model: ModelHandle,
    /** The model's per-layer latency on this device, published for the planner. */
    private readonly profile: Profile,
    private readonly opts: EdgeOptions,
    private readonly logger: Logger,
    private readonly clock: Clock = systemClock,
    metrics = new EdgeMetrics(opts.deviceId),
  ) {
    this.timers = opts.timers ?? realTimers;
    this.conn = serviceConnection(
      'device',
      opts.deviceId,
      { ...opts, connectTimeoutMs: undefined },
      logger,
      opts.uplink ? { wrapStream: shapeUplink(opts.uplink, clock) } : {},
    );
    this.channel = new RequestChannel(this.conn, opts.deviceId, logger, this.timers);
    // An evicted session is released behind the computation in progress: sessions are taken and run inside one
    // turn of `compute`, so none is released while it runs.
    this.sessions = new LruCache(opts.sessionCache ?? DEFAULT_SESSION_CACHE, (key, session) => {
      this.loaded.delete(key);
      void this.compute.run(async () => (await session).release()).catch(() => undefined);
    });
    this.weights = new WeightFiles(opts.weightsDir, (fields, msg) => logger.warn(fields, msg));
    this.stalls = new LoopStalls(clock);
    this.uplink = new UplinkMeter(clock, this.stalls);
    this.conn.onPublish = (topic, bytes, acked) => this.uplink.track(publishPacketBytes(topic, bytes), acked);
    this.channel.onErrorReply = (code) => metrics.errorReply(code);
    this.conn.onHandlerError = () => metrics.handlerError();
    this.frameStream = opts.frameReports
      ? new FrameReportStream(
          opts.deviceId,
          {
            // Never queued: not while offline (mqtt.js would keep QoS 0 messages), nor behind a backed-up socket or
            // requests still uploading (an emulated uplink holds its backlog out of the socket's sight).
            ready: () =>
              this.conn.connected &&
              (this.conn.mqtt.stream?.writableLength ?? 0) <= FRAME_REPORT_BACKLOG_BYTES &&
              this.uplink.outstandingBytes() <= FRAME_REPORT_BACKLOG_BYTES,
            publish: (topic, body) => this.conn.publish(topic, body, { qos: 0 }),
          },
          clock,
        )
      : undefined;
    this.window = new Semaphore(opts.window);
    // The run queue: the other processes' load within a second, for the telemetry and emulated contention.
    this.runQueue = RunQueue.start();
    const contended = this.runQueue && opts.emulation?.contention;
    this.stretch = new ComputeStretch(
      opts.emulation?.factor ?? 1,
      clock,
      undefined,
      contended ? runQueueContention(this.runQueue!, cpus().length) : undefined,
    );
    this.load = new LoadMeter(logger);
    // An emulated device without contention has its CPU to itself: the host's load is not its load.
    const isolated = opts.emulation !== undefined && !opts.emulation.contention;
    this.telemetry = new TelemetryRecorder(
      this.load,
      this.uplink,
      clock.now,
      isolated,
      isolated ? undefined : this.runQueue,
    );
    const { deadlineFactor: factor = 3, deadlineMinMs: minMs = 250, resultTimeoutMs: maxMs } = opts;
    this.deadlines = { factor, minMs, maxMs };
  }

  /** The plan in force, if any. */
  get currentPlan(): Plan | undefined {
    return this.plan;
  }

  /** True while connected to the broker. */
  get connected(): boolean {
    return this.conn.connected;
  }

  /** Frames sent and not yet answered. */
  get inFlight(): number {
    return this.channel.inFlight;
  }

  /** onnxruntime sessions the device holds now (at most SESSION_CACHE). */
  get sessionsKept(): number {
    return this.sessions.size;
  }

  /** Frames whose tail ran locally although they were meant to be offloaded. */
  get fallbacks(): number {
    return this.fallbackCount;
  }

  /** Frame reports published and skipped (rate limit, link down or backed up) on the `frames` topic. */
  get frameReports(): { published: number; skipped: number } {
    return { published: this.frameStream?.published ?? 0, skipped: this.frameStream?.skipped ?? 0 };
  }

  /** Results (or error replies) that came for no waiting request: after a fallback, or duplicates. Ignored. */
  get lateResults(): number {
    return this.channel.ignored;
  }

  /** Connects, listens for its plan and results, and publishes its profile. Idempotent. */
  async start(): Promise<void> {
    // The runtime threads start now, not when the first frame, prepare or request needs one.
    await SessionThread.prestart();
    if (this.started) return;
    this.started = true;
    await this.weights.checkDir();
    this.stalls.start();
    // Frames do not wait for the broker: until it is reachable there is no plan, and every frame runs on the device.
    const connected = this.conn.start().then(() => this.online());
    const waitMs = this.opts.brokerWaitMs ?? BROKER_WAIT_MS;
    let cancel = (): void => undefined;
    const waited = await Promise.race([
      connected.then(() => false),
      new Promise<boolean>((resolve) => {
        cancel = this.timers.after(waitMs, () => resolve(true));
      }),
    ]).finally(() => cancel());
    if (waited) {
      this.logger.warn(
        { url: this.opts.mqttUrl, waitedMs: waitMs },
        'broker unreachable: frames run on the device until it is; offloading starts when it connects',
      );
      connected.catch((err: unknown) =>
        this.logger.error({ err: errorMessage(err) }, 'no broker connection: frames run on the device only'),
      );
    }
    this.load.start();
    this.stopTelemetry = this.timers.every(this.opts.telemetryMs, () => {
      if (this.idleLink() && this.clock.now() - this.lastProbeAt >= (this.opts.probeMs ?? 15_000))
        this.probe();
      // A probe burst is one piece of evidence: its samples go out together when it ends (a part of it, only
      // the small probes, fits a fast link by the fixed cost of a message), unless it takes long (a slow or
      // dead link, whose lower bounds the planner needs now).
      if (this.probing && this.clock.now() - this.lastProbeAt < PROBE_HOLD_MS) return;
      void this.publishTelemetry();
    });
  }

  /** Once connected: listens for results and plans, publishes the profile, probes the link. */
  private async online(): Promise<void> {
    if (this.stopping !== undefined) return;
    const device = this.opts.deviceId;
    const client = this.conn.mqtt;
    client.on('close', () => {
      this.uplink.reset();
      this.channel.onConnectionLost();
    });
    client.on('connect', () => this.onReconnect());
    await this.conn.subscribe(topics.result.build({ device }), (_t, payload) =>
      this.channel.onAnswer(payload),
    );
    await this.conn.subscribe(topics.plan.build({ device }), (_t, payload) => this.onPlan(payload));
    await this.publishProfile();
    // The first frames need the head of the plan in force (everything, before a plan comes): loading it blocks the
    // loop for seconds with a large model, so it is loaded before the probe, not during it.
    const k = this.cutOf(this.incoming ?? this.plan).index;
    const head = k > 0 ? this.session(`head:${k}`, k, 'head') : Promise.resolve();
    void head.catch(() => undefined).then(() => this.probe());
  }

  /** True when the plan sends nothing (none yet, or everything on the device) and nothing is in flight. */
  private idleLink(): boolean {
    const cut = this.plan?.cut.index ?? this.model.layers;
    return cut === this.model.layers && this.channel.inFlight === 0;
  }

  /** Starts one probe burst (uplink.ts) unless one is running, probing is off, or the broker is away. */
  private probe(): void {
    if ((this.opts.probeMs ?? 15_000) <= 0 || this.probing || !this.conn.connected) return;
    if (this.stopping !== undefined) return;
    this.lastProbeAt = this.clock.now();
    const topic = topics.deviceProbe.build({ device: this.opts.deviceId });
    const spoiled = this.uplink.spoiled;
    this.probing = probeBurst(
      (bytes) => this.conn.publish(topic, Buffer.alloc(bytes), { qos: 1 }),
      this.clock.now,
      this.stopProbe.signal,
    )
      .then((sizes) => {
        const lost = this.uplink.spoiled - spoiled;
        this.logger.debug({ sizes, spoiled: lost }, 'uplink probed');
        // Probes timed while the device's loop stood still were dropped: the burst runs again soon.
        if (lost > 0) this.lastProbeAt = this.clock.now() - (this.opts.probeMs ?? 15_000) + PROBE_AGAIN_MS;
        void this.publishTelemetry();
      })
      .catch((err: unknown) => this.logger.debug({ err: errorMessage(err) }, 'uplink probe failed'))
      .finally(() => {
        this.probing = undefined;
      });
  }

  /** Waits until a plan for this device's model is in force, or the timeout passes; true if one is. */
  async waitForPlan(timeoutMs = this.opts.planWaitMs): Promise<boolean> {
    if (this.plan) return true;
    await new Promise<void>((resolve) => {
      const cancel = this.timers.after(timeoutMs, resolve);
      this.planWaiters.push(() => {
        cancel();
        resolve();
      });
    });
    return this.plan !== undefined;
  }

  /** Runs frames from a source with up to `window` in flight; reports each frame exactly once as it completes. */
  async run(frames: AsyncIterable<Frame>, onReport: (r: FrameReport) => void): Promise<void> {
    let failure: unknown;
    const jobs = new Set<Promise<void>>();
    const source = frames[Symbol.asyncIterator]();
    try {
      for (;;) {
        // A slot first, then the frame: a frame is captured when the pipeline can take it, so its total (capture to
        // answer) does not include waiting for an earlier frame to finish.
        const release = await this.window.acquire();
        const next = failure
          ? undefined
          : await source.next().catch((err: unknown) => {
              release();
              throw err;
            });
        if (!next || next.done) {
          release();
          break;
        }
        const frame = next.value;
        const job = this.process(frame)
          .then((r) => {
            this.frameStream?.offer(r);
            onReport(r);
          })
          .catch((err: unknown) => {
            failure ??= err;
          })
          .finally(release);
        jobs.add(job);
        this.running.add(job);
        void job.finally(() => {
          jobs.delete(job);
          this.running.delete(job);
        });
      }
    } finally {
      // Frames already taken are answered even when the source fails.
      await Promise.all([...jobs]);
      await source.return?.(undefined);
    }
    if (failure) throw failure;
  }

  /** Processes one frame end to end. */
  async process(frame: Frame): Promise<FrameReport> {
    // The plan in force when the frame starts: its head, deadline and pause all follow this plan, also when a new one
    // comes while the frame runs.
    const plan = this.plan;
    const cut = this.cutOf(plan);
    const requestId = randomUUID();
    const times = { ...emptyTimes(), captured: frame.capturedAt };
    // Loading a session (once per cut) is set-up, not inference: it is neither timed nor stretched.
    let othersDuring: number | undefined;
    const head = await this.compute.run(async () => {
      const session =
        cut.index === 0 ? undefined : await this.session(`head:${cut.index}`, cut.index, 'head');
      this.runQueue?.computing(true);
      const mark = this.runQueue?.mark();
      try {
        return await this.stretch.run(
          async () => (session ? session.run(frame.inputs) : frame.inputs),
          profiledSpan(this.profile, 0, cut.index),
        );
      } finally {
        if (mark) othersDuring = this.runQueue!.othersSince(mark);
        this.runQueue?.computing(false);
      }
    });
    times.headStart = head.start;
    times.headEnd = head.start + head.ms;
    this.telemetry.head(cut.index, head.ms, othersDuring);
    const base: ReportBase = {
      index: frame.index,
      requestId,
      cut,
      headMs: head.ms,
      waitMs: Math.max(0, head.start - frame.capturedAt),
      requestBytes: 0,
      ...(this.opts.emulation ? { hostMs: { head: head.realMs } } : {}),
    };
    const report: FrameReport =
      cut.index === this.model.layers
        ? {
            ...base,
            tailBy: 'local',
            tailMs: 0,
            transferMs: 0,
            totalMs: this.clock.now() - frame.capturedAt,
            outputs: head.value,
          }
        : await this.offload(frame, plan, head.value, times, base);
    if (this.opts.classes) {
      const top1 = frameTop1(report.outputs, this.opts.classes);
      if (top1) report.top1 = top1;
    }
    if (this.opts.verify) {
      const whole = await this.compute.run(async () =>
        (await this.session('whole', 0, 'whole')).run(frame.inputs),
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
    plan: Plan | undefined,
    crossing: WireTensor[],
    times: ReturnType<typeof emptyTimes>,
    base: ReportBase,
  ): Promise<FrameReport> {
    const device = this.opts.deviceId;
    const deadlineMs = frameDeadline(plan, this.deadlines, {
      aheadBytes: this.uplink.outstandingBytes(),
      requestBytes: base.cut.bytes,
    });
    // The link is far slower than the plan assumed: a request written now would only queue behind the earlier one
    // (or, after an upload that took longer than its deadline, behind the next frames'). The frame runs here, and
    // the planner, which has the same evidence in the telemetry, follows with a new plan.
    const busy = this.uplink.busyMs();
    const paused = this.slowUplink;
    const now = this.clock.now();
    const stillPaused = paused && paused.seq === this.plan?.seq && now < paused.until;
    if (busy > deadlineMs || stillPaused) {
      const why =
        busy > deadlineMs
          ? `the uplink has been sending an earlier message for ${Math.round(busy)} ms, longer than this frame's deadline of ${Math.round(deadlineMs)} ms`
          : `an earlier request took ${Math.round(paused!.uploadMs)} ms to upload, longer than its deadline; offloading waits for the next plan (at most ${Math.round((paused!.until - now) / 1000)} s more)`;
      return this.tailLocally(
        frame,
        crossing,
        { ...base, deadlineMs },
        new FallbackError('link-busy', `not sent: ${why}`),
      );
    }
    times.sent = now;
    const payload = encodeRequest({
      requestId: base.requestId,
      deviceId: device,
      modelId: this.model.id,
      cutId: base.cut.index,
      tensors: crossing,
      times,
      deadlineMs: times.sent + deadlineMs,
    });
    const sent = { ...base, requestBytes: payload.length, deadlineMs };
    let result: InferenceResult;
    let uploadedAt: number | undefined;
    try {
      result = await this.channel.send(base.requestId, payload, deadlineMs, () => {
        uploadedAt = this.clock.now();
        const uploadMs = uploadedAt - times.sent;
        if (uploadMs <= deadlineMs) return;
        // Offloading pauses while the plan this frame followed is in force (a newer plan has its own deadlines).
        if (plan && plan.seq === this.plan?.seq)
          this.slowUplink = { seq: plan.seq, until: this.clock.now() + SLOW_UPLINK_PAUSE_MS, uploadMs };
        // One slow upload is a link that changed, or a stall: a probe burst on the idle link tells which at once,
        // and goes out with the slow sample, so the planner acts on both without waiting out its hold.
        this.probe();
      });
    } catch (err) {
      return this.tailLocally(frame, crossing, sent, err, times.sent);
    }
    const received = this.clock.now();
    const workerSpan = result.times.replied - result.times.tailReceived;
    const transferMs = Math.max(0, received - times.sent - workerSpan);
    // The way to the worker and back, which the uplink samples (to the PUBACK) do not see.
    if (uploadedAt !== undefined) this.telemetry.returned(received - uploadedAt - workerSpan);
    return {
      ...sent,
      tailBy: result.workerId,
      tailMs: result.times.tailEnd - result.times.tailStart,
      queueMs: Math.max(0, result.times.tailStart - result.times.tailReceived),
      transferMs,
      totalMs: received - frame.capturedAt,
      outputs: result.tensors,
    };
  }

  private async tailLocally(
    frame: Frame,
    crossing: WireTensor[],
    sent: ReportBase & { deadlineMs: number },
    err: unknown,
    sentAt?: number,
  ): Promise<FrameReport> {
    this.fallbackCount++;
    const reason = errorMessage(err);
    if (fallbackKind(err) === 'deadline') {
      // The first requests at a cut may find the worker loading its session for that cut (seconds for a large
      // model): a miss of a request sent before the first miss at the cut was noticed (with frames in flight, all
      // of them met the same loading) is not evidence of a slow server. A request sent after it that misses is.
      const k = sent.cut.index;
      const first = this.firstMiss.get(k);
      if (first === undefined) this.firstMiss.set(k, this.clock.now());
      else if (sentAt !== undefined && sentAt > first)
        this.telemetry.missed(k, sent.requestBytes, sent.deadlineMs);
    }
    this.logger.warn({ requestId: sent.requestId, cut: sent.cut.index, reason }, 'running the tail locally');
    const k = sent.cut.index;
    const tail = await this.compute.run(async () => {
      const session = await this.session(`tail:${k}`, k, 'tail');
      return this.stretch.run(() => session.run(crossing), profiledSpan(this.profile, k, this.model.layers));
    });
    return {
      ...sent,
      tailBy: 'local',
      fallback: reason,
      fallbackKind: fallbackKind(err),
      tailMs: tail.ms,
      ...(sent.hostMs ? { hostMs: { ...sent.hostMs, tail: tail.realMs } } : {}),
      transferMs: 0,
      totalMs: this.clock.now() - frame.capturedAt,
      outputs: tail.value,
    };
  }

  private cutOf(plan: Plan | undefined): CutInfo {
    const index = plan?.cut.index ?? this.model.layers;
    return this.model.cuts[index]!;
  }

  private session(key: string, k: number, side: 'head' | 'tail' | 'whole'): Promise<SessionThread> {
    let s = this.sessions.get(key);
    if (!s) {
      // With a weight file, sessions reference the model's weights in it; without, the whole model's bytes stay the
      // model's (copied to the thread) and a part is built for the session alone.
      const created = this.weights
        .forModel(this.model)
        .then((w) => {
          const opts = { threads: this.opts.threads, ...(w ? { weightsDir: w.dir } : {}) };
          if (side !== 'whole') return SessionThread.create(this.model.part(k, side, w?.file), opts, true);
          return w
            ? SessionThread.create(this.model.referencing(w.file), opts, true)
            : SessionThread.create(this.model.bytes, opts);
        })
        .then(async (session) => {
          // Warmed up before use: the first run of a session allocates its buffers and would slow the first frame.
          const inputs = side === 'tail' ? this.model.cuts[k]!.tensors : this.model.inputs;
          await session
            .run(zeroTensors(inputs))
            .catch((err: unknown) =>
              this.logger.debug({ err: errorMessage(err), session: key }, 'session warm-up failed'),
            );
          return session;
        });
      s = created;
      this.sessions.set(key, created);
      created.then(
        () => {
          if (this.sessions.peek(key) === created) this.loaded.add(key);
        },
        () => {
          if (this.sessions.peek(key) === created) this.sessions.delete(key);
        },
      );
    }
    return s;
  }

  private onReconnect(): void {
    if (this.stopping !== undefined) return;
    // The connection publishes the retained profile again (a restarted broker may have lost it).
    this.logger.info('broker reachable again: offloading resumes');
  }

  /** Publishes the profile, retained; with device emulation, scaled to the emulated device. */
  private async publishProfile(): Promise<void> {
    const { emulation, deviceId } = this.opts;
    const p = emulation ? emulatedProfile(this.profile, emulation) : this.profile;
    await this.conn.publish(
      topics.deviceProfile.build({ device: deviceId }),
      JSON.stringify({ ...p, device: { ...p.device, id: deviceId } }),
      { qos: 1, retain: true },
    );
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
    this.incoming = plan;
    // A new cut's head is loaded before the plan is put in force: until then frames keep the cut in force, so no
    // frame waits for the load (seconds for a large model). The first plan is put in force at once.
    const k = plan.cut.index;
    const key = `head:${k}`;
    if (this.plan && this.plan.cut.index !== k && k > 0 && !this.loaded.has(key)) {
      const started = this.clock.now();
      this.session(key, k, 'head').then(
        () => {
          if (this.incoming !== plan) return;
          this.logger.debug(
            { cut: k, ms: Math.round(this.clock.now() - started) },
            'head loaded for the new plan',
          );
          this.applyPlan(plan);
        },
        (err: unknown) => {
          this.logger.warn({ cut: k, err: errorMessage(err) }, 'loading the head of the new plan failed');
          if (this.incoming === plan) this.applyPlan(plan);
        },
      );
      return;
    }
    this.applyPlan(plan);
  }

  private applyPlan(plan: Plan): void {
    const previous = this.plan?.cut.index;
    this.plan = plan;
    if (previous !== plan.cut.index)
      this.logger.info({ cut: plan.cut.index, after: plan.cut.after, reason: plan.reason }, 'plan applied');
    for (const w of this.planWaiters.splice(0)) w();
  }

  private async publishTelemetry(): Promise<void> {
    if (this.stopping !== undefined || !this.conn.connected) return;
    const t = this.telemetry.collect(
      {
        device: this.opts.deviceId,
        framesInFlight: this.channel.inFlight,
        window: this.opts.window,
        fallbacks: this.fallbackCount,
      },
      this.clock.now,
    );
    await this.conn
      .publish(topics.deviceTelemetry.build({ device: this.opts.deviceId }), JSON.stringify(t), { qos: 1 })
      .catch(() => undefined);
  }

  /** Waits for frames in flight, then disconnects and releases sessions. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    this.stopTelemetry?.();
    this.stopTelemetry = undefined;
    // A probe is not waited for: with the broker gone its PUBACK never comes (the connection's end drops it).
    this.stopProbe.abort();
    await Promise.allSettled([...this.running]);
    this.load.stop();
    this.stalls.stop();
    this.runQueue?.stop();
    if (this.started) await this.conn.stop();
    this.sessions.clear();
    this.loaded.clear();
    if (this.fallbackCount > 0 || this.channel.ignored > 0 || (this.frameStream?.skipped ?? 0) > 0)
      this.logger.info(
        {
          fallbacks: this.fallbackCount,
          lateResults: this.channel.ignored,
          ...(this.frameStream ? { frameReports: this.frameReports } : {}),
        },
        'edge stopped',
      );
  }
}

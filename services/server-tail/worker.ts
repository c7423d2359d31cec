/**
 * The server-tail worker: takes inference requests (through a shared subscription when a group is set), runs the
 * tail of the model from the request's cut to the end, and replies on the requesting device's result topic. A bad
 * request gets an Error reply naming the problem, and the worker goes on with the next one. For experiments it can
 * play a server slower than this host (EMULATE_DEVICE, measurement/device/emulation.ts), as the edge can.
 */
import { readdir } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import {
  ComputeStretch,
  type DeviceEmulation,
  type DeviceSpec,
  emulatedProfile,
  modelNames,
  profiledSpan,
  RunQueue,
  resolveEmulation,
  runQueueContention,
} from '../../measurement/device/emulation.ts';
import { hostBench } from '../../measurement/device/host.ts';
import { BUILTIN_PRESETS, type Preset } from '../../measurement/device/presets.ts';
import { readProfileFile } from '../../measurement/profile-io.ts';
import { hostDevice, profileModel } from '../../measurement/profiler.ts';
import { ModelDirectory } from '../../model/directory.ts';
import type { ModelHandle } from '../../model/handle.ts';
import { zeroTensors } from '../../model/runtime.ts';
import { SessionThread } from '../../model/session-thread.ts';
import { WeightFiles } from '../../model/weight-files.ts';
import { median } from '../../planning/stats.ts';
import { type Clock, realTimers, systemClock, type Timers } from '../../runtime/clock.ts';
import { errorMessage } from '../../runtime/errors.ts';
import type { Logger } from '../../runtime/log.ts';
import { LruCache } from '../../runtime/lru.ts';
import { type Connection, serviceConnection } from '../../runtime/mqtt.ts';
import {
  decodeMessage,
  type ErrorCode,
  encodeError,
  encodeResult,
  type InferenceRequest,
  WireFormatError,
  type WireTensor,
} from '../../schemas/codec.ts';
import {
  parseJson,
  type TailPrepare,
  TailPrepareSchema,
  type WorkerTelemetry,
} from '../../schemas/messages.ts';
import { type Profile, ProfileError } from '../../schemas/profile.ts';
import { sharedFilter, topics } from '../../schemas/topics.ts';
import { FairQueue } from './fair-queue.ts';
import { TailMetrics } from './metrics.ts';
import { checkRequestTensors, RequestError } from './validate.ts';

/** Settings of a tail worker (parsed by `config.ts`). */
/** Requests one device may have waiting on a worker, by default. */
export const DEFAULT_DEVICE_QUEUE = 32;

export interface TailWorkerOptions {
  /** Timers of the periodic telemetry and the models directory's rescan (tests drive them); default real ones. */
  timers?: Timers;
  mqttUrl: string;
  workerId: string;
  modelsDir: string;
  /** Shared-subscription group; empty subscribes plainly (every worker then sees every request). */
  group: string;
  concurrency: number;
  /** Requests one device may have waiting; more are refused with `overloaded`. Default {@link DEFAULT_DEVICE_QUEUE}. */
  deviceQueue?: number;
  threads: number;
  maxRequestBytes: number;
  sessionCache: number;
  /**
   * Weight files (model/weight-files.ts): tails reference a copy of their model's weights here instead of holding
   * their own. Absent: each tail holds its own.
   */
  weightsDir?: string | undefined;
  telemetryMs: number;
  /** Timed runs per layer when profiling each model at start; 0 publishes no profiles. */
  profileRuns: number;
  /**
   * A directory of profiles measured beforehand (`edgecut profile MODEL --out DIR/NAME.json`): a model whose content
   * hash one of them names is given that profile instead of being profiled at start (so that every run of an
   * experiment emulates the same device). Absent: every model is profiled.
   */
  profilesDir?: string;
  /** How often the models directory is rescanned for new models to profile (default 5 s). */
  modelWatchMs?: number;
  username?: string | undefined;
  password?: string | undefined;
  /** PEM file of the CA to trust for mqtts:// and wss:// (MQTT_CA_FILE). */
  mqttCaFile?: string | undefined;
  /** Give up connecting at start after this long (ms); default: keep trying. */
  connectTimeoutMs?: number;
  /** EMULATION: run each tail as slowly as this device would (EMULATE_DEVICE); `none` or absent: this host. */
  emulateDevice?: DeviceSpec;
  /** With `emulateDevice`: contention for this host's CPUs slows the emulated device too. */
  emulateContention?: boolean;
  /** Presets `emulateDevice` may name (built-in and the user's). */
  presetList?: readonly Preset[];
}

/** A model emulated on this worker: this host's profile of it and the stretch of its tails. */
interface Emulated {
  hostProfile: Profile;
  stretch: ComputeStretch;
  emulation: DeviceEmulation;
}

/** Rescan period of the models directory for models added after start. */
const MODEL_WATCH_MS = 5000;

/** Prepares (planners' requests to load a tail) waiting at once; more are dropped with a warning. */
const MAX_PREPARES = 8;

/**
 * Guesses (speculative prepares, sent while a device's link is still being measured) loaded at once: the planner sends
 * two, and both must be ready by the time the first plan comes (AlexNet's tails take 3-4 s each; one after the other,
 * the second was still waiting when the plan for it came). A plan's prepare has a runtime thread of its own beside
 * them ({@link RUNTIME_THREADS}).
 */
export const GUESS_LOADS = 2;

/** Runtime threads of a worker: one per guess loading at once, and one for a plan's prepare or the tail in use. */
export const RUNTIME_THREADS = GUESS_LOADS + 1;

/** A tail worker component. */
export class TailWorker {
  private readonly conn: Connection;
  private readonly models: ModelDirectory;
  /** Copies of the models' weights that tail sessions map instead of holding their own (model/weight-files.ts). */
  private readonly weights: WeightFiles;
  private readonly slots: FairQueue;
  /** Tail sessions, each in a thread of its own (model/session-thread.ts), so loading one blocks nothing else. */
  private readonly sessions: LruCache<string, Promise<SessionThread>>;
  /** Keys (`<modelId>:<cut>`) of the cached sessions that finished loading: the telemetry's `warm`. */
  private readonly ready = new Set<string>();
  /**
   * Tails being prepared for the planner: plans' prepares one at a time, guesses at most {@link GUESS_LOADS} at once
   * (a burst of prepares must not load many at once).
   */
  private preparing: Promise<void> = Promise.resolve();
  /** The prepares waiting their turn, by key, in two lanes: plans' prepares and speculative ones. */
  private readonly queuedPrepares = new Map<string, TailPrepare>();
  /** Prepares loading now, per lane. */
  private readonly prepareRunning = { plan: 0, guess: 0 };
  private readonly latencies = new Map<string, number[]>();
  /** Cancel the periodic telemetry and rescans. */
  private stopTelemetry: (() => void) | undefined;
  private readonly timers: Timers;
  private served = 0;
  /** `served` and the time at the previous telemetry (or the start), for its throughput. */
  private lastServed = { count: 0, at: Number.NaN };
  /** The last throughput figure (results per second), once a telemetry period has passed. */
  private servedRate: number | undefined;
  private stopping = false;
  private profiling: Promise<void> | undefined;
  /** Models profiled (or tried) so far, by content hash. */
  private readonly profiled = new Set<string>();
  private stopWatch: (() => void) | undefined;
  private watching = false;
  private errors = 0;
  /** Models emulated as a slower device, by id (EMULATE_DEVICE). */
  private readonly emulated = new Map<string, Emulated>();

  constructor(
    private readonly opts: TailWorkerOptions,
    private readonly logger: Logger,
    private readonly clock: Clock = systemClock,
    private readonly metrics = new TailMetrics(opts.workerId),
  ) {
    this.timers = opts.timers ?? realTimers;
    this.conn = serviceConnection('worker', opts.workerId, opts, logger);
    this.models = new ModelDirectory(opts.modelsDir, logger);
    this.weights = new WeightFiles(opts.weightsDir, (fields, msg) => logger.warn(fields, msg));
    this.slots = new FairQueue(opts.concurrency, opts.deviceQueue ?? DEFAULT_DEVICE_QUEUE);
    this.conn.onHandlerError = () => metrics.handlerError();
    metrics.watch({
      queueDepth: () => this.slots.waiting + this.slots.running,
      deviceQueues: () => this.slots.depths(),
    });
    this.sessions = new LruCache(opts.sessionCache, (key, session) => {
      logger.debug({ key }, 'tail session evicted');
      this.ready.delete(key);
      void session.then((s) => s.release()).catch(() => undefined);
    });
  }

  /** True while connected to the broker. */
  get connected(): boolean {
    return this.conn.connected;
  }

  /** Requests served so far (results, not errors). */
  get servedCount(): number {
    return this.served;
  }

  /** Scans the model directory, connects and starts taking requests. */
  async start(): Promise<void> {
    // The runtime threads start now, not when the first frame, prepare or request needs one.
    await SessionThread.prestart(RUNTIME_THREADS);
    const spec = this.opts.emulateDevice;
    // A device this host cannot emulate (faster than it) stops the worker at start, with one line.
    if (spec && spec.kind !== 'none')
      await resolveEmulation(spec, {
        modelNames: [],
        wholeMs: 0,
        gflops: async () => (await hostBench(this.opts.threads)).gflops,
        presets: this.opts.presetList ?? BUILTIN_PRESETS,
      });
    await this.weights.checkDir();
    await this.models.scan();
    this.writeWeights();
    await this.conn.start();
    const filter = topics.request.filter();
    // The request is acknowledged only after its reply (or error reply) is published: a worker that dies
    // mid-inference leaves it unacknowledged, and the broker redelivers it to another member.
    await this.conn.subscribe(
      this.opts.group ? sharedFilter(this.opts.group, filter) : filter,
      (topic, payload) => this.onRequest(topic, payload),
      1,
      { ackAfterHandler: true },
    );
    await this.conn.subscribe(topics.tailPrepare.filter(), (_topic, payload) => this.onPrepare(payload), 1);
    this.lastServed = { count: this.served, at: this.clock.now() };
    this.stopTelemetry = this.timers.every(this.opts.telemetryMs, () => void this.publishTelemetry());
    this.logger.info({ models: this.models.size, group: this.opts.group || null }, 'tail worker ready');
    if (this.opts.profileRuns > 0) {
      this.profiling = this.publishProfiles();
      // A model copied into the directory later (the example robot writes its model into the models volume of
      // compose.yaml) is profiled when a rescan finds it, so the planner can plan for it.
      this.stopWatch = this.timers.every(this.opts.modelWatchMs ?? MODEL_WATCH_MS, () => {
        if (this.watching || this.stopping) return;
        this.watching = true;
        this.profiling = (this.profiling ?? Promise.resolve())
          .then(() => this.models.scan())
          .then(() => this.writeWeights())
          .then(() => this.publishProfiles())
          .catch((err: unknown) =>
            this.logger.warn({ err: errorMessage(err) }, 'models directory rescan failed'),
          )
          .finally(() => {
            this.watching = false;
          });
      });
    }
  }

  /** Starts writing the weight file of each model (in the background): the first tail of a model need not wait. */
  private writeWeights(): void {
    for (const id of this.models.ids())
      void this.models
        .get(id)
        .then((model) => (model ? this.weights.forModel(model) : undefined))
        .catch(() => undefined); // a model that does not load is reported when it is asked for
  }

  /** The profile of PROFILES_DIR that names this model's content hash, or undefined (then it is measured). */
  private async givenProfile(id: string, model: ModelHandle): Promise<Profile | undefined> {
    const dir = this.opts.profilesDir;
    if (!dir) return undefined;
    for (const file of (await readdir(dir)).filter((f) => f.endsWith('.json')).sort()) {
      try {
        const p = await readProfileFile(join(dir, file), model.analysis.nodes);
        if (p.model.id !== id) continue;
        this.logger.info({ model: model.name, profile: join(dir, file) }, 'profile given, not measured');
        return { ...p, device: { ...p.device, id: this.opts.workerId } };
      } catch (err) {
        // A profile of another model does not parse against this one's layers; only a matching id counts.
        if (!(err instanceof ProfileError)) throw err;
      }
    }
    this.logger.info({ model: model.name, dir }, 'no given profile for this model: measuring it');
    return undefined;
  }

  /**
   * With EMULATE_DEVICE, the emulation of a model: its factor comes from this host's profile of it, so a request that
   * arrives while the model is still being profiled waits for the profile instead of running at this host's speed.
   * Undefined without emulation, or when profiling the model failed (then its tails run unstretched, as logged).
   */
  private async emulationOf(id: string): Promise<Emulated | undefined> {
    const spec = this.opts.emulateDevice;
    if (!spec || spec.kind === 'none' || this.emulated.has(id)) return this.emulated.get(id);
    await this.profiling;
    return this.emulated.get(id);
  }

  /** Profiles every model of the directory on this worker and publishes each profile, retained (P^c). */
  private async publishProfiles(): Promise<void> {
    for (const id of this.models.ids()) {
      if (this.stopping) return;
      if (this.profiled.has(id)) continue;
      this.profiled.add(id);
      try {
        const model = await this.models.get(id);
        if (!model) continue;
        const given = await this.givenProfile(id, model);
        const measured =
          given ??
          (await profileModel(model, {
            runs: this.opts.profileRuns,
            warmup: 2,
            threads: this.opts.threads,
            checkCuts: 0,
            device: { ...hostDevice(), id: this.opts.workerId },
          }));
        if (this.stopping) return;
        const profile = await this.emulate(id, model, measured);
        await this.conn.publish(
          topics.workerProfile.build({ worker: this.opts.workerId, model: id }),
          JSON.stringify(profile),
          {
            qos: 1,
            retain: true,
          },
        );
        this.logger.info({ model: model.name, wholeMs: profile.wholeMs.median }, 'profile published');
      } catch (err) {
        this.logger.warn({ model: id, err: errorMessage(err) }, 'profiling failed');
      }
    }
  }

  /**
   * With EMULATE_DEVICE: the factor for this model (measurement/device/emulation.ts), kept with this host's profile so its
   * tails are stretched; returns the profile to publish (scaled to the emulated device). Without: the measured one.
   */
  private async emulate(id: string, model: ModelHandle, measured: Profile): Promise<Profile> {
    const spec = this.opts.emulateDevice;
    if (!spec || spec.kind === 'none') return measured;
    const emulation = await resolveEmulation(spec, {
      modelNames: modelNames(model.name, model.metadata),
      wholeMs: measured.wholeMs.median,
      gflops: async () => (await hostBench(this.opts.threads)).gflops,
      presets: this.opts.presetList ?? BUILTIN_PRESETS,
    });
    if (!emulation) return measured;
    emulation.contention = this.opts.emulateContention ?? false;
    const queue = emulation.contention ? RunQueue.start() : undefined;
    const sched = queue ? runQueueContention(queue, cpus().length) : undefined;
    this.emulated.set(id, {
      hostProfile: measured,
      stretch: new ComputeStretch(emulation.factor, this.clock, undefined, sched),
      emulation,
    });
    this.logger.warn(
      { model: model.name, factor: emulation.factor, rule: emulation.rule },
      `EMULATION: tails of ${model.name} are stretched ${emulation.factor.toFixed(2)}x to emulate ${emulation.description}; ` +
        'the published profile is scaled to match',
    );
    return emulatedProfile(measured, emulation);
  }

  /** Stops taking requests, waits for the ones in flight, and disconnects. Idempotent. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.stopWatch?.();
    this.stopWatch = undefined;
    await this.profiling;
    await this.preparing;
    this.stopTelemetry?.();
    this.stopTelemetry = undefined;
    await this.conn.stop();
    this.sessions.clear();
    for (const e of this.emulated.values()) e.stretch.contention?.stop();
  }

  /**
   * A planner is about to move a device to a cut: load its tail now, so the device's first frame there finds it
   * ready, and say so at once in the telemetry (`warm`), which is what the planner waits for. A prepare for a model
   * this worker does not hold, or a cut the model does not have, is logged and ignored.
   */
  private onPrepare(payload: Buffer): Promise<void> {
    let prepare: TailPrepare;
    try {
      prepare = parseJson(TailPrepareSchema, 'tail prepare', payload);
    } catch (err) {
      this.logger.warn({ err: errorMessage(err) }, 'tail prepare ignored');
      return Promise.resolve();
    }
    const key = `${prepare.modelId}:${prepare.cut}`;
    // Bounded: one waiting prepare per tail (a plan's replaces a speculative one), at most MAX_PREPARES in all.
    const waiting = this.queuedPrepares.get(key);
    if (waiting) {
      if (waiting.speculative && !prepare.speculative) {
        this.queuedPrepares.set(key, prepare);
        this.startPrepares('plan');
      }
      return Promise.resolve();
    }
    if (this.queuedPrepares.size >= MAX_PREPARES) {
      this.logger.warn(
        { device: prepare.device, cut: prepare.cut, waiting: MAX_PREPARES },
        'tail prepare dropped: too many waiting',
      );
      return Promise.resolve();
    }
    // A plan's prepare ends the guessing: guesses still waiting would only hold up this one and the requests.
    if (!prepare.speculative)
      for (const [k, p] of this.queuedPrepares) if (p.speculative) this.queuedPrepares.delete(k);
    this.queuedPrepares.set(key, prepare);
    this.startPrepares(prepare.speculative ? 'guess' : 'plan');
    return Promise.resolve();
  }

  /**
   * Two lanes: plans' prepares one at a time, guesses up to {@link GUESS_LOADS} at once; a plan's never waits behind
   * a guess being loaded (sessions load in runtime threads, one each).
   */
  private startPrepares(lane: 'plan' | 'guess'): void {
    const most = lane === 'guess' ? GUESS_LOADS : 1;
    const waiting = [...this.queuedPrepares.values()].filter(
      (p) => (p.speculative ?? false) === (lane === 'guess'),
    ).length;
    for (let n = Math.min(waiting, most - this.prepareRunning[lane]); n > 0; n--) {
      this.prepareRunning[lane]++;
      const done = this.runPrepares(lane === 'guess').finally(() => {
        this.prepareRunning[lane]--;
      });
      this.preparing = Promise.all([this.preparing, done]).then(() => undefined);
    }
  }

  /** Runs the waiting prepares of one lane (guesses, or plans' prepares) one at a time. */
  private async runPrepares(speculative: boolean): Promise<void> {
    for (;;) {
      const next = [...this.queuedPrepares.entries()].find(
        ([, p]) => (p.speculative ?? false) === speculative,
      );
      if (!next) return;
      const [key, prepare] = next;
      this.queuedPrepares.delete(key);
      if (this.stopping) continue;
      await this.prepareOne(key, prepare).catch((err: unknown) =>
        this.logger.warn({ err: errorMessage(err) }, 'tail prepare failed'),
      );
    }
  }

  private async prepareOne(key: string, prepare: TailPrepare): Promise<void> {
    const model = await this.models.get(prepare.modelId);
    if (!model?.cuts[prepare.cut]) {
      this.logger.debug(
        { model: prepare.modelId, cut: prepare.cut },
        'tail prepare for a tail not held here',
      );
      return;
    }
    const already = this.ready.has(key);
    // A guess must not push out a tail in use: it is loaded only while the cache has room.
    if (prepare.speculative && !already && this.sessions.size >= this.opts.sessionCache) {
      this.logger.debug(
        { model: model.name, cut: prepare.cut },
        'speculative tail prepare skipped: cache full',
      );
      return;
    }
    const started = this.clock.now();
    const session = await this.tailSession(key, model, prepare.cut);
    if (!already) {
      // A session's first run allocates its buffers: run once on zeros, so the device's first frame meets it warm.
      await session.run(zeroTensors(model.cuts[prepare.cut]!.tensors));
      this.logger.info(
        {
          device: prepare.device,
          model: model.name,
          cut: prepare.cut,
          ms: Math.round(this.clock.now() - started),
          ...(prepare.speculative ? { speculative: true } : {}),
        },
        prepare.speculative ? 'tail prepared ahead of the first plan' : 'tail prepared for a plan',
      );
    }
    await this.publishTelemetry();
  }

  private async onRequest(topic: string, payload: Buffer): Promise<void> {
    const device = topics.request.match(topic)?.device;
    if (device === undefined) return;
    const receivedAt = this.clock.now();
    this.metrics.receivedBytes(payload.length);
    // Requests end the guessing too: a guess still waiting would take a runtime thread and the CPU from them.
    for (const [k, p] of this.queuedPrepares) if (p.speculative) this.queuedPrepares.delete(k);
    let requestId = '';
    let modelId = '';
    try {
      if (payload.length > this.opts.maxRequestBytes) {
        throw new RequestError(
          'too-large',
          `request of ${payload.length} bytes exceeds the limit of ${this.opts.maxRequestBytes} bytes`,
        );
      }
      const msg = decodeMessage(payload, { maxBytes: this.opts.maxRequestBytes });
      if (msg.kind !== 'request')
        throw new RequestError('malformed', `expected a Request message, got a ${msg.kind}`);
      const req = msg.value;
      requestId = req.requestId;
      modelId = req.modelId;
      if (req.deviceId !== device) {
        throw new RequestError(
          'malformed',
          `device_id "${req.deviceId}" does not match the topic's device "${device}"`,
        );
      }
      await this.serve(device, req, receivedAt);
    } catch (err) {
      this.errors++;
      const code: ErrorCode =
        err instanceof RequestError || err instanceof WireFormatError ? err.code : 'internal';
      const message = err instanceof Error ? err.message : String(err);
      this.metrics.failed(code, modelId);
      this.logger.warn({ device, requestId, code, message }, 'request rejected');
      const reply = encodeError({ requestId, deviceId: device, workerId: this.opts.workerId, code, message });
      await this.conn.publish(topics.result.build({ device }), reply, { qos: 1 });
    }
  }

  private async serve(device: string, req: InferenceRequest, receivedAt: number): Promise<void> {
    const model = await this.models.get(req.modelId);
    if (!model) {
      throw new RequestError('unknown-model', `model ${req.modelId} is not in ${this.opts.modelsDir}`);
    }
    this.metrics.model(req.modelId, model.name);
    const cut = model.cuts[req.cutId];
    if (!cut) {
      throw new RequestError(
        'bad-tensor',
        `cut ${req.cutId} does not exist: model ${model.name} has cuts 0..${model.cuts.length - 1}`,
      );
    }
    checkRequestTensors(cut, req.tensors);
    const key = `${req.modelId}:${req.cutId}`;
    const session = this.tailSession(key, model, req.cutId);
    const times = { ...req.times, tailReceived: receivedAt };
    const emulated = await this.emulationOf(req.modelId);
    const turn = this.slots.enter(device);
    if (!turn)
      throw new RequestError(
        'overloaded',
        `device ${device} already has ${this.opts.deviceQueue ?? DEFAULT_DEVICE_QUEUE} requests waiting on this worker, the most one device may (TAIL_DEVICE_QUEUE)`,
      );
    const release = await turn.started;
    let outputs: WireTensor[];
    try {
      // The device gave the request deadlineMs - sent ms; measured on this worker's clock from its arrival (the
      // two clocks need not agree), so a request is never dropped early, only late by its upload time.
      const budget = req.deadlineMs > 0 ? req.deadlineMs - req.times.sent : Number.POSITIVE_INFINITY;
      const waited = this.clock.now() - receivedAt;
      if (waited > budget)
        throw new RequestError(
          'expired',
          `waited ${waited.toFixed(0)} ms for a slot, past the device's deadline of ${budget.toFixed(0)} ms: not run`,
        );
      const ready = await session;
      times.tailStart = this.clock.now();
      outputs = emulated
        ? (
            await emulated.stretch.run(
              () => ready.run(req.tensors),
              profiledSpan(emulated.hostProfile, req.cutId, model.layers),
            )
          ).value
        : await ready.run(req.tensors);
      times.tailEnd = this.clock.now();
    } finally {
      release();
    }
    this.record(key, times.tailEnd - times.tailStart);
    times.replied = this.clock.now();
    const reply = encodeResult({
      requestId: req.requestId,
      deviceId: device,
      modelId: req.modelId,
      cutId: req.cutId,
      workerId: this.opts.workerId,
      tensors: outputs,
      times,
    });
    await this.conn.publish(topics.result.build({ device }), reply, { qos: 1 });
    this.served++;
    this.metrics.served(req.modelId, (times.tailEnd - times.tailStart) / 1000);
  }

  private tailSession(key: string, model: ModelHandle, cut: number): Promise<SessionThread> {
    let session = this.sessions.get(key);
    if (!session) {
      const created = this.weights
        .forModel(model)
        .then((weights) =>
          SessionThread.create(
            model.part(cut, 'tail', weights?.file),
            { threads: this.opts.threads, ...(weights ? { weightsDir: weights.dir } : {}) },
            true,
          ),
        );
      session = created;
      this.sessions.set(key, created);
      // A failed load must not stay cached: the next request tries again.
      created.then(
        () => {
          if (this.sessions.peek(key) === created) this.ready.add(key);
        },
        () => this.sessions.delete(key),
      );
    }
    return session;
  }

  private record(key: string, ms: number): void {
    const list = this.latencies.get(key) ?? [];
    list.push(ms);
    if (list.length > 64) list.shift();
    this.latencies.set(key, list);
  }

  private async publishTelemetry(): Promise<void> {
    if (!this.conn.connected) return;
    const tailMs: Record<string, number> = {};
    for (const [key, list] of this.latencies) tailMs[key] = median(list);
    const at = this.clock.now();
    // Throughput since the previous periodic telemetry: results over the span they were served in. A telemetry sent
    // out of turn (after a prepare) soon after it repeats the last figure rather than one over a few milliseconds.
    const span = at - this.lastServed.at;
    if (span >= this.opts.telemetryMs / 2) {
      this.servedRate = ((this.served - this.lastServed.count) * 1000) / span;
      this.lastServed = { count: this.served, at };
    }
    const servedPerSecond = this.servedRate;
    const t: WorkerTelemetry = {
      worker: this.opts.workerId,
      at,
      loadavg1: loadavg()[0] ?? 0,
      cores: cpus().length,
      queueDepth: this.slots.waiting,
      deviceQueues: this.slots.depths(),
      running: this.slots.running,
      concurrency: this.opts.concurrency,
      tailMs,
      served: this.served,
      ...(servedPerSecond !== undefined ? { servedPerSecond } : {}),
      errors: this.errors,
      warm: [...this.ready],
    };
    await this.conn
      .publish(topics.workerTelemetry.build({ worker: this.opts.workerId }), JSON.stringify(t), { qos: 0 })
      .catch(() => undefined);
  }
}

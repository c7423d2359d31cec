/**
 * The planner service: feeds the devices' and tail workers' retained profiles, telemetry and availability from
 * MQTT into the planning streams (streams.ts) and publishes each device's plan, retained, and between plans the
 * predicted curve of every cut now (`predictions`, QoS 0, rate-limited). With a fixed cut
 * configured it skips the search and gives every device that cut.
 */
import { Subject, type Subscription } from 'rxjs';
import type { Objective } from '../../planning/search.ts';
import { type Clock, systemClock } from '../../runtime/clock.ts';
import { UserError } from '../../runtime/errors.ts';
import type { Logger } from '../../runtime/log.ts';
import { type Connection, serviceConnection } from '../../runtime/mqtt.ts';
import {
  type DeviceTelemetry,
  DeviceTelemetrySchema,
  type Plan,
  type PredictionsMessage,
  parseJson,
  StatusSchema,
  type TailPrepare,
  type WorkerTelemetry,
  WorkerTelemetrySchema,
} from '../../schemas/messages.ts';
import { type DeviceProfile, type Profile, parseDeviceProfile, parseProfile } from '../../schemas/profile.ts';
import { topics } from '../../schemas/topics.ts';
import type { EdgeLoadMode } from './inputs.ts';
import { PlannerMetrics } from './metrics.ts';
import { fixedCutEvents, type PlannerEvent, planEvents } from './streams.ts';

/** Settings of the planner component. */
export interface PlannerOptions {
  mqttUrl: string;
  plannerId: string;
  /** `auto` (Algorithm 1), or a fixed cut: `middle`, an index or a node name. */
  cut: string;
  objective?: Objective | 'auto';
  edgeLoad?: EdgeLoadMode;
  /** Bits per second assumed until a device reports uplink samples; undefined assumes none (safe start). */
  bandwidth?: number | undefined;
  alphaMs?: number;
  mtu?: number;
  setupMs?: number;
  minGain?: number;
  holdMs?: number;
  /** Longest wait for a worker to load a new cut's tail before the switch (PLAN_PREPARE_MS); 0 moves at once. */
  prepareMs?: number;
  tickMs?: number;
  linkWindow?: number;
  /** A device silent this long (no profile, no telemetry) is forgotten (ms); default 10 minutes. */
  forgetMs?: number;
  username?: string | undefined;
  password?: string | undefined;
  /** PEM file of the CA to trust for mqtts:// and wss:// (MQTT_CA_FILE). */
  mqttCaFile?:
    | string
    | undefined /** Give up connecting at start after this long (ms); default: keep trying. */;
  connectTimeoutMs?: number;
}

const json = (payload: Buffer) => JSON.parse(payload.toString()) as unknown;

/** The planner component. */
export class Planner {
  private readonly conn: Connection;
  private readonly sources = {
    deviceProfiles: new Subject<{ device: string; profile: DeviceProfile }>(),
    deviceTelemetry: new Subject<DeviceTelemetry>(),
    workerProfiles: new Subject<{ worker: string; profile: Profile }>(),
    workerTelemetry: new Subject<WorkerTelemetry>(),
    workerStatus: new Subject<{ worker: string; online: boolean }>(),
  };
  private subscription: Subscription | undefined;
  private readonly profiled = new Set<string>();
  /** The last plan published per device (for tests and metrics). */
  readonly plans = new Map<string, Plan>();
  /** Why a device has no plan, when it has none. */
  readonly noPlan = new Map<string, string>();
  /** Predictions messages published (services/planner/streams.ts, `predictions` events). */
  predictionsPublished = 0;
  /** A predictions publish failed and none succeeded since (its error was logged). */
  private predictionsFailing = false;
  /** When each device last sent a profile or telemetry (the planner's clock). */
  private readonly lastSeen = new Map<string, number>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    private readonly opts: PlannerOptions,
    private readonly logger: Logger,
    private readonly clock: Clock = systemClock,
    private readonly metrics = new PlannerMetrics(),
  ) {
    this.conn = serviceConnection('planner', opts.plannerId, opts, logger);
    this.conn.onHandlerError = () => metrics.error('handler');
    metrics.watch({ devices: () => this.profiled.size });
  }

  /** True while connected to the broker. */
  get connected(): boolean {
    return this.conn.connected;
  }

  /** Connects and starts planning for every device that publishes a profile. */
  async start(): Promise<void> {
    const o = this.opts;
    const measure = <T>(choose: () => T) => this.metrics.timeReplan(choose);
    const events$ =
      o.cut === 'auto'
        ? planEvents(this.sources, {
            objective: o.objective ?? 'auto',
            edgeLoadMode: o.edgeLoad ?? 'measured',
            link:
              o.bandwidth === undefined
                ? undefined
                : {
                    setupMs: o.setupMs ?? 1,
                    alphaMs: o.alphaMs ?? 0,
                    mtu: o.mtu ?? 1500,
                    betaMsPerByte: 8000 / o.bandwidth,
                  },
            linkBase: { alphaMs: o.alphaMs ?? 0, mtu: o.mtu ?? 1500 },
            linkWindow: o.linkWindow ?? 64,
            hysteresis: { minGain: o.minGain ?? 0.1, holdMs: o.holdMs ?? 3000 },
            tickMs: o.tickMs ?? 1000,
            prepareMs: o.prepareMs ?? 20_000,
            staleMs: 10_000,
            forgetMs: this.forgetMs,
            measure,
          })
        : fixedCutEvents(this.sources, { cut: o.cut, forgetMs: this.forgetMs, measure });
    this.subscription = events$.subscribe({
      next: (e) => void this.onEvent(e),
      error: (err: unknown) => {
        this.metrics.error('stream');
        this.logger.error({ err: String(err) }, 'planning stream failed');
      },
    });
    await this.conn.start();
    const { conn } = this;
    await conn.subscribe(topics.workerStatus.filter(), (topic, payload) => {
      const worker = topics.workerStatus.match(topic)?.worker;
      if (worker === undefined || payload.length === 0) return;
      const s = StatusSchema.parse(json(payload));
      this.sources.workerStatus.next({ worker, online: s.state === 'online' });
    });
    await conn.subscribe(topics.workerProfile.filter(), (topic, payload) => {
      const m = topics.workerProfile.match(topic);
      if (!m || payload.length === 0) return;
      const profile = parseProfile(json(payload), topic);
      if (profile.model.id !== m.model)
        throw new Error(`${topic}: profile is of model ${profile.model.id}, not ${m.model}`);
      this.sources.workerProfiles.next({ worker: m.worker, profile });
    });
    // Identities come from the topic, which the broker authorized for the sender, never from the payload.
    await conn.subscribe(
      topics.workerTelemetry.filter(),
      (topic, payload) => {
        const worker = topics.workerTelemetry.match(topic)?.worker;
        if (worker === undefined) return;
        const t = parseJson(WorkerTelemetrySchema, `telemetry of worker ${worker}`, payload);
        if (t.worker !== worker)
          throw new UserError(
            `${topic}: refused, the payload names worker ${t.worker}; a worker reports on its own topic only`,
          );
        this.sources.workerTelemetry.next(t);
      },
      0,
    );
    await conn.subscribe(
      topics.deviceTelemetry.filter(),
      (topic, payload) => {
        const device = topics.deviceTelemetry.match(topic)?.device;
        if (device === undefined) return;
        const t = parseJson(DeviceTelemetrySchema, `telemetry of device ${device}`, payload);
        if (t.device !== device)
          throw new UserError(
            `${topic}: refused, the payload names device ${t.device}; a device reports on its own topic only`,
          );
        this.lastSeen.set(device, this.clock.now());
        if (!this.profiled.has(t.device) && !this.noPlan.has(t.device)) {
          const reason = 'the device sends telemetry but has published no profile';
          void this.onEvent({ kind: 'no-plan', device: t.device, reason });
        }
        this.sources.deviceTelemetry.next(t);
      },
      0,
    );
    await conn.subscribe(topics.deviceProfile.filter(), (topic, payload) => this.onProfile(topic, payload));
    // Devices the planning streams do not hold (telemetry without a profile) are forgotten here.
    this.sweeper = setInterval(() => this.sweep(), Math.min(this.forgetMs, 60_000));
    this.sweeper.unref();
    this.logger.info({ cut: o.cut, objective: o.objective, edgeLoad: o.edgeLoad }, 'planner ready');
  }

  /** Stops planning and disconnects. Idempotent. */
  async stop(): Promise<void> {
    this.subscription?.unsubscribe();
    this.subscription = undefined;
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
    await this.conn.stop();
  }

  /** Devices the planner holds state for. */
  get devices(): number {
    return this.lastSeen.size;
  }

  private get forgetMs(): number {
    return this.opts.forgetMs ?? 600_000;
  }

  /** Forgets the devices silent for longer than forgetMs that the planning streams do not hold. */
  private sweep(): void {
    const now = this.clock.now();
    for (const [device, at] of this.lastSeen) {
      if (now - at < this.forgetMs) continue;
      // A device with a profile is the streams' to forget (they say so with an event).
      if (this.subscription && this.profiled.has(device)) continue;
      this.forget(device, now - at);
    }
  }

  /** Drops all the planner holds for a device; its retained plan stays on the broker. */
  private forget(device: string, silentMs: number): void {
    if (!this.lastSeen.delete(device)) return;
    this.profiled.delete(device);
    this.plans.delete(device);
    this.noPlan.delete(device);
    this.metrics.forget(device);
    this.conn.forgetRetained(topics.plan.build({ device }));
    this.logger.info({ device, silentMs }, 'device forgotten: silent for longer than PLAN_FORGET_MS');
  }

  /**
   * Publishes Algorithm 1's curve now for a dashboard: QoS 0, fire-and-forget, dropped while disconnected (never
   * queued); the first failure of a run of failures is logged.
   */
  private publishPredictions(device: string, predictions: PredictionsMessage): void {
    if (!this.conn.connected) return;
    this.conn
      .publish(topics.devicePredictions.build({ device }), JSON.stringify(predictions), { qos: 0 })
      .then(
        () => {
          this.predictionsPublished++;
          this.predictionsFailing = false;
        },
        (err: unknown) => {
          if (this.predictionsFailing) return;
          this.predictionsFailing = true;
          this.logger.warn(
            { device, err: String(err) },
            'predictions publish failed (logged once until one succeeds)',
          );
        },
      );
  }

  private async onProfile(topic: string, payload: Buffer): Promise<void> {
    const device = topics.deviceProfile.match(topic)?.device;
    if (device === undefined || payload.length === 0) return;
    const published = parseDeviceProfile(json(payload), `profile of device ${device}`);
    this.profiled.add(device);
    this.lastSeen.set(device, this.clock.now());
    this.sources.deviceProfiles.next({ device, profile: published });
  }

  private async onEvent(e: PlannerEvent): Promise<void> {
    if (e.kind === 'forgotten') {
      this.forget(e.device, e.silentMs);
      return;
    }
    if (e.kind === 'prepare') {
      this.logger.info(
        { device: e.device, cut: e.cut },
        e.speculative
          ? 'asking the tail workers to load a tail the device will likely use, while its uplink is measured'
          : 'asking the tail workers to load a tail before the switch',
      );
      const prepare: TailPrepare = {
        version: 1,
        device: e.device,
        modelId: e.modelId,
        cut: e.cut,
        ...(e.speculative ? { speculative: true } : {}),
        issuedAt: this.clock.now(),
      };
      await this.conn
        .publish(topics.tailPrepare.build({ planner: this.opts.plannerId }), JSON.stringify(prepare), {
          qos: 1,
        })
        .catch((err: unknown) => this.logger.warn({ err: String(err) }, 'tail prepare publish failed'));
      return;
    }
    if (e.kind === 'predictions') {
      this.publishPredictions(e.device, e.predictions);
      return;
    }
    if (e.kind === 'no-plan') {
      this.noPlan.set(e.device, e.reason);
      this.logger.warn({ device: e.device, reason: e.reason }, 'no plan for device');
      return;
    }
    this.noPlan.delete(e.device);
    this.plans.set(e.device, e.plan);
    this.logger.info(
      { device: e.device, cut: e.plan.cut.index, after: e.plan.cut.after, reason: e.plan.reason },
      'plan published',
    );
    await this.conn
      .publish(topics.plan.build({ device: e.device }), JSON.stringify(e.plan), { qos: 1, retain: true })
      .then(
        () => this.metrics.planned(e.device, e.plan.cut.index),
        (err: unknown) => {
          this.metrics.error('publish');
          this.logger.warn({ err: String(err) }, 'plan publish failed');
        },
      );
  }
}

/**
 * The planner service. It listens to the devices' retained profiles and publishes a retained plan per device.
 * This version applies one configured cut to every device.
 */

import { type Clock, systemClock } from '../../common/clock.ts';
import type { Logger } from '../../common/log.ts';
import { Connection } from '../../common/mqtt.ts';
import { DeviceProfileSchema, type Plan, parseJson } from '../../schemas/messages.ts';
import { topics } from '../../schemas/topics.ts';
import { chooseFixedCut } from './fixed-cut.ts';

/** Settings of the planner component. */
export interface PlannerOptions {
  mqttUrl: string;
  plannerId: string;
  cut: string;
  username?: string | undefined;
  password?: string | undefined;
}

/** The planner component. */
export class Planner {
  private readonly conn: Connection;
  private seq = 0;
  /** Plans published so far, by device (for tests and metrics). */
  readonly plans = new Map<string, Plan>();

  constructor(
    private readonly opts: PlannerOptions,
    private readonly logger: Logger,
    private readonly clock: Clock = systemClock,
  ) {
    this.conn = new Connection({
      url: opts.mqttUrl,
      clientId: opts.plannerId,
      role: 'planner',
      statusTopic: topics.plannerStatus.build({ planner: opts.plannerId }),
      logger,
      username: opts.username,
      password: opts.password,
    });
  }

  /** Connects and starts planning for every device that publishes a profile. */
  async start(): Promise<void> {
    await this.conn.start();
    await this.conn.subscribe(topics.deviceProfile.filter(), (topic, payload) =>
      this.onProfile(topic, payload),
    );
    this.logger.info({ cut: this.opts.cut }, 'planner ready');
  }

  /** Disconnects. Idempotent. */
  async stop(): Promise<void> {
    await this.conn.stop();
  }

  private async onProfile(topic: string, payload: Buffer): Promise<void> {
    const device = topics.deviceProfile.match(topic)?.device;
    if (device === undefined || payload.length === 0) return;
    const profile = parseJson(DeviceProfileSchema, `profile of device ${device}`, payload);
    const choice = chooseFixedCut(profile.cuts, this.opts.cut);
    if ('error' in choice) {
      this.logger.warn({ device, reason: choice.error }, 'no plan for device');
      return;
    }
    const plan: Plan = {
      version: 1,
      device,
      modelId: profile.modelId,
      seq: ++this.seq,
      cut: choice,
      objective: 'fixed',
      predicted: null,
      reason: `fixed cut ${this.opts.cut} from the planner's configuration`,
      inputs: { cut: this.opts.cut },
      issuedAt: this.clock.now(),
    };
    this.plans.set(device, plan);
    await this.conn.publish(topics.plan.build({ device }), JSON.stringify(plan), { qos: 1, retain: true });
    this.logger.info({ device, cut: choice.index, after: choice.after }, 'plan published');
  }
}

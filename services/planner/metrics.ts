/**
 * The planner's metrics: the cut published per device, plans published, how long each re-plan takes, the devices
 * it knows and its errors.
 */
import type { Counter, Histogram } from 'prom-client';
import { MetricSet } from '../../runtime/metrics.ts';

/** Where a planner error happened: a message handler, publishing a plan, or the planning stream itself. */
export type PlannerErrorCode = 'handler' | 'publish' | 'stream';

const ERROR_CODES: readonly PlannerErrorCode[] = ['handler', 'publish', 'stream'];

/** Values read from the running planner at each scrape. */
export interface PlannerSources {
  /** Devices that have published a profile. */
  devices: () => number;
}

/** Buckets of a re-plan: Algorithm 1 over tens to hundreds of cuts takes microseconds to milliseconds. */
const REPLAN_BUCKETS = [0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1];

/** The metrics of one planner. */
export class PlannerMetrics {
  /** The registry and the definitions. */
  readonly set = new MetricSet();
  private sources: PlannerSources | undefined;
  private readonly cut;
  private readonly plans: Counter<'device'>;
  private readonly replan: Histogram;
  private readonly errors: Counter<'code'>;

  constructor() {
    const s = this.set;
    this.cut = s.gauge('edgecut_planner_cut', 'cut of the last plan published per device (k)', ['device']);
    this.plans = s.counter('edgecut_planner_plans_total', 'plans published per device', ['device']);
    this.replan = s.histogram(
      'edgecut_planner_replan_seconds',
      'time of one re-plan: Algorithm 1 and the hysteresis, or choosing a fixed cut',
      [],
      REPLAN_BUCKETS,
    );
    s.gauge('edgecut_planner_devices', 'devices that have published a profile', [], (g) => {
      if (this.sources) g.set(this.sources.devices());
    });
    this.errors = s.counter(
      'edgecut_planner_errors_total',
      'errors by where they happened: handler (a message it could not process), publish (a plan not published), stream (the planning stream failed)',
      ['code'],
    );
    for (const code of ERROR_CODES) this.errors.inc({ code }, 0);
  }

  /** Where the scrape-time gauges read from. */
  watch(sources: PlannerSources): void {
    this.sources = sources;
  }

  /** Runs one re-plan and records how long it took. */
  timeReplan<T>(run: () => T): T {
    const end = this.replan.startTimer();
    try {
      return run();
    } finally {
      end();
    }
  }

  /** Records a plan published for a device. */
  planned(device: string, cut: number): void {
    this.plans.inc({ device });
    this.cut.set({ device }, cut);
  }

  /** Drops a forgotten device's series. */
  forget(device: string): void {
    this.plans.remove({ device });
    this.cut.remove({ device });
  }

  /** Counts an error. */
  error(code: PlannerErrorCode): void {
    this.errors.inc({ code });
  }
}

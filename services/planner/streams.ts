/**
 * The planner as RxJS streams: per device, the retained profile, the device's telemetry (folded into a robust
 * link fit and a load factor), and the tail workers' profiles, telemetry and availability are combined; every
 * change, and a periodic tick so a pending switch can mature, runs Algorithm 1 and the hysteresis. No I/O here:
 * the planner component feeds the sources from MQTT and publishes what comes out. The scheduler is a parameter,
 * so tests drive time with RxJS's TestScheduler.
 */
import {
  asyncScheduler,
  combineLatest,
  filter,
  groupBy,
  ignoreElements,
  map,
  merge,
  mergeMap,
  type Observable,
  type SchedulerLike,
  scan,
  shareReplay,
  startWith,
  timer,
} from 'rxjs';
import type { LinkModel } from '../../common/plan/link.ts';
import { type FittedLink, fitLink, SampleWindow } from '../../common/plan/link-fit.ts';
import { type Objective, searchPartition } from '../../common/plan/search.ts';
import type { DeviceTelemetry, Plan, WorkerTelemetry } from '../../schemas/messages.ts';
import type { DeviceProfile, Profile } from '../../schemas/profile.ts';
import { type DecisionState, decide, type HysteresisOptions } from './decide.ts';
import { profileFromDeclaration } from './declared.ts';
import {
  type EdgeLoadMode,
  edgeLoadFactor,
  serverLayers,
  serverLoadFactor,
  toSearchInput,
} from './inputs.ts';

/** Planner settings the streams use. */
export interface PlanningOptions {
  objective: Objective;
  edgeLoadMode: EdgeLoadMode;
  /** The link assumed until a device reports transfers. */
  link: LinkModel;
  /** Transfer samples per device in the sliding window of the link fit. */
  linkWindow: number;
  hysteresis: HysteresisOptions;
  /** Re-evaluation period, ms, so a pending switch can mature without new input. */
  tickMs: number;
  /** Worker telemetry older than this, ms, is ignored. */
  staleMs: number;
  /** Runs each re-plan (Algorithm 1 and the hysteresis), e.g. timing it for the metrics; default: just runs it. */
  measure?: <T>(replan: () => T) => T;
}

/** The messages the planner listens to, already parsed and checked. */
export interface PlannerSources {
  deviceProfiles: Observable<{ device: string; profile: DeviceProfile }>;
  deviceTelemetry: Observable<DeviceTelemetry>;
  workerProfiles: Observable<{ worker: string; profile: Profile }>;
  workerTelemetry: Observable<WorkerTelemetry>;
  workerStatus: Observable<{ worker: string; online: boolean }>;
}

/** What the streams produce. */
export type PlannerEvent =
  | { kind: 'plan'; device: string; plan: Plan }
  | { kind: 'no-plan'; device: string; reason: string };

/** The tail workers as the planner knows them. */
interface Workers {
  profiles: ReadonlyMap<string, ReadonlyMap<string, Profile>>;
  telemetry: ReadonlyMap<string, WorkerTelemetry>;
  offline: ReadonlySet<string>;
}

const NO_WORKERS: Workers = { profiles: new Map(), telemetry: new Map(), offline: new Set() };

function workersState(src: PlannerSources): Observable<Workers> {
  type Update = (w: Workers) => Workers;
  return merge(
    src.workerProfiles.pipe(
      map(
        (e): Update =>
          (w) => {
            const profiles = new Map(w.profiles);
            profiles.set(e.worker, new Map(w.profiles.get(e.worker)).set(e.profile.model.id, e.profile));
            return { ...w, profiles };
          },
      ),
    ),
    src.workerTelemetry.pipe(
      map(
        (t): Update =>
          (w) => ({ ...w, telemetry: new Map(w.telemetry).set(t.worker, t) }),
      ),
    ),
    src.workerStatus.pipe(
      map(
        (s): Update =>
          (w) => {
            const offline = new Set(w.offline);
            if (s.online) offline.delete(s.worker);
            else offline.add(s.worker);
            return { ...w, offline };
          },
      ),
    ),
  ).pipe(
    scan((w, update: Update) => update(w), NO_WORKERS),
    startWith(NO_WORKERS),
    shareReplay({ bufferSize: 1, refCount: true }),
  );
}

interface DeviceAcc {
  modelId?: string;
  decision: DecisionState;
  seq: number;
  lastNoPlan?: string;
  out: PlannerEvent[];
}

interface StepInput {
  device: string;
  /** What the device published: a profile, or a declaration resolved here against the workers' profiles. */
  profile: DeviceProfile;
  workers: Workers;
  link: FittedLink;
  telemetry: DeviceTelemetry | undefined;
}

function step(acc: DeviceAcc, i: StepInput, now: number, opts: PlanningOptions): DeviceAcc {
  const { device, workers } = i;
  const modelId = i.profile.model.id;
  const decision = acc.modelId === modelId ? acc.decision : {};
  const next: DeviceAcc = {
    modelId,
    decision,
    seq: acc.seq,
    lastNoPlan: acc.lastNoPlan,
    out: [],
  };
  const online = [...workers.profiles.keys()].filter((w) => !workers.offline.has(w));
  const profiles = online.flatMap((w) => {
    const p = workers.profiles.get(w)?.get(modelId);
    return p ? [p] : [];
  });
  const serverMs = serverLayers(profiles);
  const profile: Profile | undefined =
    i.profile.kind !== 'declared'
      ? i.profile
      : serverMs
        ? profileFromDeclaration(i.profile, profiles)
        : undefined;
  if (!serverMs || !profile || serverMs.length !== profile.layers.length) {
    const name = i.profile.model.name ?? 'of the device';
    const reason = serverMs
      ? `the tail workers' profiles of model ${name} do not have its ${profile?.layers.length} layers`
      : `no online tail worker has published a profile of model ${name} (${modelId.slice(0, 12)})`;
    if (reason !== acc.lastNoPlan) next.out.push({ kind: 'no-plan', device, reason });
    next.lastNoPlan = reason;
    return next;
  }
  next.lastNoPlan = undefined;
  const fresh = [...workers.telemetry.values()].filter(
    (t) => !workers.offline.has(t.worker) && now - t.at <= opts.staleMs,
  );
  const inputs = {
    profile,
    serverMs,
    link: i.link,
    edgeLoad: edgeLoadFactor(opts.edgeLoadMode, profile, i.telemetry, decision.current),
    serverLoad: serverLoadFactor(fresh),
    objective: opts.objective,
  };
  const replan = () => {
    const result = searchPartition(toSearchInput(inputs));
    return { result, d: decide(decision, result, now, opts.hysteresis) };
  };
  const { result, d } = opts.measure ? opts.measure(replan) : replan();
  next.decision = d.state;
  if (d.switchTo) {
    const best = d.switchTo;
    const cut = profile.cuts.find((c) => c.index === best.index)!;
    const edgeOnly = result.candidates.find((c) => c.index === profile.layers.length);
    const offload = result.candidates.find((c) => c.index === 0);
    next.seq = acc.seq + 1;
    next.out.push({
      kind: 'plan',
      device,
      plan: {
        version: 1,
        device,
        modelId: profile.model.id,
        seq: next.seq,
        cut: { index: cut.index, after: cut.after, bytes: cut.bytes, tensors: cut.tensors },
        objective: opts.objective,
        predicted: {
          edgeMs: best.edgeMs,
          transferMs: best.transferMs,
          serverMs: best.serverMs,
          totalMs: best.totalMs,
        },
        reason:
          `${d.reason}; predicted ${best.totalMs.toFixed(1)} ms per frame (period ${best.periodMs.toFixed(1)} ms)` +
          ` vs ${offload?.totalMs.toFixed(1)} ms full offload and ${edgeOnly?.totalMs.toFixed(1)} ms on the device alone`,
        inputs: {
          link: {
            ...i.link.link,
            bandwidthBps: i.link.bandwidthBps,
            samples: i.link.samples,
            source: i.link.source,
          },
          edgeLoad: { mode: opts.edgeLoadMode, ...inputs.edgeLoad },
          serverLoad: inputs.serverLoad,
          serverProfiles: profiles.length,
          edgeProfile: profile.kind,
        },
        issuedAt: now,
      },
    });
  }
  return next;
}

/** Plans for every device that publishes a profile. */
export function planEvents(
  src: PlannerSources,
  opts: PlanningOptions,
  scheduler: SchedulerLike = asyncScheduler,
): Observable<PlannerEvent> {
  const workers$ = workersState(src);
  // Worker state is kept from the start: a worker's retained profile may arrive before any device's.
  const devices$ = src.deviceProfiles.pipe(
    groupBy((e) => e.device),
    mergeMap((group$) => {
      const device = group$.key;
      const telemetry$ = src.deviceTelemetry.pipe(
        filter((t) => t.device === device),
        shareReplay({ bufferSize: 1, refCount: true }),
      );
      const link$ = telemetry$.pipe(
        scan((w, t) => {
          w.push(...t.transfers);
          return w;
        }, new SampleWindow(opts.linkWindow)),
        map((w) => fitLink(w.samples, opts.link)),
        startWith(fitLink([], opts.link)),
      );
      return combineLatest([
        group$.pipe(map((e) => e.profile)),
        workers$,
        link$,
        telemetry$.pipe(startWith(undefined)),
        timer(0, opts.tickMs, scheduler),
      ]).pipe(
        scan(
          (acc: DeviceAcc, [profile, workers, link, telemetry]) =>
            step(acc, { device, profile, workers, link, telemetry }, scheduler.now(), opts),
          { decision: {}, seq: 0, out: [] },
        ),
        mergeMap((acc) => acc.out),
      );
    }),
  );
  return merge(workers$.pipe(ignoreElements()), devices$);
}

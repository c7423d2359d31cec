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
  defer,
  distinctUntilChanged,
  filter,
  groupBy,
  ignoreElements,
  map,
  merge,
  mergeMap,
  type Observable,
  of,
  type SchedulerLike,
  scan,
  shareReplay,
  startWith,
  switchMap,
  takeLast,
  takeUntil,
  takeWhile,
  timer,
} from 'rxjs';
import { type Preset, presetPower } from '../../measurement/device/presets.ts';
import { predictedCurve } from '../../planning/curve.ts';
import { type LinkModel, transferMs } from '../../planning/link.ts';
import { type FittedLink, LinkEstimator } from '../../planning/link-fit.ts';
import { type Objective, searchPartition } from '../../planning/search.ts';
import {
  type DeviceTelemetry,
  type Plan,
  PREDICTIONS_PER_SECOND,
  type PredictionsMessage,
  type WorkerTelemetry,
} from '../../schemas/messages.ts';
import type { DeviceProfile, Profile } from '../../schemas/profile.ts';
import { type DecisionState, decide, type HysteresisOptions } from './decide.ts';
import { profileFromDeclaration } from './declared.ts';
import { chooseFixedCut } from './fixed-cut.ts';
import {
  type EdgeLoadMode,
  type EdgeLoadState,
  type LateEvidence,
  nextEdgeLoad,
  nextLateEvidence,
  RETURN_WINDOW,
  returnExcess,
  serverLayers,
  serverLoadFactor,
  toSearchInput,
} from './inputs.ts';
import { buildPlan } from './plan.ts';

/** Planner settings the streams use. */
export interface PlanningOptions {
  /**
   * What Algorithm 1 minimises; `auto` chooses per device from its pipeline: `throughput` for a device that keeps
   * more than one frame in flight (its telemetry's `window`), `latency` (the paper's) for one frame at a time.
   */
  objective: Objective | 'auto';
  edgeLoadMode: EdgeLoadMode;
  /**
   * A link to assume until a device reports uplink samples (LINK_BANDWIDTH); undefined assumes nothing: a device
   * runs everything itself until its link is measured (the safe start).
   */
  link?: LinkModel | undefined;
  /** Alpha and MTU of the link model (the fit keeps them). Default: those of `link`, else 0 ms and 1500 bytes. */
  linkBase?: Pick<LinkModel, 'alphaMs' | 'mtu'>;
  /** Transfer samples per device in the sliding window of the link fit. */
  linkWindow: number;
  hysteresis: HysteresisOptions;
  /** Re-evaluation period, ms, so a pending switch can mature without new input. */
  tickMs: number;
  /** Worker telemetry older than this, ms, is ignored. */
  staleMs: number;
  /** Presets to look the devices' power figures up in (by the profile's preset name); default: the built-in ones. */
  presets?: readonly Preset[];
  /** Runs each re-plan (Algorithm 1 and the hysteresis), e.g. timing it for the metrics; default: just runs it. */
  measure?: <T>(replan: () => T) => T;
  /**
   * A device that sent neither a profile nor telemetry for this long (ms) is forgotten: its state ends, so memory
   * is bounded by the devices alive. Default: never.
   */
  forgetMs?: number | undefined;
  /**
   * How long (ms) a switch to a new cut waits for a tail worker to report that cut's tail loaded (its telemetry's
   * `warm`), after asking the workers to load it (a `prepare` event). 0 switches at once, as do workers whose
   * telemetry does not report `warm`. Default 0.
   */
  prepareMs?: number;
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
  | { kind: 'no-plan'; device: string; reason: string }
  /** Algorithm 1's curve now, between plans (at most PREDICTIONS_PER_SECOND per device; the rest dropped). */
  | { kind: 'predictions'; device: string; predictions: PredictionsMessage }
  | { kind: 'forgotten'; device: string; silentMs: number }
  | { kind: 'prepare'; device: string; modelId: string; cut: number; speculative?: boolean };

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
  /** The edge load, updated once per telemetry message. */
  edgeLoad?: EdgeLoadState;
  /** The telemetry message the edge load was last updated from. */
  edgeLoadFrom?: DeviceTelemetry;
  /** Late frames' evidence about the server side, while it is held. */
  late?: LateEvidence;
  /** What the plan in force was decided on, to name what changed at the next switch. */
  basis?: Basis;
  /** The last link change the hysteresis was skipped for (each change skips it once). */
  actedOnChange?: string;
  /** A switch waiting for a worker to load its tail, and since when. */
  preparing?: { cut: number; since: number } | undefined;
  /** The model whose likely tails were prepared during the safe start (once per model). */
  speculated?: string;
  /** The device's recent ways back of answered requests, ms (the newest {@link RETURN_WINDOW}). */
  returns?: number[];
  /** When the last predictions event was emitted (the rate limit). */
  predictedAt?: number;
  out: PlannerEvent[];
}

/**
 * Uplink rates the safe start looks at, 100 kbit/s to 1 Gbit/s about three apart: the cuts that would be best at
 * some of them are the tails worth loading on the workers before the link is measured.
 */
export const SPECULATIVE_RATES_BPS = [1e5, 3e5, 1e6, 3e6, 1e7, 3e7, 1e8, 3e8, 1e9];
/**
 * At most this many tails are prepared during a safe start: the two cuts best over most of the rates, for a fast
 * and a middling link (AlexNet in Config II: cut 3 at 100 Mbit/s, cut 13 at 10 Mbit/s, whose tail takes 3 s to
 * load). A worker loads them one after the other in threads of their own, and a plan's prepare never waits behind
 * them (services/server-tail/worker.ts); when sessions loaded on the worker's own thread, a second guess held up the
 * first requests at the cut actually chosen.
 */
export const SPECULATIVE_TAILS = 2;

/**
 * The cuts (other than everything on the device) that are best at some of {@link SPECULATIVE_RATES_BPS}, those
 * best at most of the rates first (the faster rate breaks a tie), at most `most`.
 */
export function likelyCuts(
  best: (bps: number) => number,
  layers: number,
  most: number = SPECULATIVE_TAILS,
): number[] {
  const wins = new Map<number, { n: number; fastest: number }>();
  for (const bps of SPECULATIVE_RATES_BPS) {
    const k = best(bps);
    if (k === layers) continue;
    const w = wins.get(k) ?? { n: 0, fastest: 0 };
    wins.set(k, { n: w.n + 1, fastest: Math.max(w.fastest, bps) });
  }
  return [...wins.entries()]
    .sort(([, a], [, b]) => b.n - a.n || b.fastest - a.fastest)
    .slice(0, most)
    .map(([k]) => k);
}

/** An edge load factor that moved by this fraction since the plan in force is a change, not noise: no hold. */
export const LOAD_STEP = 0.5;

/** The evidence a plan rests on. */
interface Basis {
  bandwidthBps: number | undefined;
  edgeLoad: number;
  serverLoad: number;
  /** Where the load factors come from, in words. */
  edgeSource?: string;
  serverSource?: string;
  change?: string | undefined;
}

/** Names the evidence that changed between two plans' bases (relative changes above 10%). */
function evidenceChange(before: Basis | undefined, now: Basis): string {
  if (!before) return '';
  const parts: string[] = [];
  const rel = (a: number, b: number) => Math.abs(b - a) / Math.max(Math.abs(a), 1e-9);
  if (before.bandwidthBps === undefined && now.bandwidthBps !== undefined)
    parts.push(`the uplink is now measured at ${formatBps(now.bandwidthBps)}`);
  else if (
    before.bandwidthBps !== undefined &&
    now.bandwidthBps !== undefined &&
    rel(before.bandwidthBps, now.bandwidthBps) > 0.1
  )
    parts.push(`uplink ${formatBps(before.bandwidthBps)} -> ${formatBps(now.bandwidthBps)}`);
  if (now.change && now.change !== before.change) parts.push(now.change);
  if (rel(before.edgeLoad, now.edgeLoad) > 0.1)
    parts.push(`edge load ${before.edgeLoad.toFixed(2)} -> ${now.edgeLoad.toFixed(2)} (${now.edgeSource})`);
  if (rel(before.serverLoad, now.serverLoad) > 0.1)
    parts.push(
      `server load ${before.serverLoad.toFixed(2)} -> ${now.serverLoad.toFixed(2)} (${now.serverSource})`,
    );
  return parts.length ? ` (evidence: ${parts.join('; ')})` : '';
}

function formatBps(bps: number): string {
  if (!Number.isFinite(bps)) return 'unlimited';
  return bps >= 1e6 ? `${(bps / 1e6).toFixed(2)} Mbit/s` : `${(bps / 1e3).toFixed(0)} kbit/s`;
}

interface StepInput {
  device: string;
  /** What the device published: a profile, or a declaration resolved here against the workers' profiles. */
  profile: DeviceProfile;
  workers: Workers;
  link: FittedLink | undefined;
  telemetry: DeviceTelemetry | undefined;
}

function step(acc: DeviceAcc, i: StepInput, now: number, opts: PlanningOptions): DeviceAcc {
  const { device, workers } = i;
  const modelId = i.profile.model.id;
  const decision = acc.modelId === modelId ? acc.decision : {};
  const next: DeviceAcc = {
    ...acc,
    modelId,
    decision,
    out: [],
    preparing: undefined,
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
  const freshTelemetry = i.telemetry !== acc.edgeLoadFrom || !acc.edgeLoad;
  if (freshTelemetry) {
    next.edgeLoad = nextEdgeLoad(opts.edgeLoadMode, profile, i.telemetry, acc.edgeLoad, now);
    next.edgeLoadFrom = i.telemetry;
  }
  const edgeLoad = next.edgeLoad!;
  if (i.link)
    next.late = nextLateEvidence(
      freshTelemetry ? i.telemetry?.late : undefined,
      profile,
      serverMs,
      i.link.link,
      acc.late,
      now,
    );
  if (freshTelemetry && i.telemetry?.returns?.length)
    next.returns = [...(acc.returns ?? []), ...i.telemetry.returns].slice(-RETURN_WINDOW);
  const queues = serverLoadFactor(fresh);
  const serverLoad = next.late && next.late.factor > queues.factor ? next.late : queues;
  // No uplink knowledge and none configured: the safe start, everything on the device until the link is measured.
  const safe = i.link === undefined;
  const link: FittedLink = i.link ?? {
    link: { setupMs: 0, alphaMs: 0, mtu: 1500, betaMsPerByte: Number.POSITIVE_INFINITY },
    bandwidthBps: 0,
    samples: 0,
    source: 'configured',
  };
  const power = presetPower(profile.device.preset ?? undefined, opts.presets);
  const objective: Objective =
    opts.objective !== 'auto' ? opts.objective : (i.telemetry?.window ?? 1) > 1 ? 'throughput' : 'latency';
  if (objective === 'energy' && !power) {
    const reason =
      `the energy objective needs the device's power figures, and its profile names ` +
      (profile.device.preset
        ? `preset ${profile.device.preset}, which has none`
        : 'no device preset (presets with power figures are emulated or declared by name)');
    if (reason !== acc.lastNoPlan) next.out.push({ kind: 'no-plan', device, reason });
    next.lastNoPlan = reason;
    return next;
  }
  const outputBytes = profile.cuts.find((c) => c.index === profile.layers.length)?.bytes ?? 0;
  const returnMs = safe ? undefined : returnExcess(next.returns ?? [], transferMs(link.link, outputBytes));
  const inputs = {
    profile,
    serverMs,
    link,
    edgeLoad,
    serverLoad,
    objective,
    power,
    window: i.telemetry?.window,
    returnMs,
  };
  const replan = () => {
    const result = searchPartition(toSearchInput(inputs));
    if (safe) {
      // While the link is being measured, the workers load the tail the plan will likely need, so the first plan
      // on the measured link need not wait for one (seconds for a large model). Only what workers report warm
      // tails for (they take prepares); they load these only while their session cache has room.
      if (
        acc.speculated !== modelId &&
        (opts.prepareMs ?? 0) > 0 &&
        fresh.some((t) => t.warm !== undefined)
      ) {
        next.speculated = modelId;
        const at = (bps: number) =>
          searchPartition(
            toSearchInput({
              ...inputs,
              link: {
                link: { setupMs: 0, alphaMs: 0, mtu: 1500, betaMsPerByte: 8000 / bps },
                bandwidthBps: bps,
                samples: 0,
                source: 'configured',
              },
            }),
          ).best.index;
        for (const cut of likelyCuts(at, profile.layers.length))
          next.out.push({ kind: 'prepare', device, modelId, cut, speculative: true });
      }
      const edgeOnly = result.candidates.find((c) => c.index === profile.layers.length)!;
      return {
        result,
        d: {
          state: { current: edgeOnly.index, safe: true },
          switchTo: decision.current === undefined ? edgeOnly : undefined,
          reason:
            'safe start: the device has reported no uplink measurement yet (its link probe runs when it connects), ' +
            'so it runs everything itself until then',
        },
      };
    }
    // The first plan on a measured link replaces the safe start at once, without the hold; so does the first plan
    // after the link estimator detected a change (a confirmed change is evidence, not noise).
    // A change counts until the samples after it pin the link down: then it is acted on at once, once.
    const state = decision.safe ? {} : decision;
    const changed =
      link.change !== undefined && link.change !== acc.actedOnChange && link.determined === true;
    if (changed) next.actedOnChange = link.change;
    // So is an edge or server load that moved by half or more since the plan in force was decided (the edge's is
    // the median of several heads already; the server's comes from its queues or from frames that missed their
    // deadline).
    const moved = (before: number, after: number) => Math.abs(after - before) >= LOAD_STEP * before;
    const loadMoved =
      acc.basis !== undefined &&
      (moved(acc.basis.edgeLoad, edgeLoad.factor) || moved(acc.basis.serverLoad, serverLoad.factor));
    const hysteresis = changed || loadMoved ? { ...opts.hysteresis, holdMs: 0 } : opts.hysteresis;
    return { result, d: decide(state, result, now, hysteresis) };
  };
  const { result, d } = opts.measure ? opts.measure(replan) : replan();
  next.decision = d.state;
  // Algorithm 1's curve now, for the live Fig. 3: on each new telemetry message, once the device has a plan and its
  // link is known, at most PREDICTIONS_PER_SECOND per device (the evaluations in between are not reported). Called
  // where the step ends, so `chosen` and `seq` are those of the plan in force after it.
  const predict = (): void => {
    const chosen = next.decision.current;
    if (safe || !freshTelemetry || i.telemetry === undefined || chosen === undefined || next.seq === 0)
      return;
    if (acc.predictedAt !== undefined && now - acc.predictedAt < 1000 / PREDICTIONS_PER_SECOND) return;
    next.predictedAt = now;
    const bps = link.bandwidthBps;
    next.out.push({
      kind: 'predictions',
      device,
      predictions: {
        version: 1,
        device,
        modelId,
        at: now,
        seq: next.seq,
        chosen,
        best: result.best.index,
        curve: predictedCurve(result.candidates, [chosen, result.best.index]),
        inputs: {
          ...(Number.isFinite(bps) && bps >= 0 ? { linkKbps: bps / 1000 } : {}),
          edgeLoad: edgeLoad.factor,
          serverLoad: serverLoad.factor,
        },
      },
    });
  };
  // The tail of a new cut is loaded on the workers before the device moves there: its first frames would otherwise
  // wait for the session (seconds for a large model), miss their deadline and fall back. The cut in force stays
  // meanwhile; the very first plan is not held (there is none in force), but its tail is prepared too.
  let prepared = '';
  if (d.switchTo && !safe && d.switchTo.index < profile.layers.length) {
    const k = d.switchTo.index;
    const key = `${modelId}:${k}`;
    const reporting = fresh.filter((t) => t.warm !== undefined);
    const warmOn = reporting.filter((t) => t.warm!.includes(key)).length;
    const waitMs = opts.prepareMs ?? 0;
    if (reporting.length > 0 && warmOn === 0 && waitMs > 0) {
      const since = acc.preparing?.cut === k ? acc.preparing.since : now;
      if (acc.preparing?.cut !== k) next.out.push({ kind: 'prepare', device, modelId, cut: k });
      if (decision.current !== undefined && now - since < waitMs) {
        next.preparing = { cut: k, since };
        // The gain has held: once the tail is ready, the switch is due at once.
        next.decision = {
          ...decision,
          pending: { index: k, since: now - opts.hysteresis.holdMs },
        };
        predict();
        return next;
      }
      if (decision.current !== undefined)
        prepared = `; no worker reported cut ${k}'s tail loaded within ${(waitMs / 1000).toFixed(1)} s of asking`;
    } else if (acc.preparing?.cut === k) {
      prepared = `; cut ${k}'s tail loaded on ${warmOn} of ${reporting.length} workers first (${((now - acc.preparing.since) / 1000).toFixed(1)} s)`;
    }
  }
  const basis: Basis = {
    bandwidthBps: safe ? undefined : link.bandwidthBps,
    edgeLoad: edgeLoad.factor,
    serverLoad: serverLoad.factor,
    edgeSource: edgeLoad.source,
    serverSource: serverLoad.source,
    change: link.change,
  };
  if (d.switchTo) {
    const best = d.switchTo;
    const why =
      d.reason + (decision.safe && !safe ? ' on the measured uplink' : evidenceChange(acc.basis, basis));
    next.basis = basis;
    const cut = profile.cuts.find((c) => c.index === best.index)!;
    const edgeOnly = result.candidates.find((c) => c.index === profile.layers.length);
    const offload = result.candidates.find((c) => c.index === 0);
    next.seq = acc.seq + 1;
    next.out.push({
      kind: 'plan',
      device,
      plan: buildPlan({
        device,
        modelId: profile.model.id,
        seq: next.seq,
        cut,
        objective,
        predicted: {
          edgeMs: best.edgeMs,
          transferMs: best.transferMs,
          serverMs: best.serverMs,
          totalMs: best.totalMs,
          energyJ: best.energyJ,
        },
        reason:
          `${why}${prepared}; predicted ${best.totalMs.toFixed(1)} ms per frame (period ${best.periodMs.toFixed(1)} ms)` +
          (safe
            ? ''
            : ` vs ${offload?.totalMs.toFixed(1)} ms full offload and ${edgeOnly?.totalMs.toFixed(1)} ms on the device alone`),
        inputs: {
          link: safe
            ? { source: 'none', samples: 0 }
            : {
                ...link.link,
                bandwidthBps: link.bandwidthBps,
                samples: link.samples,
                source: link.source,
                ...(link.bounded ? { bounded: link.bounded } : {}),
                ...(link.change ? { change: link.change } : {}),
              },
          ...(returnMs !== undefined ? { returnMs } : {}),
          edgeLoad: { mode: opts.edgeLoadMode, factor: edgeLoad.factor, source: edgeLoad.source },
          serverLoad: inputs.serverLoad,
          serverProfiles: profiles.length,
          edgeProfile: profile.kind,
        },
        issuedAt: now,
        // The paper's Fig. 3 for this plan: every cut's prediction; none in the safe start (no link measured).
        ...(safe ? {} : { curve: predictedCurve(result.candidates, [best.index, result.best.index]) }),
      }),
    });
  }
  predict();
  return next;
}

/**
 * One pipeline per device that publishes a profile, built by `plan` from the device's profiles; it ends, with one
 * `forgotten` event, when the device has sent neither a profile nor telemetry for `forgetMs` (never if undefined),
 * so the state it holds is bounded by the devices alive.
 */
function perDevice(
  src: PlannerSources,
  forgetMs: number | undefined,
  scheduler: SchedulerLike,
  plan: (device: string, profiles$: Observable<DeviceProfile>) => Observable<PlannerEvent>,
): Observable<PlannerEvent> {
  // Every sign of life of a device: a profile or a telemetry message.
  const alive$ = merge(
    src.deviceProfiles.pipe(map((e) => e.device)),
    src.deviceTelemetry.pipe(map((t) => t.device)),
  );
  // A device's group lasts until it has been silent for forgetMs.
  const silence = (device: string) =>
    alive$.pipe(
      filter((d) => d === device),
      startWith(device),
      switchMap(() => timer(forgetMs!, scheduler)),
    );
  return src.deviceProfiles.pipe(
    groupBy((e) => e.device, forgetMs === undefined ? {} : { duration: (g) => silence(g.key) }),
    mergeMap((group$) => {
      const device = group$.key;
      // The group ends when the device is forgotten: its state with it, and one event saying so.
      const ended$ = group$.pipe(takeLast(1));
      const forgotten$ = ended$.pipe(
        map((): PlannerEvent => ({ kind: 'forgotten', device, silentMs: forgetMs ?? 0 })),
      );
      return merge(plan(device, group$.pipe(map((e) => e.profile))).pipe(takeUntil(ended$)), forgotten$);
    }),
  );
}

/** Plans for every device that publishes a profile: Algorithm 1 and the hysteresis (PLAN_CUT=auto). */
export function planEvents(
  src: PlannerSources,
  opts: PlanningOptions,
  scheduler: SchedulerLike = asyncScheduler,
): Observable<PlannerEvent> {
  // Worker state is kept from the start: a worker's retained profile may arrive before any device's.
  const workers$ = workersState(src);
  const devices$ = perDevice(src, opts.forgetMs, scheduler, (device, profiles$) => {
    const telemetry$ = src.deviceTelemetry.pipe(
      filter((t) => t.device === device),
      shareReplay({ bufferSize: 1, refCount: true }),
    );
    const base = opts.linkBase ?? {
      alphaMs: opts.link?.alphaMs ?? 0,
      mtu: opts.link?.mtu ?? 1500,
    };
    // The link fit and the telemetry it came from move together, so a step never sees one without the other.
    const evidence$ = defer(() => {
      const estimator = new LinkEstimator(opts.linkWindow, base, opts.link);
      return telemetry$.pipe(
        map((telemetry) => ({
          telemetry,
          link: estimator.update({ samples: telemetry.transfers, censored: telemetry.censored ?? [] }),
        })),
        startWith({ telemetry: undefined, link: estimator.current }),
      );
    });
    return combineLatest([profiles$, workers$, evidence$, timer(0, opts.tickMs, scheduler)]).pipe(
      scan(
        (acc: DeviceAcc, [profile, workers, { link, telemetry }]) =>
          step(acc, { device, profile, workers, link, telemetry }, scheduler.now(), opts),
        { decision: {}, seq: 0, out: [] },
      ),
      mergeMap((acc) => acc.out),
    );
  });
  return merge(workers$.pipe(ignoreElements()), devices$);
}

/** Settings of the fixed-cut strategy. */
export interface FixedCutOptions {
  /** The configured cut: `middle`, a cut index or a node name (fixed-cut.ts). */
  cut: string;
  /** As {@link PlanningOptions.forgetMs}. */
  forgetMs?: number | undefined;
  /** Runs each choice, e.g. timing it for the metrics; default: just runs it. */
  measure?: <T>(choose: () => T) => T;
}

/**
 * Plans for every device that publishes a profile: the configured cut, with no prediction (PLAN_CUT other than
 * auto). A declared profile takes its cuts from a tail worker's profile of its model, and waits for one (saying so)
 * while none is known. Every profile a device publishes gets its plan again (a restarted broker may have lost the
 * retained one), and the workers load the cut's tail while the plan travels.
 */
export function fixedCutEvents(
  src: PlannerSources,
  opts: FixedCutOptions,
  scheduler: SchedulerLike = asyncScheduler,
): Observable<PlannerEvent> {
  const workers$ = workersState(src);
  const measure = opts.measure ?? (<T>(choose: () => T) => choose());
  const devices$ = perDevice(src, opts.forgetMs, scheduler, (device, profiles$) => {
    let seq = 0;
    const eventsFor = (profile: Profile): PlannerEvent[] => {
      const choice = measure(() => chooseFixedCut(profile.cuts, opts.cut));
      if ('error' in choice) return [{ kind: 'no-plan', device, reason: choice.error }];
      const plan = buildPlan({
        device,
        modelId: profile.model.id,
        seq: ++seq,
        cut: choice,
        objective: 'fixed',
        predicted: null,
        reason: `fixed cut ${opts.cut} from the planner's configuration`,
        inputs: { cut: opts.cut },
        issuedAt: scheduler.now(),
      });
      // A fixed cut has no other plan to keep, so the plan does not wait for the tail to be loaded.
      const prepare: PlannerEvent[] =
        choice.index < profile.layers.length
          ? [{ kind: 'prepare', device, modelId: profile.model.id, cut: choice.index }]
          : [];
      return [...prepare, { kind: 'plan', device, plan }];
    };
    return profiles$.pipe(
      switchMap((profile): Observable<Profile | string> => {
        if (profile.kind !== 'declared') return of(profile);
        // A declaration lacks the model's cuts: they come from a worker's profile of the model.
        const waiting = `no tail worker has published a profile of model ${profile.model.id.slice(0, 12)} yet`;
        return workers$.pipe(
          map((w) => {
            const known = [...w.profiles.values()].flatMap((m) => m.get(profile.model.id) ?? []);
            return known.length > 0 ? profileFromDeclaration(profile, known) : waiting;
          }),
          takeWhile((p) => p === waiting, true),
          distinctUntilChanged(),
        );
      }),
      mergeMap((p) =>
        typeof p === 'string' ? [{ kind: 'no-plan', device, reason: p } as const] : eventsFor(p),
      ),
    );
  });
  return merge(workers$.pipe(ignoreElements()), devices$);
}

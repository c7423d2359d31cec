/**
 * Test helper: small hand-made profiles (schemas/profile.ts) for planner tests.
 */
import { type Observable, Subject, takeUntil, timer } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import type { DeviceTelemetry, WorkerTelemetry } from '../../schemas/messages.ts';
import type { Profile } from '../../schemas/profile.ts';
import type { PlannerEvent, PlannerSources } from '../../services/planner/streams.ts';

/** A profile with the given per-layer ms and D_k (k = 0..N; the last is the output size). */
export function makeProfile(
  layerMs: number[],
  cutBytes: number[],
  opts: { id?: string; name?: string; device?: string } = {},
): Profile {
  if (cutBytes.length !== layerMs.length + 1) throw new Error('need N + 1 cut sizes');
  return {
    version: 1,
    kind: 'measured',
    device: { id: opts.device ?? 'dev', description: 'test', gflops: null },
    runtime: { name: 'onnxruntime-node', version: '1.30.0', threads: 1, optimization: 'all-minus-nchwc' },
    model: { name: opts.name ?? 'm', id: opts.id ?? 'a'.repeat(64), flops: 0, params: 0 },
    runs: 1,
    warmup: 0,
    wholeMs: { median: layerMs.reduce((a, b) => a + b, 0), p90: 0 },
    scale: 1,
    layers: layerMs.map((ms, i) => ({
      index: i + 1,
      name: `n${i + 1}`,
      op: 'Conv',
      ms,
      p90: ms,
      flops: 0,
      inputBytes: cutBytes[i]!,
      outputBytes: cutBytes[i + 1]!,
      paramBytes: 0,
    })),
    cuts: cutBytes.map((bytes, k) => ({
      index: k,
      after: k === 0 ? null : `n${k}`,
      bytes,
      tensors: [k === 0 ? 'input' : `t${k}`],
    })),
    createdAt: '2026-11-26T00:00:00.000Z',
  };
}

/** Device telemetry with three transfers (20, 50 and 80 kB) at the given link rate. */
export function deviceTelemetry(device: string, at: number, kbps: number, loadavg1 = 0.1): DeviceTelemetry {
  const transfers = [20_000, 50_000, 80_000].map((bytes) => ({
    bytes,
    seconds: (bytes * 8) / (kbps * 1000),
  }));
  return {
    device,
    at,
    loadavg1,
    cores: 2,
    cpuPercent: 0,
    headMs: {},
    transfers,
    framesInFlight: 0,
    fallbacks: 0,
  };
}

/** Telemetry of an idle tail worker with one slot; `warm` lists the tails it reports loaded, when given. */
export function workerTelemetry(worker: string, at: number, warm?: string[]): WorkerTelemetry {
  return {
    worker,
    at,
    loadavg1: 0,
    cores: 2,
    queueDepth: 0,
    running: 0,
    concurrency: 1,
    tailMs: {},
    served: 0,
    errors: 0,
    ...(warm ? { warm } : {}),
  };
}

/**
 * A search of three layers; D_0..D_3 (D_3 is the output, sent back after an offload). T(D) = 1 ms per 1000-byte
 * packet + 0.01 ms per byte, so the result's way back is T(10) = 1.1 ms.
 */
export const THREE_LAYERS = {
  edgeMs: [10, 20, 30],
  serverMs: [1, 2, 3],
  cuts: [
    { index: 0, bytes: 1000 },
    { index: 1, bytes: 500 },
    { index: 2, bytes: 2000 },
    { index: 3, bytes: 10 },
  ],
  link: { alphaMs: 1, mtu: 1000, betaMsPerByte: 0.01 },
};

/** The planner streams' sources as subjects a test drives. */
export function plannerSubjects() {
  return {
    deviceProfiles: new Subject<{ device: string; profile: Profile }>(),
    deviceTelemetry: new Subject<DeviceTelemetry>(),
    workerProfiles: new Subject<{ worker: string; profile: Profile }>(),
    workerTelemetry: new Subject<WorkerTelemetry>(),
    workerStatus: new Subject<{ worker: string; online: boolean }>(),
  };
}

/** The sources of {@link plannerSubjects}, and `at(ms, fn)` to run `fn` at a virtual time. */
export type PlannerScript = ReturnType<typeof plannerSubjects> & { at: (ms: number, fn: () => void) => void };

/**
 * Runs the planner streams (`events`, by default Algorithm 1's planEvents with `opts`) on scripted inputs for
 * `untilMs` of virtual time; returns every event with its virtual time.
 */
export function runPlanner(
  script: (s: PlannerScript) => void,
  untilMs: number,
  events: (s: PlannerSources, scheduler: TestScheduler) => Observable<PlannerEvent>,
): Array<{ at: number; event: PlannerEvent }> {
  const scheduler = new TestScheduler((a, b) => a === b);
  const out: Array<{ at: number; event: PlannerEvent }> = [];
  scheduler.run(() => {
    const s = plannerSubjects();
    events(s as PlannerSources, scheduler)
      .pipe(takeUntil(timer(untilMs, scheduler)))
      .subscribe((event) => out.push({ at: scheduler.now(), event }));
    script({ ...s, at: (ms, fn) => scheduler.schedule(fn, ms) });
  });
  return out;
}

/**
 * Part 1 of `npm run bench -- pipeline`: a real EdgeHead (in this process) runs frames through the tail worker of
 * bench/pipeline-stack.ts, with its uplink shaped as `EMULATE_UPLINK` shapes it (EdgeOptions.uplink, measurement/shaping.ts).
 *
 * - Latency mode: window 1, each frame starts `gapMs` after the previous one was answered, so every frame finds the
 *   edge, the link, the broker and the worker idle.
 * - Throughput mode: window W, the source hands frames over as fast as the edge takes them.
 */

import type { CutInfo, ModelHandle } from '../model/handle.ts';
import { mulberry32 } from '../model/random.ts';
import { systemClock } from '../runtime/clock.ts';
import { silentLogger } from '../runtime/log.ts';
import { Connection } from '../runtime/mqtt.ts';
import type { WireTensor } from '../schemas/codec.ts';
import type { Plan } from '../schemas/messages.ts';
import { topics } from '../schemas/topics.ts';
import { EdgeHead, type FrameReport } from '../services/edge-head/edge.ts';
import type { Frame } from '../services/edge-head/frames.ts';
import { randomInputs } from '../services/edge-head/frames.ts';
import { makeProfileFromCosts } from './profile-fixture.ts';

/** The device id the benchmark's edge uses. */
export const BENCH_DEVICE = 'bench-edge';

/** One configuration of the edge. */
export interface EdgeRun {
  brokerUrl: string;
  model: ModelHandle;
  /** Emulated uplink rate, bits per second; 0 leaves the uplink unshaped. */
  rateBps: number;
  window: number;
  /** Frames taken into the figures. */
  frames: number;
  /** Frames run first and left out of the figures (session loading, first-touch page faults). */
  warmup: number;
  /** Latency mode: idle time between an answer and the next frame (ms); undefined = throughput mode. */
  gapMs?: number;
  threads: number;
}

/** What one configuration measured. */
export interface EdgeRunResult {
  /** Reports of the measured frames, in completion order. */
  reports: FrameReport[];
  /** When each measured frame completed (ms, this process's clock), in completion order. */
  completedAt: number[];
  /** Frames whose tail ran on the edge (a deadline or connection problem): should be 0. */
  fallbacks: number;
}

/** Publishes the retained plan that puts the benchmark's edge on `cut` (no prediction: a fixed cut). */
export async function publishPlan(brokerUrl: string, model: ModelHandle, cut: CutInfo): Promise<void> {
  const conn = new Connection({
    url: brokerUrl,
    clientId: 'bench-plan',
    role: 'planner',
    statusTopic: topics.plannerStatus.build({ planner: 'bench-plan' }),
    logger: silentLogger,
  });
  await conn.start();
  const plan: Plan = {
    version: 1,
    device: BENCH_DEVICE,
    modelId: model.id,
    seq: 1,
    cut: { index: cut.index, after: cut.after, bytes: cut.bytes, tensors: cut.tensors.map((t) => t.name) },
    objective: 'fixed',
    predicted: null,
    reason: 'benchmark: fixed cut',
    inputs: {},
    issuedAt: Date.now(),
  };
  await conn.publish(topics.plan.build({ device: BENCH_DEVICE }), JSON.stringify(plan), {
    qos: 1,
    retain: true,
  });
  await conn.stop();
}

/** A few distinct inputs made up front, so the source costs nothing while frames run. */
function inputSet(model: ModelHandle, n: number): WireTensor[][] {
  const rand = mulberry32(7);
  return Array.from({ length: n }, () => randomInputs(model.inputs, rand));
}

/** Runs one configuration of the edge on a fresh EdgeHead (fresh connection, shaped from its first byte). */
export async function runEdge(o: EdgeRun): Promise<EdgeRunResult> {
  const edge = new EdgeHead(
    o.model,
    makeProfileFromCosts(o.model, 10),
    {
      mqttUrl: o.brokerUrl,
      deviceId: BENCH_DEVICE,
      window: o.window,
      threads: o.threads,
      verify: false,
      // No frame should fall back: a frame queued behind W others on a 10 Mbit/s link waits seconds.
      resultTimeoutMs: 120_000,
      planWaitMs: 10_000,
      telemetryMs: 1000,
      // 0: not shaped at all (for comparisons).
      uplink: o.rateBps > 0 ? { rateBps: o.rateBps, setupMs: 0 } : undefined,
    },
    silentLogger,
  );
  const inputs = inputSet(o.model, 4);
  const total = o.warmup + o.frames;
  const reports: FrameReport[] = [];
  const completedAt: number[] = [];
  let done = 0;
  let wake: (() => void) | undefined;
  async function* source(): AsyncGenerator<Frame> {
    for (let i = 0; i < total; i++) {
      if (o.gapMs !== undefined && i > 0) {
        // Latency mode: wait for the previous answer, then let everything settle.
        while (done < i)
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
        await new Promise((r) => setTimeout(r, o.gapMs));
      }
      yield { index: i, capturedAt: systemClock.now(), inputs: inputs[i % inputs.length]! };
    }
  }
  try {
    await edge.start();
    if (!(await edge.waitForPlan())) throw new Error('the benchmark plan did not reach the edge');
    await edge.run(source(), (r) => {
      const at = systemClock.now();
      if (done++ >= o.warmup) {
        reports.push(r);
        completedAt.push(at);
      }
      const w = wake;
      wake = undefined;
      w?.();
    });
    return { reports, completedAt, fallbacks: edge.fallbacks };
  } finally {
    await edge.stop();
  }
}

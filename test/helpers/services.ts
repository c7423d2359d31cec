/**
 * Test helpers: option sets of the services with test-friendly defaults.
 */

import { defaultWeightsDir } from '../../runtime/service-settings.ts';
import { TAIL_GROUP } from '../../schemas/topics.ts';
import type { EdgeOptions } from '../../services/edge-head/edge.ts';
import type { TailWorkerOptions } from '../../services/server-tail/worker.ts';

/** The weight files of the services tests run in-process (as the services' default, a directory of this user's). */
export const TEST_WEIGHTS_DIR = `${defaultWeightsDir()}-test`;

/** Tail worker options: no start-up profiling unless asked. */
export function tailOptions(
  o: Pick<TailWorkerOptions, 'mqttUrl' | 'workerId' | 'modelsDir'> & Partial<TailWorkerOptions>,
): TailWorkerOptions {
  return {
    group: TAIL_GROUP,
    concurrency: 2,
    threads: 1,
    maxRequestBytes: 1 << 24,
    sessionCache: 4,
    telemetryMs: 1000,
    profileRuns: 0,
    weightsDir: TEST_WEIGHTS_DIR,
    ...o,
  };
}

/** Edge options. */
export function edgeOptions(
  o: Pick<EdgeOptions, 'mqttUrl' | 'deviceId'> & Partial<EdgeOptions>,
): EdgeOptions {
  return {
    window: 2,
    threads: 1,
    verify: true,
    resultTimeoutMs: 10_000,
    planWaitMs: 10_000,
    telemetryMs: 1000,
    weightsDir: TEST_WEIGHTS_DIR,
    ...o,
  };
}

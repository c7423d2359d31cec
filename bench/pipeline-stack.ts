/**
 * The services of `npm run bench -- pipeline` as real processes: the embedded broker (`edgecut broker`, aedes on a
 * free loopback port) and one tail worker (`edgecut tail`, one inference at a time, ORT threads 1, no start-up
 * profiling) over a temporary models directory holding the benchmarked model. The edge runs in the benchmark's own
 * process, so the three share this host's cores the way a gateway's services would.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ServiceProcess, startService } from '../cli/processes.ts';
import type { ModelHandle } from '../model/handle.ts';

/** A running broker and tail worker. */
export interface PipelineStack {
  /** `mqtt://127.0.0.1:<port>` of the embedded broker. */
  brokerUrl: string;
  /** The tail worker's id (FrameReport.tailBy of offloaded frames). */
  workerId: string;
  /** Stops both processes and removes the models directory. Idempotent. */
  stop(): Promise<void>;
}

/** Where a child's output goes: warnings and errors to this process's stderr, the rest nowhere. */
function passWarnings(name: string) {
  return {
    onStdout: () => undefined,
    onStderr: (line: string) => process.stderr.write(`[${name}] ${line}\n`),
  };
}

/** Starts `edgecut broker` and `edgecut tail` serving `model`; stop them with `stop()`. */
export async function startPipelineStack(model: ModelHandle, threads: number): Promise<PipelineStack> {
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-bench-pipeline-'));
  await writeFile(join(dir, 'model.onnx'), model.bytes);
  const procs: ServiceProcess[] = [];
  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      // The worker first, so it leaves the broker cleanly.
      for (const p of [...procs].reverse()) await p.stop(5000);
      await rm(dir, { recursive: true, force: true });
    })();
    return stopped;
  };
  try {
    const env = { LOG_LEVEL: 'warn' };
    const broker = startService(
      'broker',
      ['broker', '--host', '127.0.0.1', '--port', '0', '--ws-port', '0'],
      { env, ...passWarnings('broker') },
    );
    procs.push(broker);
    const { port } = await broker.ready;
    const brokerUrl = `mqtt://127.0.0.1:${port as number}`;
    const workerId = 'bench-tail';
    const worker = startService(
      'tail',
      [
        'tail',
        '--worker-id',
        workerId,
        '--models-dir',
        dir,
        '--concurrency',
        '1',
        '--threads',
        String(threads),
      ],
      { env: { ...env, MQTT_URL: brokerUrl, PROFILE_RUNS: '0' }, ...passWarnings('tail') },
    );
    procs.push(worker);
    await worker.ready;
    return { brokerUrl, workerId, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

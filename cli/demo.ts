/**
 * `edgecut demo`: the whole system on one machine. It writes the demo CNN (built in code) to a temporary models
 * directory and starts, as separate processes, the embedded broker, the planner (a fixed cut), one tail worker and
 * one edge-head. The edge prints a line per frame; with `--frames N` it stops after N frames and the demo exits 0
 * only if every offloaded result equals the whole model run locally.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { UserError } from '../runtime/errors.ts';
import { writeDemoModel } from '../services/edge-head/main.ts';
import { type ServiceProcess, startBrokerProcess, startService } from './processes.ts';

const DemoOptions = z.object({
  frames: z.coerce.number().int().min(0),
  window: z.coerce.number().int().min(1),
  cut: z.string().min(1),
});

/** Runs the demo; returns the exit code. */
export async function runDemo(raw: { frames: string; window: string; cut: string }): Promise<number> {
  const parsed = DemoOptions.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new UserError(
      `--${String(issue?.path[0])}=${JSON.stringify(raw[issue?.path[0] as keyof typeof raw])} is not allowed: expected a whole number >= ${issue?.path[0] === 'window' ? 1 : 0}`,
    );
  }
  const opts = parsed.data;
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-demo-'));
  const started: ServiceProcess[] = [];
  const quiet = { LOG_LEVEL: 'warn' };
  let stopping = false;
  const onSignal = () => {
    stopping = true;
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const modelPath = await writeDemoModel(dir);
    process.stdout.write(
      `demo: model ${modelPath}; starting broker, planner, tail worker and edge as separate processes\n`,
    );
    const { proc: broker, url } = await startBrokerProcess({ env: quiet });
    started.push(broker);
    const env = { ...quiet, MQTT_URL: url };
    const planner = startService('planner', ['planner', '--planner-id', 'demo-planner', '--cut', opts.cut], {
      env,
    });
    const tail = startService('tail', ['tail', '--worker-id', 'demo-tail-1', '--models-dir', dir], { env });
    started.push(planner, tail);
    await Promise.all([planner.ready, tail.ready]);
    const edgeArgs = [
      'edge',
      '--device-id',
      'demo-robot-1',
      '--model',
      modelPath,
      '--frames',
      String(opts.frames),
    ];
    edgeArgs.push('--window', String(opts.window), '--verify', opts.frames > 0 ? 'true' : 'false');
    const edge = startService('edge', edgeArgs, { env, prefix: '' });
    started.push(edge);
    const code = await edge.exited;
    return stopping && opts.frames === 0 ? 0 : code;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    // Edge first, broker last, so each service can still say goodbye through the broker.
    for (const p of started.reverse()) await p.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

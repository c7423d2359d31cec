/**
 * How the profiler times its sessions: round-robin runs measured by two clocks, and the node-less model whose run
 * prices handing tensors back to JavaScript.
 */
import type * as ort from 'onnxruntime-node';
import { valueInfo } from '../model/builder.ts';
import type { CrossingTensor } from '../model/handle.ts';
import { DataType, writeModel } from '../model/onnx.ts';
import { UserError } from '../runtime/errors.ts';

const inputsOf = (s: ort.InferenceSession, feeds: Record<string, ort.Tensor>) =>
  Object.fromEntries(s.inputNames.map((n) => [n, feeds[n]!]));

/** Run times of sessions, per session one sample per timed run, in ms by two clocks. */
export interface RunTimes {
  /** Wall clock (performance.now) around `session.run`. */
  wall: number[][];
  /** CPU time of this process (process.cpuUsage, user + system) during `session.run`. */
  cpu: number[][];
}

/**
 * Times sessions round-robin: each round runs every session once, in order (`warmup` untimed rounds first).
 * Round-robin makes a change of load on the host hit every session alike.
 */
export async function timeRoundRobin(
  sessions: readonly ort.InferenceSession[],
  feeds: readonly Record<string, ort.Tensor>[],
  opts: { runs: number; warmup: number; onRound?: (done: number, total: number) => void },
): Promise<RunTimes> {
  const inputs = sessions.map((s, i) => inputsOf(s, feeds[i]!));
  const wall: number[][] = sessions.map(() => []);
  const cpu: number[][] = sessions.map(() => []);
  const total = opts.warmup + opts.runs;
  for (let r = 0; r < total; r++) {
    for (let i = 0; i < sessions.length; i++) {
      const cpuStart = process.cpuUsage();
      const started = performance.now();
      await sessions[i]!.run(inputs[i]!);
      const ms = performance.now() - started;
      const used = process.cpuUsage(cpuStart);
      if (r >= opts.warmup) {
        wall[i]!.push(ms);
        cpu[i]!.push((used.user + used.system) / 1000);
      }
    }
    opts.onRound?.(r + 1, total);
  }
  return { wall, cpu };
}

const ELEM_TYPE: Record<string, number> = {
  float32: DataType.FLOAT,
  float16: DataType.FLOAT16,
  int8: DataType.INT8,
  uint8: DataType.UINT8,
  int32: DataType.INT32,
  int64: DataType.INT64,
};

/**
 * A model with no nodes whose outputs are its inputs: running it costs what `session.run` costs to hand these
 * tensors back to JavaScript (onnxruntime-node copies every output into a new ArrayBuffer).
 */
export function handoffModel(tensors: readonly CrossingTensor[]): Uint8Array {
  const vis = tensors.map((t) => {
    const elemType = ELEM_TYPE[t.dtype];
    if (elemType === undefined) throw new UserError(`cannot profile: tensor ${t.name} has dtype ${t.dtype}`);
    return valueInfo({ name: t.name, dtype: elemType, shape: t.shape.map((d) => Math.max(d, 1)) });
  });
  return writeModel({
    ir_version: 7,
    opset_import: [{ domain: '', version: 13 }],
    producer_name: 'edgecut-profile',
    metadata_props: [],
    graph: { name: 'handoff', node: [], initializer: [], input: vis, output: vis, value_info: [] },
  });
}

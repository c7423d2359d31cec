/**
 * `edgecut device bench` and `edgecut device presets`.
 */
import { z } from 'zod';
import { benchDevice } from '../measurement/device/bench.ts';
import { saveHostBench } from '../measurement/device/host.ts';
import { allPresets } from '../measurement/device/presets.ts';
import { UserError } from '../runtime/errors.ts';
import { table } from './format.ts';
import { withProgress } from './progress.ts';

const BenchFlags = z.object({
  threads: z.coerce
    .number({ message: 'expected a whole number' })
    .int('expected a whole number')
    .min(1, 'expected a whole number >= 1'),
  seconds: z.coerce
    .number({ message: 'expected a number of seconds' })
    .positive('expected a number of seconds > 0')
    .max(60, 'expected at most 60 seconds'),
});

/** Validates flags with a zod object; the error names the flag, the value and what is allowed. */
export function parseFlags<T>(schema: z.ZodType<T>, raw: Record<string, unknown>): T {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const flag = String(issue.path[0]).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    throw new UserError(
      `--${flag}=${JSON.stringify(raw[String(issue.path[0])])} is not allowed: ${issue.message}`,
    );
  }
  return parsed.data;
}

/** `edgecut device bench [--threads T] [--seconds S] [--json]`. */
export async function deviceBenchCommand(raw: {
  threads: string;
  seconds: string;
  json?: boolean;
}): Promise<void> {
  const opts = parseFlags(BenchFlags, raw);
  const result = await withProgress(
    'edgecut device bench',
    async (p) => {
      p.step(`timing GEMM, convolution and memory bandwidth (${opts.seconds} s each)`);
      return benchDevice(opts);
    },
    { since: performance.timeOrigin },
  );
  const path = await saveHostBench(result);
  if (raw.json) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return;
  }
  process.stdout.write(`${result.cpu}, ${result.cores} cores; ${result.threads} onnxruntime thread(s)\n\n`);
  process.stdout.write(
    table(
      ['kernel', 'ms (median)', 'rate'],
      result.kernels.map((k) => [
        k.kernel,
        k.ms.toFixed(2),
        k.kernel.startsWith('Add') ? `${k.rate.toFixed(1)} GB/s` : `${k.rate.toFixed(1)} GFLOPs`,
      ]),
      [1, 2],
    ),
  );
  process.stdout.write(
    `\nsustained ${result.gflops.toFixed(1)} GFLOPs (median of GEMM and convolution), memory ${result.bandwidthGBs.toFixed(1)} GB/s; saved to ${path}\n`,
  );
}

/** `edgecut device presets [--presets file]`. */
export function devicePresetsCommand(opts: { presets?: string }): void {
  const rows = allPresets(opts.presets).map((p) => [
    p.name,
    String(p.gflops),
    Object.entries(p.measured)
      .map(([m, ms]) => `${m} ${ms} ms`)
      .join(', ') || '-',
    p.power ? `${p.power.computeW} / ${p.power.radioW} / ${p.power.idleW}` : '-',
    p.description,
  ]);
  process.stdout.write(
    table(
      ['preset', 'GFLOPs', 'measured whole-model times', 'W compute / radio / idle', 'device'],
      rows,
      [1],
    ),
  );
}

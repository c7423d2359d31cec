/**
 * The host a sweep or a set of trained predictors belongs to: latencies only transfer between identical CPUs,
 * runtimes and thread counts, so files record them (and caches key on them).
 */
import { cpus, hostname } from 'node:os';
import * as ort from 'onnxruntime-node';
import { z } from 'zod';

export const HostInfoSchema = z.object({
  hostname: z.string(),
  cpu: z.string(),
  cores: z.number().int(),
  platform: z.string(),
  arch: z.string(),
  runtime: z.string(),
  threads: z.number().int().min(1),
});
/** This host, as sweep files and trained predictors record it. */
export type HostInfo = z.infer<typeof HostInfoSchema>;

/** Describes this host and runtime (threads: the intra-op threads the timings use). */
export function hostInfo(threads = 1): HostInfo {
  return {
    hostname: hostname(),
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    cores: cpus().length,
    platform: process.platform,
    arch: process.arch,
    runtime: `onnxruntime-node ${ort.env.versions.common}`,
    threads,
  };
}

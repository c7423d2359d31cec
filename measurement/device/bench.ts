/**
 * Measures this host's sustained compute speed the way a DNN uses it: GEMM and convolution GFLOPs through
 * onnxruntime with the production session settings, and memory bandwidth through a large element-wise Add (two
 * reads and one write per element). LINPACK figures, like the paper's Tables I and II, overstate what networks
 * reach; these kernels are what the layers actually run.
 */
import { cpus } from 'node:os';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../../model/builder.ts';
import { seededUniform } from '../../model/random.ts';
import { createSession } from '../../model/runtime.ts';
import { median, quantile } from '../../planning/stats.ts';

/** One kernel's measurement. */
export interface KernelResult {
  kernel: string;
  /** Floating-point operations (or bytes moved, for bandwidth) of one run. */
  work: number;
  /** Median milliseconds of one run. */
  ms: number;
  /** GFLOPs (or GB/s for bandwidth). */
  rate: number;
}

/** What `edgecut device bench` measures. */
export interface DeviceBench {
  cpu: string;
  cores: number;
  threads: number;
  /** Sustained GFLOPs: the median of the GEMM and convolution rates. */
  gflops: number;
  /** Memory bandwidth in GB/s. */
  bandwidthGBs: number;
  kernels: KernelResult[];
}

function gemmModel(n: number): Uint8Array {
  const b = new GraphBuilder({ name: 'bench_gemm', seed: 1 });
  const x = b.input('x', [n, n]);
  b.output(b.gemm(x, n, 'gemm'));
  return b.toBytes();
}

function convModel(c: number, hw: number): Uint8Array {
  const b = new GraphBuilder({ name: 'bench_conv', seed: 1 });
  const x = b.input('x', [1, c, hw, hw]);
  b.output(b.conv(x, c, { kernel: 3, pad: 1, name: 'conv' }));
  return b.toBytes();
}

function addModel(n: number): Uint8Array {
  const b = new GraphBuilder({ name: 'bench_add', seed: 1 });
  const x = b.input('x', [n]);
  const y = b.input('y', [n]);
  b.output(b.add(x, y, 'sum'));
  return b.toBytes();
}

async function timeIt(
  bytes: Uint8Array,
  feeds: Record<string, ort.Tensor>,
  threads: number,
  seconds: number,
): Promise<number> {
  const session = await createSession(bytes, { threads });
  try {
    for (let i = 0; i < 2; i++) await session.run(feeds);
    const samples: number[] = [];
    const end = performance.now() + seconds * 1000;
    while (samples.length < 5 || performance.now() < end) {
      const t0 = performance.now();
      await session.run(feeds);
      samples.push(performance.now() - t0);
      if (samples.length >= 1000) break;
    }
    // The fast end of the runs: other processes only ever slow a run down (a short kernel that is not preempted
    // runs at the CPU's speed), so a busy host still measures about its real speed.
    return quantile(samples, 0.1);
  } finally {
    await session.release();
  }
}

/** Runs the kernels for about `seconds` each with `threads` intra-op threads. */
export async function benchDevice(opts: { threads?: number; seconds?: number } = {}): Promise<DeviceBench> {
  const threads = opts.threads ?? 1;
  const seconds = opts.seconds ?? 1;
  const kernels: KernelResult[] = [];
  const n = 512;
  const gemmMs = await timeIt(
    gemmModel(n),
    { x: new ort.Tensor('float32', seededUniform(n * n, 2), [n, n]) },
    threads,
    seconds,
  );
  const gemmFlops = 2 * n * n * n + n * n;
  kernels.push({
    kernel: `GEMM ${n}x${n}x${n}`,
    work: gemmFlops,
    ms: gemmMs,
    rate: gemmFlops / gemmMs / 1e6,
  });
  const c = 128;
  const hw = 28;
  const convMs = await timeIt(
    convModel(c, hw),
    { x: new ort.Tensor('float32', seededUniform(c * hw * hw, 3), [1, c, hw, hw]) },
    threads,
    seconds,
  );
  const convFlops = 2 * c * hw * hw * c * 9 + c * hw * hw;
  kernels.push({
    kernel: `Conv 3x3 ${c}->${c} @${hw}x${hw}`,
    work: convFlops,
    ms: convMs,
    rate: convFlops / convMs / 1e6,
  });
  const len = 8 * 1024 * 1024;
  const vec = seededUniform(len, 4);
  const addMs = await timeIt(
    addModel(len),
    { x: new ort.Tensor('float32', vec, [len]), y: new ort.Tensor('float32', vec, [len]) },
    threads,
    seconds,
  );
  const moved = 3 * 4 * len;
  kernels.push({
    kernel: `Add 2x${len / (1024 * 1024)}M float32`,
    work: moved,
    ms: addMs,
    rate: moved / addMs / 1e6,
  });
  return {
    cpu: cpus()[0]?.model.trim() ?? 'unknown CPU',
    cores: cpus().length,
    threads,
    gflops: median([kernels[0]!.rate, kernels[1]!.rate]),
    bandwidthGBs: kernels[2]!.rate,
    kernels,
  };
}

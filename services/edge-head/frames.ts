/**
 * Frame sources of the edge-head. A frame is the set of graph inputs of one inference. Sources (`SOURCE`):
 * - `synthetic`: seeded random pixels in the model's input shapes;
 * - `image:<file>`: one PNG or JPEG, looped (or once with `LOOP=false`);
 * - `dir:<folder>`: the PNG and JPEG files of a folder in natural name order, looped or once (images.ts).
 * Every source delivers at most `FRAMES` frames (0 = no limit) at `FPS` (0 = as fast as the pipeline takes them).
 */

import { floatToHalf } from '../../model/half.ts';
import type { CrossingTensor, ModelHandle } from '../../model/handle.ts';
import { mulberry32 } from '../../model/random.ts';
import type { Logger } from '../../runtime/log.ts';
import { tensorFromTyped, type WireTensor } from '../../schemas/codec.ts';
import { imageInput, imageTensors, listImages, loadImage, type PreprocessJson } from './images.ts';

/** One frame: the model's inputs and when the frame was captured. */
export interface Frame {
  index: number;
  /** When the source handed the frame over (decoded and preprocessed, for image sources). */
  capturedAt: number;
  inputs: WireTensor[];
}

/** Where frames come from (the `SOURCE` setting). */
export type SourceSpec =
  | { kind: 'synthetic' }
  | { kind: 'image'; path: string }
  | { kind: 'dir'; path: string };

/** Parses `synthetic`, `image:<file>` or `dir:<folder>`; undefined when it is none of them. */
export function parseSourceSpec(text: string): SourceSpec | undefined {
  if (text === 'synthetic') return { kind: 'synthetic' };
  const m = /^(image|dir):(.+)$/.exec(text);
  if (!m) return undefined;
  return { kind: m[1] as 'image' | 'dir', path: m[2]! };
}

/** Random input tensors in the model's input shapes (values in [0, 1)). */
export function randomInputs(specs: readonly CrossingTensor[], rand: () => number): WireTensor[] {
  // Plain loops over typed arrays: `TypedArray.from({ length }, fn)` takes the generic iterable path, about 50 ns
  // an element, which made the synthetic camera cost more of the host's CPU per frame than the head it feeds.
  return specs.map((spec) => {
    const shape = spec.shape.map((d) => (d < 0 ? 1 : d));
    const n = shape.reduce((a, b) => a * b, 1);
    switch (spec.dtype) {
      case 'float32': {
        const a = new Float32Array(n);
        for (let i = 0; i < n; i++) a[i] = rand();
        return tensorFromTyped(spec.name, 'float32', shape, a);
      }
      case 'float16': {
        const a = new Uint16Array(n);
        for (let i = 0; i < n; i++) a[i] = floatToHalf(rand());
        return tensorFromTyped(spec.name, 'float16', shape, a);
      }
      case 'uint8': {
        const a = new Uint8Array(n);
        for (let i = 0; i < n; i++) a[i] = Math.floor(rand() * 256);
        return tensorFromTyped(spec.name, 'uint8', shape, a);
      }
      default:
        throw new Error(`the synthetic camera cannot fill input ${spec.name} of dtype ${spec.dtype}`);
    }
  });
}

/** Pacing of a source. */
export interface PaceOptions {
  /** Frames to deliver; 0 = until the inputs end or the signal aborts. */
  count: number;
  /** Frames per second; 0 = as fast as they are taken. */
  fps: number;
  now: () => number;
  signal?: AbortSignal;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Turns a stream of input sets into frames: numbered, at most `count`, frame i due at start + i / fps. */
export async function* pacedFrames(
  inputs: AsyncIterable<WireTensor[]> | Iterable<WireTensor[]>,
  opts: PaceOptions,
): AsyncGenerator<Frame> {
  const period = opts.fps > 0 ? 1000 / opts.fps : 0;
  const start = opts.now();
  let i = 0;
  for await (const set of inputs) {
    if (opts.signal?.aborted) return;
    if (period > 0) {
      const wait = start + i * period - opts.now();
      if (wait > 0) await sleep(wait, opts.signal);
      if (opts.signal?.aborted) return;
    }
    yield { index: i, capturedAt: opts.now(), inputs: set };
    i++;
    if (opts.count > 0 && i >= opts.count) return;
  }
}

function* randomStream(specs: readonly CrossingTensor[], seed: number): Generator<WireTensor[]> {
  const rand = mulberry32(seed);
  for (;;) yield randomInputs(specs, rand);
}

/** A synthetic camera: `count` frames (0 = endless) at `fps` (0 = as fast as they are taken). */
export function syntheticCamera(
  specs: readonly CrossingTensor[],
  opts: PaceOptions & { seed: number },
): AsyncGenerator<Frame> {
  return pacedFrames(randomStream(specs, opts.seed), opts);
}

/** What opening a source needs. */
export interface SourceOptions extends PaceOptions {
  /** Image sources: start again after the last image. */
  loop: boolean;
  /** Synthetic source: the seed. */
  seed: number;
  /** Preprocessing fields laid over the model's metadata (`PREPROCESS`). */
  preprocess?: PreprocessJson | undefined;
  logger: Logger;
}

function* repeat<T>(value: T, loop: boolean): Generator<T> {
  do yield value;
  while (loop);
}

/**
 * Opens a frame source. Everything that can be checked before the first frame is checked here (the model takes
 * images, the file or directory is readable, a single image decodes), so a bad setting stops the edge at start
 * with one line (UserError). A bad file in a directory is skipped while streaming (images.ts).
 */
export async function openFrameSource(
  spec: SourceSpec,
  model: ModelHandle,
  opts: SourceOptions,
): Promise<AsyncGenerator<Frame>> {
  if (spec.kind === 'synthetic') return syntheticCamera(model.inputs, opts);
  const input = imageInput(model, opts.preprocess);
  if (spec.kind === 'image') {
    const tensor = await loadImage(spec.path, input);
    return pacedFrames(
      (function* () {
        for (const t of repeat(tensor, opts.loop)) yield [t];
      })(),
      opts,
    );
  }
  const files = await listImages(spec.path);
  const tensors = imageTensors(files, input, { loop: opts.loop, logger: opts.logger, label: spec.path });
  return pacedFrames(
    (async function* () {
      for await (const t of tensors) yield [t];
    })(),
    opts,
  );
}

/** One line describing a source, for the start-up log. */
export function describeSource(
  spec: SourceSpec,
  opts: Pick<SourceOptions, 'loop' | 'fps' | 'count'>,
): string {
  const what =
    spec.kind === 'synthetic'
      ? 'synthetic camera'
      : `${spec.kind === 'image' ? 'image' : 'image directory'} ${spec.path}${opts.loop ? ' (looped)' : ' (once)'}`;
  const rate = opts.fps > 0 ? `${opts.fps} fps` : 'as fast as taken';
  return `${what}, ${rate}${opts.count > 0 ? `, ${opts.count} frames` : ''}`;
}

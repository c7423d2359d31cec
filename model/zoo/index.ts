// The model zoo: classic ImageNet classifiers rebuilt in code (no downloads), deterministic from
// a seed. Architectures, shapes, parameter counts and FLOPs are the real ones (torchvision
// layouts); weights are random, so predictions are meaningless but every layer does real work.
// Each model takes float32 NCHW `input` ([1,3,224,224]; Inception-v3 [1,3,299,299]) and gives
// `probs`, a Softmax over 1000 classes [1,1000], and carries metadata `edgecut.zoo` and
// `edgecut.preprocess` (ImageNet mean/std, RGB).

import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Value } from '../builder.ts';
import { type OnnxModel, writeModel, writeModelFile } from '../onnx.ts';
import { defineAlexNet } from './alexnet.ts';
import { defineInceptionV3 } from './inception-v3.ts';
import { defineMobileNetV2 } from './mobilenet-v2.ts';
import { Net } from './net.ts';
import { defineResNet50 } from './resnet-50.ts';
import { defineSqueezeNet } from './squeezenet.ts';

export { countParams } from '../params.ts';
export { imagenetPreprocess } from './net.ts';

export const ZOO_NAMES = [
  'squeezenet1.0',
  'squeezenet1.1',
  'alexnet',
  'inception-v3',
  'mobilenet-v2',
  'resnet-50',
] as const;
export type ZooName = (typeof ZOO_NAMES)[number];

/**
 * Version of the zoo's builders, part of every cache file name: bump it whenever a change to
 * builder.ts, builder-ops.ts or zoo/ alters the bytes of a built model.
 */
export const ZOO_BUILDER_VERSION = 1;

/** One zoo model. */
export interface ZooEntry {
  name: ZooName;
  title: string;
  /** The published parameter count (torchvision's, except Inception-v3: see its entry). */
  publishedParams: number;
  /** Input shape, NCHW. */
  input: number[];
  /** Builds the ONNX bytes; the same seed (default 1) always gives the same bytes. */
  build(seed?: number): Uint8Array;
}

function entry(
  name: ZooName,
  title: string,
  publishedParams: number,
  size: number,
  define: (net: Net) => Value,
): ZooEntry {
  const model = (seed: number) => {
    checkSeed(seed);
    const net = new Net(name.replace(/[^a-z0-9]+/gi, '_'), seed);
    return net.finish(define(net), name, seed, size);
  };
  models.set(name, model);
  return {
    name,
    title,
    publishedParams,
    input: [1, 3, size, size],
    build: (seed = 1) => writeModel(model(seed)),
  };
}

// The unencoded builds, for streaming a model to a file without holding its bytes.
const models = new Map<ZooName, (seed: number) => OnnxModel>();

/** The zoo by name. */
export const ZOO: Record<ZooName, ZooEntry> = {
  'squeezenet1.0': entry('squeezenet1.0', 'SqueezeNet 1.0', 1_248_424, 224, (n) =>
    defineSqueezeNet(n, '1.0'),
  ),
  'squeezenet1.1': entry('squeezenet1.1', 'SqueezeNet 1.1', 1_235_496, 224, (n) =>
    defineSqueezeNet(n, '1.1'),
  ),
  alexnet: entry('alexnet', 'AlexNet', 61_100_840, 224, defineAlexNet),
  // 23,851,784 is the Keras figure (BN beta + moving mean + moving variance); by countParams'
  // rule (torchvision's: BN scale + bias) the same network has 23,834,568 (-0.07%).
  'inception-v3': entry('inception-v3', 'Inception-v3 (no aux head)', 23_851_784, 299, defineInceptionV3),
  'mobilenet-v2': entry('mobilenet-v2', 'MobileNetV2 1.0', 3_504_872, 224, defineMobileNetV2),
  'resnet-50': entry('resnet-50', 'ResNet-50', 25_557_032, 224, defineResNet50),
};

/** True when `s` names a zoo model. */
export function isZooName(s: string): s is ZooName {
  return (ZOO_NAMES as readonly string[]).includes(s);
}

function checkSeed(seed: number): void {
  if (!Number.isSafeInteger(seed) || seed < 0)
    throw new RangeError(`zoo seed must be an integer >= 0, got ${seed}`);
}

/** The zoo cache directory: `$EDGECUT_CACHE_DIR/zoo`, else `<repo>/.cache/zoo`. */
export function defaultZooCacheDir(): string {
  const root = process.env.EDGECUT_CACHE_DIR || fileURLToPath(new URL('../../.cache/', import.meta.url));
  return join(root, 'zoo');
}

/** File name of a cached build: name, seed and builder version (a new version never reads old files). */
export function zooFileName(name: ZooName, seed = 1): string {
  return `${name}-seed${seed}-v${ZOO_BUILDER_VERSION}.onnx`;
}

const pending = new Map<string, Promise<string>>();

/**
 * Path of the model's .onnx file in the cache, building and writing it on first use. Files
 * appear atomically (temp file + rename), so concurrent processes never see a partial model;
 * two processes racing on a cold cache both build and the last rename wins (same bytes).
 */
export async function zooModelPath(
  name: ZooName,
  opts: { cacheDir?: string; seed?: number } = {},
): Promise<string> {
  if (!isZooName(name)) throw new RangeError(`unknown zoo model ${name}; known: ${ZOO_NAMES.join(', ')}`);
  const seed = opts.seed ?? 1;
  checkSeed(seed);
  const dir = opts.cacheDir ?? defaultZooCacheDir();
  const file = join(dir, zooFileName(name, seed));
  let p = pending.get(file);
  if (!p) {
    p = ensureFile(name, seed, dir, file).finally(() => pending.delete(file));
    pending.set(file, p);
  }
  return p;
}

async function ensureFile(name: ZooName, seed: number, dir: string, file: string): Promise<string> {
  const existing = await stat(file).catch(() => undefined);
  if (existing?.isFile() && existing.size > 0) return file;
  await mkdir(dir, { recursive: true });
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeModelFile(tmp, models.get(name)!(seed));
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return file;
}

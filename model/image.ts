/**
 * Image decoding and model input preparation: PNG (pngjs) and JPEG (jpeg-js) into interleaved 8-bit pixels, a bilinear
 * stretch to the model's size, and {@link preprocess} into an NCHW tensor (float32, or float16 as raw half bits).
 *
 * Pure JavaScript and deterministic: the same file gives the same tensor bytes on every machine, so classification
 * tests can compare with fixed expectations.
 */
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { UserError } from '../runtime/errors.ts';
import { floatToHalf } from './half.ts';

/**
 * Pixels, interleaved row-major, `channels` values per pixel in RGB or RGBA order, on the 0..255 scale: 8-bit as
 * decoded, float32 after {@link resizeBilinear}.
 */
export interface RgbImage {
  width: number;
  height: number;
  /** 3 = RGB, 4 = RGBA. */
  channels: 3 | 4;
  data: Uint8Array | Float32Array;
}

/** An image file that cannot be decoded (unknown format, corrupt data); the message names the source. */
export class ImageError extends UserError {}

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function isPng(b: Uint8Array): boolean {
  return b.length >= 8 && PNG_MAGIC.every((v, i) => b[i] === v);
}

function isJpeg(b: Uint8Array): boolean {
  return b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff;
}

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** Decodes a PNG to RGBA (pngjs expands palette, grey and 16-bit images to 8-bit RGBA). */
export function decodePng(bytes: Uint8Array, source = 'image'): RgbImage {
  try {
    const png = PNG.sync.read(asBuffer(bytes));
    return {
      width: png.width,
      height: png.height,
      channels: 4,
      data: new Uint8Array(png.data.buffer, png.data.byteOffset, png.data.byteLength),
    };
  } catch (err) {
    throw new ImageError(`${source}: not a decodable PNG (${(err as Error).message})`);
  }
}

/** Decodes a baseline or progressive JPEG to RGB (grey JPEGs come out with R = G = B). */
export function decodeJpeg(bytes: Uint8Array, source = 'image'): RgbImage {
  try {
    const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false });
    return { width: img.width, height: img.height, channels: 3, data: img.data };
  } catch (err) {
    throw new ImageError(`${source}: not a decodable JPEG (${(err as Error).message})`);
  }
}

/** Decodes PNG or JPEG bytes, recognised by their signature (not by the file name). */
export function decodeImage(bytes: Uint8Array, source = 'image'): RgbImage {
  if (isPng(bytes)) return decodePng(bytes, source);
  if (isJpeg(bytes)) return decodeJpeg(bytes, source);
  throw new ImageError(`${source}: not a PNG or JPEG file`);
}

// Source sample positions and weights along one axis for the half-pixel-centre convention.
function axisTaps(src: number, dst: number): { i0: Int32Array; i1: Int32Array; w1: Float64Array } {
  const i0 = new Int32Array(dst);
  const i1 = new Int32Array(dst);
  const w1 = new Float64Array(dst);
  const scale = src / dst;
  for (let x = 0; x < dst; x++) {
    // Centre of destination pixel x, mapped into source coordinates, clamped to the edge pixel centres.
    const s = Math.min(Math.max((x + 0.5) * scale - 0.5, 0), src - 1);
    const f = Math.floor(s);
    i0[x] = f;
    i1[x] = Math.min(f + 1, src - 1);
    w1[x] = s - f;
  }
  return { i0, i1, w1 };
}

/**
 * Bilinear stretch to `width` x `height` (aspect ratio not kept), with half-pixel centres: destination pixel x samples
 * source coordinate (x + 0.5) * src / dst - 0.5, clamped to [0, src - 1], from its two nearest source pixels per axis
 * (horizontal first, then vertical). The mapping is OpenCV's `INTER_LINEAR` and ONNX Resize's linear `half_pixel` mode;
 * unlike PIL's `BILINEAR` the filter is not widened when shrinking (no antialiasing).
 *
 * The result is float32 and not rounded back to 8 bits (like ONNX Resize or PyTorch's interpolate on a float tensor;
 * OpenCV on 8-bit images would round). That choice reproduces the expected probabilities in ../shared/models/README.md
 * (relative to the repo root): squeezenet1.0-fp16 gives pelican 0.8545 (README 0.85) and bald_eagle 0.3716 (0.37),
 * where rounding to 8 bits gives 0.8579, align-corners mapping 0.8452 and PIL's antialiased filter 0.40. Rounding
 * would also hinge on float error: exact .5 ties are common with these rational weights, and two algebraically equal
 * weight formulas already disagreed on 40 of the eagle's 150,528 rounded values. Same-size input is returned as is.
 */
export function resizeBilinear(img: RgbImage, width: number, height: number): RgbImage {
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0))
    throw new RangeError(`cannot resize to ${width}x${height}`);
  if (img.width === width && img.height === height) return img;
  const c = img.channels;
  const xs = axisTaps(img.width, width);
  const ys = axisTaps(img.height, height);
  const src = img.data;
  const out = new Float32Array(width * height * c);
  const rowStride = img.width * c;
  for (let y = 0; y < height; y++) {
    const r0 = ys.i0[y]! * rowStride;
    const r1 = ys.i1[y]! * rowStride;
    const wy = ys.w1[y]!;
    for (let x = 0; x < width; x++) {
      const c0 = xs.i0[x]! * c;
      const c1 = xs.i1[x]! * c;
      const wx = xs.w1[x]!;
      const o = (y * width + x) * c;
      for (let ch = 0; ch < c; ch++) {
        const top = src[r0 + c0 + ch]! * (1 - wx) + src[r0 + c1 + ch]! * wx;
        const bottom = src[r1 + c0 + ch]! * (1 - wx) + src[r1 + c1 + ch]! * wx;
        out[o + ch] = top * (1 - wy) + bottom * wy;
      }
    }
  }
  return { width, height, channels: c, data: out };
}

/** How a model wants its image input. */
export interface PreprocessSpec {
  /** Output [height, width]; the image is stretched to it with {@link resizeBilinear}. */
  size: [number, number];
  /** Channel order of the output planes. */
  channels: 'RGB' | 'BGR';
  /** Multiplies the 0..255 pixel value first (1 = raw 0..255, 1/255 = 0..1). Default 1. */
  scale?: number;
  /** Subtracted after scaling, one per output channel, in the output's channel order. Default 0. */
  mean?: readonly number[];
  /** Divides after the mean, one per output channel, in the output's channel order. Default 1. */
  std?: readonly number[];
  /** Element type of the tensor; float16 values are rounded to nearest even from the float32 value. */
  dtype: 'float32' | 'float16';
}

/** An NCHW tensor [1, 3, h, w]: float32 values, or float16 as raw half-precision bits. */
export interface ImageTensor {
  dtype: 'float32' | 'float16';
  shape: [1, 3, number, number];
  data: Float32Array | Uint16Array;
}

/**
 * Stretches the image to `spec.size` and writes planar channels (alpha dropped): value = (pixel * scale - mean[c]) /
 * std[c], computed in float32 arithmetic (the order a float32 preprocessing pipeline would use), then converted to
 * `spec.dtype`.
 */
export function preprocess(img: RgbImage, spec: PreprocessSpec): ImageTensor {
  const [h, w] = spec.size;
  const scale = spec.scale ?? 1;
  const mean = spec.mean ?? [0, 0, 0];
  const std = spec.std ?? [1, 1, 1];
  if (mean.length !== 3 || std.length !== 3) throw new RangeError('mean and std need one value per channel');
  const sized = resizeBilinear(img, w, h);
  const order = spec.channels === 'RGB' ? [0, 1, 2] : [2, 1, 0];
  const plane = h * w;
  const values = new Float32Array(3 * plane);
  const px = sized.data;
  const c = sized.channels;
  const f = Math.fround;
  for (let oc = 0; oc < 3; oc++) {
    const ic = order[oc]!;
    const m = f(mean[oc]!);
    const s = f(std[oc]!);
    const k = f(scale);
    const base = oc * plane;
    for (let i = 0; i < plane; i++) values[base + i] = f(f(f(px[i * c + ic]! * k) - m) / s);
  }
  const shape: [1, 3, number, number] = [1, 3, h, w];
  if (spec.dtype === 'float32') return { dtype: 'float32', shape, data: values };
  return { dtype: 'float16', shape, data: Uint16Array.from(values, floatToHalf) };
}

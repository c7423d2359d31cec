/**
 * Image frames: PNG and JPEG files turned into the model's input tensor with model/image.ts `preprocess`.
 *
 * How to preprocess comes from the model's metadata `edgecut.preprocess` (JSON: layout NCHW, channels RGB|BGR,
 * size [h, w], mean, std, scale; the demo CNN and the zoo models carry it), with the fields of the `PREPROCESS`
 * setting laid over it, or from `PREPROCESS` alone for models without metadata (the real squeezenet1.0-fp16 wants
 * `{"channels":"BGR"}`: raw 0..255 BGR). The element type is the model input's (float32 or float16); the size
 * defaults to the input's static height and width.
 */
import type { Dirent } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { z } from 'zod';
import type { ModelHandle } from '../../model/handle.ts';
import { decodeImage, type PreprocessSpec, preprocess } from '../../model/image.ts';
import { UserError } from '../../runtime/errors.ts';
import type { Logger } from '../../runtime/log.ts';
import { tensorFromTyped, type WireTensor } from '../../schemas/codec.ts';

const dim = z.number().int('expected whole numbers').positive('expected sizes > 0');
const fields = {
  layout: z.literal('NCHW', { message: 'only layout NCHW is supported' }).optional(),
  channels: z.enum(['RGB', 'BGR'], { message: 'expected channels RGB or BGR' }).optional(),
  size: z.tuple([dim, dim], { message: 'expected size [height, width]' }).optional(),
  mean: z.tuple([z.number(), z.number(), z.number()], { message: 'expected 3 mean values' }).optional(),
  std: z
    .tuple([z.number().positive(), z.number().positive(), z.number().positive()], {
      message: 'expected 3 std values > 0',
    })
    .optional(),
  scale: z.number({ message: 'expected a number' }).positive('expected scale > 0').optional(),
};

/** Preprocessing as the model metadata states it (unknown keys are ignored). */
export const PreprocessJsonSchema = z.object(fields);
/** Preprocessing as JSON, every field optional. */
export type PreprocessJson = z.infer<typeof PreprocessJsonSchema>;
/** The `PREPROCESS` setting: the same fields, and a misspelt key is an error. */
export const PreprocessSettingSchema = z.object(fields).strict();

/** The input an image source fills: its name and how to make it from an image. */
export interface ImageInput {
  name: string;
  shape: [1, 3, number, number];
  spec: PreprocessSpec;
}

function issueText(err: z.ZodError): string {
  const issue = err.issues[0];
  return `${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`;
}

/** Works out how images become the model's input; UserError (one line) when they cannot. */
export function imageInput(model: ModelHandle, override: PreprocessJson | undefined): ImageInput {
  const what = `model ${model.name}`;
  if (model.inputs.length !== 1)
    throw new UserError(
      `${what} has ${model.inputs.length} inputs (${model.inputs.map((i) => i.name).join(', ')}); image sources feed models with one image input`,
    );
  const input = model.inputs[0]!;
  if (input.dtype !== 'float32' && input.dtype !== 'float16')
    throw new UserError(
      `${what}: input ${input.name} is ${input.dtype}; image sources make float32 or float16`,
    );
  const [n, c, h, w] = input.shape;
  if (input.shape.length !== 4 || (n !== 1 && n !== -1) || (c !== 3 && c !== -1))
    throw new UserError(
      `${what}: input ${input.name} has shape [${input.shape.join(', ')}]; image sources make NCHW [1, 3, h, w]`,
    );
  let meta: PreprocessJson = {};
  const raw = model.metadata['edgecut.preprocess'];
  if (raw !== undefined) {
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch {
      throw new UserError(`${what}: metadata edgecut.preprocess is not JSON; set PREPROCESS instead`);
    }
    const parsed = PreprocessJsonSchema.safeParse(json);
    if (!parsed.success)
      throw new UserError(
        `${what}: metadata edgecut.preprocess: ${issueText(parsed.error)}; set PREPROCESS instead`,
      );
    meta = parsed.data;
  }
  const merged = { ...meta, ...override };
  if (!merged.channels)
    throw new UserError(
      `${what} has no preprocessing in its metadata (edgecut.preprocess); set PREPROCESS, e.g. '{"channels":"BGR"}' for raw 0..255 BGR`,
    );
  const fixed =
    h !== undefined && w !== undefined && h > 0 && w > 0 ? ([h, w] as [number, number]) : undefined;
  const size = merged.size ?? fixed;
  if (!size)
    throw new UserError(`${what}: input ${input.name} has no fixed height and width; set size in PREPROCESS`);
  if (fixed && (size[0] !== fixed[0] || size[1] !== fixed[1]))
    throw new UserError(
      `${what}: preprocessing size [${size.join(', ')}] does not match input ${input.name} [${fixed.join(', ')}]`,
    );
  return {
    name: input.name,
    shape: [1, 3, size[0], size[1]],
    spec: {
      size,
      channels: merged.channels,
      dtype: input.dtype,
      ...(merged.scale !== undefined ? { scale: merged.scale } : {}),
      ...(merged.mean ? { mean: merged.mean } : {}),
      ...(merged.std ? { std: merged.std } : {}),
    },
  };
}

/** Decodes and preprocesses image bytes into the input tensor; ImageError names `source` when not an image. */
export function imageTensor(bytes: Uint8Array, input: ImageInput, source: string): WireTensor {
  const t = preprocess(decodeImage(bytes, source), input.spec);
  return tensorFromTyped(input.name, t.dtype, t.shape, t.data);
}

/** Reads one image file into the input tensor; UserError when it cannot be read or decoded. */
export async function loadImage(path: string, input: ImageInput): Promise<WireTensor> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw new UserError(`${path}: cannot read the image (${(err as NodeJS.ErrnoException).code ?? err})`);
  }
  return imageTensor(bytes, input, path);
}

const IMAGE_EXT = new Set(['.png', '.jpg', '.jpeg']);

/** The PNG and JPEG files of a directory (by extension), in natural order (img2 before img10). */
export async function listImages(dir: string): Promise<string[]> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    throw new UserError(
      `${dir}: cannot read the image directory (${(err as NodeJS.ErrnoException).code ?? err})`,
    );
  }
  const names = entries
    .filter((e) => !e.isDirectory() && IMAGE_EXT.has(extname(e.name).toLowerCase()))
    .map((e) => e.name)
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  if (names.length === 0)
    throw new UserError(`${dir}: no PNG or JPEG files (.png, .jpg, .jpeg) in the directory`);
  return names.map((n) => join(dir, n));
}

/**
 * The images of a file list as input tensors, once or looped. A file that cannot be read or decoded is skipped
 * with one warning naming it (once, not on every pass); a pass that yields no frame at all ends the stream with a
 * UserError, so a directory of broken files does not loop forever.
 */
export async function* imageTensors(
  files: readonly string[],
  input: ImageInput,
  opts: { loop: boolean; logger: Logger; label: string },
): AsyncGenerator<WireTensor> {
  const bad = new Set<string>();
  do {
    let good = 0;
    for (const file of files) {
      if (bad.has(file)) continue;
      let tensor: WireTensor;
      try {
        tensor = await loadImage(file, input);
      } catch (err) {
        if (!(err instanceof UserError)) throw err; // ImageError is a UserError
        bad.add(file);
        opts.logger.warn({ file, err: err.message }, `image skipped: ${file}`);
        continue;
      }
      good++;
      yield tensor;
    }
    if (good === 0)
      throw new UserError(`${opts.label}: none of its ${files.length} image files could be decoded`);
  } while (opts.loop);
}

/**
 * Class names of a model's output and the top-1 class of a frame: a labels file (`LABELS`: one name per line, or
 * `index,label` lines as in ImageNet's CSV) or the model's metadata key `edgecut.labels` (a JSON array of names, as
 * the demo CNN carries), matched to the model's class-vector output, and the top-1 index, name and probability of an
 * output tensor (softmax first when the output is not already a probability vector).
 */
import { readFile, stat } from 'node:fs/promises';
import { UserError } from '../runtime/errors.ts';
import { tensorElements, type WireTensor } from '../schemas/codec.ts';
import { halvesToFloats } from './half.ts';
import type { CrossingTensor, ModelHandle } from './handle.ts';

/** Largest labels file read (bytes): ImageNet-21k's names are about 1 MB. */
export const MAX_LABELS_BYTES = 8 << 20;
/** Longest class name (characters; the `FrameTop1.label` of schemas/messages.ts takes at most as many). */
export const MAX_LABEL_CHARS = 200;
/** The metadata key of a model's class names (a JSON array of strings). */
export const LABELS_METADATA_KEY = 'edgecut.labels';
/** Outputs within this of a sum of 1 (and every value in [0, 1]) are taken as probabilities already. */
export const PROBABILITY_SUM_TOLERANCE = 1e-2;

/** What the two formats of a labels file look like, for error messages. */
const FORMATS = 'one class name per line, or index,label lines (index 0..N-1, as in imagenet-labels.csv)';

/** The top-1 class of one output. */
export interface Top1 {
  index: number;
  /** The class name, when the model has labels. */
  label?: string;
  /** Its probability (after a softmax when the output was not one already). */
  probability: number;
}

/** The output a model's classes are read from, and their names. */
export interface ClassOutput {
  /** Position of the class vector among the model's outputs. */
  output: number;
  /** Its tensor name. */
  name: string;
  /** Number of classes: the elements of the output. */
  classes: number;
  /** Class names, `classes` of them; absent for a model without labels. */
  labels?: readonly string[];
  /** Where the names came from: the labels file, or the model's metadata. */
  source?: string;
}

function checkLabel(label: string, where: string): string {
  if (label === '') throw new UserError(`${where}: empty class name; expected ${FORMATS}`);
  if (label.length > MAX_LABEL_CHARS)
    throw new UserError(
      `${where}: class name of ${label.length} characters; at most ${MAX_LABEL_CHARS} are allowed`,
    );
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (/[\u0000-\u001f\u007f]/.test(label))
    throw new UserError(`${where}: class name with a control character; expected printable text`);
  return label;
}

/** A CSV label field: `"..."` unquoted (`""` is one quote); a lone quote at either end is dropped. */
function csvLabel(field: string): string {
  const f = field.trim();
  if (f.length >= 2 && f.startsWith('"') && f.endsWith('"'))
    return f.slice(1, -1).replaceAll('""', '"').trim();
  // ../shared/images/imagenet-labels.csv (from Windows-Machine-Learning) ends its last line with a stray quote:
  // `999,toilet tissue, toilet paper, bathroom tissue"`.
  return f.replace(/^"/, '').replace(/"$/, '').trim();
}

const CSV_LINE = /^\s*(\d+)\s*,(.*)$/;

/**
 * Class names from the text of a labels file, the format told by content: every line `index,label` (an optional
 * header line first, such as `index,label`) is the CSV format, anything else one name per line. `file` names the
 * file in errors; UserError (one line) for an empty file, an empty name, or CSV indexes that are not 0..N-1.
 */
export function parseLabels(text: string, file: string): string[] {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  while (lines.length > 0 && lines[lines.length - 1]!.trim() === '') lines.pop();
  if (lines.length === 0) throw new UserError(`labels file ${file} is empty; expected ${FORMATS}`);
  const header = lines.length > 1 && !CSV_LINE.test(lines[0]!) && lines[0]!.includes(',') ? 1 : 0;
  const body = lines.slice(header);
  if (body.every((l) => CSV_LINE.test(l))) {
    const labels: string[] = [];
    const lineOf = new Map<number, number>();
    body.forEach((line, i) => {
      const at = i + 1 + header;
      const [, idx, field] = CSV_LINE.exec(line)!;
      const index = Number(idx);
      const where = `labels file ${file} line ${at}`;
      if (index >= body.length)
        throw new UserError(
          `${where}: index ${index} is out of range; ${body.length} lines need indexes 0..${body.length - 1}`,
        );
      const first = lineOf.get(index);
      if (first !== undefined)
        throw new UserError(`${where}: index ${index} again (first on line ${first}); each index once`);
      lineOf.set(index, at);
      labels[index] = checkLabel(csvLabel(field ?? ''), where);
    });
    // N distinct indexes below N: every one of 0..N-1 is there.
    return labels;
  }
  return lines.map((line, i) => checkLabel(line.trim(), `labels file ${file} line ${i + 1}`));
}

/** Reads a labels file; UserError (one line) when it cannot be read, is too large, or is not a labels file. */
export async function readLabelsFile(path: string): Promise<string[]> {
  let text: string;
  try {
    const info = await stat(path);
    if (!info.isFile()) throw new UserError(`labels file ${path} is not a file; expected ${FORMATS}`);
    if (info.size > MAX_LABELS_BYTES)
      throw new UserError(
        `labels file ${path} has ${info.size} bytes; at most ${MAX_LABELS_BYTES} are allowed`,
      );
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (err instanceof UserError) throw err;
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new UserError(`labels file ${path} cannot be read (${code}); expected ${FORMATS}`);
  }
  if (text.includes('\u0000'))
    throw new UserError(`labels file ${path} is binary, not text; expected ${FORMATS}`);
  return parseLabels(text, path);
}

/** The class names in a model's metadata (`edgecut.labels`), if any; UserError when the key holds something else. */
export function metadataLabels(model: ModelHandle): string[] | undefined {
  const raw = model.metadata[LABELS_METADATA_KEY];
  if (raw === undefined) return undefined;
  const where = `model ${model.name}: metadata ${LABELS_METADATA_KEY}`;
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    throw new UserError(`${where} is not JSON; expected an array of class names, or set LABELS`);
  }
  if (!Array.isArray(json) || json.length === 0 || !json.every((l) => typeof l === 'string'))
    throw new UserError(`${where} is not a non-empty JSON array of strings; set LABELS instead`);
  return json.map((l, i) => checkLabel(l.trim(), `${where} [${i}]`));
}

/** Number of classes when `t` is a class vector (float, one dimension above 1, the others 1 or a batch of -1). */
export function classCount(t: CrossingTensor): number | undefined {
  if (t.dtype !== 'float32' && t.dtype !== 'float16') return undefined;
  const big = t.shape.filter((d) => d !== 1 && d !== -1);
  return big.length === 1 && big[0]! > 1 ? big[0] : undefined;
}

const describe = (t: CrossingTensor) => `${t.name} ${t.dtype} [${t.shape.join(', ')}]`;

/**
 * The output the top-1 class is read from. With labels (a file, else the model's metadata): the first class-vector
 * output with as many classes as there are names, UserError (one line, naming the source and both counts) when
 * there is none. Without labels: the model's only output when it is a class vector (top-1 without a name), else
 * undefined (no top-1 is reported).
 */
export function classOutput(
  model: ModelHandle,
  given?: { labels: readonly string[]; source: string },
): ClassOutput | undefined {
  const found = given ?? labelsOf(model);
  const vectors = model.outputs
    .map((t, output) => ({ output, name: t.name, classes: classCount(t) }))
    .filter((v): v is { output: number; name: string; classes: number } => v.classes !== undefined);
  if (!found) {
    const only = vectors[0];
    return model.outputs.length === 1 && only ? only : undefined;
  }
  const n = found.labels.length;
  const match = vectors.find((v) => v.classes === n);
  if (match) return { ...match, labels: found.labels, source: found.source };
  const outputs = model.outputs.map(describe).join(', ');
  if (vectors.length === 0)
    throw new UserError(
      `${found.source} names ${n} classes but model ${model.name} has no class-vector output (${outputs}); ` +
        'labels need a float32 or float16 output with one dimension above 1',
    );
  const counts = vectors.map((v) => `${v.name} has ${v.classes} classes`).join(', ');
  throw new UserError(
    `${found.source} names ${n} classes but model ${model.name}'s output ${counts}; ` +
      'the labels must name every class, one per output element',
  );
}

function labelsOf(model: ModelHandle): { labels: string[]; source: string } | undefined {
  const labels = metadataLabels(model);
  return labels ? { labels, source: `model ${model.name}'s metadata ${LABELS_METADATA_KEY}` } : undefined;
}

/**
 * The classes of a model for the edge: from the labels file when one is given, else from the model's metadata, else
 * unnamed (see {@link classOutput}); every error is a UserError of one line.
 */
export async function modelClasses(
  model: ModelHandle,
  labelsFile: string | undefined,
): Promise<ClassOutput | undefined> {
  if (labelsFile === undefined) return classOutput(model);
  const labels = await readLabelsFile(labelsFile);
  return classOutput(model, { labels, source: `labels file ${labelsFile}` });
}

/** Float values of a float32 or float16 tensor; undefined for other element types. */
function floats(t: WireTensor): Float32Array | undefined {
  if (t.dtype === 'float32') return tensorElements(t) as Float32Array;
  if (t.dtype === 'float16') return halvesToFloats(tensorElements(t) as Uint16Array);
  return undefined;
}

/**
 * The top-1 class of `values`: the largest element, and its probability, taken as it is when the values already
 * form a probability vector (each in [0, 1], summing to 1 within {@link PROBABILITY_SUM_TOLERANCE}; float16 sums of
 * 1000 classes are off by up to ~1e-3), else after a softmax. Undefined for an empty vector or non-finite values.
 */
export function topOne(values: ArrayLike<number>): { index: number; probability: number } | undefined {
  if (values.length === 0) return undefined;
  let index = 0;
  let max = Number.NEGATIVE_INFINITY;
  let sum = 0;
  let unit = true;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!Number.isFinite(v)) return undefined;
    if (v > max) {
      max = v;
      index = i;
    }
    sum += v;
    if (v < 0 || v > 1) unit = false;
  }
  if (unit && Math.abs(sum - 1) <= PROBABILITY_SUM_TOLERANCE) return { index, probability: max };
  // Softmax of the largest element: 1 / sum(exp(v - max)), stable for any logits.
  let denominator = 0;
  for (let i = 0; i < values.length; i++) denominator += Math.exp(values[i]! - max);
  return { index, probability: 1 / denominator };
}

/**
 * The top-1 class of a frame's outputs (the whole model's, in model output order); undefined when the class output
 * is missing, not float, of another size than the model declares, or not finite.
 */
export function frameTop1(outputs: readonly WireTensor[], classes: ClassOutput): Top1 | undefined {
  const t = outputs.find((o) => o.name === classes.name) ?? outputs[classes.output];
  const values = t ? floats(t) : undefined;
  if (!values || values.length !== classes.classes) return undefined;
  const top = topOne(values);
  if (!top) return undefined;
  const label = classes.labels?.[top.index];
  return label === undefined ? top : { index: top.index, label, probability: top.probability };
}

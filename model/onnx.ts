// ONNX model codec: bytes <-> plain objects (onnx-types.ts), built on protobufjs loaded at
// runtime from onnx.proto. Weights are never copied on read: protobufjs returns `bytes`
// fields as subarray/Buffer.slice views of the input, so raw_data of a 244 MB model costs
// no extra memory (but keeps the input buffer alive as long as the model is).

import { createHash } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { UserError } from '../runtime/errors.ts';
import type {
  AttributeProto,
  GraphProto,
  Int64,
  ModelProto,
  NodeProto,
  OnnxModel,
  StringStringEntryProto,
  TensorProto,
} from './onnx-types.ts';
import { AttributeType, DataType } from './onnx-types.ts';

export * from './onnx-types.ts';

/** A model file is unusable (not ONNX, truncated, no graph, malformed graph); message names the source. */
export class ModelError extends UserError {
  /** Where the model came from (a path, a URL, or a label like "head of cut 3"). */
  readonly source: string;
  constructor(source: string, problem: string) {
    super(`${source}: ${problem}`.replace(/\s+/g, ' '));
    this.source = source;
  }
}

interface LongLike {
  low: number;
  high: number;
  toNumber(): number;
  toString(): string;
}

let modelType: protobuf.Type | undefined;

// Parsed once per process; the schema is ~300 lines, so this costs a few milliseconds.
function ModelType(): protobuf.Type {
  if (!modelType) {
    const file = fileURLToPath(new URL('./onnx.proto', import.meta.url));
    const root = new protobuf.Root().loadSync(file, { keepCase: true });
    modelType = root.lookupType('onnx.ModelProto');
  }
  return modelType;
}

// protobufjs yields int64 as Long objects; exact numbers are friendlier, and the rare values
// outside 2^53 (INT64_MAX "until the end" in Slice) must survive a round trip, hence bigint.
function fromLong(v: unknown): Int64 {
  if (typeof v === 'number') return v;
  const l = v as LongLike;
  const n = l.toNumber();
  return Number.isSafeInteger(n) ? n : BigInt(l.toString());
}

function int64Reader(buf: Uint8Array): protobuf.Reader {
  const reader = protobuf.Reader.create(buf);
  const r = reader as unknown as Record<string, () => unknown>;
  for (const m of ['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']) {
    const orig = r[m]!.bind(reader);
    r[m] = () => fromLong(orig());
  }
  return reader;
}

// LongBits.from accepts any {low, high}; that is how a bigint reaches the wire exactly.
function toLongBits(v: unknown): unknown {
  if (typeof v !== 'bigint') return v;
  const u = BigInt.asUintN(64, v);
  return { low: Number(u & 0xffffffffn) | 0, high: Number(u >> 32n) | 0 };
}

function int64Writer(): protobuf.Writer {
  const writer = protobuf.Writer.create();
  const w = writer as unknown as Record<string, (v: unknown) => unknown>;
  for (const m of ['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']) {
    const one = w[m]!.bind(writer);
    w[m] = (v: unknown) => one(toLongBits(v));
    // Packed repeated fields go through the bulk writers, which call LongBits.from directly.
    const many = w[`${m}s`]!.bind(writer);
    w[`${m}s`] = (v: unknown) => many((v as unknown[]).map(toLongBits));
  }
  return writer;
}

function fail(source: string, problem: string): never {
  throw new ModelError(source, problem);
}

function checkDims(source: string, what: string, dims: readonly unknown[] | undefined): void {
  for (const d of dims ?? []) if (typeof d !== 'number') fail(source, `${what} has a dimension out of range`);
}

// Structural checks that make random or cut-short bytes fail loudly instead of producing a
// "model" that only breaks later inside onnxruntime with a less helpful message.
function validate(m: ModelProto, source: string): asserts m is OnnxModel {
  const ir = m.ir_version;
  if (typeof ir !== 'number' || ir < 1 || ir > 100)
    fail(source, 'not an ONNX model (missing or invalid ir_version)');
  const g = m.graph;
  if (!g) fail(source, 'ONNX model has no graph (truncated file?)');
  if (ir >= 3 && m.opset_import.length === 0)
    fail(source, 'ONNX model has no opset_import (truncated file?)');
  if (g.output.length === 0) fail(source, 'ONNX graph has no outputs');
  for (const [i, n] of g.node.entries()) {
    if (!n.op_type) fail(source, `ONNX node #${i + 1} (${n.name || 'unnamed'}) has no op_type`);
  }
  for (const v of [...g.input, ...g.output])
    if (!v.name) fail(source, 'ONNX graph input/output without a name');
  for (const t of g.initializer) checkDims(source, `initializer ${t.name}`, t.dims);
}

const ENTRY_LISTS = new Set([
  'metadata_props',
  'external_data',
  'initialization_binding',
  'update_binding',
  'quant_parameter_tensor_names',
]);

// proto2 lets a key/value entry omit either string; fill '' so the typed `key: string` holds.
// Skips typed arrays and number arrays, so it costs nothing per weight.
function fillEntries(o: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(o)) {
    if (!v || typeof v !== 'object' || ArrayBuffer.isView(v)) continue;
    if (Array.isArray(v)) {
      if (ENTRY_LISTS.has(k)) {
        for (const e of v as StringStringEntryProto[]) {
          e.key ??= '';
          e.value ??= '';
        }
      } else if (v.length > 0 && typeof v[0] === 'object' && !ArrayBuffer.isView(v[0]))
        for (const e of v) fillEntries(e as Record<string, unknown>);
    } else fillEntries(v as Record<string, unknown>);
  }
}

/** Decodes ONNX bytes (zero-copy for raw_data) and checks the basics; throws ModelError naming `source`. */
export function readModel(bytes: Uint8Array, source: string): OnnxModel {
  if (bytes.byteLength === 0) fail(source, 'not an ONNX model (empty file)');
  // A Buffer view (not a copy) makes protobufjs return raw_data as Buffer.slice views.
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = ModelType();
  let decoded: protobuf.Message;
  try {
    decoded = type.decode(int64Reader(buf));
  } catch (err) {
    fail(source, `not a valid ONNX protobuf, truncated or corrupt (${(err as Error).message})`);
  }
  // toObject drops prototype defaults (Long zeros, frozen arrays) and materialises every repeated
  // field as an own array; bytes fields stay the same views.
  const m = type.toObject(decoded, { arrays: true, defaults: false }) as ModelProto;
  fillEntries(m as unknown as Record<string, unknown>);
  validate(m, source);
  return m;
}

/**
 * Encodes a model to ONNX bytes (protobuf field order is by field number, so output is deterministic), in one
 * allocation of the final size: weights are copied once, not several times (see "Writing large models").
 */
export function writeModel(m: ModelProto): Uint8Array {
  return Buffer.concat(writeModelChunks(m));
}

// protobufjs's own encoding of a whole message.
function encodeWhole(m: ModelProto): Uint8Array {
  return ModelType()
    .encode(m as unknown as protobuf.Message, int64Writer())
    .finish();
}

/** Reads and decodes a .onnx file; a missing/unreadable file also throws ModelError. */
export async function readModelFile(path: string): Promise<OnnxModel> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    fail(path, `cannot read model file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  return readModel(bytes, path);
}

/** Content id of a model: hex sha256 of its file bytes (the same bytes give the same id everywhere). */
export function modelId(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

// ---------------------------------------------------------------------------------------------
// Attributes

/** The attribute `name` of a node, or undefined. */
export function getAttr(node: NodeProto, name: string): AttributeProto | undefined {
  return node.attribute.find((a) => a.name === name);
}

/** An INT attribute as a number (a bigint beyond 2^53 is rounded), or `def` when absent. */
export function attrInt(node: NodeProto, name: string, def: number): number {
  const a = getAttr(node, name);
  return a?.i === undefined ? def : Number(a.i);
}

/** An INTS attribute as numbers, or `def` when absent. */
export function attrInts(node: NodeProto, name: string, def: number[]): number[] {
  const a = getAttr(node, name);
  // IR 1 files may omit `type`; a non-empty list is then evidence enough.
  return a?.ints && (a.type === AttributeType.INTS || a.ints.length > 0) ? a.ints.map(Number) : def;
}

/** A FLOAT attribute, or `def` when absent. */
export function attrFloat(node: NodeProto, name: string, def: number): number {
  return getAttr(node, name)?.f ?? def;
}

/** A STRING attribute decoded as UTF-8, or `def` when absent. */
export function attrString(node: NodeProto, name: string, def: string): string {
  const s = getAttr(node, name)?.s;
  return s === undefined ? def : Buffer.from(s.buffer, s.byteOffset, s.byteLength).toString('utf8');
}

/** Makes an INT attribute. */
export function intAttr(name: string, i: Int64): AttributeProto {
  return { name, type: AttributeType.INT, i };
}

/** Makes an INTS attribute. */
export function intsAttr(name: string, ints: Int64[]): AttributeProto {
  return { name, type: AttributeType.INTS, ints };
}

/** Makes a FLOAT attribute. */
export function floatAttr(name: string, f: number): AttributeProto {
  return { name, type: AttributeType.FLOAT, f };
}

/** Makes a FLOATS attribute. */
export function floatsAttr(name: string, floats: number[]): AttributeProto {
  return { name, type: AttributeType.FLOATS, floats };
}

/** Makes a STRING attribute (UTF-8). */
export function stringAttr(name: string, s: string): AttributeProto {
  return { name, type: AttributeType.STRING, s: Buffer.from(s, 'utf8') };
}

/** Makes a TENSOR attribute (e.g. Constant's `value`). */
export function tensorAttr(name: string, t: TensorProto): AttributeProto {
  return { name, type: AttributeType.TENSOR, t };
}

/** Makes a GRAPH attribute (If/Loop/Scan bodies). */
export function graphAttr(name: string, g: GraphProto): AttributeProto {
  return { name, type: AttributeType.GRAPH, g };
}

// ---------------------------------------------------------------------------------------------
// Tensors

/** Number of elements of a tensor (1 for a scalar, whose dims are empty). */
export function tensorElementCount(t: Pick<TensorProto, 'dims'>): number {
  return t.dims.reduce((a, b) => a * b, 1);
}

type Numeric = Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array;

// Little-endian hosts only, which is every platform onnxruntime-node ships for.
/** Makes a tensor whose raw_data views `data`'s memory (no copy); INT64 data comes as a BigInt64Array. */
export function makeTensor(
  name: string,
  dtype: number,
  dims: number[],
  data: Numeric | BigInt64Array | BigUint64Array,
): TensorProto {
  const raw = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return { name, data_type: dtype, dims: [...dims], raw_data: raw };
}

/** The float values of a FLOAT tensor (raw_data or float_data), for tests and small constants. */
export function tensorFloats(t: TensorProto): Float32Array {
  if (t.data_type !== DataType.FLOAT) throw new TypeError(`tensor ${t.name} is not FLOAT`);
  if (t.raw_data) {
    const r = t.raw_data;
    // Copy only when the view is misaligned for a Float32Array (protobuf gives no alignment).
    const src = r.byteOffset % 4 === 0 ? r : new Uint8Array(r);
    return new Float32Array(src.buffer, src.byteOffset, src.byteLength / 4);
  }
  return Float32Array.from(t.float_data ?? []);
}

// ---------------------------------------------------------------------------------------------
// Writing large models
//
// protobufjs encodes into one buffer that doubles as it grows, and length-delimits nested
// messages by shifting their bytes: a 244 MB model briefly needs the weights, a 128 MB and a
// 256 MB buffer, and copies its weights several times. The functions below give the same
// bytes as writeModel but pass raw_data through by reference: fields are encoded around the
// initializers' raw_data (protobufjs writes fields in field-number order, so splitting a
// message at a field number and concatenating the parts is byte-identical).

// Raw data smaller than this is left to protobufjs (no gain in splitting small tensors).
const CHUNK_RAW_MIN = 4096;

function varint(n: number): Uint8Array {
  const out: number[] = [];
  while (n > 127) {
    out.push((n % 128) | 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Uint8Array.from(out);
}

// The encoding of the fields of `obj` whose field number satisfies `keep` (in number order).
function encodeFields(type: protobuf.Type, obj: object, keep: (id: number) => boolean): Uint8Array {
  const part: Record<string, unknown> = {};
  for (const f of type.fieldsArray) {
    const v = (obj as Record<string, unknown>)[f.name];
    if (keep(f.id) && v !== undefined) part[f.name] = v;
  }
  return type.encode(part as unknown as protobuf.Message, int64Writer()).finish();
}

// A length-delimited field: tag, length, then the chunks.
function delimited(field: number, chunks: Uint8Array[]): Uint8Array[] {
  const len = chunks.reduce((s, c) => s + c.byteLength, 0);
  return [varint(field * 8 + 2), varint(len), ...chunks];
}

function tensorChunks(type: protobuf.Type, t: TensorProto): Uint8Array[] {
  const raw = t.raw_data;
  if (!raw || raw.byteLength < CHUNK_RAW_MIN)
    return [type.encode(t as unknown as protobuf.Message, int64Writer()).finish()];
  return [
    encodeFields(type, t, (id) => id < 9),
    ...delimited(9, [raw]),
    encodeFields(type, t, (id) => id > 9),
  ];
}

/** The bytes of writeModel(m) as chunks (their concatenation is identical); weights are not copied. */
export function writeModelChunks(m: ModelProto): Uint8Array[] {
  const model = ModelType();
  const g = m.graph;
  if (!g) return [encodeWhole(m)];
  const root = model.root;
  const graphType = root.lookupType('onnx.GraphProto');
  const tensorType = root.lookupType('onnx.TensorProto');
  const graph = [
    encodeFields(graphType, g, (id) => id < 5),
    ...(g.initializer ?? []).flatMap((t) => delimited(5, tensorChunks(tensorType, t))),
    encodeFields(graphType, g, (id) => id > 5),
  ];
  return [
    encodeFields(model, m, (id) => id < 7),
    ...delimited(7, graph),
    encodeFields(model, m, (id) => id > 7),
  ];
}

/** Writes writeModel(m)'s bytes to `path` chunk by chunk, never holding the whole file in memory. */
export async function writeModelFile(path: string, m: ModelProto): Promise<void> {
  const fh = await open(path, 'w');
  try {
    let batch: Uint8Array[] = [];
    let batchBytes = 0;
    const flush = async () => {
      if (batch.length === 0) return;
      const buf = batch.length === 1 ? batch[0]! : Buffer.concat(batch);
      for (let off = 0; off < buf.byteLength; ) off += (await fh.write(buf, off)).bytesWritten;
      batch = [];
      batchBytes = 0;
    };
    for (const c of writeModelChunks(m)) {
      if (c.byteLength >= CHUNK_RAW_MIN) await flush();
      batch.push(c);
      batchBytes += c.byteLength;
      if (batchBytes >= CHUNK_RAW_MIN) await flush();
    }
    await flush();
  } finally {
    await fh.close();
  }
}

/**
 * Validation for the edgecut wire format: the WireFormatError type, the receive limits, the semantic
 * checks shared by the encoder and the decoder, and a structural verifier for schemas/edgecut.fbs.
 *
 * FlatBuffers JS has no verifier: its accessors read out of range silently (undefined bytes become 0)
 * and follow any offset. verifyMessage() walks every table, vtable, vector and string a decoder will
 * touch and proves each lies inside the buffer before schemas/codec.ts reads it with the generated
 * accessors. The vtable slot of every field is taken from the generated accessors themselves (see
 * slotOf), so the verifier and the reader cannot disagree about the layout. Offsets are checked to
 * mirror how the JS runtime reads them (signed 32-bit offsets, signed 16-bit vtable entries).
 *
 * Together with codec.ts this is the only module importing schemas/generated.
 */

import {
  Body,
  Error as ErrorTable,
  Message,
  Request,
  Result,
  Tensor,
  Times,
  DType as WireDType,
  ErrorCode as WireErrorCode,
} from './generated/edgecut_generated.ts';
import type { DType, ErrorCode, StageTimes } from './wire-types.ts';

/** Thrown for any message that cannot be encoded or decoded; `code` is the ErrorCode to reply with. */
export class WireFormatError extends Error {
  /** Machine-readable reason, suitable for an Error reply. */
  readonly code: ErrorCode;
  /** Path of the offending field (e.g. "Request.tensors[2].shape"), when there is one. */
  readonly field?: string;

  constructor(code: ErrorCode, message: string, field?: string) {
    super(`edgecut wire: ${message}`);
    this.name = 'WireFormatError';
    this.code = code;
    if (field !== undefined) this.field = field;
  }
}

/** Limits applied by both the encoder and the decoder (maxBytes is the decoder default). */
export const WIRE_LIMITS = {
  maxBytes: 256 * 1024 * 1024, // default largest accepted message (the MQTT maximum payload is 256 MiB)
  maxIdBytes: 256, // request/device/model/worker ids, in UTF-8 bytes
  maxNameBytes: 1024, // tensor names, in UTF-8 bytes
  maxMessageBytes: 16 * 1024, // Error.message (and any string), in UTF-8 bytes
  maxTensors: 1024, // tensors in one Request or Result
  maxRank: 32, // tensor rank
} as const;

const DTYPES: ReadonlyArray<[wire: WireDType, dtype: DType, bytes: number]> = [
  [WireDType.Float32, 'float32', 4],
  [WireDType.Float16, 'float16', 2],
  [WireDType.Int8, 'int8', 1],
  [WireDType.UInt8, 'uint8', 1],
  [WireDType.Int32, 'int32', 4],
  [WireDType.Int64, 'int64', 8],
];
/** Size in bytes of one element of each dtype. */
export const DTYPE_BYTES = Object.fromEntries(DTYPES.map(([, d, n]) => [d, n])) as Readonly<
  Record<DType, number>
>;
/** Wire enum value -> DType, for every value the schema defines. */
export const DTYPE_FROM_WIRE: ReadonlyMap<number, DType> = new Map(DTYPES.map(([w, d]) => [w, d]));

/** Wire enum value -> ErrorCode, for every value the schema defines. */
export const ERROR_CODE_FROM_WIRE: ReadonlyMap<number, ErrorCode> = new Map<number, ErrorCode>([
  [WireErrorCode.Malformed, 'malformed'],
  [WireErrorCode.UnknownModel, 'unknown-model'],
  [WireErrorCode.BadTensor, 'bad-tensor'],
  [WireErrorCode.TooLarge, 'too-large'],
  [WireErrorCode.Internal, 'internal'],
  [WireErrorCode.Overloaded, 'overloaded'],
  [WireErrorCode.Expired, 'expired'],
]);

const allowed = (m: ReadonlyMap<number, string>) => [...m].map(([n, v]) => `${n} (${v})`).join(', ');
const ALLOWED_DTYPES = allowed(DTYPE_FROM_WIRE);
const utf8 = new TextDecoder('utf-8', { fatal: true });
const utf8Encoder = new TextEncoder();
const MODEL_ID = /^[0-9a-f]{64}$/;

/** Throws a WireFormatError for `field` ("<field>: <problem>"). */
export function fail(code: ErrorCode, field: string, problem: string): never {
  throw new WireFormatError(code, `${field}: ${problem}`, field);
}

/** Checks an id/string field's UTF-8 length (and non-emptiness when `nonEmpty`). */
export function checkString(field: string, value: string, maxBytes: number, nonEmpty: boolean): void {
  if (nonEmpty && value.length === 0) fail('malformed', field, 'is empty; a non-empty string is required');
  // Cheap pre-check: a JS string never has more UTF-8 bytes than 3 per UTF-16 unit.
  const bytes = value.length * 3 <= maxBytes ? 0 : utf8Encoder.encode(value).length;
  if (bytes > maxBytes) fail('too-large', field, `is ${bytes} UTF-8 bytes; at most ${maxBytes} allowed`);
}

/** Checks that a model id is the lowercase hex sha256 of the ONNX file. */
export function checkModelId(field: string, value: string): void {
  if (!MODEL_ID.test(value)) {
    fail('malformed', field, `${JSON.stringify(value.slice(0, 80))} is not a lowercase hex sha256`);
  }
}

/** Checks that a timestamp/deadline is a finite number >= 0 (0 = not set). */
export function checkStamp(field: string, value: number): void {
  if (!Number.isFinite(value) || value < 0) {
    fail('malformed', field, `${value} is not a valid time; a finite number of ms >= 0 is required`);
  }
}

const STAMP_NAMES = 'captured headStart headEnd sent tailReceived tailStart tailEnd replied';
/** The keys of StageTimes, in schema order. */
export const STAMPS = STAMP_NAMES.split(' ') as Array<keyof StageTimes>;

/** Checks every stamp of a StageTimes. */
export function checkTimes(field: string, t: StageTimes): void {
  for (const k of STAMPS) checkStamp(`${field}.${k}`, t[k]);
}

/** A tensor's metadata as checkTensorMeta needs it. */
export interface TensorMeta {
  name: string;
  dtype: DType;
  shape: readonly number[];
  dataBytes: number;
  scale: number;
  zeroPoint: number;
}

/** Checks a tensor's name, shape, size and quantization; `field` names it in errors. */
export function checkTensorMeta(field: string, m: TensorMeta): void {
  const { name, dtype, shape, dataBytes, scale, zeroPoint } = m;
  checkString(`${field}.name`, name, WIRE_LIMITS.maxNameBytes, false);
  const label = `${field} ${JSON.stringify(name)}`;
  if (DTYPE_BYTES[dtype] === undefined) fail('bad-tensor', `${field}.dtype`, `unknown dtype ${dtype}`);
  if (shape.length > WIRE_LIMITS.maxRank) {
    fail('bad-tensor', `${field}.shape`, `rank ${shape.length} exceeds ${WIRE_LIMITS.maxRank}`);
  }
  let elements = 1n;
  for (const [i, d] of shape.entries()) {
    if (!Number.isSafeInteger(d) || d < 0) {
      fail('bad-tensor', `${field}.shape`, `${label}: dim ${i} is ${d}; dims must be integers >= 0`);
    }
    elements *= BigInt(d);
  }
  const expected = elements * BigInt(DTYPE_BYTES[dtype]);
  if (expected !== BigInt(dataBytes)) {
    const problem = `shape [${shape.join(', ')}] of ${dtype} needs ${expected} bytes but data has ${dataBytes} bytes`;
    fail('bad-tensor', `${field}.data`, `${label}: ${problem}`);
  }
  const quantized = dtype === 'int8' || dtype === 'uint8';
  if (!quantized && (scale !== 1 || zeroPoint !== 0)) {
    fail('bad-tensor', `${field}.scale`, `${label}: scale/zero point are only allowed for int8 and uint8`);
  }
  if (!Number.isFinite(Math.fround(scale)) || scale <= 0) {
    fail('bad-tensor', `${field}.scale`, `${label}: scale ${scale} must be a finite number > 0`);
  }
  const [lo, hi] = dtype === 'int8' ? [-128, 127] : [0, 255];
  if (quantized && (!Number.isInteger(zeroPoint) || zeroPoint < lo || zeroPoint > hi)) {
    const problem = `zero point ${zeroPoint} is not an integer in [${lo}, ${hi}]`;
    fail('bad-tensor', `${field}.zero_point`, `${label}: ${problem}`);
  }
}

// ---- structural verifier ----

type ByteBufferLike = Parameters<Tensor['__init']>[1];

/** The vtable offset a generated accessor looks up, found by running it against a recording stub. */
function slotOf(read: (bb: ByteBufferLike) => unknown): number {
  let seen = -1;
  const stub = {
    __offset: (_pos: number, vtableOffset: number) => {
      seen = vtableOffset;
      return 0;
    },
  };
  read(stub as unknown as ByteBufferLike);
  if (seen < 4) throw new Error('schemas/verify.ts: cannot derive a field slot from the generated code');
  return seen;
}

const tensor = (f: (t: Tensor) => unknown) => slotOf((bb) => f(new Tensor().__init(0, bb)));
const times = (f: (t: Times) => unknown) => slotOf((bb) => f(new Times().__init(0, bb)));
const request = (f: (t: Request) => unknown) => slotOf((bb) => f(new Request().__init(0, bb)));
const result = (f: (t: Result) => unknown) => slotOf((bb) => f(new Result().__init(0, bb)));
const error = (f: (t: ErrorTable) => unknown) => slotOf((bb) => f(new ErrorTable().__init(0, bb)));
const message = (f: (t: Message) => unknown) => slotOf((bb) => f(new Message().__init(0, bb)));

/** Field kinds the verifier knows: scalars by size, references by target. */
type Kind = 'u8' | 'u32' | 'i32' | 'f32' | 'f64' | 'str' | 'tensors' | 'times' | 'shape' | 'data' | 'table';
type Spec = Record<string, { slot: number; kind: Kind; required?: boolean }>;

const TENSOR: Spec = {
  name: { slot: tensor((t) => t.name()), kind: 'str', required: true },
  dtype: { slot: tensor((t) => t.dtype()), kind: 'u8' },
  shape: { slot: tensor((t) => t.shapeLength()), kind: 'shape' },
  data: { slot: tensor((t) => t.dataLength()), kind: 'data' },
  scale: { slot: tensor((t) => t.scale()), kind: 'f32' },
  zero_point: { slot: tensor((t) => t.zeroPoint()), kind: 'i32' },
};
const snake = (k: string) => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
const TIMES: Spec = Object.fromEntries(
  STAMPS.map((k) => [snake(k), { slot: times((t) => t[k]()), kind: 'f64' as const }]),
);
const MESSAGE: Spec = {
  body_type: { slot: message((m) => m.bodyType()), kind: 'u8' },
  body: { slot: message((m) => m.body(null)), kind: 'table', required: true },
};
const REQUEST: Spec = {
  request_id: { slot: request((t) => t.requestId()), kind: 'str', required: true },
  device_id: { slot: request((t) => t.deviceId()), kind: 'str', required: true },
  model_id: { slot: request((t) => t.modelId()), kind: 'str', required: true },
  cut_id: { slot: request((t) => t.cutId()), kind: 'u32' },
  tensors: { slot: request((t) => t.tensorsLength()), kind: 'tensors' },
  times: { slot: request((t) => t.times()), kind: 'times' },
  deadline_ms: { slot: request((t) => t.deadlineMs()), kind: 'f64' },
};
const RESULT: Spec = {
  request_id: { slot: result((t) => t.requestId()), kind: 'str', required: true },
  device_id: { slot: result((t) => t.deviceId()), kind: 'str', required: true },
  model_id: { slot: result((t) => t.modelId()), kind: 'str', required: true },
  cut_id: { slot: result((t) => t.cutId()), kind: 'u32' },
  worker_id: { slot: result((t) => t.workerId()), kind: 'str', required: true },
  tensors: { slot: result((t) => t.tensorsLength()), kind: 'tensors' },
  times: { slot: result((t) => t.times()), kind: 'times' },
};
const ERROR: Spec = {
  request_id: { slot: error((t) => t.requestId()), kind: 'str' },
  device_id: { slot: error((t) => t.deviceId()), kind: 'str' },
  worker_id: { slot: error((t) => t.workerId()), kind: 'str', required: true },
  code: { slot: error((t) => t.code()), kind: 'u8' },
  message: { slot: error((t) => t.message()), kind: 'str' },
};
/** Per body type (the union's enum value): table name and fields. */
const BODIES = new Map<number, { name: string; spec: Spec }>([
  [Body.Request, { name: 'Request', spec: REQUEST }],
  [Body.Result, { name: 'Result', spec: RESULT }],
  [Body.Error, { name: 'Error', spec: ERROR }],
]);
type Reader = [size: number, read: (dv: DataView, at: number) => number];
const SCALARS: Partial<Record<Kind, Reader>> = {
  u8: [1, (dv, at) => dv.getUint8(at)],
  u32: [4, (dv, at) => dv.getUint32(at, true)],
  i32: [4, (dv, at) => dv.getInt32(at, true)],
  f32: [4, (dv, at) => dv.getFloat32(at, true)],
  f64: [8, (dv, at) => dv.getFloat64(at, true)],
};
const ID_FIELDS = new Set(['request_id', 'device_id', 'model_id', 'worker_id']);
const MAX_INLINE = 0x7fff; // the JS runtime reads vtable entries as signed 16-bit values

/** Values the verifier extracted from one table, keyed by field name (absent fields are missing). */
type Values = Record<string, string | number | number[] | undefined>;

class Verifier {
  private readonly dv: DataView;
  private readonly len: number;

  constructor(private readonly bytes: Uint8Array) {
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.len = bytes.byteLength;
  }

  /** Fails unless [pos, pos+n) lies inside the buffer and pos is `align`-aligned. */
  private span(field: string, what: string, pos: number, n: number, align: number): void {
    if (pos < 0 || n < 0 || pos + n > this.len) {
      fail('malformed', field, `${what} at [${pos}, ${pos + n}) lies outside the ${this.len}-byte buffer`);
    }
    if (pos % align !== 0) fail('malformed', field, `${what} at byte ${pos} is not ${align}-byte aligned`);
  }

  /** Follows the uoffset stored at `at`, checking that a 4-byte-aligned length/table header fits. */
  private follow(field: string, what: string, at: number): number {
    const target = at + this.dv.getUint32(at, true);
    this.span(field, what, target, 4, 4);
    return target;
  }

  /** Verifies the table at `pos` against `spec` and returns the values of its scalar/string fields. */
  table(field: string, pos: number, spec: Spec): Values {
    this.span(field, 'table', pos, 4, 4);
    const vt = pos - this.dv.getInt32(pos, true);
    this.span(field, 'vtable', vt, 4, 2);
    const vtLen = this.dv.getUint16(vt, true);
    const objLen = this.dv.getUint16(vt + 2, true);
    if (vtLen < 4 || vtLen % 2 !== 0 || vtLen > MAX_INLINE || objLen < 4 || objLen > MAX_INLINE) {
      fail('malformed', field, `invalid vtable (vtable ${vtLen} bytes, table ${objLen} bytes)`);
    }
    this.span(field, 'vtable', vt, vtLen, 2);
    this.span(field, 'table', pos, objLen, 4);
    const out: Values = {};
    for (const [name, { slot, kind, required }] of Object.entries(spec)) {
      const path = `${field}.${name}`;
      const fo = slot < vtLen ? this.dv.getUint16(vt + slot, true) : 0;
      if (fo === 0) {
        if (required) fail('malformed', path, 'required field is missing');
        continue;
      }
      const scalar = SCALARS[kind];
      const size = scalar?.[0] ?? 4;
      if (fo < 4 || fo + size > objLen) fail('malformed', path, `field offset ${fo} lies outside its table`);
      const at = pos + fo;
      this.span(path, 'field', at, size, size);
      out[name] = scalar ? scalar[1](this.dv, at) : this.reference(path, at, kind);
    }
    return out;
  }

  /** Verifies what the uoffset field at `at` refers to; returns its value (strings, dims, counts, positions). */
  private reference(path: string, at: number, kind: Kind): Values[string] {
    switch (kind) {
      case 'table':
        return this.follow(path, 'table', at);
      case 'times':
        for (const [k, t] of Object.entries(this.table(path, this.follow(path, 'table', at), TIMES))) {
          checkStamp(`${path}.${k}`, t as number);
        }
        return undefined;
      case 'str': {
        const [start, n] = this.vector(path, at, 1);
        this.span(path, 'string terminator', start + n, 1, 1);
        if (this.bytes[start + n] !== 0) fail('malformed', path, 'string is not NUL-terminated');
        if (n > WIRE_LIMITS.maxMessageBytes) fail('too-large', path, `string of ${n} bytes is too long`);
        try {
          return utf8.decode(this.bytes.subarray(start, start + n));
        } catch {
          return fail('malformed', path, 'string is not valid UTF-8');
        }
      }
      case 'shape': {
        const [start, n] = this.vector(path, at, 8);
        if (n > WIRE_LIMITS.maxRank) fail('bad-tensor', path, `rank ${n} exceeds ${WIRE_LIMITS.maxRank}`);
        const dims: number[] = [];
        for (let i = 0; i < n; i++) {
          dims.push(Number(this.dv.getBigInt64(start + 8 * i, true))); // checkTensorMeta rejects unsafe/negative dims
        }
        return dims;
      }
      case 'data':
        return this.vector(path, at, 1)[1];
      case 'tensors': {
        const [start, n] = this.vector(path, at, 4);
        if (n > WIRE_LIMITS.maxTensors) {
          fail('too-large', path, `${n} tensors; at most ${WIRE_LIMITS.maxTensors} allowed`);
        }
        for (let i = 0; i < n; i++) {
          const item = `${path}[${i}]`;
          this.tensor(item, this.follow(item, 'table', start + 4 * i));
        }
        return n;
      }
      default:
        throw new Error(`schemas/verify.ts: ${kind} is not a reference kind`);
    }
  }

  /** Checks the vector whose uoffset is at `at`; returns [first element position, element count]. */
  private vector(path: string, at: number, elemSize: number): [number, number] {
    const target = this.follow(path, 'vector length', at);
    const n = this.dv.getUint32(target, true);
    this.span(path, `vector of ${n} x ${elemSize}-byte elements`, target + 4, n * elemSize, 1);
    return [target + 4, n];
  }

  private tensor(path: string, pos: number): void {
    const v = this.table(path, pos, TENSOR);
    const wire = (v.dtype as number | undefined) ?? WireDType.Float32;
    const dtype = DTYPE_FROM_WIRE.get(wire);
    if (dtype === undefined) {
      fail('bad-tensor', `${path}.dtype`, `unknown dtype ${wire}; allowed: ${ALLOWED_DTYPES}`);
    }
    const num = (x: Values[string], dflt: number) => (x as number | undefined) ?? dflt;
    const [dataBytes, scale, zeroPoint] = [num(v.data, 0), num(v.scale, 1), num(v.zero_point, 0)];
    const shape = (v.shape as number[] | undefined) ?? [];
    checkTensorMeta(path, { name: v.name as string, dtype, shape, dataBytes, scale, zeroPoint });
  }

  /** Verifies the whole message. */
  message(): void {
    const head = this.table('Message', this.follow('Message', 'root table', 0), MESSAGE);
    const type = (head.body_type as number | undefined) ?? 0;
    const body = BODIES.get(type);
    if (body === undefined) {
      const names = [...BODIES].map(([n, b]) => `${n} (${b.name})`).join(', ');
      fail('malformed', 'Message.body_type', `unknown body type ${type}; allowed: ${names}`);
    }
    const v = this.table(body.name, head.body as number, body.spec);
    for (const [name, value] of Object.entries(v)) {
      if (ID_FIELDS.has(name)) {
        const nonEmpty = body.name !== 'Error' || name === 'worker_id';
        checkString(`${body.name}.${name}`, value as string, WIRE_LIMITS.maxIdBytes, nonEmpty);
      }
    }
    if (v.model_id !== undefined) checkModelId(`${body.name}.model_id`, v.model_id as string);
    if (v.deadline_ms !== undefined) checkStamp(`${body.name}.deadline_ms`, v.deadline_ms as number);
    if (v.code !== undefined && !ERROR_CODE_FROM_WIRE.has(v.code as number)) {
      fail('malformed', 'Error.code', `unknown code ${v.code}; allowed: ${allowed(ERROR_CODE_FROM_WIRE)}`);
    }
  }
}

/** Verifies `bytes` as a complete edgecut Message; throws WireFormatError on any problem. */
export function verifyMessage(bytes: Uint8Array, maxBytes: number = WIRE_LIMITS.maxBytes): void {
  if (!(bytes instanceof Uint8Array)) fail('malformed', 'buffer', 'is not a Uint8Array');
  const limit = Math.min(maxBytes, 0x7fffffff);
  if (bytes.byteLength > limit) {
    fail('too-large', 'buffer', `is ${bytes.byteLength} bytes; at most ${limit} allowed`);
  }
  if (bytes.byteLength < 8) {
    fail('malformed', 'buffer', `is ${bytes.byteLength} bytes; a message is at least 8 bytes`);
  }
  if (bytes.byteLength % 4 !== 0) {
    // Builders finish every buffer at a multiple of its alignment (at least 4, the root offset's): a length that
    // is not one is a truncated or padded payload, even where the missing bytes were only padding.
    fail('malformed', 'buffer', `is ${bytes.byteLength} bytes, not a multiple of 4: truncated or padded`);
  }
  const id = String.fromCharCode(...bytes.subarray(4, 8));
  if (id !== 'EDGC') {
    fail('malformed', 'file_identifier', `is ${JSON.stringify(id)}; expected "EDGC"`);
  }
  new Verifier(bytes).message();
}

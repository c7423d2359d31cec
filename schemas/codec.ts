/**
 * The edgecut wire codec: plain TypeScript types for the messages of schemas/edgecut.fbs and the functions that
 * encode them to, and decode them from, FlatBuffers bytes.
 *
 * codec.ts and verify.ts are the ONLY modules importing schemas/generated; everything else uses the types here.
 *
 * Tensor data is never copied on decode (`data` is a view over the received buffer) and copied exactly once on
 * encode (into the builder, 16-byte aligned from the start of the message). Decoding verifies the whole buffer
 * first (see verify.ts), because tail workers receive bytes from anyone; any problem is a WireFormatError.
 */
import * as flatbuffers from 'flatbuffers';
import {
  Body,
  Error as ErrorTable,
  Message,
  Request,
  Result,
  Tensor,
  Times,
  type DType as WireDType,
  type ErrorCode as WireErrorCode,
} from './generated/edgecut_generated.ts';
import {
  checkModelId,
  checkStamp,
  checkString,
  checkTensorMeta,
  checkTimes,
  DTYPE_BYTES,
  DTYPE_FROM_WIRE,
  ERROR_CODE_FROM_WIRE,
  STAMPS,
  verifyMessage,
  WIRE_LIMITS,
  WireFormatError,
} from './verify.ts';
import type {
  DType,
  ErrorCode,
  InferenceError,
  InferenceRequest,
  InferenceResult,
  StageTimes,
  WireMessage,
  WireTensor,
} from './wire-types.ts';

/** The wire types (wire-types.ts), for the modules that encode and decode with this one. */
export type * from './wire-types.ts';

/** Re-exported from verify.ts: the error type, element sizes and limits. */
export { DTYPE_BYTES, WIRE_LIMITS, WireFormatError };

type Typed = Float32Array | Uint16Array | Int8Array | Uint8Array | Int32Array | BigInt64Array;
type TypedCtor = { new (n: number): Typed; new (b: ArrayBufferLike, off: number, n: number): Typed };

const CTORS: Record<DType, TypedCtor> = {
  float32: Float32Array,
  float16: Uint16Array,
  int8: Int8Array,
  uint8: Uint8Array,
  int32: Int32Array,
  int64: BigInt64Array,
};
const DTYPE_TO_WIRE = new Map<DType, WireDType>([...DTYPE_FROM_WIRE].map(([w, d]) => [d, w]));
const ERROR_CODE_TO_WIRE = new Map<ErrorCode, WireErrorCode>(
  [...ERROR_CODE_FROM_WIRE].map(([w, c]) => [c, w]),
);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const QUANTIZED: ReadonlySet<DType> = new Set<DType>(['int8', 'uint8']);

/** A StageTimes with every stamp unset (0). */
export function emptyTimes(): StageTimes {
  return Object.fromEntries(STAMPS.map((k) => [k, 0])) as unknown as StageTimes;
}

// ---- encoding ----

/** Builder capacity that holds the whole message without growing (a multiple of 64, so views stay aligned). */
function capacityFor(strings: readonly string[], tensors: readonly WireTensor[]): number {
  let n = 512; // Message/Request/Times tables and vtables, root offset, identifier, final alignment
  for (const s of strings) n += 8 + 3 * s.length;
  n += 8 + 4 * tensors.length;
  for (const t of tensors) n += 128 + 3 * t.name.length + 8 * t.shape.length + t.data.byteLength;
  return Math.ceil(n / 64) * 64;
}

function checkTensor(field: string, t: WireTensor): void {
  if (!(t.data instanceof Uint8Array)) {
    throw new WireFormatError('bad-tensor', `${field}.data: must be a Uint8Array`, `${field}.data`);
  }
  checkTensorMeta(field, {
    ...t,
    dataBytes: t.data.byteLength,
    scale: t.scale ?? 1,
    zeroPoint: t.zeroPoint ?? 0,
  });
}

function checkCommon(kind: string, m: InferenceRequest | InferenceResult): void {
  checkString(`${kind}.requestId`, m.requestId, WIRE_LIMITS.maxIdBytes, true);
  checkString(`${kind}.deviceId`, m.deviceId, WIRE_LIMITS.maxIdBytes, true);
  checkModelId(`${kind}.modelId`, m.modelId);
  if (!Number.isInteger(m.cutId) || m.cutId < 0 || m.cutId > 0xffffffff) {
    throw new WireFormatError('malformed', `${kind}.cutId: ${m.cutId} is not a uint32`, `${kind}.cutId`);
  }
  if (m.tensors.length > WIRE_LIMITS.maxTensors) {
    const msg = `${kind}.tensors: ${m.tensors.length} tensors; at most ${WIRE_LIMITS.maxTensors} allowed`;
    throw new WireFormatError('too-large', msg, `${kind}.tensors`);
  }
  for (const [i, t] of m.tensors.entries()) checkTensor(`${kind}.tensors[${i}]`, t);
  checkTimes(`${kind}.times`, m.times);
}

/** Writes the tensors (each data vector 16-byte aligned, copied once) and returns the vector of their offsets. */
function buildTensors(b: flatbuffers.Builder, tensors: readonly WireTensor[]): flatbuffers.Offset {
  const offsets = tensors.map((t) => {
    const name = b.createString(t.name);
    const dims = t.shape.map((d) => BigInt(d));
    const shape = Tensor.createShapeVector(b, dims);
    // Pad so the n bytes end (and hence start) 16-aligned; createByteVector then adds no padding of its own.
    b.startVector(1, t.data.byteLength, 16);
    const data = b.createByteVector(t.data);
    Tensor.startTensor(b);
    Tensor.addName(b, name);
    Tensor.addDtype(b, DTYPE_TO_WIRE.get(t.dtype)!);
    Tensor.addShape(b, shape);
    Tensor.addData(b, data);
    Tensor.addScale(b, t.scale ?? 1);
    Tensor.addZeroPoint(b, t.zeroPoint ?? 0);
    return Tensor.endTensor(b);
  });
  return Request.createTensorsVector(b, offsets);
}

function buildTimes(b: flatbuffers.Builder, t: StageTimes): flatbuffers.Offset {
  return Times.createTimes(
    b,
    t.captured,
    t.headStart,
    t.headEnd,
    t.sent,
    t.tailReceived,
    t.tailStart,
    t.tailEnd,
    t.replied,
  );
}

function finish(b: flatbuffers.Builder, type: Body, body: flatbuffers.Offset): Uint8Array {
  Message.finishMessageBuffer(b, Message.createMessage(b, type, body));
  return b.asUint8Array();
}

/** Encodes a Request; the result is a view into the builder's buffer (not necessarily at byteOffset 0). */
export function encodeRequest(r: InferenceRequest): Uint8Array {
  checkCommon('Request', r);
  checkStamp('Request.deadlineMs', r.deadlineMs);
  const b = new flatbuffers.Builder(capacityFor([r.requestId, r.deviceId, r.modelId], r.tensors));
  const tensors = buildTensors(b, r.tensors);
  const times = buildTimes(b, r.times);
  const [requestId, deviceId, modelId] = [r.requestId, r.deviceId, r.modelId].map((s) => b.createString(s));
  Request.startRequest(b);
  Request.addRequestId(b, requestId!);
  Request.addDeviceId(b, deviceId!);
  Request.addModelId(b, modelId!);
  Request.addCutId(b, r.cutId);
  Request.addTensors(b, tensors);
  Request.addTimes(b, times);
  Request.addDeadlineMs(b, r.deadlineMs);
  return finish(b, Body.Request, Request.endRequest(b));
}

/** Encodes a Result; the result is a view into the builder's buffer (not necessarily at byteOffset 0). */
export function encodeResult(r: InferenceResult): Uint8Array {
  checkCommon('Result', r);
  checkString('Result.workerId', r.workerId, WIRE_LIMITS.maxIdBytes, true);
  const b = new flatbuffers.Builder(capacityFor([r.requestId, r.deviceId, r.modelId, r.workerId], r.tensors));
  const tensors = buildTensors(b, r.tensors);
  const times = buildTimes(b, r.times);
  const [requestId, deviceId, modelId, workerId] = [r.requestId, r.deviceId, r.modelId, r.workerId].map((s) =>
    b.createString(s),
  );
  Result.startResult(b);
  Result.addRequestId(b, requestId!);
  Result.addDeviceId(b, deviceId!);
  Result.addModelId(b, modelId!);
  Result.addCutId(b, r.cutId);
  Result.addWorkerId(b, workerId!);
  Result.addTensors(b, tensors);
  Result.addTimes(b, times);
  return finish(b, Body.Result, Result.endResult(b));
}

/** Cuts `s` to at most `maxBytes` UTF-8 bytes without splitting a character. */
function clip(s: string, maxBytes: number): string {
  if (s.length * 3 <= maxBytes) return s;
  let bytes = 0;
  let end = 0;
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    bytes += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (bytes > maxBytes) break;
    end += ch.length;
  }
  return s.slice(0, end);
}

/** Encodes an Error; request/device ids and the message are clipped to the limits so a reply is always possible. */
export function encodeError(e: InferenceError): Uint8Array {
  checkString('Error.workerId', e.workerId, WIRE_LIMITS.maxIdBytes, true);
  const code = ERROR_CODE_TO_WIRE.get(e.code);
  if (code === undefined) {
    throw new WireFormatError(
      'malformed',
      `Error.code: unknown error code ${JSON.stringify(e.code)}`,
      'Error.code',
    );
  }
  const strings = [
    clip(e.requestId, WIRE_LIMITS.maxIdBytes),
    clip(e.deviceId, WIRE_LIMITS.maxIdBytes),
    e.workerId,
    clip(e.message, WIRE_LIMITS.maxMessageBytes),
  ];
  const b = new flatbuffers.Builder(capacityFor(strings, []));
  const [requestId, deviceId, workerId, message] = strings.map((s) => b.createString(s));
  ErrorTable.startError(b);
  ErrorTable.addRequestId(b, requestId!);
  ErrorTable.addDeviceId(b, deviceId!);
  ErrorTable.addWorkerId(b, workerId!);
  ErrorTable.addCode(b, code);
  ErrorTable.addMessage(b, message!);
  return finish(b, Body.Error, ErrorTable.endError(b));
}

// ---- decoding ----

function readTimes(t: Times | null): StageTimes {
  return Object.fromEntries(STAMPS.map((k) => [k, t ? t[k]() : 0])) as unknown as StageTimes;
}

function readTensors(
  buf: Uint8Array,
  n: number,
  at: (i: number, obj: Tensor) => Tensor | null,
): WireTensor[] {
  const out: WireTensor[] = [];
  const t = new Tensor();
  for (let i = 0; i < n; i++) {
    at(i, t);
    const dtype = DTYPE_FROM_WIRE.get(t.dtype())!;
    const shape = Array.from({ length: t.shapeLength() }, (_, j) => Number(t.shape(j)));
    const w: WireTensor = { name: t.name() ?? '', dtype, shape, data: t.dataArray() ?? buf.subarray(0, 0) };
    if (QUANTIZED.has(dtype)) {
      w.scale = t.scale();
      w.zeroPoint = t.zeroPoint();
    }
    out.push(w);
  }
  return out;
}

/** The fields Request and Result share. */
function readCommon(buf: Uint8Array, r: Request | Result) {
  return {
    requestId: r.requestId() ?? '',
    deviceId: r.deviceId() ?? '',
    modelId: r.modelId() ?? '',
    cutId: r.cutId(),
    tensors: readTensors(buf, r.tensorsLength(), (i, o) => r.tensors(i, o)),
    times: readTimes(r.times()),
  };
}

function read(buf: Uint8Array): WireMessage {
  const msg = Message.getRootAsMessage(new flatbuffers.ByteBuffer(buf));
  switch (msg.bodyType()) {
    case Body.Request: {
      const r: Request = msg.body(new Request());
      return { kind: 'request', value: { ...readCommon(buf, r), deadlineMs: r.deadlineMs() } };
    }
    case Body.Result: {
      const r: Result = msg.body(new Result());
      return { kind: 'result', value: { ...readCommon(buf, r), workerId: r.workerId() ?? '' } };
    }
    case Body.Error: {
      const e: ErrorTable = msg.body(new ErrorTable());
      const value: InferenceError = {
        requestId: e.requestId() ?? '',
        deviceId: e.deviceId() ?? '',
        workerId: e.workerId() ?? '',
        code: ERROR_CODE_FROM_WIRE.get(e.code())!,
        message: e.message() ?? '',
      };
      return { kind: 'error', value };
    }
    default: // unreachable: verifyMessage accepts only the three body types
      throw new WireFormatError('malformed', `Message.body_type: unknown body type ${msg.bodyType()}`);
  }
}

/** Verifies and decodes a message without copying tensor data; throws WireFormatError (never anything else). */
export function decodeMessage(buf: Uint8Array, limits: { maxBytes?: number } = {}): WireMessage {
  try {
    verifyMessage(buf, limits.maxBytes ?? WIRE_LIMITS.maxBytes);
    return read(buf);
  } catch (err) {
    if (err instanceof WireFormatError) throw err;
    const detail = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    throw new WireFormatError('malformed', `undecodable message (${detail})`);
  }
}

// ---- typed views ----

/** Typed view of a tensor's elements: zero-copy when `data` is aligned in its ArrayBuffer, else exactly one copy. */
export function tensorElements(t: WireTensor): Typed {
  const size = DTYPE_BYTES[t.dtype];
  const Ctor = CTORS[t.dtype];
  if (Ctor === undefined || t.data.byteLength % size !== 0) {
    const what =
      Ctor === undefined ? `unknown dtype ${t.dtype}` : `${t.data.byteLength} bytes is not whole ${t.dtype}s`;
    const msg = `tensor ${JSON.stringify(t.name)}: ${what}`;
    throw new WireFormatError('bad-tensor', msg);
  }
  if (!LITTLE_ENDIAN) throw new WireFormatError('internal', 'typed tensor views need a little-endian host');
  const n = t.data.byteLength / size;
  if (t.data.byteOffset % size === 0) return new Ctor(t.data.buffer, t.data.byteOffset, n);
  const copy = new Ctor(n);
  new Uint8Array(copy.buffer, 0, t.data.byteLength).set(t.data);
  return copy;
}

/** Wraps typed values as a WireTensor whose data views the same memory (no copy); checks shape and size. */
export function tensorFromTyped(
  name: string,
  dtype: DType,
  shape: number[],
  values: ArrayBufferView,
  quant?: { scale: number; zeroPoint: number },
): WireTensor {
  const Ctor = CTORS[dtype];
  const raw =
    values instanceof Uint8Array || values instanceof Uint8ClampedArray || values instanceof DataView;
  const half = dtype === 'float16' && values.constructor.name === 'Float16Array';
  if (Ctor !== undefined && !raw && !half && !(values instanceof (Ctor as unknown as typeof Uint8Array))) {
    const msg = `tensor ${JSON.stringify(name)}: values are a ${values.constructor.name} but dtype ${dtype} needs a ${Ctor.name} (or raw bytes)`;
    throw new WireFormatError('bad-tensor', msg, 'values');
  }
  const data = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const [scale, zeroPoint] = [quant?.scale ?? 1, quant?.zeroPoint ?? 0];
  checkTensorMeta('tensor', { name, dtype, shape, dataBytes: data.byteLength, scale, zeroPoint });
  const t: WireTensor = { name, dtype, shape, data };
  if (quant) {
    t.scale = quant.scale;
    t.zeroPoint = quant.zeroPoint;
  }
  return t;
}

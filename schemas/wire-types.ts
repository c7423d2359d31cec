/**
 * The wire messages as plain TypeScript values: what codec.ts encodes and decodes and verify.ts checks. They live
 * apart from both so that neither imports the other for them.
 */

/** Element type of a tensor (float16 travels as raw IEEE 754 half bits). */
export type DType = 'float32' | 'float16' | 'int8' | 'uint8' | 'int32' | 'int64';

/** A dense row-major tensor; `data` holds its little-endian bytes (scale/zeroPoint only for int8/uint8). */
export interface WireTensor {
  name: string;
  dtype: DType;
  shape: number[];
  data: Uint8Array;
  scale?: number;
  zeroPoint?: number;
}

/** Stage timestamps in ms since the Unix epoch (0 = not set); subtract only stamps taken on the same clock. */
export interface StageTimes {
  captured: number;
  headStart: number;
  headEnd: number;
  sent: number;
  tailReceived: number;
  tailStart: number;
  tailEnd: number;
  replied: number;
}

/** Edge -> tail worker: run the tail of `modelId` (hex sha256 of the ONNX file) from cut `cutId`. */
export interface InferenceRequest {
  requestId: string;
  deviceId: string;
  modelId: string;
  cutId: number;
  tensors: WireTensor[];
  times: StageTimes;
  deadlineMs: number;
}

/** Tail worker -> edge: the tail's outputs for one request. */
export interface InferenceResult {
  requestId: string;
  deviceId: string;
  modelId: string;
  cutId: number;
  workerId: string;
  tensors: WireTensor[];
  times: StageTimes;
}

/** Why a request was refused or failed (also the code of every WireFormatError). */
export type ErrorCode =
  | 'malformed'
  | 'unknown-model'
  | 'bad-tensor'
  | 'too-large'
  | 'internal'
  | 'overloaded'
  | 'expired';

/** Tail worker -> edge: a request was refused or failed (requestId/deviceId empty if it could not be parsed). */
export interface InferenceError {
  requestId: string;
  deviceId: string;
  workerId: string;
  code: ErrorCode;
  message: string;
}

/** Any decoded message, discriminated by `kind`. */
export type WireMessage =
  | { kind: 'request'; value: InferenceRequest }
  | { kind: 'result'; value: InferenceResult }
  | { kind: 'error'; value: InferenceError };

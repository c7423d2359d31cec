// Plain TypeScript shapes of the ONNX protobuf messages (see onnx.proto), plus the enum
// values and element-type tables the rest of the toolkit needs. Pure declarations: no I/O.
//
// Property names are the proto field names (snake_case) because the codec loads the schema
// with keepCase, so a decoded message and a hand-built object have the same shape.
// Repeated fields that graph code walks are required arrays (readModel always fills them);
// the rest are optional, as in proto2.

/** An int64 value that is a number when it fits exactly (|v| <= 2^53-1) and a bigint otherwise. */
export type Int64 = number | bigint;

/** ONNX TensorProto.DataType values (tensor element types). */
export const DataType = {
  UNDEFINED: 0,
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
  COMPLEX64: 14,
  COMPLEX128: 15,
  BFLOAT16: 16,
  FLOAT8E4M3FN: 17,
  FLOAT8E4M3FNUZ: 18,
  FLOAT8E5M2: 19,
  FLOAT8E5M2FNUZ: 20,
  UINT4: 21,
  INT4: 22,
  FLOAT4E2M1: 23,
  FLOAT8E8M0: 24,
  UINT2: 25,
  INT2: 26,
} as const;

/** A numeric ONNX element type (a value of {@link DataType}). */
export type DataTypeValue = (typeof DataType)[keyof typeof DataType];

/** ONNX AttributeProto.AttributeType values (which value field of an attribute is set). */
export const AttributeType = {
  UNDEFINED: 0,
  FLOAT: 1,
  INT: 2,
  STRING: 3,
  TENSOR: 4,
  GRAPH: 5,
  FLOATS: 6,
  INTS: 7,
  STRINGS: 8,
  TENSORS: 9,
  GRAPHS: 10,
  SPARSE_TENSOR: 11,
  SPARSE_TENSORS: 12,
  TYPE_PROTO: 13,
  TYPE_PROTOS: 14,
} as const;

// Bits per element; 0 for STRING, whose size is not fixed. Sub-byte types exist since IR 10.
const BITS: Record<number, number> = {
  1: 32,
  2: 8,
  3: 8,
  4: 16,
  5: 16,
  6: 32,
  7: 64,
  8: 0,
  9: 8,
  10: 16,
  11: 64,
  12: 32,
  13: 64,
  14: 64,
  15: 128,
  16: 16,
  17: 8,
  18: 8,
  19: 8,
  20: 8,
  21: 4,
  22: 4,
  23: 4,
  24: 8,
  25: 2,
  26: 2,
};

// onnxruntime-node's tensor type names, so shapes.ts and the services can convert both ways.
const ORT_NAMES: Record<number, string> = {
  1: 'float32',
  2: 'uint8',
  3: 'int8',
  4: 'uint16',
  5: 'int16',
  6: 'int32',
  7: 'int64',
  8: 'string',
  9: 'bool',
  10: 'float16',
  11: 'float64',
  12: 'uint32',
  13: 'uint64',
  21: 'uint4',
  22: 'int4',
};

/** Bits per element of an ONNX element type (0 for STRING or an unknown type). */
export function dtypeBits(dtype: number): number {
  return BITS[dtype] ?? 0;
}

/** The TensorProto.DataType name of an element type, e.g. 1 -> "FLOAT"; "TYPE<n>" if unknown. */
export function dtypeName(dtype: number): string {
  for (const [name, v] of Object.entries(DataType)) if (v === dtype) return name;
  return `TYPE${dtype}`;
}

/** The onnxruntime tensor type name (e.g. "float32") of an ONNX element type, or null if ORT has none. */
export function ortTypeName(dtype: number): string | null {
  return ORT_NAMES[dtype] ?? null;
}

/** The ONNX element type of an onnxruntime tensor type name, or null if unknown. */
export function dtypeFromOrt(name: string): number | null {
  for (const [k, v] of Object.entries(ORT_NAMES)) if (v === name) return Number(k);
  return null;
}

/** Bytes needed by `count` elements of `dtype` (packed for sub-byte types); NaN for STRING. */
export function dtypeByteSize(dtype: number, count: number): number {
  const bits = dtypeBits(dtype);
  return bits === 0 ? Number.NaN : Math.ceil((count * bits) / 8);
}

/** Key/value pair (ONNX's stand-in for a map). */
export interface StringStringEntryProto {
  key: string;
  value: string;
}

/** An imported operator set; an empty or absent domain means the default ONNX domain. */
export interface OperatorSetIdProto {
  domain?: string;
  version?: number;
}

/** One dimension: a number, a symbol, or neither (unknown). */
export interface TensorShapeDimension {
  dim_value?: number;
  dim_param?: string;
  denotation?: string;
}

/** A (possibly partially known) tensor shape. */
export interface TensorShapeProto {
  dim?: TensorShapeDimension[];
}

/** The type of a value; edgecut only needs tensor_type, the rest round-trips untouched. */
export interface TypeProto {
  tensor_type?: { elem_type?: number; shape?: TensorShapeProto };
  sequence_type?: { elem_type?: TypeProto };
  map_type?: { key_type?: number; value_type?: TypeProto };
  optional_type?: { elem_type?: TypeProto };
  sparse_tensor_type?: { elem_type?: number; shape?: TensorShapeProto };
  opaque_type?: { domain?: string; name?: string };
  denotation?: string;
}

/** Name + type of a graph input, output or intermediate value. */
export interface ValueInfoProto {
  name?: string;
  type?: TypeProto;
  doc_string?: string;
  metadata_props?: StringStringEntryProto[];
}

/** A tensor value; weights normally live in raw_data (a zero-copy view of the file bytes). */
export interface TensorProto {
  dims: number[];
  data_type?: number;
  segment?: { begin?: Int64; end?: Int64 };
  float_data?: number[];
  int32_data?: number[];
  string_data?: Uint8Array[];
  int64_data?: Int64[];
  name?: string;
  doc_string?: string;
  raw_data?: Uint8Array;
  external_data?: StringStringEntryProto[];
  data_location?: number;
  double_data?: number[];
  uint64_data?: Int64[];
  metadata_props?: StringStringEntryProto[];
}

/** A sparse tensor (values + indices); used as a sparse initializer or attribute. */
export interface SparseTensorProto {
  values?: TensorProto;
  indices?: TensorProto;
  dims?: number[];
}

/** A node attribute; `type` tells which value field is set. */
export interface AttributeProto {
  name?: string;
  ref_attr_name?: string;
  doc_string?: string;
  type?: number;
  f?: number;
  i?: Int64;
  s?: Uint8Array;
  t?: TensorProto;
  g?: GraphProto;
  sparse_tensor?: SparseTensorProto;
  tp?: TypeProto;
  floats?: number[];
  ints?: Int64[];
  strings?: Uint8Array[];
  tensors?: TensorProto[];
  graphs?: GraphProto[];
  sparse_tensors?: SparseTensorProto[];
  type_protos?: TypeProto[];
}

/** One operator invocation; '' in input/output marks an omitted optional argument. */
export interface NodeProto {
  input: string[];
  output: string[];
  name?: string;
  op_type?: string;
  domain?: string;
  overload?: string;
  attribute: AttributeProto[];
  doc_string?: string;
  metadata_props?: StringStringEntryProto[];
  device_configurations?: unknown[];
}

/** Quantization parameter names attached to a tensor. */
export interface TensorAnnotation {
  tensor_name?: string;
  quant_parameter_tensor_names?: StringStringEntryProto[];
}

/** A computation graph. */
export interface GraphProto {
  node: NodeProto[];
  name?: string;
  initializer: TensorProto[];
  sparse_initializer?: SparseTensorProto[];
  doc_string?: string;
  input: ValueInfoProto[];
  output: ValueInfoProto[];
  value_info: ValueInfoProto[];
  quantization_annotation?: TensorAnnotation[];
  metadata_props?: StringStringEntryProto[];
}

/** A model-local function (kept as-is on both sides of a split). */
export interface FunctionProto {
  name?: string;
  input?: string[];
  output?: string[];
  attribute?: string[];
  attribute_proto?: AttributeProto[];
  node?: NodeProto[];
  doc_string?: string;
  opset_import?: OperatorSetIdProto[];
  domain?: string;
  overload?: string;
  value_info?: ValueInfoProto[];
  metadata_props?: StringStringEntryProto[];
}

/** Training-time graphs; carried by the codec, dropped by splits (a split is inference-only). */
export interface TrainingInfoProto {
  initialization?: GraphProto;
  algorithm?: GraphProto;
  initialization_binding?: StringStringEntryProto[];
  update_binding?: StringStringEntryProto[];
}

/** The top-level ONNX ModelProto as stored in a .onnx file. */
export interface ModelProto {
  ir_version?: number;
  opset_import: OperatorSetIdProto[];
  producer_name?: string;
  producer_version?: string;
  domain?: string;
  model_version?: Int64;
  doc_string?: string;
  graph?: GraphProto;
  metadata_props: StringStringEntryProto[];
  training_info?: TrainingInfoProto[];
  functions?: FunctionProto[];
  configuration?: unknown[];
}

/** A ModelProto that is known to have a graph (what readModel returns and the toolkit works on). */
export interface OnnxModel extends ModelProto {
  graph: GraphProto;
}

/**
 * Weights by reference: a model (or a part of one) whose large initializers point into a file holding the original
 * model's bytes, instead of carrying a copy. ONNX's external data (TensorProto.data_location = EXTERNAL, with
 * `location`, `offset` and `length` entries) may name any file and any byte range; a model file is such a file for
 * its own initializers, since a raw_data field's bytes lie in it as they are.
 *
 * onnxruntime maps external data into memory (a file's pages, shared by every session and process that maps it)
 * rather than copying it, so a session of a 235 MB part of AlexNet is created in tens of milliseconds instead of
 * seconds (most of which, on a host with costly first page touches, is writing the copies), and the tails of several
 * cuts share one copy of the weights they have in common.
 */
import type { OnnxModel, TensorProto } from './onnx.ts';

/** TensorProto.DataLocation EXTERNAL. */
const EXTERNAL = 1;

/** Initializers smaller than this stay inline (a reference saves nothing on them). */
export const EXTERNAL_MIN_BYTES = 4096;

/**
 * `model` with each initializer of at least `minBytes` whose raw_data is a view into `file` (the bytes of the model
 * file it was parsed from) turned into a reference to `location` at the same offset. Others (small ones, ones built
 * after parsing, ones already external) are kept as they are. `model` is not changed.
 */
export function referencingWeights(
  model: OnnxModel,
  file: Uint8Array,
  location: string,
  minBytes = EXTERNAL_MIN_BYTES,
): OnnxModel {
  const g = model.graph;
  if (!g) return model;
  const initializer = g.initializer.map((t) => reference(t, file, location, minBytes));
  return { ...model, graph: { ...g, initializer } };
}

function reference(t: TensorProto, file: Uint8Array, location: string, minBytes: number): TensorProto {
  const raw = t.raw_data;
  if (!raw || raw.byteLength < minBytes || raw.buffer !== file.buffer) return t;
  const offset = raw.byteOffset - file.byteOffset;
  if (offset < 0 || offset + raw.byteLength > file.byteLength) return t;
  const { raw_data: _raw, ...rest } = t;
  return {
    ...rest,
    data_location: EXTERNAL,
    external_data: [
      { key: 'location', value: location },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(raw.byteLength) },
    ],
  };
}

/**
 * Checks a request's tensors against the cut it names, before any inference starts (CONTRIBUTING.md, convention 5).
 */

import type { CutInfo } from '../../model/handle.ts';
import type { ErrorCode, WireTensor } from '../../schemas/codec.ts';

/** A request the worker refuses; its code and message go back to the device in an Error reply. */
export class RequestError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** Throws a RequestError unless the tensors are exactly the cut's crossing tensors, with their dtypes and shapes. */
export function checkRequestTensors(cut: CutInfo, tensors: readonly WireTensor[]): void {
  const want = new Map(cut.tensors.map((t) => [t.name, t]));
  const got = new Set<string>();
  for (const t of tensors) {
    const spec = want.get(t.name);
    if (!spec) {
      throw new RequestError(
        'bad-tensor',
        `tensor "${t.name}" does not cross cut ${cut.index}; expected ${[...want.keys()].map((n) => `"${n}"`).join(', ') || 'no tensors'}`,
      );
    }
    if (got.has(t.name)) throw new RequestError('bad-tensor', `tensor "${t.name}" appears twice`);
    got.add(t.name);
    if (t.dtype !== spec.dtype) {
      throw new RequestError(
        'bad-tensor',
        `tensor "${t.name}" has dtype ${t.dtype}; cut ${cut.index} needs ${spec.dtype}`,
      );
    }
    const shapeOk =
      t.shape.length === spec.shape.length && spec.shape.every((d, i) => d === -1 || d === t.shape[i]);
    if (!shapeOk) {
      throw new RequestError(
        'bad-tensor',
        `tensor "${t.name}" has shape [${t.shape.join(',')}]; cut ${cut.index} needs [${spec.shape.join(',')}]`,
      );
    }
  }
  const missing = [...want.keys()].filter((n) => !got.has(n));
  if (missing.length > 0) {
    throw new RequestError(
      'bad-tensor',
      `cut ${cut.index} needs tensor(s) ${missing.map((n) => `"${n}"`).join(', ')}, missing from the request`,
    );
  }
}

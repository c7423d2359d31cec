/**
 * What the model commands accept as a model: a path to an `.onnx` file or the name of a zoo model (built in code
 * and cached on disk on first use).
 */

import { isZooName, zooModelPath } from '../common/model/zoo/index.ts';
import { ModelHandle } from '../common/model-handle.ts';

/** Path of the model file a `<file|zoo-name>` argument names. */
export async function modelPath(ref: string): Promise<string> {
  return isZooName(ref) ? zooModelPath(ref) : ref;
}

/** Loads a `<file|zoo-name>` argument; zoo models keep their zoo name. */
export async function loadModelRef(ref: string): Promise<ModelHandle> {
  const handle = await ModelHandle.fromFile(await modelPath(ref));
  return isZooName(ref) ? handle.renamed(ref) : handle;
}

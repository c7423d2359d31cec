/**
 * What the model commands accept as a model: a path to an `.onnx` file or the name of a zoo model (built in code
 * and cached on disk on first use).
 */

import { ModelHandle } from '../model/handle.ts';
import { isZooName, zooModelPath } from '../model/zoo/index.ts';

/** Path of the model file a `<file|zoo-name>` argument names. */
export async function modelPath(ref: string): Promise<string> {
  return isZooName(ref) ? zooModelPath(ref) : ref;
}

/** Loads a `<file|zoo-name>` argument; zoo models keep their zoo name. */
export async function loadModelRef(ref: string): Promise<ModelHandle> {
  const handle = await ModelHandle.fromFile(await modelPath(ref));
  return isZooName(ref) ? handle.renamed(ref) : handle;
}

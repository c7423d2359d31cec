/**
 * Test helpers: a temporary models directory holding the demo CNN, removed when the test ends.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { ModelHandle } from '../../model/handle.ts';
import { writeDemoModel } from '../../services/edge-head/main.ts';

/** A fresh directory with the demo model, and the loaded model. */
export async function demoModelDir(
  t: ExecutionContext,
): Promise<{ dir: string; path: string; model: ModelHandle }> {
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const path = await writeDemoModel(dir);
  return { dir, path, model: await ModelHandle.fromFile(path) };
}

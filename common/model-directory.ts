/**
 * A directory of ONNX models addressed by content hash: requests name a model by the sha256 of its file, so a
 * worker serves a model whatever the file is called, and two different files can never be confused.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from './errors.ts';
import type { Logger } from './log.ts';
import { ModelHandle } from './model-handle.ts';

async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Models of one directory, loaded on first use. */
export class ModelDirectory {
  private paths = new Map<string, string>();
  private readonly loaded = new Map<string, Promise<ModelHandle>>();
  private lastScan = 0;

  constructor(
    private readonly dir: string,
    private readonly logger: Logger,
    private readonly rescanIntervalMs = 2000,
  ) {}

  /** Number of models found by the last scan. */
  get size(): number {
    return this.paths.size;
  }

  /** Content hashes of the models found by the last scan. */
  ids(): string[] {
    return [...this.paths.keys()];
  }

  /** Hashes every `*.onnx` file of the directory. */
  async scan(): Promise<void> {
    this.lastScan = Date.now();
    const names = (await readdir(this.dir)).filter((n) => n.endsWith('.onnx')).sort();
    const paths = new Map<string, string>();
    for (const name of names) {
      const path = join(this.dir, name);
      try {
        paths.set(await hashFile(path), path);
      } catch (err) {
        this.logger.warn({ path, err: errorMessage(err) }, 'model file unreadable');
      }
    }
    this.paths = paths;
  }

  /** The model with this content hash, or undefined. Rescans (rate-limited) when the hash is unknown. */
  async get(id: string): Promise<ModelHandle | undefined> {
    const hit = this.loaded.get(id);
    if (hit) return hit;
    if (!this.paths.has(id) && Date.now() - this.lastScan >= this.rescanIntervalMs) await this.scan();
    const path = this.paths.get(id);
    if (!path) return undefined;
    const loading = ModelHandle.fromFile(path);
    this.loaded.set(id, loading);
    loading.catch((err: unknown) => {
      this.loaded.delete(id);
      this.logger.error({ path, err: errorMessage(err) }, 'model failed to load');
    });
    return loading;
  }
}

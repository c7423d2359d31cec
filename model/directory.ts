/**
 * A directory of ONNX models addressed by content hash: requests name a model by the sha256 of its file, so a
 * worker serves a model whatever the file is called, and two different files can never be confused.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage, UserError } from '../runtime/errors.ts';
import type { Logger } from '../runtime/log.ts';
import { ModelHandle } from './handle.ts';

async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** What a scan remembers of a file, so an unchanged file is not hashed again. */
interface FileHash {
  size: number;
  mtimeMs: number;
  hash: string;
}

/** Models of one directory, loaded on first use. */
export class ModelDirectory {
  private paths = new Map<string, string>();
  private readonly loaded = new Map<string, Promise<ModelHandle>>();
  private lastScan = 0;
  private hashes = new Map<string, FileHash>();
  private dirMtimeMs: number | undefined;

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
    this.dirMtimeMs = await stat(this.dir).then(
      (st) => st.mtimeMs,
      () => undefined,
    );
    const entries = await readdir(this.dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR')
        throw new UserError(
          `models directory ${this.dir} does not exist: create it, or point MODELS_DIR at the directory of your *.onnx models`,
        );
      throw err;
    });
    const names = entries.filter((n) => n.endsWith('.onnx')).sort();
    const paths = new Map<string, string>();
    const hashes = new Map<string, FileHash>();
    for (const name of names) {
      const path = join(this.dir, name);
      try {
        // Rehash only files whose size or modification time changed since the last scan.
        const st = await stat(path);
        const known = this.hashes.get(path);
        const hash =
          known && known.size === st.size && known.mtimeMs === st.mtimeMs ? known.hash : await hashFile(path);
        hashes.set(path, { size: st.size, mtimeMs: st.mtimeMs, hash });
        paths.set(hash, path);
      } catch (err) {
        this.logger.warn({ path, err: errorMessage(err) }, 'model file unreadable');
      }
    }
    this.paths = paths;
    this.hashes = hashes;
  }

  /**
   * Whether a rescan could find something new: the directory's mtime moved (a file was added, renamed or removed,
   * as when a model is copied in) or the rate limit has passed (a file rewritten in place).
   */
  private async changedSinceScan(): Promise<boolean> {
    if (Date.now() - this.lastScan >= this.rescanIntervalMs) return true;
    const mtime = await stat(this.dir).then(
      (st) => st.mtimeMs,
      () => undefined,
    );
    return mtime !== this.dirMtimeMs;
  }

  /** The model with this content hash, or undefined. Rescans (rate-limited) when the hash is unknown. */
  async get(id: string): Promise<ModelHandle | undefined> {
    const hit = this.loaded.get(id);
    if (hit) return hit;
    if (!this.paths.has(id) && (await this.changedSinceScan())) await this.scan();
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

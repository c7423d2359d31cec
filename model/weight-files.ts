/**
 * Weight files: a private copy of each model's bytes, named by its content hash, that sessions reference instead of
 * carrying their own copy of the weights (model/external.ts). onnxruntime maps the file's pages into memory, so a
 * tail worker creates a session of AlexNet's 235 MB tail in tens of milliseconds instead of 2-4 s, and the tails,
 * heads and whole model of one model share one copy of their weights, within a process and across the processes of
 * one host that use the same directory.
 *
 * Why a copy and not the model file itself: a mapped file that is rewritten in place (`cp new.onnx models/`) changes
 * under the sessions mapping it, and one that is truncated kills them (SIGBUS). A copy named by the hash of its
 * content never changes: it is written once, under a temporary name, and renamed into place. The directory must be
 * the user's own and closed to others (a planted file would be computed with); the files stay, as a cache, until
 * removed (no service needs them across restarts).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError } from '../runtime/config.ts';
import { errorMessage } from '../runtime/errors.ts';
import type { ModelHandle } from './handle.ts';

/** Where a model's weights are for its sessions: `dir` for the session options, `file` for the model's references. */
export interface WeightsRef {
  dir: string;
  file: string;
}

/** Logs one warning (falling back to weights inside each session). */
type Warn = (fields: Record<string, unknown>, msg: string) => void;

/** The weight files of one directory, written on demand, each once per process. */
export class WeightFiles {
  private readonly ready = new Map<string, Promise<WeightsRef | undefined>>();
  private checked: Promise<void> | undefined;

  /** `dir` undefined: no weight files (every session holds its own weights). */
  constructor(
    readonly dir: string | undefined,
    private readonly warn: Warn = () => undefined,
  ) {}

  /**
   * The weight file of `model`, written if it is not there yet; undefined when there is no directory, or the file
   * cannot be written (one warning: sessions then hold their own weights, as without a directory).
   */
  forModel(model: ModelHandle): Promise<WeightsRef | undefined> {
    const dir = this.dir;
    if (dir === undefined) return Promise.resolve(undefined);
    let ref = this.ready.get(model.id);
    if (!ref) {
      ref = this.write(dir, model).catch((err: unknown) => {
        this.warn(
          { dir, model: model.name, err: errorMessage(err) },
          'cannot write the weight file: sessions of this model hold their own copy of its weights',
        );
        return undefined;
      });
      this.ready.set(model.id, ref);
    }
    return ref;
  }

  /** The directory, created private if missing; refused (ConfigError) when it is not the user's own and private. */
  checkDir(): Promise<void> {
    const dir = this.dir;
    if (dir === undefined) return Promise.resolve();
    this.checked ??= (async () => {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const s = await stat(dir);
      const uid = process.getuid?.();
      if (!s.isDirectory()) throw new ConfigError(`WEIGHTS_DIR ${dir} is not a directory`);
      if ((uid !== undefined && s.uid !== uid) || (s.mode & 0o022) !== 0)
        throw new ConfigError(
          `WEIGHTS_DIR ${dir} must belong to this user and be closed to others (mode 700); it is mode ` +
            `${(s.mode & 0o777).toString(8)}, owner ${s.uid}: choose another directory, or none`,
        );
    })();
    return this.checked;
  }

  private async write(dir: string, model: ModelHandle): Promise<WeightsRef> {
    await this.checkDir();
    const file = `${model.id}.onnx`;
    const path = join(dir, file);
    const have = await stat(path).catch(() => undefined);
    if (have?.isFile() && have.size === model.bytes.byteLength) return { dir, file };
    const temp = join(dir, `.${file}.${process.pid}.${randomBytes(4).toString('hex')}`);
    const handle = await open(temp, 'wx', 0o600);
    try {
      await handle.writeFile(model.bytes);
      await handle.close();
      await rename(temp, path);
    } catch (err) {
      await handle.close().catch(() => undefined);
      await unlink(temp).catch(() => undefined);
      throw err;
    }
    return { dir, file };
  }
}

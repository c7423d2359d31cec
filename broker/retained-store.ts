/**
 * Retained messages that survive a restart of the embedded broker. The broker's persistence is aedes-persistence's
 * in-memory store (sessions, subscriptions and packets in flight stay in memory, off the data path's disk), with
 * retained messages also written to a LevelDB database (classic-level) in the broker's data directory
 * (`BROKER_DATA_DIR`) and read back into memory at start. Retained messages are few and small (plans, profiles,
 * statuses, each bounded by the broker's retained-payload limit), so they are written through as they come.
 *
 * It plugs in behind the aedes persistence interface: a subclass of the in-memory store that overrides
 * `storeRetained` and `setup`, wrapped in aedes-persistence's callback layer as aedes' own default is.
 */
import { mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { ClassicLevel } from 'classic-level';
import { ConfigError } from '../runtime/config.ts';
import { errorMessage } from '../runtime/errors.ts';

const require = createRequire(import.meta.url);

/** A retained PUBLISH as aedes hands it to its persistence (the fields used here). */
interface RetainedPacket {
  cmd: 'publish';
  topic: string;
  payload: Buffer | string;
  qos: 0 | 1 | 2;
  retain: boolean;
  dup: boolean;
  brokerId: string;
  brokerCounter: number;
}

/** The part of aedes-persistence's in-memory store this module uses. */
interface MemoryStore {
  setup(broker: unknown): Promise<void>;
  storeRetained(packet: RetainedPacket): Promise<void>;
}

const MemoryPersistence = require('aedes-persistence/asyncPersistence.js') as new (
  opts?: object,
) => MemoryStore;
const { CallBackPersistence } = require('aedes-persistence/callBackPersistence.js') as {
  CallBackPersistence: new (factory: (opts: object) => MemoryStore, opts?: object) => object;
};

/** A retained message as stored on disk, under its topic. */
interface StoredRetained {
  qos: 0 | 1 | 2;
  payload: string;
}

/** The in-memory store with retained messages written through to disk and loaded back at setup. */
class DiskRetained extends MemoryPersistence {
  constructor(
    private readonly db: ClassicLevel<string, string>,
    private readonly onLoaded: (count: number) => void,
  ) {
    super();
  }

  override async setup(broker: unknown): Promise<void> {
    await super.setup(broker);
    let count = 0;
    for await (const [topic, value] of this.db.iterator()) {
      const stored = JSON.parse(value) as StoredRetained;
      await super.storeRetained({
        cmd: 'publish',
        topic,
        payload: Buffer.from(stored.payload, 'base64'),
        qos: stored.qos,
        retain: true,
        dup: false,
        brokerId: '',
        brokerCounter: 0,
      });
      count++;
    }
    this.onLoaded(count);
  }

  override async storeRetained(packet: RetainedPacket): Promise<void> {
    await super.storeRetained(packet);
    const payload = Buffer.from(packet.payload);
    // An empty retained payload deletes the topic's retained message [MQTT-3.3.1-10].
    if (payload.length === 0) await this.db.del(packet.topic);
    else
      await this.db.put(
        packet.topic,
        JSON.stringify({ qos: packet.qos, payload: payload.toString('base64') } satisfies StoredRetained),
      );
  }
}

/** The broker's persistence with retained messages on disk, and how to close it. */
export interface RetainedStore {
  /** The aedes persistence to give `Aedes.createBroker`. */
  persistence: object;
  /** Closes the database (after aedes has closed). */
  close(): Promise<void>;
}

/**
 * Opens (creating it if needed) the retained-message database in `dir`. A directory that cannot be created, or that
 * another broker holds open, is one ConfigError naming BROKER_DATA_DIR.
 */
export async function openRetainedStore(
  dir: string,
  onLoaded: (count: number) => void = () => undefined,
): Promise<RetainedStore> {
  // Retained messages are few and small, rewritten often (every plan): LevelDB's defaults (a 4 MiB write buffer, an
  // 8 MiB block cache) would be memory that grows for minutes before it levels off; 256 KiB each are plenty.
  const db = new ClassicLevel<string, string>(dir, {
    valueEncoding: 'utf8',
    writeBufferSize: 256 * 1024,
    cacheSize: 256 * 1024,
  });
  try {
    await mkdir(dir, { recursive: true });
    await db.open();
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause;
    const locked = /lock/i.test(errorMessage(cause ?? err));
    throw new ConfigError(
      `BROKER_DATA_DIR=${dir} (--data-dir): cannot open the retained-message store: ${
        locked ? 'another broker is using this directory' : errorMessage(cause ?? err)
      }`,
    );
  }
  return {
    persistence: new CallBackPersistence(() => new DiskRetained(db, onLoaded)),
    close: () => db.close(),
  };
}

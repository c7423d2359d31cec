/**
 * Pausing the reading of one aedes connection, correctly. aedes 1.x has `client.pause()` and `client.resume()`, but
 * its read loop counts the packets of a batch down as each is handled and reads again at zero; while paused, a
 * handled packet returns before counting down, so a pause in the middle of a batch leaves the count above zero
 * forever and `resume()` never reads again: the connection hangs. {@link installPause} replaces the client's
 * per-packet continuation with one that always counts down and only skips the read while paused, and
 * {@link pauseReading} / {@link resumeReading} use it. Upstream, the fix is the same two lines in `nextBatch`.
 */
import type { Client } from 'aedes';

/** aedes 1.x client internals the read loop uses (also read by direct-read.ts). */
export interface ReadLoop {
  _paused?: boolean;
  _parsingBatch?: number;
  _nextBatch?: (err?: Error) => void;
  _parser?: { parse(buf: Buffer): void };
}

function readNext(c: ReadLoop, client: Client): void {
  if (c._parsingBatch! > 0) return;
  c._parsingBatch = 0;
  const buf = (client.conn as unknown as { read(n: null): Buffer | null }).read(null);
  if (buf) c._parser!.parse(buf);
}

/**
 * Installs the corrected continuation on a new connection (call right after `aedes.handle`, before it has read
 * anything). False when the client does not have the internals (another aedes version): pausing it is then a no-op.
 */
export function installPause(client: Client): boolean {
  const c = client as unknown as ReadLoop;
  if (typeof c._nextBatch !== 'function' || typeof c._parsingBatch !== 'number' || !c._parser) return false;
  c._nextBatch = (err?: Error) => {
    if (err) {
      client.emit('error', err);
      return;
    }
    c._parsingBatch = Math.max(0, c._parsingBatch! - 1);
    if (!c._paused) readNext(c, client);
  };
  return true;
}

/** Stops reading the connection after the packets already read (TCP then pushes back on the sender). */
export function pauseReading(client: Client): boolean {
  const c = client as unknown as ReadLoop;
  if (typeof c._parsingBatch !== 'number') return false;
  c._paused = true;
  return true;
}

/** Reads again: at once when no packet of the last batch is still being handled, else when the last one is. */
export function resumeReading(client: Client): void {
  const c = client as unknown as ReadLoop;
  if (!c._paused) return;
  c._paused = false;
  if (!client.closed && !client.conn.destroyed) readNext(c, client);
}

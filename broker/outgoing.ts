/**
 * A bounded outgoing buffer per connection, as a wrapper of aedes 1.x's wait for a full socket that could go
 * upstream as a broker option.
 *
 * aedes writes a message to a subscriber and, when the socket's buffer is over its high-water mark (16 KiB, so after
 * every message larger than that), waits for the socket to drain before it calls the delivery back; the publish it
 * delivers completes only then, and only then does aedes acknowledge it and read the publisher's next packet. That
 * bounds what a slow subscriber costs the broker, but it also makes every large message wait for the last one to
 * leave the socket: reading the next tensor never overlaps writing this one, and a 1 MiB message crossed the broker
 * at 0.66x Mosquitto's rate. Here a delivery waits for the drain only while the connection has more than
 * `limitBytes` unsent; below that it completes at once. A subscriber that stops reading still holds at most
 * `limitBytes` plus one message in the broker (then the publishers to it are held up, as before), and nothing is
 * dropped.
 */
import type { Client } from 'aedes';

/** Default unsent bytes a connection may hold before deliveries to it wait for its socket to drain. */
export const OUTGOING_WINDOW_BYTES = 4 * 1024 * 1024;

interface DrainWaiter {
  waitForDrain?: (callback: (err?: Error) => void) => void;
  conn: { writableLength?: number };
}

/**
 * Installs the window on a connection (call right after `aedes.handle`). False when the client lacks the internal
 * (another aedes version): it then keeps aedes' own wait.
 */
export function outgoingWindow(client: Client, limitBytes = OUTGOING_WINDOW_BYTES): boolean {
  const c = client as unknown as DrainWaiter;
  const wait = c.waitForDrain;
  if (typeof wait !== 'function') return false;
  c.waitForDrain = function (this: DrainWaiter, callback) {
    if ((c.conn.writableLength ?? Number.POSITIVE_INFINITY) <= limitBytes) {
      setImmediate(callback);
      return;
    }
    wait.call(this, callback);
  };
  return true;
}

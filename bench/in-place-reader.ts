/**
 * An MQTT.js client reading large PUBLISH packets in place, as the broker does (runtime/mqtt-framing.ts): the
 * subscribers of `npm run bench -- broker`.
 *
 * MQTT.js reads its socket in Node's default mode: a new 64 KiB buffer per read, and mqtt-packet's parser
 * concatenates a message's chunks into its payload once the packet is whole. A subscriber receiving 1 MiB messages
 * then pays for a copy of every payload and for sixteen or more fresh buffers the garbage collector has to account
 * for, on the same two cores as the broker it measures. Over plain TCP (`mqtt://`, `tcp://`) {@link readInPlace}
 * gives the client a socket created with `onread`, whose reads the framer cuts into chunks: a large PUBLISH arrives
 * as one chunk holding the whole packet, which mqtt-packet slices the payload out of as a view, with no copy. The
 * buffer is a fresh one unless the caller gives `take` (the benchmark's subscriber reuses them, since it is done
 * with a message once it has read its send time).
 *
 * The services keep MQTT.js's own reading: a tail worker's copy of a 600 KB request is about 0.06 ms of an 8 ms
 * frame (docs/broker-performance.md, "The services' side"), and a fresh buffer per message, which is all a service
 * could use (it keeps a request while it runs the tail), cost more than that copy under glibc's default malloc: the
 * benchmark's subscribers read into fresh buffers took 170-220 page faults per 1 MiB message, against 20-60 with
 * MQTT.js's own reading. TLS and WebSocket connections, and a SOCKS proxy, keep MQTT.js's transport here too.
 */
import { connect, type Socket, type TcpNetConnectOpts } from 'node:net';
import type { MqttClient } from 'mqtt';
import { type FramerStats, PacketFramer } from '../runtime/mqtt-framing.ts';

/**
 * Largest PUBLISH a client reads in place (its buffer is taken when the packet's header arrives, so a broker's
 * header alone must not make a client allocate much more). Larger packets go MQTT.js's own way.
 */
export const IN_PLACE_MAX_BYTES = 16 * 1024 * 1024;

/** Where and how far a connection goes. */
export interface DirectTcpOptions {
  host: string;
  port: number;
  /** Largest remaining length read in place; default {@link IN_PLACE_MAX_BYTES}. */
  maxPacketBytes?: number;
  /** Counts of what was read in place. */
  stats?: FramerStats;
  /**
   * A buffer of exactly `total` bytes for a large packet; default: a fresh one. A caller that reuses buffers must
   * know when the application is done with every payload sliced from one.
   */
  take?(total: number): Buffer;
}

/** A TCP connection whose reads are cut into MQTT packets, large PUBLISH packets read in place. */
export function directTcpConnection(o: DirectTcpOptions): Socket {
  const max = o.maxPacketBytes ?? IN_PLACE_MAX_BYTES;
  const ready: Buffer[] = [];
  const framer = new PacketFramer({
    maxPacketBytes: () => max,
    deliver: (chunk) => ready.push(chunk),
    stats: o.stats,
    ...(o.take ? { take: o.take } : {}),
  });
  const socket: Socket = connect({
    host: o.host,
    port: o.port,
    onread: {
      buffer: () => framer.nextBuffer(),
      callback: (n: number, buf: Uint8Array) => {
        framer.onRead(n, buf);
        // Every chunk the read completed goes on (they are read); past the high-water mark the socket stops
        // reading until MQTT.js has taken them (the stream's _read starts it again).
        let more = true;
        for (const chunk of ready.splice(0)) more = socket.push(chunk) && more;
        return more;
      },
    },
  } satisfies TcpNetConnectOpts);
  return socket;
}

/** What {@link readInPlace} reads of MQTT.js's options (its parsed URL). */
interface ClientInternals {
  streamBuilder?: (client: MqttClient) => unknown;
  options: { protocol?: string; hostname?: string; host?: string; port?: number; socksProxy?: unknown };
}

/**
 * Makes a client created with `manualConnect` read over a {@link directTcpConnection} on every (re)connect, when its
 * URL is plain TCP; returns whether it does. Call before `connect()` and before wrapping its transport.
 */
export function readInPlace(client: MqttClient, o: Omit<DirectTcpOptions, 'host' | 'port'> = {}): boolean {
  const c = client as unknown as ClientInternals;
  const { protocol, socksProxy } = c.options;
  if ((protocol !== 'mqtt' && protocol !== 'tcp') || socksProxy !== undefined) return false;
  if (typeof c.streamBuilder !== 'function')
    throw new Error('this mqtt.js version keeps no streamBuilder; its transport cannot be replaced');
  c.streamBuilder = () =>
    directTcpConnection({
      ...o,
      host: c.options.hostname ?? c.options.host ?? 'localhost',
      port: c.options.port ?? 1883,
    });
  return true;
}

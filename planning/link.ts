/**
 * The link model of the paper (section III-B): a transfer of D bytes costs a channel set-up time alpha for each
 * packet of M bytes (the MTU) plus beta per byte: T(D) = alpha * ceil(D / M) + beta * D. Refinement: plus a fixed
 * set-up per message, which measured MQTT transfers show (see link-fit.ts).
 */

/** Link parameters. */
export interface LinkModel {
  /**
   * Fixed cost of one message, milliseconds (refinement: an MQTT publish pays a broker hop and a protocol
   * exchange whatever its size; the fit of measured transfers finds it). Optional, default 0.
   */
  setupMs?: number;
  /** Set-up time per packet, milliseconds (alpha). */
  alphaMs: number;
  /** Packet size in bytes (M, the MTU). */
  mtu: number;
  /** Transmission time per byte, milliseconds (beta = 1 / bandwidth). */
  betaMsPerByte: number;
}

/** Milliseconds to move `bytes` over the link; 0 bytes cost nothing. */
export function transferMs(link: LinkModel, bytes: number): number {
  if (bytes <= 0) return 0;
  return (link.setupMs ?? 0) + link.alphaMs * Math.ceil(bytes / link.mtu) + link.betaMsPerByte * bytes;
}

/** A link of the given bandwidth in bits per second. */
export function linkFromBandwidth(bitsPerSecond: number, alphaMs = 0, mtu = 1500): LinkModel {
  if (!(bitsPerSecond > 0)) throw new RangeError(`bandwidth must be > 0 bit/s, got ${bitsPerSecond}`);
  return { alphaMs, mtu, betaMsPerByte: (8 * 1000) / bitsPerSecond };
}

/** Bandwidth of a link in bits per second (from beta). */
export function bandwidthBps(link: LinkModel): number {
  return link.betaMsPerByte > 0 ? (8 * 1000) / link.betaMsPerByte : Number.POSITIVE_INFINITY;
}

const RATE = /^(\d+(?:\.\d+)?)\s*(bps|kbps|mbps|gbps|kbit\/s|mbit\/s|gbit\/s|bit\/s)$/i;
const UNIT: Record<string, number> = {
  bps: 1,
  'bit/s': 1,
  kbps: 1e3,
  'kbit/s': 1e3,
  mbps: 1e6,
  'mbit/s': 1e6,
  gbps: 1e9,
  'gbit/s': 1e9,
};

/** Parses a rate such as `1mbps`, `8kbps`, `100 Mbit/s` into bits per second; undefined if it is not one. */
export function parseRate(text: string): number | undefined {
  const m = RATE.exec(text.trim());
  if (!m) return undefined;
  const value = Number(m[1]) * UNIT[m[2]!.toLowerCase()]!;
  return value > 0 ? value : undefined;
}

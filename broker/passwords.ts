/**
 * Password hashes of the broker's users file: scrypt (RFC 7914) with a random salt, written as one self-describing
 * string `scrypt$N=16384,r=8,p=1$<salt base64>$<hash base64>`, so that the cost can be raised later without
 * invalidating existing entries. Verification runs scrypt off the event loop (libuv's thread pool) and compares
 * with `timingSafeEqual`.
 */
import { randomBytes, type ScryptOptions, scrypt, timingSafeEqual } from 'node:crypto';

/** Cost parameters of scrypt. */
export interface ScryptParams {
  /** CPU/memory cost, a power of two. */
  N: number;
  /** Block size. */
  r: number;
  /** Parallelisation. */
  p: number;
}

/** A parsed password hash. */
export interface PasswordHash extends ScryptParams {
  salt: Buffer;
  hash: Buffer;
}

/** The cost `edgecut users add` uses: the interactive-login parameters of RFC 7914 §2 (about 16 MiB, ~50 ms). */
export const DEFAULT_SCRYPT: ScryptParams = { N: 16384, r: 8, p: 1 };

/** How a hash is written, for error messages. */
export const HASH_FORMAT = 'scrypt$N=<n>,r=<r>,p=<p>$<salt base64>$<hash base64>';

const SALT_BYTES = 16;
const HASH_BYTES = 32;
const B64 = '[A-Za-z0-9+/]+={0,2}';
const PATTERN = new RegExp(`^scrypt\\$N=(\\d{1,7}),r=(\\d{1,2}),p=(\\d{1,2})\\$(${B64})\\$(${B64})$`);

/** Parses a hash string; undefined when it is not one this module wrote or could verify. */
export function parsePasswordHash(text: string): PasswordHash | undefined {
  const m = PATTERN.exec(text);
  if (!m) return undefined;
  const [N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  // N a power of two (RFC 7914 §2), bounded so that one login cannot ask for more than 256 MiB.
  if (N < 1024 || N > 131_072 || (N & (N - 1)) !== 0) return undefined;
  if (r < 1 || r > 16 || p < 1 || p > 16) return undefined;
  const salt = Buffer.from(m[4]!, 'base64');
  const hash = Buffer.from(m[5]!, 'base64');
  if (salt.length < 8 || hash.length < 16 || hash.length > 64) return undefined;
  return { N, r, p, salt, hash };
}

function derive(password: Buffer, salt: Buffer, length: number, params: ScryptParams): Promise<Buffer> {
  const opts: ScryptOptions = {
    N: params.N,
    r: params.r,
    p: params.p,
    // scrypt needs about 128 * N * r bytes; Node refuses above 32 MiB unless told.
    maxmem: 256 * params.N * params.r + (1 << 20),
  };
  return new Promise((resolve, reject) =>
    scrypt(password, salt, length, opts, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

/** Hashes a password with a fresh random salt. */
export async function hashPassword(password: string, params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await derive(Buffer.from(password, 'utf8'), salt, HASH_BYTES, params);
  return `scrypt$N=${params.N},r=${params.r},p=${params.p}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

/** Does the password (as sent in CONNECT, UTF-8 bytes) match the hash? Constant-time comparison. */
export async function verifyPassword(password: Buffer, stored: PasswordHash): Promise<boolean> {
  const got = await derive(password, stored.salt, stored.hash.length, stored);
  return timingSafeEqual(got, stored.hash);
}

let dummy: PasswordHash | undefined;

/**
 * Spends what one verification at the default cost spends, for a user name that does not exist, so that the time of
 * a refusal does not tell whether the user exists.
 */
export async function verifyNothing(password: Buffer): Promise<false> {
  dummy ??= { ...DEFAULT_SCRYPT, salt: randomBytes(SALT_BYTES), hash: randomBytes(HASH_BYTES) };
  await verifyPassword(password, dummy);
  return false;
}

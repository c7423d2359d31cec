/**
 * Reading the PEM files of TLS (the broker's certificate and key, a client's CA), checked once at start-up so a
 * wrong path or a file of the wrong kind stops the process with one line naming the setting and the file.
 */
import { readFile } from 'node:fs/promises';
import { ConfigError } from './config.ts';
import { errorMessage } from './errors.ts';

/** What a PEM file must hold: the label of its first block. */
export type PemKind = 'certificate' | 'private key';

const LABELS: Record<PemKind, RegExp> = {
  certificate: /-----BEGIN CERTIFICATE-----/,
  // PKCS#8 (`PRIVATE KEY`, `ENCRYPTED PRIVATE KEY`) and the traditional `RSA`/`EC` forms.
  'private key': /-----BEGIN (?:ENCRYPTED |RSA |EC )?PRIVATE KEY-----/,
};

/**
 * Reads a PEM file; ConfigError (one line naming `setting`, the path and what is expected) when it cannot be read or
 * holds no PEM block of the expected kind.
 */
export async function readPem(path: string, kind: PemKind, setting: string): Promise<Buffer> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? errorMessage(err);
    throw new ConfigError(
      `${setting}=${JSON.stringify(path)} is not allowed: cannot read the file (${code})`,
    );
  }
  if (!LABELS[kind].test(bytes.toString('latin1'))) {
    throw new ConfigError(
      `${setting}=${JSON.stringify(path)} is not allowed: expected a PEM ${kind} (-----BEGIN ${kind === 'certificate' ? 'CERTIFICATE' : 'PRIVATE KEY'}-----)`,
    );
  }
  return bytes;
}

/**
 * The broker's optional TLS listener: its settings checked and its PEM files read before any socket opens, so a
 * missing or wrong file stops the broker with one line naming the setting.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { ConfigError } from '../runtime/config.ts';
import { errorMessage } from '../runtime/errors.ts';
import { readPem } from '../runtime/pem.ts';
import { brokerSettings } from './config.ts';

/** TLS settings as given (any of them may be missing). */
export interface TlsSettings {
  /** Port of the MQTT-over-TLS listener; 0 picks a free one, undefined disables it. */
  port?: number | undefined;
  /** PEM file of the server certificate (and any intermediates after it). */
  certFile?: string | undefined;
  /** PEM file of the certificate's private key. */
  keyFile?: string | undefined;
}

/** A checked TLS listener configuration. */
export interface TlsListener {
  port: number;
  cert: Buffer;
  key: Buffer;
}

const name = (s: { env: string; flag: string }) => `${s.env} (--${s.flag})`;

/** Checks the settings and reads the files; undefined when TLS is off. ConfigError (one line) on any problem. */
export async function loadTls(settings: TlsSettings | undefined): Promise<TlsListener | undefined> {
  const { port, certFile, keyFile } = settings ?? {};
  const { tlsPort, tlsCert, tlsKey } = brokerSettings;
  if (port === undefined) {
    const stray = certFile !== undefined ? tlsCert : keyFile !== undefined ? tlsKey : undefined;
    if (stray)
      throw new ConfigError(
        `${stray.env} is set but ${name(tlsPort)} is not: set the TLS listener's port (0 = any free port), or unset ${stray.env}`,
      );
    return undefined;
  }
  if (certFile === undefined || keyFile === undefined) {
    const missing = [certFile === undefined && name(tlsCert), keyFile === undefined && name(tlsKey)].filter(
      Boolean,
    );
    throw new ConfigError(
      `${tlsPort.env}=${port} needs ${missing.join(' and ')}: PEM files of the server certificate and its private key`,
    );
  }
  const cert = await readPem(certFile, 'certificate', tlsCert.env);
  const key = await readPem(keyFile, 'private key', tlsKey.env);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw new ConfigError(
      `${tlsCert.env}=${JSON.stringify(certFile)} is not allowed: not a valid certificate (${errorMessage(err)})`,
    );
  }
  let matches: boolean;
  try {
    matches = x509.checkPrivateKey(createPrivateKey(key));
  } catch (err) {
    throw new ConfigError(
      `${tlsKey.env}=${JSON.stringify(keyFile)} is not allowed: not a usable private key (${errorMessage(err)})`,
    );
  }
  if (!matches)
    throw new ConfigError(
      `${tlsKey.env}=${JSON.stringify(keyFile)} is not allowed: it is not the key of the certificate in ${tlsCert.env}`,
    );
  return { port, cert, key };
}

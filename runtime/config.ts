/**
 * Configuration, validated once at start-up (CONTRIBUTING.md, convention 5). Each service declares its settings in one
 * table: the environment variable, the CLI flag, a zod schema, a default and one line of documentation. The same
 * table registers the flags, parses environment and flags into one typed object, and generates
 * docs/configuration.md (scripts/generate-docs.ts). Flags win over the environment; an invalid or unknown value
 * stops the service with one line naming the variable, the value given and what is allowed.
 */
import { z } from 'zod';
import { UserError } from './errors.ts';

/** One setting of a service. */
export interface Setting<T> {
  /** Environment variable, e.g. `MQTT_URL`. */
  readonly env: string;
  /** Long CLI flag without dashes, e.g. `mqtt-url`. */
  readonly flag: string;
  /** Validates and converts the raw string. */
  readonly schema: z.ZodType<T>;
  /** Default as it would be written in the environment; undefined means the setting is optional. */
  readonly default?: string;
  /** What the setting does and what it allows, one line. */
  readonly doc: string;
}

/** A table of settings, keyed by the config object's field names. */
export type Settings = Record<string, Setting<unknown>>;

/** The typed config object a settings table produces. */
export type ConfigOf<S extends Settings> = {
  [K in keyof S]: S[K] extends Setting<infer T> ? T : never;
};

/** Declares a setting (keeps the value type inferred). */
export function setting<T>(s: Setting<T>): Setting<T> {
  return s;
}

/** Thrown for an invalid setting; its message is the one line a user sees. */
export class ConfigError extends UserError {}

/** Parses raw strings (flags over environment over defaults) into the typed config. */
export function parseConfig<S extends Settings>(
  settings: S,
  env: Record<string, string | undefined>,
  flags: Record<string, string | undefined> = {},
): ConfigOf<S> {
  const out: Record<string, unknown> = {};
  for (const [key, s] of Object.entries(settings)) {
    const fromFlag = flags[s.flag];
    const fromEnv = env[s.env];
    const raw = fromFlag ?? (fromEnv === '' ? undefined : fromEnv) ?? s.default;
    const source =
      fromFlag !== undefined
        ? `--${s.flag}`
        : fromEnv !== undefined && fromEnv !== ''
          ? s.env
          : `default of ${s.env}`;
    if (raw === undefined) {
      out[key] = undefined;
      continue;
    }
    const parsed = s.schema.safeParse(raw);
    if (!parsed.success) {
      const why = parsed.error.issues[0]?.message ?? 'invalid';
      throw new ConfigError(`${source}=${JSON.stringify(raw)} is not allowed: ${why} -- ${s.env}: ${s.doc}`);
    }
    out[key] = parsed.data;
  }
  return out as ConfigOf<S>;
}

/** Common building blocks for setting schemas; their messages say what is allowed. */
export const schemas = {
  /** A broker URL. */
  mqttUrl: z.string().refine((v) => {
    try {
      const u = new URL(v);
      return ['mqtt:', 'mqtts:', 'tcp:', 'ssl:', 'ws:', 'wss:'].includes(u.protocol) && u.hostname !== '';
    } catch {
      return false;
    }
  }, 'expected a URL like mqtt://host:1883 (schemes mqtt, mqtts, tcp, ssl, ws, wss)'),
  /** An id usable as a topic segment. */
  id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'expected 1-64 characters from A-Z a-z 0-9 . _ -'),
  /** A TCP port, 0 meaning any free port. */
  port: z.coerce
    .number({ message: 'expected a whole number' })
    .int('expected a whole number')
    .min(0, 'expected a port from 0 to 65535')
    .max(65535, 'expected a port from 0 to 65535'),
  /** A positive whole number. */
  positiveInt: z.coerce
    .number({ message: 'expected a whole number' })
    .int('expected a whole number')
    .min(1, 'expected a whole number >= 1'),
  /** A non-negative whole number. */
  count: z.coerce
    .number({ message: 'expected a whole number' })
    .int('expected a whole number')
    .min(0, 'expected a whole number >= 0'),
  /** A non-negative number of milliseconds. */
  ms: z.coerce
    .number({ message: 'expected a number of milliseconds' })
    .min(0, 'expected a number of milliseconds >= 0'),
  /** A boolean written as true/false/1/0/yes/no. */
  bool: z
    .string()
    .transform((v) => v.toLowerCase())
    .refine((v) => ['true', 'false', '1', '0', 'yes', 'no'].includes(v), 'expected true or false')
    .transform((v) => v === 'true' || v === '1' || v === 'yes'),
  /** A filesystem path. */
  path: z.string().min(1, 'expected a path'),
};

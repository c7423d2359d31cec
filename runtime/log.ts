/**
 * Structured JSON logs (pino). Every component gets a child logger carrying its name, so a line in a mixed stream
 * (the demo, `edgecut stack up`) says who wrote it.
 */
import { type Logger, pino } from 'pino';

export type { Logger } from 'pino';

/** Log levels accepted by `LOG_LEVEL` / `--log-level`. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** One of {@link LOG_LEVELS}. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Creates the root logger of a process; JSON lines on stderr so stdout stays free for command output. */
export function createLogger(level: LogLevel = 'info', base: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { pid: process.pid, ...base } }, pino.destination({ fd: 2, sync: true }));
}

/** A logger that drops everything, for tests and library use. */
export const silentLogger: Logger = pino({ level: 'silent' });

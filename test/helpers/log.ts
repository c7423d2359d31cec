/**
 * Test helpers: a logger whose lines the test reads back.
 */
import { Writable } from 'node:stream';
import { type Level, pino } from 'pino';
import type { Logger } from '../../runtime/log.ts';

/** One JSON log line, parsed. */
export type LogLine = { msg: string } & Record<string, unknown>;

/** A pino logger at `level` whose lines are kept, parsed, in `lines` (in the order they were written). */
export function capturingLogger(level: Level = 'info'): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(JSON.parse(String(chunk)) as LogLine);
      done();
    },
  });
  return { logger: pino({ level }, sink), lines };
}

/**
 * User-facing errors. A `UserError` is printed as one line (no stack trace) and makes the CLI exit non-zero; anything
 * else is a bug and keeps its stack.
 */

/** An error caused by the user's input (a flag, a file, a config value), printed as one line. */
export class UserError extends Error {}

/** Formats any thrown value as one line. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * Test helpers for time: a plain sleep (for what must take real time, never to wait for an outcome), and polling
 * until a condition holds or a value appears, failing with what was awaited.
 */

/** Resolves after `ms`. */
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Polls until `probe` returns (or resolves to) something truthy and resolves with it; fails naming `what` after
 * `timeoutMs`.
 */
export async function until<T>(
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  timeoutMs = 10_000,
): Promise<T> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Polls until `cond` holds; fails naming `what` after `timeoutMs`. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  await until(() => cond() || undefined, what, timeoutMs);
}

/**
 * Test helper: runs the `edgecut` command as a user would and captures its output and exit code.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { EDGECUT_BIN } from '../../cli/processes.ts';

const run = promisify(execFile);

/** Result of one `edgecut` run. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `edgecut <args>`; never throws for a non-zero exit. Progress lines (cli/progress.ts) are off unless `env` sets
 * EDGECUT_PROGRESS_AFTER_MS (`''` for the stock 2 s): on a busy host a command's start alone can take 2 s, and the
 * tests of one-line errors and empty stderr are not about progress (test/cli-polish.test.ts is).
 */
export async function edgecut(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run(process.execPath, [EDGECUT_BIN, ...args], {
      env: { ...process.env, EDGECUT_PROGRESS_AFTER_MS: '3600000', ...env },
      timeout: 120_000,
      maxBuffer: 64 << 20,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

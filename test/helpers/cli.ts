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

/** Runs `edgecut <args>`; never throws for a non-zero exit. */
export async function edgecut(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run(process.execPath, [EDGECUT_BIN, ...args], {
      env: { ...process.env, ...env },
      timeout: 120_000,
      maxBuffer: 64 << 20,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

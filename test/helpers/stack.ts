/**
 * Test helper: `edgecut stack up` as a user runs it, a real process reading a real Compose file, with its output
 * captured line by line and SIGINT standing in for Ctrl-C.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { ExecutionContext } from 'ava';
import { EDGECUT_BIN } from '../../cli/processes.ts';
import { portFree } from './broker.ts';

/** One process of the stack as its ready line reports it. */
export type StackProcess = { id: string; pid?: number } & Record<string, unknown>;

/** A running `edgecut stack up`. */
export interface StackRun {
  child: ChildProcess;
  stdout: string[];
  stderr: string[];
  /** The stack's ready line: every process it started. */
  ready: Promise<StackProcess[]>;
  /** Resolves with the first stderr line matching `re`, searching from line index `since` (default 0) on. */
  waitForStderr(re: RegExp, since?: number, timeoutMs?: number): Promise<string>;
  /** Exit code of the stack. */
  exited: Promise<number | null>;
}

/** Starts `edgecut stack up <args>`; at teardown it is interrupted (and killed if it does not stop). */
export function stackUp(t: ExecutionContext, args: string[], env: Record<string, string> = {}): StackRun {
  const child = spawn(process.execPath, [EDGECUT_BIN, 'stack', 'up', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  const waiters: { re: RegExp; resolve: (line: string) => void }[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let resolveReady: (p: StackProcess[]) => void = () => undefined;
  let rejectReady: (e: Error) => void = () => undefined;
  const ready = new Promise<StackProcess[]>((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });
  ready.catch(() => undefined);
  void exited.then((code) =>
    rejectReady(new Error(`stack up exited with code ${code}:\n${stderr.slice(-30).join('\n')}`)),
  );
  createInterface({ input: child.stdout! }).on('line', (line) => {
    stdout.push(line);
    if (line.startsWith('{"ready":"stack"'))
      resolveReady((JSON.parse(line) as { processes: StackProcess[] }).processes);
  });
  createInterface({ input: child.stderr! }).on('line', (line) => {
    stderr.push(line);
    for (const w of [...waiters]) {
      if (w.re.test(line)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGINT');
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(timer);
  });
  return {
    child,
    stdout,
    stderr,
    ready,
    exited,
    waitForStderr(re, since = 0, timeoutMs = 60_000) {
      const seen = stderr.slice(since).find((l) => re.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(
              new Error(
                `no stderr line matched ${re} within ${timeoutMs} ms:\n${stderr.slice(-20).join('\n')}`,
              ),
            ),
          timeoutMs,
        );
        waiters.push({
          re,
          resolve: (line) => {
            clearTimeout(timer);
            resolve(line);
          },
        });
      });
    },
  };
}

/** True while a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * A `--port-offset` under which every given base port is free on loopback, kept below Linux's ephemeral range
 * (32768 and up) so no outgoing connection takes one of them meanwhile.
 */
export async function freePortOffset(basePorts: number[]): Promise<number> {
  const top = Math.max(...basePorts);
  for (;;) {
    const offset = 10_000 + Math.floor(Math.random() * (32_000 - top - 10_000));
    const checks = await Promise.all(basePorts.map((p) => portFree(p + offset)));
    if (checks.every(Boolean)) return offset;
  }
}

/** One shell command shown in a doc: its leading `NAME=value` assignments and its words. */
export interface DocCommand {
  env: Record<string, string>;
  words: string[];
}

/** The lines of a Markdown file's `sh` blocks, as written (blank lines left out). */
export async function docLines(file: string): Promise<string[]> {
  const text = await readFile(file, 'utf8');
  return [...text.matchAll(/```sh\n([\s\S]*?)```/g)]
    .flatMap((m) => (m[1] ?? '').split('\n'))
    .filter((l) => l.trim() !== '');
}

/** Every command line of the `sh` blocks of a Markdown file, without trailing comments. */
export async function docCommands(file: string): Promise<DocCommand[]> {
  return (await docLines(file))
    .map((l) => l.replace(/\s+#.*$/, '').trim())
    .map((line) => {
      const words = line.split(/\s+/);
      const env: Record<string, string> = {};
      while (words[0] && /^[A-Z_][A-Z0-9_]*=/.test(words[0])) {
        const w = words.shift() ?? '';
        env[w.slice(0, w.indexOf('='))] = w.slice(w.indexOf('=') + 1);
      }
      return { env, words };
    });
}

/** The command of a doc whose words start with `prefix` (the test fails loudly if the doc lost it). */
export async function docCommand(file: string, prefix: string): Promise<DocCommand> {
  const found = (await docCommands(file)).find((c) => c.words.join(' ').startsWith(prefix));
  if (!found) throw new Error(`${file} shows no command starting with ${JSON.stringify(prefix)}`);
  return found;
}

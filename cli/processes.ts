/**
 * Child processes of `edgecut demo` (and later `edgecut stack up`): each service runs as its own `edgecut`
 * process; its `ready` line on stdout says it is up, its other output is passed through with a prefix.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { constants } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** Path of the `edgecut` entry point. */
export const EDGECUT_BIN = fileURLToPath(new URL('../bin/edgecut.js', import.meta.url));

/** The ready line a service prints when it is up. */
export type ReadyLine = { ready: string; pid: number } & Record<string, unknown>;

/** A running service process. */
export interface ServiceProcess {
  name: string;
  child: ChildProcess;
  /** Resolves with the ready line; rejects if the process exits first. */
  ready: Promise<ReadyLine>;
  /** Resolves with the exit code (or 128 + signal number style code for signals). */
  exited: Promise<number>;
  /** Sends SIGTERM and waits for the exit; SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<number>;
}

/** Options of {@link startService}. */
export interface StartOptions {
  env?: Record<string, string>;
  /** When false, the child gets only `env`, not this process's environment (default true). */
  inheritEnv?: boolean;
  /** Working directory of the child (default: this process's). */
  cwd?: string;
  /**
   * Runs the child in its own process group, so a Ctrl-C at the terminal reaches only this process, which then
   * stops its children in order (`edgecut stack up`).
   */
  detached?: boolean;
  /** Prefix of passed-through lines; empty passes lines unchanged. */
  prefix?: string;
  /** Where other stdout lines go (default: this process's stdout). */
  onStdout?: (line: string) => void;
  /** Where stderr lines go (default: this process's stderr with the prefix). */
  onStderr?: (line: string) => void;
  /** Node options after the service's own ({@link serviceNodeFlags}); a later V8 option wins over an earlier one. */
  nodeFlags?: string[];
}

/**
 * V8 options of every service process. A bounded young generation: left to itself V8 grows it from 1 to 16 MiB per
 * semi-space while a service allocates steadily (a tensor per frame), and a device's resident memory then climbs
 * about 2 MB a minute for many minutes; at 1 MiB it stays flat and lower (docs/deploy.md). The Dockerfile sets the
 * same through NODE_OPTIONS.
 */
export const SERVICE_NODE_FLAGS = ['--max-semi-space-size=1'];

/**
 * The broker's V8 options (docs/broker-performance.md):
 * - a young generation of 8 MiB per semi-space: each message it moves leaves a few objects and a buffer, and at
 *   1 MiB per semi-space the collector ran so often that it was half the broker's user time at 1 MiB QoS 1 (0.85-0.9
 *   CPU s per GB moved with 8 MiB against 1.9-2.1 with 1 MiB). A broker's memory is the gateway's, not a robot's;
 * - the collector on the broker's own thread (`--single-threaded-gc`): with three publishers and three subscribers
 *   busy on a 2-core host, the broker ran 40-55 full collections in 4 s with background GC threads and about 10
 *   without, and took 30-55% less CPU per GB moved (64 KiB and 1 MiB messages), and no more with one of each.
 * compose.yaml's broker service starts node with the same options (its entrypoint).
 */
export const BROKER_NODE_FLAGS = ['--max-semi-space-size=8', '--single-threaded-gc'];

/** The V8 options of the service `args` starts. */
export function serviceNodeFlags(args: string[]): string[] {
  return args[0] === 'broker' ? BROKER_NODE_FLAGS : SERVICE_NODE_FLAGS;
}

/**
 * glibc's malloc settings for the processes that move a large buffer per message (`GLIBC_TUNABLES`, read when a
 * process starts): buffers up to 16 MiB come from the heap rather than a fresh mapping each, and up to 64 MiB that
 * the garbage collector frees stays there for the next ones. By default glibc maps large buffers afresh and gives
 * freed memory back, and a process moving megabyte tensors then touches fresh pages for most of every message: on
 * the virtual machines measured that cost more CPU than the kernel's copies (docs/broker-performance.md). Given to
 * the broker and to the edge (which builds a request of up to megabytes per frame: at a 600 KB cut, 23% less CPU
 * per frame and 12-19% more frames per second, for 8-13 MB more peak resident memory); the tail worker, whose time
 * goes to inference, gained nothing measurable. compose.yaml sets the same for those services; a value already in
 * the environment is kept.
 */
export const MALLOC_TUNABLES = 'glibc.malloc.mmap_threshold=16777216:glibc.malloc.trim_threshold=67108864';

/** The commands whose processes get {@link MALLOC_TUNABLES}. */
export const MALLOC_TUNED_COMMANDS: readonly string[] = ['broker', 'edge'];

/** Environment a service's process gets beyond the caller's: the malloc settings of the broker and the edge. */
export function serviceEnv(args: string[], env: NodeJS.ProcessEnv): Record<string, string> {
  return MALLOC_TUNED_COMMANDS.includes(args[0] ?? '') && env.GLIBC_TUNABLES === undefined
    ? { GLIBC_TUNABLES: MALLOC_TUNABLES }
    : {};
}

/** Starts `edgecut <args>` as a child process. */
export function startService(name: string, args: string[], opts: StartOptions = {}): ServiceProcess {
  const env = opts.inheritEnv === false ? { ...opts.env } : { ...process.env, ...opts.env };
  const child = spawn(
    process.execPath,
    [...serviceNodeFlags(args), ...(opts.nodeFlags ?? []), EDGECUT_BIN, ...args],
    {
      env: { ...env, ...serviceEnv(args, env) },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
      ...(opts.detached ? { detached: true } : {}),
    },
  );
  const prefix = opts.prefix ?? `[${name}] `;
  const onStdout = opts.onStdout ?? ((line: string) => process.stdout.write(`${prefix}${line}\n`));
  const toStderr = opts.onStderr ?? ((line: string) => process.stderr.write(`${prefix}${line}\n`));
  // The last lines it wrote to stderr, to say why it exited when it exits before it is ready.
  const lastLines: string[] = [];
  const onStderr = (line: string) => {
    lastLines.push(line.length > 500 ? `${line.slice(0, 500)}...` : line);
    if (lastLines.length > 3) lastLines.shift();
    toStderr(line);
  };
  const exited = new Promise<number>((resolve) => {
    child.once('exit', (code, signal) =>
      resolve(code ?? (signal ? 128 + (constants.signals[signal] ?? 15) : 1)),
    );
  });
  const ready = new Promise<ReadyLine>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith('{"ready"')) {
        try {
          resolve(JSON.parse(line) as ReadyLine);
          return;
        } catch {
          // not a ready line after all
        }
      }
      onStdout(line);
    });
    void exited.then((code) =>
      reject(
        new Error(
          `${name} exited with code ${code} before it was ready` +
            (lastLines.length > 0 ? `; its last output: ${lastLines.join(' | ')}` : ''),
        ),
      ),
    );
  });
  ready.catch(() => undefined);
  createInterface({ input: child.stderr! }).on('line', onStderr);
  return {
    name,
    child,
    ready,
    exited,
    async stop(graceMs = 10_000) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        const code = await exited;
        clearTimeout(timer);
        return code;
      }
      return exited;
    },
  };
}

/** Starts `edgecut broker` on a free loopback port (TCP and WebSocket) and waits until it is up. */
export async function startBrokerProcess(
  opts: StartOptions = {},
): Promise<{ proc: ServiceProcess; url: string }> {
  const proc = startService(
    'broker',
    ['broker', '--port', '0', '--ws-port', '0', '--host', '127.0.0.1'],
    opts,
  );
  const { port } = await proc.ready;
  return { proc, url: `mqtt://127.0.0.1:${String(port)}` };
}

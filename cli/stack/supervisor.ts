/**
 * Runs the processes of a stack plan: starts each service once the services it depends on are ready (their
 * `{"ready": ...}` line, which every edgecut service prints when it is up, stands in for a container healthcheck),
 * prefixes every output line with the process id like `docker compose up`, restarts a process that exits according
 * to its service's restart policy (with exponential back-off), and stops everything in reverse dependency order.
 *
 * Children run in their own process groups so a Ctrl-C at the terminal reaches only the supervisor, which then stops
 * them in order: the edge first, the broker last, so every service can still publish its `offline` status.
 */
import { mkdir } from 'node:fs/promises';
import type { Clock } from '../../runtime/clock.ts';
import { errorMessage } from '../../runtime/errors.ts';
import { type ReadyLine, type ServiceProcess, startService } from '../processes.ts';
import type { ProcessSpec, StackPlan } from './plan.ts';

/** Where the supervisor writes: one call per line. */
export interface StackOutput {
  /** A child's stdout line (already prefixed). */
  stdout(line: string): void;
  /** A child's stderr line or a supervisor message (already prefixed). */
  stderr(line: string): void;
}

/** Options of {@link Supervisor}. */
export interface SupervisorOptions {
  /** Working directory of the children (the Compose file's directory). */
  cwd: string;
  /** Environment every child starts from, before its service's own. */
  baseEnv: Record<string, string>;
  out: StackOutput;
  clock: Clock;
  /** First restart delay, doubled per consecutive crash (default 1000 ms). */
  backoffMs?: number;
  /** Longest restart delay (default 30 s). */
  maxBackoffMs?: number;
  /** A process up this long resets the back-off (default 10 s). */
  stableMs?: number;
  /** Colour each service's prefix (ANSI), as `docker compose up` does on a terminal. */
  color?: boolean;
}

/** ANSI colours of the prefixes, one per service in start order (cyan, yellow, green, magenta, blue, red). */
const COLOURS = [36, 33, 32, 35, 34, 31];

/** Exit code of a process that refused its configuration (a UserError): restarting it would not help. */
const CONFIG_ERROR_EXIT = 2;

/** What the stack reports about one process once it is ready. */
export type ProcessReady = ReadyLine & { id: string };

class Slot {
  proc: ServiceProcess | undefined;
  /** Resolves the first time the process is ready; rejects if it cannot become ready. */
  readonly firstReady: Promise<ProcessReady>;
  resolveReady!: (r: ProcessReady) => void;
  rejectReady!: (err: Error) => void;
  readyOnce = false;
  startedAt = 0;
  crashes = 0;
  restarts = 0;
  timer: NodeJS.Timeout | undefined;
  /** Resolves when the process has exited for good (no restart pending). */
  readonly finished: Promise<number>;
  resolveFinished!: (code: number) => void;
  lastCode = 0;

  constructor(readonly spec: ProcessSpec) {
    this.firstReady = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.firstReady.catch(() => undefined);
    this.finished = new Promise((resolve) => {
      this.resolveFinished = resolve;
    });
  }
}

/** Supervises the processes of one stack. */
export class Supervisor {
  private readonly slots: Slot[];
  private readonly width: number;
  private readonly prefixes: Map<string, string>;
  private stopping = false;
  private readonly onExit = () => {
    for (const s of this.slots) s.proc?.child.kill('SIGKILL');
  };

  constructor(
    private readonly plan: StackPlan,
    private readonly opts: SupervisorOptions,
  ) {
    this.slots = plan.processes.map((p) => new Slot(p));
    this.width = Math.max(5, ...plan.processes.map((p) => p.id.length));
    this.prefixes = this.makePrefixes();
  }

  /** Prefix of a line from `id` (a process, or `stack`), padded like `docker compose up`. */
  private prefix(id: string): string {
    return this.prefixes.get(id) ?? '';
  }

  /** Every prefix, made once: a colour per service on a terminal, bold for the stack's own lines. */
  private makePrefixes(): Map<string, string> {
    const paint = (text: string, code: number) =>
      this.opts.color ? `\u001b[${code}m${text}\u001b[0m` : text;
    const out = new Map([['stack', paint(`${'stack'.padEnd(this.width)} | `, 1)]]);
    for (const p of this.plan.processes) {
      const code = COLOURS[this.plan.order.indexOf(p.service) % COLOURS.length] ?? 0;
      out.set(p.id, paint(`${p.id.padEnd(this.width)} | `, code));
    }
    return out;
  }

  /** Logs a supervisor message. */
  private say(message: string): void {
    this.opts.out.stderr(`${this.prefix('stack')}${message}`);
  }

  /** Resolves when every process has exited for good, with 0 if all exited 0. */
  get finished(): Promise<number> {
    return Promise.all(this.slots.map((s) => s.finished)).then((codes) =>
      codes.every((c) => c === 0) ? 0 : 1,
    );
  }

  /**
   * Starts every process, each service after the services it depends on, and resolves with every process's ready
   * line once all are up. Rejects (after stopping what started) if a process cannot become ready.
   */
  async start(): Promise<ProcessReady[]> {
    process.on('exit', this.onExit);
    for (const dir of this.plan.volumeDirs) await mkdir(dir, { recursive: true });
    const byService = new Map<string, Slot[]>();
    for (const s of this.slots) byService.set(s.spec.service, [...(byService.get(s.spec.service) ?? []), s]);
    try {
      for (const service of this.plan.order) {
        const slots = byService.get(service) ?? [];
        const deps = slots[0]?.spec.dependsOn ?? {};
        for (const [dep, condition] of Object.entries(deps)) {
          for (const d of byService.get(dep) ?? []) {
            if (condition === 'service_completed_successfully') {
              const code = await d.finished;
              if (code !== 0)
                throw new Error(`${d.spec.id} exited with code ${code}; ${service} needs it to succeed`);
            } else await d.firstReady;
          }
        }
        if (this.stopping) throw new Error('stopped while starting');
        for (const slot of slots) this.launch(slot);
      }
      return await Promise.all(this.slots.map((s) => s.firstReady));
    } catch (err) {
      this.say(`cannot start the stack: ${errorMessage(err)}`);
      await this.stop();
      throw err;
    }
  }

  private launch(slot: Slot): void {
    const { spec } = slot;
    const prefix = this.prefix(spec.id);
    const proc = startService(spec.id, spec.args, {
      env: { ...this.opts.baseEnv, ...spec.env },
      inheritEnv: false,
      cwd: this.opts.cwd,
      detached: true,
      ...(spec.nodeFlags ? { nodeFlags: spec.nodeFlags } : {}),
      onStdout: (line) => this.opts.out.stdout(`${prefix}${line}`),
      onStderr: (line) => this.opts.out.stderr(`${prefix}${line}`),
    });
    slot.proc = proc;
    slot.startedAt = this.opts.clock.now();
    proc.ready.then(
      (line) => {
        const details = Object.entries(line)
          .filter(([k]) => k !== 'ready' && k !== 'pid')
          .map(([k, v]) => `${k} ${typeof v === 'string' ? v : JSON.stringify(v)}`);
        this.say(`${spec.id} ready (pid ${line.pid}${details.length ? `, ${details.join(', ')}` : ''})`);
        if (!slot.readyOnce) {
          slot.readyOnce = true;
          // `id` becomes the process's name in the stack; the service's own id (a worker id) stays as `serviceId`.
          const { id, ...rest } = line;
          slot.resolveReady({ ...rest, id: spec.id, ...(id !== undefined ? { serviceId: id } : {}) });
        }
      },
      () => undefined,
    );
    void proc.exited.then((code) => this.exited(slot, proc, code));
  }

  private exited(slot: Slot, proc: ServiceProcess, code: number): void {
    if (slot.proc !== proc) return;
    slot.proc = undefined;
    slot.lastCode = code;
    const { spec } = slot;
    if (this.stopping) {
      slot.resolveFinished(code);
      return;
    }
    if (!slot.readyOnce && code === CONFIG_ERROR_EXIT) {
      this.say(`${spec.id} refused its configuration (exit code ${code}); not restarting it`);
      slot.rejectReady(new Error(`${spec.id} refused its configuration (see its line above)`));
      slot.resolveFinished(code);
      return;
    }
    const policy = spec.restart;
    const attempts = policy.kind === 'on-failure' ? policy.maxAttempts : undefined;
    const restart =
      policy.kind === 'always' ||
      (policy.kind === 'on-failure' && code !== 0 && (attempts === undefined || slot.restarts < attempts));
    if (!restart) {
      this.say(`${spec.id} exited with code ${code}`);
      if (!slot.readyOnce)
        slot.rejectReady(new Error(`${spec.id} exited with code ${code} before it was ready`));
      slot.resolveFinished(code);
      return;
    }
    const upMs = this.opts.clock.now() - slot.startedAt;
    slot.crashes = upMs >= (this.opts.stableMs ?? 10_000) ? 1 : slot.crashes + 1;
    const delay = Math.min(
      this.opts.maxBackoffMs ?? 30_000,
      (this.opts.backoffMs ?? 1000) * 2 ** (slot.crashes - 1),
    );
    slot.restarts++;
    this.say(`${spec.id} exited with code ${code}; restarting in ${delay} ms (restart ${slot.restarts})`);
    slot.timer = setTimeout(() => {
      slot.timer = undefined;
      if (!this.stopping) this.launch(slot);
      else slot.resolveFinished(code);
    }, delay);
  }

  /**
   * Stops every process in reverse start order (all replicas of a service at once): SIGTERM, then SIGKILL after the
   * service's stop grace period. Resolves with true if every process stopped within its grace period.
   */
  async stop(): Promise<boolean> {
    if (this.stopping) return true;
    this.stopping = true;
    let graceful = true;
    for (const service of [...this.plan.order].reverse()) {
      const slots = this.slots.filter((s) => s.spec.service === service);
      await Promise.all(
        slots.map(async (slot) => {
          if (slot.timer) {
            clearTimeout(slot.timer);
            slot.timer = undefined;
            slot.resolveFinished(slot.lastCode);
          }
          const proc = slot.proc;
          if (!proc) {
            slot.resolveFinished(slot.lastCode);
            return;
          }
          const killer = setTimeout(() => {
            graceful = false;
            this.say(`${slot.spec.id} did not stop within ${slot.spec.stopGraceMs} ms; killing it`);
          }, slot.spec.stopGraceMs);
          const code = await proc.stop(slot.spec.stopGraceMs);
          clearTimeout(killer);
          slot.resolveFinished(code);
          if (!slot.readyOnce) slot.rejectReady(new Error(`${slot.spec.id} was stopped before it was ready`));
        }),
      );
    }
    process.off('exit', this.onExit);
    this.say(graceful ? 'stopped' : 'stopped (some processes had to be killed)');
    return graceful;
  }
}

/**
 * `edgecut stack up` and `edgecut stack config`: run the services of a Compose file (compose.yaml) as local
 * processes, for gateways without a container engine. docs/deploy.md describes how each Compose key translates.
 */
import { dirname, join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { editDistance } from '../model/cut-ref.ts';
import { systemClock } from '../runtime/clock.ts';
import { UserError } from '../runtime/errors.ts';
import { startProgress } from './progress.ts';
import { settingsOf } from './service-commands.ts';
import { loadCompose } from './stack/compose.ts';
import { planStack, type StackPlan } from './stack/plan.ts';
import { Supervisor } from './stack/supervisor.ts';

/** Flags shared by `stack up` and `stack config`. */
export interface StackFlags {
  file: string;
  scale: string[];
  profile: string[];
  portOffset: string;
  volumesDir?: string;
}

/** Variables of the host environment every process starts from (a container starts from an empty one). */
const BASE_ENV = [
  'PATH',
  'HOME',
  'USER',
  'LOGNAME',
  'SHELL',
  'TMPDIR',
  'TMP',
  'TEMP',
  'LANG',
  'LC_ALL',
  'TZ',
];

function parseScale(values: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) {
    const m = /^([A-Za-z0-9._-]+)=(\d+)$/.exec(v);
    if (!m)
      throw new UserError(
        `--scale ${JSON.stringify(v)} is not allowed: expected SERVICE=N with N a whole number >= 0`,
      );
    out[m[1]!] = Number(m[2]);
  }
  return out;
}

/** Variables a service may set beyond its settings: Node's and the C runtime's own. */
const RUNTIME_ENV = new Set([
  'NODE_OPTIONS',
  'NODE_EXTRA_CA_CERTS',
  'UV_THREADPOOL_SIZE',
  'GLIBC_TUNABLES',
  'OMP_NUM_THREADS',
  'TZ',
  'LANG',
  'LC_ALL',
  'NO_COLOR',
  'FORCE_COLOR',
]);

/**
 * A variable no setting reads is a typo waiting to be missed (the service would run on the default): refuse it
 * with one line naming the service and the nearest setting.
 */
function checkVariables(plan: StackPlan): void {
  for (const p of plan.processes) {
    const command = p.args[0] ?? '';
    const table = settingsOf(command);
    if (!table) continue;
    const known = Object.values(table).map((x) => x.env);
    for (const name of Object.keys(p.env)) {
      if (known.includes(name) || RUNTIME_ENV.has(name)) continue;
      const nearest = [...known].sort((a, b) => editDistance(name, a) - editDistance(name, b))[0];
      const hint = nearest && editDistance(name, nearest) <= 3 ? `did you mean ${nearest}? ` : '';
      throw new UserError(
        `services.${p.service}.environment.${name} is not a setting of \`edgecut ${command}\`: ${hint}` +
          '(docs/configuration.md lists every setting)',
      );
    }
  }
}

/** Loads the Compose file and builds the process plan. */
export async function stackPlan(
  services: string[],
  flags: StackFlags,
): Promise<{ plan: StackPlan; dir: string }> {
  const offset = Number(flags.portOffset);
  if (!/^\d+$/.test(flags.portOffset) || offset > 60_000)
    throw new UserError(
      `--port-offset ${JSON.stringify(flags.portOffset)} is not allowed: expected a whole number from 0 to 60000`,
    );
  const file = resolve(flags.file);
  const project = await loadCompose(file);
  const dir = dirname(file);
  const plan = planStack(project, {
    services,
    scale: parseScale(flags.scale),
    profiles: flags.profile,
    portOffset: offset,
    volumesDir: resolve(flags.volumesDir ?? join(dir, '.edgecut', 'volumes')),
  });
  checkVariables(plan);
  return { plan, dir };
}

/** `edgecut stack config`: prints the processes `stack up` would run, as YAML. */
export async function stackConfigCommand(services: string[], flags: StackFlags): Promise<void> {
  const { plan } = await stackPlan(services, flags);
  const doc = {
    processes: Object.fromEntries(
      plan.processes.map((p) => [
        p.id,
        {
          command: ['edgecut', ...p.args],
          environment: p.env,
          depends_on: p.dependsOn,
          restart:
            p.restart.kind === 'on-failure' && p.restart.maxAttempts !== undefined
              ? `on-failure:${p.restart.maxAttempts}`
              : p.restart.kind,
          stop_grace_ms: p.stopGraceMs,
        },
      ]),
    ),
    volumes: plan.volumeDirs,
  };
  process.stdout.write(stringify(doc, { aliasDuplicateObjects: false }));
}

/** `edgecut stack up`: runs the stack until Ctrl-C; returns the exit code. */
export async function stackUpCommand(services: string[], flags: StackFlags): Promise<number> {
  const { plan, dir } = await stackPlan(services, flags);
  const baseEnv: Record<string, string> = {};
  for (const k of BASE_ENV) {
    const v = process.env[k];
    if (v !== undefined) baseEnv[k] = v;
  }
  // Progress while the services start (plain lines even on a terminal: the services' own lines interleave).
  const total = plan.processes.length;
  let ready = 0;
  const starting = startProgress('stack start', { tty: false });
  starting.step('starting the services: ready', 0, total);
  const supervisor = new Supervisor(plan, {
    cwd: dir,
    baseEnv,
    clock: systemClock,
    color: Boolean(process.stderr.isTTY) && process.env.NO_COLOR === undefined,
    out: {
      stdout: (line) => process.stdout.write(`${line}\n`),
      stderr: (line) => {
        process.stderr.write(`${line}\n`);
        if (/ ready \(pid \d+/.test(line)) starting.step('starting the services: ready', ++ready, total);
      },
    },
  });
  process.stderr.write(
    `stack: ${plan.processes.length} processes from ${flags.file}: ${plan.processes.map((p) => p.id).join(', ')}\n`,
  );
  let signalled = false;
  const stopped = new Promise<'signal'>((resolveStop) => {
    const onSignal = (sig: NodeJS.Signals) => {
      if (signalled) {
        process.stderr.write(`stack: second ${sig}: killing every process now\n`);
        process.exit(130);
      }
      signalled = true;
      process.stderr.write(`stack: ${sig}: stopping every process (edge first, broker last)\n`);
      resolveStop('signal');
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  const started = supervisor.start();
  const first = await Promise.race([started.then((r) => ({ ready: r })), stopped]).catch((err: unknown) => ({
    err,
  }));
  starting.stop(first === 'signal' || 'err' in first ? 'failed' : 'done');
  if (first === 'signal') {
    const graceful = await supervisor.stop();
    await started.catch(() => undefined);
    return graceful ? 0 : 1;
  }
  if ('err' in first) return 1;
  // The dashboard's URL first: what a person opens to watch the stack (docs/dashboard.md).
  for (const r of first.ready)
    if (r.ready === 'dashboard' && typeof r.url === 'string') process.stdout.write(`dashboard: ${r.url}\n`);
  process.stdout.write(
    `${JSON.stringify({ ready: 'stack', file: flags.file, processes: first.ready.map(({ ready: _r, ...rest }) => rest) })}\n`,
  );
  const outcome = await Promise.race([stopped, supervisor.finished]);
  if (outcome === 'signal') return (await supervisor.stop()) ? 0 : 1;
  process.stderr.write('stack: every process has exited\n');
  return outcome;
}

/**
 * Turns a Compose project into the local processes `edgecut stack up` runs: one per replica, each an `edgecut`
 * command with its service's environment, translated from the container world to one host:
 *
 * - a URL naming a service (`mqtt://broker:1883`) names 127.0.0.1 instead, since every service is on this host;
 * - `--port-offset N` adds N to every listening port (`*_PORT` variables) and to the port of every such URL, so two
 *   stacks can run side by side;
 * - replica i (from 1) of a scaled service adds i - 1 to its own `*_PORT` variables, since replicas share the host's
 *   ports where containers each had their own (two processes asking for one port is an error, named at start);
 * - a path inside a volume mount (`MODELS_DIR=/models`) becomes the host directory of that volume.
 *
 * Pure functions, no I/O: `edgecut stack config` prints the result.
 */
import { join } from 'node:path';
import type { ComposeProject, ComposeService, DependencyCondition, RestartPolicy } from './compose.ts';
import { ComposeError } from './compose.ts';

/** One process of the stack. */
export interface ProcessSpec {
  /** `<service>-<replica>`, the log prefix. */
  id: string;
  service: string;
  replica: number;
  /** Arguments of `edgecut`. */
  args: string[];
  /** The service's environment after translation (without the inherited base environment). */
  env: Record<string, string>;
  /** Services this one waits for, and how. */
  dependsOn: Record<string, DependencyCondition>;
  restart: RestartPolicy;
  stopGraceMs: number;
  /** Node options of the service's entrypoint (`["node", "--opt", ..., "bin/edgecut.js"]`), after edgecut's own. */
  nodeFlags?: string[];
}

/** What to run. */
export interface StackOptions {
  /** Services named on the command line (with their dependencies); empty means all. */
  services?: string[];
  /** Replicas per service, overriding `deploy.replicas` (`--scale name=N`). */
  scale?: Record<string, number>;
  /** Active Compose profiles. */
  profiles?: string[];
  /** Added to every listening port and to ports of URLs naming a service. */
  portOffset?: number;
  /** Where named volumes live on this host. */
  volumesDir: string;
}

/** The processes in start order (dependencies first) plus the volume directories they need. */
export interface StackPlan {
  processes: ProcessSpec[];
  /** Services in start order. */
  order: string[];
  /** Host directories of the named volumes in use. */
  volumeDirs: string[];
}

/** Entry points that mean "the edgecut CLI" (the Dockerfile's ENTRYPOINT and the installed bin). */
const EDGECUT_ENTRYPOINTS = [['node', 'bin/edgecut.js'], ['edgecut'], ['npx', 'edgecut']];

/**
 * The Node options of an entrypoint that runs the edgecut CLI: [] for one of {@link EDGECUT_ENTRYPOINTS}, the
 * options for `["node", "--opt", ..., "bin/edgecut.js"]`, undefined for anything else.
 */
export function entrypointNodeFlags(entrypoint: string[] | undefined): string[] | undefined {
  if (entrypoint === undefined || EDGECUT_ENTRYPOINTS.some((e) => e.join(' ') === entrypoint.join(' ')))
    return [];
  const flags = entrypoint.slice(1, -1);
  const shaped = entrypoint[0] === 'node' && entrypoint.at(-1) === 'bin/edgecut.js' && flags.length > 0;
  return shaped && flags.every((f) => /^--[a-z][a-z0-9-]*(=\S+)?$/.test(f)) ? flags : undefined;
}

function checkRunnable(s: ComposeService): void {
  if (entrypointNodeFlags(s.entrypoint) === undefined) {
    throw new ComposeError(
      `services.${s.name}.entrypoint ${JSON.stringify(s.entrypoint)}: stack up runs only edgecut commands ` +
        '(entrypoint unset, ["node", "bin/edgecut.js"], ["node", "--option", ..., "bin/edgecut.js"] or ["edgecut"]); ' +
        'start this service another way and leave it out',
    );
  }
  if (!s.built && s.image !== undefined && !/^(.*\/)?edgecut(:|$)/.test(s.image)) {
    throw new ComposeError(
      `services.${s.name} runs image ${JSON.stringify(s.image)}, which stack up cannot run without a container ` +
        'engine; start it yourself and name the services to run: edgecut stack up SERVICE...',
    );
  }
  if (s.command.length === 0)
    throw new ComposeError(`services.${s.name}: no command; expected an edgecut command such as ["tail"]`);
}

/** Topological order of the services (dependencies first); a cycle is an error. */
export function startOrder(services: Record<string, ComposeService>, wanted: Iterable<string>): string[] {
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, path: string[]): void => {
    const st = state.get(name);
    if (st === 'done') return;
    if (st === 'visiting') throw new ComposeError(`depends_on has a cycle: ${[...path, name].join(' -> ')}`);
    const s = services[name];
    if (!s)
      throw new ComposeError(
        `no service named ${JSON.stringify(name)}; the file has ${Object.keys(services).join(', ')}`,
      );
    state.set(name, 'visiting');
    for (const d of Object.keys(s.dependsOn)) visit(d, [...path, name]);
    state.set(name, 'done');
    order.push(name);
  };
  for (const name of wanted) visit(name, []);
  return order;
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Rewrites URLs naming a stack service to 127.0.0.1, shifting their port by `offset`. */
export function localiseUrls(value: string, serviceNames: string[], offset: number): string {
  if (serviceNames.length === 0) return value;
  const names = serviceNames.map(escapeRe).join('|');
  const re = new RegExp(`([a-z][a-z0-9+.-]*://(?:[^@/\\s]*@)?)(?:${names})(?::(\\d+))?(?=[/?#\\s]|$)`, 'gi');
  return value.replace(re, (_m, prefix: string, port: string | undefined) =>
    port === undefined ? `${prefix}127.0.0.1` : `${prefix}127.0.0.1:${Number(port) + offset}`,
  );
}

function mountPath(value: string, mounts: { target: string; host: string }[]): string {
  for (const m of mounts) {
    if (value === m.target) return m.host;
    if (value.startsWith(`${m.target}/`)) return m.host + value.slice(m.target.length);
  }
  return value;
}

/** Builds the local processes of a Compose project. */
export function planStack(project: ComposeProject, opts: StackOptions): StackPlan {
  const { services } = project;
  const scale = opts.scale ?? {};
  for (const [name, n] of Object.entries(scale)) {
    if (!services[name])
      throw new ComposeError(
        `--scale ${name}=${n}: no service named ${JSON.stringify(name)}; the file has ${Object.keys(services).join(', ')}`,
      );
  }
  const profiles = new Set(opts.profiles ?? []);
  const named = opts.services ?? [];
  const wanted =
    named.length > 0
      ? named
      : Object.values(services)
          .filter((s) => s.profiles.length === 0 || s.profiles.some((p) => profiles.has(p)))
          .map((s) => s.name);
  const order = startOrder(services, wanted);
  const offset = opts.portOffset ?? 0;
  const names = Object.keys(services);
  const processes: ProcessSpec[] = [];
  const volumeDirs = new Set<string>();
  for (const name of order) {
    const s = services[name]!;
    const replicas = scale[name] ?? s.replicas;
    if (replicas > 0) checkRunnable(s);
    const nodeFlags = entrypointNodeFlags(s.entrypoint) ?? [];
    const mounts = s.mounts.map((m) => {
      const host = m.hostPath ?? join(opts.volumesDir, m.volume ?? 'default');
      if (m.volume !== undefined) volumeDirs.add(host);
      return { target: m.target, host };
    });
    const translate = (v: string) => mountPath(localiseUrls(v, names, offset), mounts);
    for (let replica = 1; replica <= replicas; replica++) {
      const env: Record<string, string> = {};
      for (const [k, v] of Object.entries(s.environment)) {
        env[k] =
          /_PORT$/.test(k) && /^[1-9]\d*$/.test(v) ? String(Number(v) + offset + replica - 1) : translate(v);
      }
      processes.push({
        id: `${name}-${replica}`,
        service: name,
        replica,
        args: s.command.map(translate),
        env,
        dependsOn: s.dependsOn,
        restart: s.restart,
        stopGraceMs: s.stopGraceMs,
        ...(nodeFlags.length > 0 ? { nodeFlags } : {}),
      });
    }
  }
  checkPorts(processes);
  return { processes, order, volumeDirs: [...volumeDirs] };
}

/**
 * Port variables that name another service's port rather than one the process listens on: shifted by the port
 * offset like the others, but not checked for clashes (the dashboard's page connects to the broker's WebSocket port).
 */
const REMOTE_PORT_VARIABLES: ReadonlySet<string> = new Set(['DASHBOARD_BROKER_WS_PORT']);

/** Two processes listening on one port would fail at start; say which, before starting anything. */
function checkPorts(processes: ProcessSpec[]): void {
  const owners = new Map<number, string>();
  for (const p of processes) {
    for (const [k, v] of Object.entries(p.env)) {
      if (!/_PORT$/.test(k) || !/^[1-9]\d*$/.test(v) || REMOTE_PORT_VARIABLES.has(k)) continue;
      const port = Number(v);
      if (port > 65535)
        throw new ComposeError(
          `${p.id}: ${k}=${port} is above 65535 after the port offset; use a smaller --port-offset`,
        );
      const other = owners.get(port);
      if (other !== undefined)
        throw new ComposeError(
          `${p.id}: ${k}=${port} is also used by ${other}; give the services distinct ports in the Compose file ` +
            '(replicas add their index - 1 to their own ports)',
        );
      owners.set(port, `${p.id} (${k})`);
    }
  }
}

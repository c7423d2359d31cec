/**
 * Reads a Compose file (the Compose specification, the format of `docker compose`) into the few facts `edgecut
 * stack` needs to run its services as local processes: each service's command, environment, dependencies, replicas,
 * restart policy, volumes and stop grace period. Keys that only matter to a container engine (ports, healthcheck,
 * init, image, build, networks, ...) are accepted and ignored here; docs/deploy.md says what each becomes locally.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parse, YAMLParseError } from 'yaml';
import { z } from 'zod';
import { errorMessage, UserError } from '../../runtime/errors.ts';
import { interpolateDeep, parseDotEnv } from './interpolate.ts';

/** Thrown for a Compose file stack cannot read; one line. */
export class ComposeError extends UserError {}

/** When a service is restarted after it exits (Compose `restart`). */
export type RestartPolicy =
  | { kind: 'no' }
  | { kind: 'always' }
  | { kind: 'on-failure'; maxAttempts?: number };

/** How a service waits for one dependency (Compose `depends_on` conditions). */
export type DependencyCondition = 'service_started' | 'service_healthy' | 'service_completed_successfully';

/** A volume mount: a named volume or a host path, at a path inside the container. */
export interface Mount {
  /** Named volume, or undefined for a bind mount. */
  volume?: string;
  /** Host path of a bind mount (absolute). */
  hostPath?: string;
  /** Path inside the container. */
  target: string;
  readOnly: boolean;
}

/** One service, normalised. */
export interface ComposeService {
  name: string;
  /** Arguments after the image's entrypoint (`edgecut`). */
  command: string[];
  /** Set only when the service overrides the entrypoint. */
  entrypoint?: string[];
  image?: string;
  /** True when the image is built from this project (`build:`). */
  built: boolean;
  environment: Record<string, string>;
  dependsOn: Record<string, DependencyCondition>;
  replicas: number;
  restart: RestartPolicy;
  mounts: Mount[];
  stopGraceMs: number;
  profiles: string[];
}

/** A Compose project: its directory and services. */
export interface ComposeProject {
  file: string;
  dir: string;
  services: Record<string, ComposeService>;
}

const stringList = z.union([z.string(), z.array(z.union([z.string(), z.number()]))]);
const scalar = z.union([z.string(), z.number(), z.boolean(), z.null()]);

const Service = z.looseObject({
  command: stringList.optional(),
  entrypoint: stringList.optional(),
  image: z.string().optional(),
  build: z.unknown().optional(),
  environment: z.union([z.record(z.string(), scalar), z.array(z.string())]).optional(),
  env_file: z.union([z.string(), z.array(z.string())]).optional(),
  depends_on: z
    .union([
      z.array(z.string()),
      z.record(
        z.string(),
        z.looseObject({
          condition: z
            .enum(['service_started', 'service_healthy', 'service_completed_successfully'])
            .default('service_started'),
        }),
      ),
    ])
    .optional(),
  restart: z.string().optional(),
  deploy: z
    .looseObject({
      replicas: z.number().int().min(0).optional(),
      restart_policy: z
        .looseObject({
          condition: z.enum(['none', 'on-failure', 'any']).optional(),
          max_attempts: z.number().int().min(0).optional(),
        })
        .optional(),
    })
    .optional(),
  volumes: z
    .array(
      z.union([
        z.string(),
        z.looseObject({
          type: z.string().optional(),
          source: z.string().optional(),
          target: z.string(),
          read_only: z.boolean().optional(),
        }),
      ]),
    )
    .optional(),
  stop_grace_period: z.string().optional(),
  profiles: z.array(z.string()).optional(),
});

const Project = z.looseObject({
  services: z.record(z.string(), Service),
  volumes: z.record(z.string(), z.unknown()).nullish(),
});

/** Splits a shell-form command the way Compose does for simple cases (whitespace, single and double quotes). */
function splitCommand(value: string | (string | number)[]): string[] {
  if (Array.isArray(value)) return value.map(String);
  const out: string[] = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  for (const m of value.matchAll(re)) out.push(m[1] ?? m[2] ?? m[3] ?? '');
  return out;
}

/** Parses a Compose duration (`10s`, `1m30s`, `500ms`) into milliseconds. */
export function parseDuration(text: string, where: string): number {
  const re = /(\d+(?:\.\d+)?)(h|ms|m|s|us)/g;
  const units: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001 };
  let total = 0;
  let consumed = '';
  for (const m of text.matchAll(re)) {
    total += Number(m[1]) * (units[m[2]!] ?? 0);
    consumed += m[0];
  }
  if (consumed !== text || text === '')
    throw new ComposeError(
      `${where}=${JSON.stringify(text)} is not a duration: expected e.g. 10s, 1m30s, 500ms`,
    );
  return total;
}

function restartPolicy(s: z.infer<typeof Service>, where: string): RestartPolicy {
  const rp = s.deploy?.restart_policy;
  if (rp?.condition !== undefined) {
    if (rp.condition === 'none') return { kind: 'no' };
    if (rp.condition === 'any') return { kind: 'always' };
    return { kind: 'on-failure', ...(rp.max_attempts !== undefined ? { maxAttempts: rp.max_attempts } : {}) };
  }
  const r = s.restart ?? 'no';
  if (r === 'no') return { kind: 'no' };
  if (r === 'always' || r === 'unless-stopped') return { kind: 'always' };
  const m = /^on-failure(?::(\d+))?$/.exec(r);
  if (m) return { kind: 'on-failure', ...(m[1] !== undefined ? { maxAttempts: Number(m[1]) } : {}) };
  throw new ComposeError(
    `${where}.restart=${JSON.stringify(r)} is not allowed: expected no, always, unless-stopped or on-failure[:N]`,
  );
}

function mounts(s: z.infer<typeof Service>, dir: string, named: Set<string>, where: string): Mount[] {
  return (s.volumes ?? []).map((v, i) => {
    const at = `${where}.volumes[${i}]`;
    let source: string | undefined;
    let target: string;
    let readOnly = false;
    if (typeof v === 'string') {
      const parts = v.split(':');
      if (parts.length === 1) [target] = parts as [string];
      else [source, target] = parts as [string, string];
      readOnly = parts[2]?.split(',').includes('ro') ?? false;
    } else {
      source = v.source;
      target = v.target;
      readOnly = v.read_only ?? false;
    }
    if (!target.startsWith('/'))
      throw new ComposeError(`${at}: the container path ${JSON.stringify(target)} must be absolute`);
    if (source === undefined || source === '') return { volume: `anonymous-${i}`, target, readOnly };
    if (source.startsWith('.') || source.startsWith('/') || source.startsWith('~'))
      return { hostPath: resolve(dir, source), target, readOnly };
    if (!named.has(source))
      throw new ComposeError(
        `${at}: volume ${JSON.stringify(source)} is not declared under the top-level volumes`,
      );
    return { volume: source, target, readOnly };
  });
}

async function environment(
  s: z.infer<typeof Service>,
  dir: string,
  vars: Record<string, string | undefined>,
  where: string,
): Promise<Record<string, string>> {
  const env: Record<string, string> = {};
  const files = s.env_file === undefined ? [] : Array.isArray(s.env_file) ? s.env_file : [s.env_file];
  for (const f of files) {
    const path = resolve(dir, f);
    const text = await readFile(path, 'utf8').catch((err: unknown) => {
      throw new ComposeError(`${where}.env_file: cannot read ${path}: ${errorMessage(err)}`);
    });
    Object.assign(env, parseDotEnv(text));
  }
  if (Array.isArray(s.environment)) {
    for (const entry of s.environment) {
      const eq = entry.indexOf('=');
      // `- NAME` without a value passes the variable through from the environment [Compose spec, environment].
      if (eq < 0) {
        const v = vars[entry];
        if (v !== undefined) env[entry] = v;
      } else env[entry.slice(0, eq)] = entry.slice(eq + 1);
    }
  } else {
    for (const [k, v] of Object.entries(s.environment ?? {})) {
      if (v === null) {
        const from = vars[k];
        if (from !== undefined) env[k] = from;
      } else env[k] = String(v);
    }
  }
  return env;
}

/** Normalises an already parsed and interpolated Compose document. */
export async function normaliseProject(
  doc: unknown,
  file: string,
  vars: Record<string, string | undefined>,
): Promise<ComposeProject> {
  const parsed = Project.safeParse(doc);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue?.path.join('.') ?? '';
    throw new ComposeError(`${file}: ${path || '(root)'}: ${issue?.message ?? 'invalid'}`);
  }
  const dir = dirname(file);
  const named = new Set(Object.keys(parsed.data.volumes ?? {}));
  const services: Record<string, ComposeService> = {};
  for (const [name, s] of Object.entries(parsed.data.services)) {
    const where = `services.${name}`;
    const dependsOn: Record<string, DependencyCondition> = {};
    if (Array.isArray(s.depends_on)) for (const d of s.depends_on) dependsOn[d] = 'service_started';
    else for (const [d, c] of Object.entries(s.depends_on ?? {})) dependsOn[d] = c.condition;
    services[name] = {
      name,
      command: s.command === undefined ? [] : splitCommand(s.command),
      ...(s.entrypoint !== undefined ? { entrypoint: splitCommand(s.entrypoint) } : {}),
      ...(s.image !== undefined ? { image: s.image } : {}),
      built: s.build !== undefined,
      environment: await environment(s, dir, vars, where),
      dependsOn,
      replicas: s.deploy?.replicas ?? 1,
      restart: restartPolicy(s, where),
      mounts: mounts(s, dir, named, where),
      stopGraceMs:
        s.stop_grace_period === undefined
          ? 10_000
          : parseDuration(s.stop_grace_period, `${where}.stop_grace_period`),
      profiles: s.profiles ?? [],
    };
  }
  for (const s of Object.values(services)) {
    for (const d of Object.keys(s.dependsOn)) {
      if (!services[d])
        throw new ComposeError(`services.${s.name}.depends_on: no service named ${JSON.stringify(d)}`);
    }
  }
  return { file, dir, services };
}

/** Reads, parses (with YAML merge keys) and interpolates a Compose file. */
export async function loadCompose(
  file: string,
  env: Record<string, string | undefined> = process.env,
): Promise<ComposeProject> {
  const path = resolve(file);
  const text = await readFile(path, 'utf8').catch((err: unknown) => {
    throw new ComposeError(`cannot read the Compose file ${path}: ${errorMessage(err)}`);
  });
  const dotEnv = await readFile(resolve(dirname(path), '.env'), 'utf8').then(parseDotEnv, () => ({}));
  // The environment wins over .env, as in `docker compose`.
  const vars = { ...dotEnv, ...env };
  let doc: unknown;
  try {
    doc = parse(text, { merge: true });
  } catch (err) {
    if (err instanceof YAMLParseError) {
      const where = err.linePos?.[0] ? ` line ${err.linePos[0].line}` : '';
      throw new ComposeError(`${path}${where}: not valid YAML: ${err.message.split('\n')[0]}`);
    }
    throw err;
  }
  return normaliseProject(interpolateDeep(doc, vars), path, vars);
}

/**
 * Bridges a service's settings table and commander: registers one flag per setting and parses flags plus the
 * environment into the typed config, so flags, environment and docs never disagree.
 */
import type { Command } from 'commander';
import { type ConfigOf, parseConfig, type Settings } from '../runtime/config.ts';

/** Adds `--<flag> <value>` for every setting. */
export function addSettings(cmd: Command, settings: Settings): Command {
  for (const s of Object.values(settings)) {
    const def = s.default === undefined ? '' : ` (default ${s.default}, env ${s.env})`;
    cmd.option(`--${s.flag} <value>`, `${s.doc}${def || ` (env ${s.env})`}`);
  }
  return cmd;
}

/** Parses the command's flags and the environment into the typed config. */
export function readSettings<S extends Settings>(cmd: Command, settings: S, env = process.env): ConfigOf<S> {
  const opts = cmd.opts<Record<string, string | undefined>>();
  const flags: Record<string, string | undefined> = {};
  for (const s of Object.values(settings)) {
    const key = s.flag.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
    flags[s.flag] = opts[key];
  }
  return parseConfig(settings, env, flags);
}

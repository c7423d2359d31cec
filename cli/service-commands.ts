/**
 * The settings table of each service command (`edgecut broker|planner|tail|edge|dashboard`), in one place for everything that
 * needs to know which variables a command reads: the CLI, `edgecut stack` and the generated configuration doc.
 */
import { brokerSettings } from '../broker/config.ts';
import type { Settings } from '../runtime/config.ts';
import { dashboardSettings } from '../services/dashboard/config.ts';
import { edgeSettings } from '../services/edge-head/config.ts';
import { plannerSettings } from '../services/planner/config.ts';
import { tailSettings } from '../services/server-tail/config.ts';

/** Settings table per service command. */
export const SERVICE_SETTINGS: Readonly<
  Record<'broker' | 'planner' | 'tail' | 'edge' | 'dashboard', Settings>
> = {
  broker: brokerSettings,
  planner: plannerSettings,
  tail: tailSettings,
  edge: edgeSettings,
  dashboard: dashboardSettings,
};

/** The settings table of a command name, if it is a service command. */
export function settingsOf(command: string): Settings | undefined {
  return Object.hasOwn(SERVICE_SETTINGS, command)
    ? SERVICE_SETTINGS[command as keyof typeof SERVICE_SETTINGS]
    : undefined;
}

/**
 * Settings of the planner.
 */
import { hostname } from 'node:os';
import { z } from 'zod';
import { type ConfigOf, schemas, setting } from '../../common/config.ts';
import { commonSettings } from '../../common/service-settings.ts';

/** Settings table of `edgecut planner`. */
export const plannerSettings = {
  ...commonSettings,
  plannerId: setting({
    env: 'PLANNER_ID',
    flag: 'planner-id',
    schema: z.union([z.literal('auto'), schemas.id]),
    default: 'auto',
    doc: 'id of this planner; auto = planner-<hostname>',
  }),
  cut: setting({
    env: 'PLAN_CUT',
    flag: 'cut',
    schema: z.string().regex(/^(middle|\d+|[^\s]+)$/, 'expected middle, a cut index, or a node name'),
    default: 'middle',
    doc: 'fixed cut for every device: middle (the middle single-tensor cut), a cut index k, or a node name',
  }),
};

/** Parsed settings of `edgecut planner`. */
export type PlannerConfig = ConfigOf<typeof plannerSettings>;

/** Resolves the `auto` values. */
export function resolvePlanner(cfg: PlannerConfig) {
  return {
    ...cfg,
    plannerId:
      cfg.plannerId === 'auto' ? `planner-${hostname().replace(/[^A-Za-z0-9._-]/g, '-')}` : cfg.plannerId,
  };
}

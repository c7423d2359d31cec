/**
 * Per-role topic access, derived from the typed topic map (schemas/topics.ts) rather than written as topic strings.
 * Pure functions, no I/O.
 *
 * - Publish: a role may publish every topic whose spec names it as `publisher`, with its own parameter (`{device}`
 *   for a device, `{worker}` for a worker, `{planner}` for a planner) bound to its id and every other parameter
 *   free. So a device publishes its own request, telemetry, profile and status; a worker results for any device
 *   and its own telemetry, profiles and status; a planner plans and predictions for any device and its own status.
 * - Subscribe: the topics each service subscribes to in its `start()` ({@link ROLE_READS}), with the same binding,
 *   so a device reads only its own result and plan.
 *
 * A SUBSCRIBE filter is granted only when every topic it can match is readable: when it is covered by one readable
 * filter ({@link covers}); so `devices/+/result` is refused to a device even though one topic it matches is its own.
 */

import { filterMatches } from '../runtime/mqtt-topics.ts';
import { DASHBOARD_READS, type Role, type TopicSpec, topics } from '../schemas/topics.ts';

/** Name of a topic of the map. */
export type TopicName = keyof typeof topics;

/**
 * What each role subscribes to, as the services do (kept in step by test/broker-acl.test.ts, which runs each service
 * against a broker enforcing these):
 * - device: services/edge-head/edge.ts `start()`: its result and its plan;
 * - worker: services/server-tail/worker.ts `start()`: requests (plainly or through `$share/<group>/`), and the
 *   planners' requests to load a tail ahead of a plan;
 * - planner: services/planner/planner.ts `start()`: device profiles and telemetry, worker status, profiles and
 *   telemetry; and device status, which tells it which devices are alive.
 */
export const ROLE_READS: Readonly<Record<Role, readonly TopicName[]>> = {
  device: ['result', 'plan'],
  worker: ['request', 'tailPrepare'],
  planner: [
    'deviceProfile',
    'deviceTelemetry',
    'deviceStatus',
    'workerStatus',
    'workerProfile',
    'workerTelemetry',
  ],
};

/**
 * What the read-only role `viewer` (the dashboard, services/dashboard/) may subscribe to: the topics the page reads
 * (schemas/topics.ts `DASHBOARD_READS`): plans and the planner's predictions, device profiles, statuses, telemetry
 * and frame reports, worker and planner statuses and telemetry. Not the workers' profiles, not the data plane
 * (requests, results: the tensors of the robots' frames) nor the link probes, and it publishes nothing.
 */
export const VIEWER_READS: readonly TopicName[] = DASHBOARD_READS;

/** The grants of a `viewer`: subscribe to {@link VIEWER_READS} for any id, publish nothing. */
export function viewerGrants(): Grants {
  return { publish: [], subscribe: VIEWER_READS.map((name) => (topics[name] as TopicSpec<string>).filter()) };
}

/** What one user may do: the topic filters it may publish on and subscribe to. */
export interface Grants {
  publish: readonly string[];
  subscribe: readonly string[];
  /**
   * For a family id (`tail-*`): the role's own parameter, left `+` in the filters, must start with `prefix` in
   * every topic that has it.
   */
  family?: { role: Role; prefix: string };
}

/**
 * A family id ends with `*` and stands for every id starting with what precedes it: one credential for many
 * replicas of a tail worker, whose ids (`tail-<host>-<pid>`) are not known in advance.
 */
export function familyPrefix(id: string): string | undefined {
  return id.endsWith('*') ? id.slice(0, -1) : undefined;
}

/** Does a concrete id belong to the bound id (equal, or in its family)? */
export function idFits(bound: string, id: string): boolean {
  const prefix = familyPrefix(bound);
  return prefix === undefined ? id === bound : id.startsWith(prefix) && id.length > prefix.length;
}

/** The spec's filter with the role's own parameter bound to `id` and every other one left as `+`. */
function bound(spec: TopicSpec<string>, role: Role, id: string): string {
  const own = familyPrefix(id) === undefined && spec.params.includes(role);
  return spec.filter(own ? { [role]: id } : {});
}

/** The grants of a role whose topics are bound to `id` (or, for `prefix*`, to every id of that family). */
export function grantsFor(role: Role, id: string): Grants {
  const specs = Object.values(topics) as TopicSpec<string>[];
  const prefix = familyPrefix(id);
  return {
    publish: specs.filter((s) => s.publisher === role).map((s) => bound(s, role, id)),
    subscribe: ROLE_READS[role].map((name) => bound(topics[name] as TopicSpec<string>, role, id)),
    ...(prefix !== undefined ? { family: { role, prefix } } : {}),
  };
}

/** Does the topic's own-role parameter, where it has one, belong to the grants' family? */
function inFamily(grants: Grants, topic: string): boolean {
  const { family } = grants;
  if (!family) return true;
  for (const spec of Object.values(topics) as TopicSpec<string>[]) {
    if (!spec.params.includes(family.role)) continue;
    const value = spec.match(topic)?.[family.role];
    if (value !== undefined) return idFits(`${family.prefix}*`, value);
  }
  return true;
}

/**
 * Is every topic `filter` matches also matched by `allowed`? Level by level [MQTT-4.7.1]: `#` in `allowed` covers
 * the rest (and the parent level [MQTT-4.7.1-2]), `+` covers any one level but not `#`, a literal covers only itself.
 * A first-level wildcard in `allowed` matches no `$` topic [MQTT-4.7.2-1].
 */
export function covers(allowed: string, filter: string): boolean {
  const a = allowed.split('/');
  const f = filter.split('/');
  if ((a[0] === '+' || a[0] === '#') && f[0]!.startsWith('$')) return false;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === '#') return true;
    if (i >= f.length || f[i] === '#') return false;
    if (a[i] !== '+' && a[i] !== f[i]) return false;
  }
  return f.length === a.length;
}

/** May a client with these grants publish on this topic name? */
export function mayPublish(grants: Grants, topic: string): boolean {
  return grants.publish.some((f) => filterMatches(f, topic)) && inFamily(grants, topic);
}

/** May a client with these grants subscribe to this filter (a `$share/<group>/` prefix already removed)? */
export function maySubscribe(grants: Grants, filter: string): boolean {
  // A family's own-role parameter cannot be bounded in a filter; no role reads topics carrying its own id anyway.
  return grants.subscribe.some((f) => covers(f, filter)) && (!grants.family || inFamily(grants, filter));
}

/** May a client with these grants receive a message on this topic name? */
export function mayRead(grants: Grants, topic: string): boolean {
  return grants.subscribe.some((f) => filterMatches(f, topic)) && inFamily(grants, topic);
}

/** May a message on this topic name be retained? Not on a topic of the map whose publishers never retain. */
export function mayRetain(topic: string): boolean {
  for (const spec of Object.values(topics) as TopicSpec<string>[])
    if (spec.match(topic) !== undefined) return spec.retained;
  return true;
}

/**
 * Topic filter rules of MQTT 3.1.1 §4.7, as the broker applies them and the services match their subscriptions, and
 * the parsing of shared-subscription filters
 * `$share/<group>/<filter>` (MQTT 5 §4.8.2, which the broker also accepts from 3.1.1 clients, like Mosquitto).
 */

/** Prefix of a shared-subscription filter. */
export const SHARE_PREFIX = '$share/';

/** A topic filter is valid: non-empty [MQTT-4.7.3-1], no U+0000 [MQTT-4.7.3-2], `#` last and alone, `+` alone. */
export function isValidFilter(filter: string): boolean {
  if (filter.length === 0 || filter.includes('\u0000')) return false;
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!;
    // [MQTT-4.7.1-2]: '#' occupies a whole level and is the last one.
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) return false;
    // [MQTT-4.7.1-3]: '+' occupies a whole level.
    if (level.includes('+') && level !== '+') return false;
  }
  return true;
}

/** Does a topic name match a filter, with the rule that wildcards at the first level skip `$` topics [MQTT-4.7.2-1]? */
export function filterMatches(filter: string, topic: string): boolean {
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    const level = f[i];
    if (level === '#') return true;
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false;
  }
  return f.length === t.length;
}

/** A parsed shared-subscription filter. */
export interface SharedFilter {
  /** The share name. */
  group: string;
  /** The topic filter the group shares. */
  filter: string;
}

/**
 * Parses `$share/<group>/<filter>`: undefined when the filter is not a shared one, null when it is malformed (empty
 * group, a group containing `+` or `#`, a missing or invalid filter; MQTT 5 [MQTT-4.8.2-1], [MQTT-4.8.2-2]).
 */
export function parseSharedFilter(topic: string): SharedFilter | null | undefined {
  if (!topic.startsWith(SHARE_PREFIX)) return undefined;
  const rest = topic.slice(SHARE_PREFIX.length);
  const slash = rest.indexOf('/');
  if (slash <= 0) return null;
  const group = rest.slice(0, slash);
  const filter = rest.slice(slash + 1);
  if (group.includes('+') || group.includes('#') || group.includes('\u0000') || !isValidFilter(filter))
    return null;
  return { group, filter };
}

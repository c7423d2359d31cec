/**
 * The broker's users file (`BROKER_USERS`, `--users`): who may connect, with which scrypt-hashed password, in which
 * role, and for roles that own topics, the device, worker or planner id their topics are bound to (acl.ts).
 *
 * ```json
 * { "users": [ { "username": "robot-1", "role": "device", "password": "scrypt$N=16384,r=8,p=1$...$..." } ] }
 * ```
 *
 * The file is checked once, at start-up, with zod; any bad entry stops the broker with one line naming the file, the
 * entry and what is allowed. Entries are written by `edgecut users add` (cli/users.ts).
 */

import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { ConfigError, schemas } from '../runtime/config.ts';
import type { Role } from '../schemas/topics.ts';
import { familyPrefix } from './acl.ts';
import { HASH_FORMAT, type PasswordHash, parsePasswordHash } from './passwords.ts';

/**
 * The roles a user can have: the three that own topics, `viewer` (read-only: the dashboard; broker/acl.ts), and
 * `admin`, which may do everything.
 */
export const USER_ROLES = ['device', 'worker', 'planner', 'viewer', 'admin'] as const;

/** One of {@link USER_ROLES}. */
export type UserRole = (typeof USER_ROLES)[number];

/** Roles whose topics are bound to an id: the entry field holding the id has the role's name. */
export const ID_ROLES: readonly Role[] = ['device', 'worker', 'planner'];

const ROLE_LIST = USER_ROLES.join(', ');
const FIELDS = 'username, role, password, device, worker, planner';

const EntrySchema = z.strictObject({
  username: z
    .string({ message: 'expected a string' })
    .min(1, 'expected a non-empty user name')
    .max(256, 'expected at most 256 characters')
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
    .regex(/^[^\u0000-\u001f\u007f]+$/, 'expected no control characters'),
  role: z.enum(USER_ROLES, { message: `expected one of ${ROLE_LIST}` }),
  password: z.string({ message: 'expected a string' }),
  device: schemas.id.optional(),
  // A worker id, or a family `prefix*` shared by the replicas of a scaled tail worker (broker/acl.ts).
  worker: z
    .string()
    .regex(
      /^[A-Za-z0-9._-]{1,64}$|^[A-Za-z0-9._-]{1,63}\*$/,
      'expected 1-64 characters from A-Z a-z 0-9 . _ -, or a family prefix ending in * (e.g. tail-*)',
    )
    .optional(),
  planner: schemas.id.optional(),
});

/** One entry as written in the file. */
export type UserEntry = z.infer<typeof EntrySchema>;

/** A user ready for authentication. */
export interface User {
  username: string;
  role: UserRole;
  /** The device, worker or planner id the role's topics are bound to; undefined for admin and viewer. */
  id: string | undefined;
  hash: PasswordHash;
}

/** The parsed file: its entries in order (for rewriting) and the users by name. */
export interface UsersTable {
  entries: UserEntry[];
  users: Map<string, User>;
}

/** The id an entry's topics are bound to: the field named after its role, else the user name. */
export function boundId(entry: UserEntry): string | undefined {
  if (entry.role === 'admin' || entry.role === 'viewer') return undefined;
  return entry[entry.role] ?? entry.username;
}

/** The checked entry and its user, or why the entry is not allowed (one phrase). */
function checkEntry(raw: unknown): { entry: UserEntry; user: User } | string {
  const parsed = EntrySchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    if (issue.code === 'unrecognized_keys')
      return `field ${JSON.stringify(issue.keys[0])} is not allowed: expected only ${FIELDS}`;
    const field = String(issue.path[0] ?? '(entry)');
    if (field === '(entry)') return `expected an object with ${FIELDS}`;
    const value = (raw as Record<string, unknown>)[field];
    // A password value is never echoed: it might be a plain-text password.
    const shown = field === 'password' || value === undefined ? '' : ` ${JSON.stringify(value)}`;
    return `${field}${shown} is not allowed: ${value === undefined ? 'missing' : issue.message}`;
  }
  const entry = parsed.data;
  const hash = parsePasswordHash(entry.password);
  if (!hash)
    return `password is not allowed: expected a hash written by "edgecut users add" (${HASH_FORMAT}); plain-text passwords are refused`;
  for (const field of ID_ROLES) {
    if (entry[field] !== undefined && entry.role !== field)
      return `field "${field}" is not allowed with role ${entry.role}: it binds a ${field} id, only for role ${field}`;
  }
  const id = boundId(entry);
  const family = entry.role === 'worker' && id !== undefined ? familyPrefix(id) : undefined;
  if (id !== undefined && !schemas.id.safeParse(family ?? id).success) {
    return `username ${JSON.stringify(entry.username)} is not a valid ${entry.role} id: expected 1-64 characters from A-Z a-z 0-9 . _ -, or set "${entry.role}" to the ${entry.role}'s id`;
  }
  return { entry, user: { username: entry.username, role: entry.role, id, hash } };
}

/** Parses the text of a users file; ConfigError (one line naming the file and the entry) on any problem. */
export function parseUsers(text: string, file: string): UsersTable {
  const fail = (why: string) => new ConfigError(`users file ${file}: ${why}`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw fail(`not JSON (${(err as Error).message})`);
  }
  const list = (raw as { users?: unknown } | null)?.users;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw) || !Array.isArray(list))
    throw fail('expected an object {"users": [...]} (write it with "edgecut users add")');
  const extra = Object.keys(raw).find((k) => k !== 'users');
  if (extra !== undefined) throw fail(`field ${JSON.stringify(extra)} is not allowed: expected only "users"`);
  const entries: UserEntry[] = [];
  const users = new Map<string, User>();
  const seen = new Map<string, number>();
  for (const [i, item] of list.entries()) {
    const name = (item as { username?: unknown } | null)?.username;
    const label = `entry ${i + 1}${typeof name === 'string' ? ` (${JSON.stringify(name)})` : ''}`;
    const checked = checkEntry(item);
    if (typeof checked === 'string') throw fail(`${label}: ${checked}`);
    const first = seen.get(checked.entry.username);
    if (first !== undefined) throw fail(`${label}: username already used by entry ${first}`);
    seen.set(checked.entry.username, i + 1);
    entries.push(checked.entry);
    users.set(checked.user.username, checked.user);
  }
  return { entries, users };
}

/**
 * Reads and checks a users file. A missing file is a ConfigError, unless `missingOk` (then an empty table: `users
 * add` creates the file).
 */
export async function loadUsers(file: string, opts: { missingOk?: boolean } = {}): Promise<UsersTable> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && opts.missingOk) return { entries: [], users: new Map() };
    throw new ConfigError(`users file ${file}: cannot read it (${code ?? (err as Error).message})`);
  }
  return parseUsers(text, file);
}

/** The file's text for a list of entries (sorted by user name, so diffs stay small). */
export function formatUsers(entries: readonly UserEntry[]): string {
  const sorted = [...entries].sort((a, b) =>
    a.username < b.username ? -1 : a.username > b.username ? 1 : 0,
  );
  return `${JSON.stringify({ users: sorted }, null, 2)}\n`;
}

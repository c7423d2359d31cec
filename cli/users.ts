/**
 * `edgecut users add|check`: writes and checks the broker's users file (broker/users.ts). The password of `add` is
 * read from the first line of stdin, so it appears neither in the process list nor in the shell history:
 * `printf '%s\n' "$PASSWORD" | edgecut users add users.json robot-1 --role device`.
 */
import { chmod, mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { hashPassword } from '../broker/passwords.ts';
import {
  boundId,
  formatUsers,
  ID_ROLES,
  loadUsers,
  parseUsers,
  USER_ROLES,
  type UserEntry,
  type UserRole,
} from '../broker/users.ts';
import { ConfigError } from '../runtime/config.ts';
import { errorMessage, UserError } from '../runtime/errors.ts';

/** Options of `users add`. */
export interface UsersAddOptions {
  role?: string;
  device?: string;
  worker?: string;
  planner?: string;
}

/** Reads the first line of a stream (without its line break), then stops reading. */
export async function readFirstLine(stream: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const chunk of stream) {
    text += typeof chunk === 'string' ? chunk : (chunk as Buffer).toString('utf8');
    const nl = text.indexOf('\n');
    if (nl >= 0) return text.slice(0, nl).replace(/\r$/, '');
  }
  return text.replace(/\r$/, '');
}

/** Adds a user to the file, or replaces the entry of that user name; creates the file if missing. */
export async function usersAddCommand(
  file: string,
  username: string,
  o: UsersAddOptions,
  stdin: NodeJS.ReadStream = process.stdin,
): Promise<void> {
  const role = o.role as UserRole | undefined;
  if (role === undefined || !USER_ROLES.includes(role))
    throw new UserError(
      `--role=${JSON.stringify(o.role ?? '')} is not allowed: expected one of ${USER_ROLES.join(', ')}`,
    );
  const ids: Partial<Record<(typeof ID_ROLES)[number], string>> = {};
  for (const field of ID_ROLES) {
    const value = o[field];
    if (value === undefined) continue;
    if (field !== role)
      throw new UserError(
        `--${field} is not allowed with --role ${role}: it binds a ${field} id, only for role ${field}`,
      );
    ids[field] = value;
  }
  if (stdin.isTTY)
    throw new UserError(
      `the password is read from stdin: pipe it in, e.g. printf '%s\\n' "$PASSWORD" | edgecut users add ${file} ${username} --role ${role}`,
    );
  const password = await readFirstLine(stdin);
  if (password.length === 0)
    throw new UserError('no password on stdin: expected the password as the first line of stdin');
  const table = await loadUsers(file, { missingOk: true });
  const entry: UserEntry = { username, role, password: await hashPassword(password), ...ids };
  const replaced = table.entries.some((e) => e.username === username);
  const entries = [...table.entries.filter((e) => e.username !== username), entry];
  // The whole file, new entry included, passes the broker's own check before it is written.
  const text = formatUsers(entries);
  try {
    parseUsers(text, file);
  } catch (err) {
    if (err instanceof ConfigError) throw new UserError(err.message.replace(/entry \d+ /, 'the new entry '));
    throw err;
  }
  // Written next to the file and renamed over it, so a reader never sees half a file; readable by the owner only.
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    await mkdir(dirname(file), { recursive: true });
    await writeFile(tmp, text, { mode: 0o600 });
    await chmod(tmp, 0o600);
    await rename(tmp, file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? errorMessage(err);
    throw new UserError(`users file ${file}: cannot write it (${code})`);
  }
  const id = boundId(entry);
  process.stdout.write(
    `${replaced ? 'replaced' : 'added'} ${username} (${role}${id !== undefined ? ` ${id}` : ''}) in ${file}\n`,
  );
}

/** Checks a users file as the broker would at start; prints one line per user. */
export async function usersCheckCommand(file: string): Promise<void> {
  const { entries } = await loadUsers(file);
  for (const e of entries) {
    const id = boundId(e);
    process.stdout.write(`${e.username}\t${e.role}${id !== undefined ? `\t${id}` : ''}\n`);
  }
  process.stdout.write(`${file}: ${entries.length} user${entries.length === 1 ? '' : 's'}, all valid\n`);
}

/**
 * Variable interpolation of a Compose file, as the Compose specification defines it ("Interpolation"): `$VAR`,
 * `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}` (unset), `${VAR:?message}` / `${VAR?message}`
 * (required), `${VAR:+replacement}` / `${VAR+replacement}`, and `$$` for a literal `$`. Values come from the
 * environment and then the project's `.env` file, like `docker compose`.
 */
import { UserError } from '../../runtime/errors.ts';

/** Thrown for a required variable that is missing or a malformed reference; one line. */
export class InterpolationError extends UserError {}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*/;

/** Replaces every variable reference in one string; `where` names the field for error messages. */
export function interpolate(text: string, vars: Record<string, string | undefined>, where: string): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const dollar = text.indexOf('$', i);
    if (dollar < 0) {
      out += text.slice(i);
      break;
    }
    out += text.slice(i, dollar);
    const next = text[dollar + 1];
    if (next === '$') {
      out += '$';
      i = dollar + 2;
      continue;
    }
    if (next === '{') {
      const close = closingBrace(text, dollar + 2);
      if (close < 0) throw new InterpolationError(`${where}: unclosed "\${" in ${JSON.stringify(text)}`);
      out += expand(text.slice(dollar + 2, close), vars, where);
      i = close + 1;
      continue;
    }
    const name = NAME.exec(text.slice(dollar + 1))?.[0];
    if (name === undefined) {
      // A lone `$` stays as it is (Compose does the same for `$` not followed by a name).
      out += '$';
      i = dollar + 1;
      continue;
    }
    out += vars[name] ?? '';
    i = dollar + 1 + name.length;
  }
  return out;
}

/** Index of the `}` closing a `${` whose body starts at `from`, allowing nested `${...}` in defaults. */
function closingBrace(text: string, from: number): number {
  let depth = 1;
  for (let i = from; i < text.length; i++) {
    if (text[i] === '$' && text[i + 1] === '{') {
      depth++;
      i++;
    } else if (text[i] === '}' && --depth === 0) return i;
  }
  return -1;
}

function expand(body: string, vars: Record<string, string | undefined>, where: string): string {
  const name = NAME.exec(body)?.[0];
  if (name === undefined) {
    throw new InterpolationError(
      `${where}: "\${${body}}" is not a variable reference: expected \${NAME}, \${NAME:-default} or \${NAME:?message}`,
    );
  }
  const rest = body.slice(name.length);
  const value = vars[name];
  if (rest === '') return value ?? '';
  const colon = rest.startsWith(':');
  const op = rest[colon ? 1 : 0];
  const arg = rest.slice(colon ? 2 : 1);
  const missing = colon ? value === undefined || value === '' : value === undefined;
  switch (op) {
    case '-':
      return missing ? interpolate(arg, vars, where) : (value ?? '');
    case '?':
      if (missing)
        throw new InterpolationError(
          `${where}: ${name} is required${arg ? `: ${arg}` : ''} (set it in the environment or .env)`,
        );
      return value ?? '';
    case '+':
      return missing ? '' : interpolate(arg, vars, where);
    default:
      throw new InterpolationError(
        `${where}: "\${${body}}" is not a variable reference: allowed forms are \${NAME}, \${NAME:-default}, \${NAME-default}, \${NAME:?message}, \${NAME:+value}`,
      );
  }
}

/** Parses a `.env` file: `KEY=value` lines, `#` comments, optional `export `, optional quotes. */
export function parseDotEnv(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(.*)$/.exec(line);
    if (!m) continue;
    let value = m[2] ?? '';
    const quote = value[0];
    if ((quote === '"' || quote === "'") && value.endsWith(quote) && value.length >= 2)
      value = value.slice(1, -1);
    else value = value.replace(/\s+#.*$/, '');
    out[m[1]!] = value;
  }
  return out;
}

/** Interpolates every string in a parsed YAML document (keys stay as they are). */
export function interpolateDeep(
  value: unknown,
  vars: Record<string, string | undefined>,
  path = '',
): unknown {
  if (typeof value === 'string') return interpolate(value, vars, path || '(root)');
  if (Array.isArray(value)) return value.map((v, i) => interpolateDeep(v, vars, `${path}[${i}]`));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = interpolateDeep(v, vars, path ? `${path}.${k}` : k);
    return out;
  }
  return value;
}

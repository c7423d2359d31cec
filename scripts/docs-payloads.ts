/**
 * Payload descriptions for docs/topics.md (scripts/generate-docs.ts): the fields of each JSON message, from its zod
 * schema (through zod's JSON Schema export) with the meanings taken from the `/** *\/` comments on the schema's
 * fields, and the tables and enums of schemas/edgecut.fbs with their `///` comments.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { z } from 'zod';
import * as messages from '../schemas/messages.ts';
import * as profile from '../schemas/profile.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Escapes text for a Markdown table cell. */
export const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

// ---- JSON payloads: fields from the zod schema, meanings from the schema source's doc comments ----

type JsonSchema = {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  enum?: unknown[];
  const?: unknown;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  minItems?: number;
  additionalProperties?: JsonSchema | boolean;
};

const docCache = new Map<string, Map<string, string>>();

/** The `/** *\/` comments on the fields of every schema const of a file, keyed `<const>:<field path>`. */
function fieldDocs(file: string): Map<string, string> {
  const cached = docCache.get(file);
  if (cached) return cached;
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
  const consts = new Map<string, ts.Expression>();
  source.forEachChild((node) => {
    if (!ts.isVariableStatement(node)) return;
    for (const d of node.declarationList.declarations)
      if (ts.isIdentifier(d.name) && d.initializer) consts.set(d.name.text, d.initializer);
  });
  const out = new Map<string, string>();
  const walk = (owner: string, expr: ts.Node, base: string, seen: ReadonlySet<string>): void => {
    // A schema defined elsewhere in the file (`cut: CutSummarySchema`) documents the fields under this one.
    if (ts.isIdentifier(expr) && consts.has(expr.text) && !seen.has(expr.text)) {
      walk(owner, consts.get(expr.text)!, base, new Set([...seen, expr.text]));
      return;
    }
    if (!ts.isCallExpression(expr)) return;
    const callee = expr.expression;
    const method = ts.isPropertyAccessExpression(callee) ? callee.name.text : '';
    const arg = expr.arguments[0];
    if (method === 'object' && arg && ts.isObjectLiteralExpression(arg)) {
      for (const p of arg.properties) {
        if (!ts.isPropertyAssignment(p) || !(ts.isIdentifier(p.name) || ts.isStringLiteral(p.name))) continue;
        const path = base ? `${base}.${p.name.text}` : p.name.text;
        const doc = ts
          .getJSDocCommentsAndTags(p)
          .map((d) => ts.getTextOfJSDocComment(d.comment) ?? '')
          .join(' ')
          .trim();
        if (doc) out.set(`${owner}:${path}`, doc);
        walk(owner, p.initializer, path, seen);
      }
    } else if (method === 'array' && arg) walk(owner, arg, `${base}[]`, seen);
    // Modifiers (`.optional()`, `.min(1)`, ...) wrap the schema they modify.
    if (ts.isPropertyAccessExpression(callee)) walk(owner, callee.expression, base, seen);
  };
  for (const [name, init] of consts) walk(name, init, '', new Set([name]));
  docCache.set(file, out);
  return out;
}

/** One line describing a JSON schema node's type and constraints. */
function describeType(s: JsonSchema): string {
  if (s.anyOf) return s.anyOf.map(describeType).join(' or ');
  if (s.const !== undefined) return `${JSON.stringify(s.const)}`;
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(' | ');
  const types = Array.isArray(s.type) ? s.type : s.type ? [s.type] : ['any'];
  const parts = types.map((t) => {
    if (t === 'array') return `array of ${s.items ? describeType(s.items) : 'any'}`;
    if (t === 'object' && !s.properties && typeof s.additionalProperties === 'object')
      return `object of ${describeType(s.additionalProperties)}`;
    return t;
  });
  const limits: string[] = [];
  if (s.minimum !== undefined && Math.abs(s.minimum) < Number.MAX_SAFE_INTEGER)
    limits.push(`>= ${s.minimum}`);
  if (s.exclusiveMinimum !== undefined) limits.push(`> ${s.exclusiveMinimum}`);
  if (s.maximum !== undefined && s.maximum < Number.MAX_SAFE_INTEGER) limits.push(`<= ${s.maximum}`);
  if (s.pattern) limits.push(`matching \`${s.pattern}\``);
  if (s.minItems) limits.push(`at least ${s.minItems}`);
  return `${parts.join(' or ')}${limits.length ? ` (${limits.join(', ')})` : ''}`;
}

/** Flattens a JSON schema into rows `path | type | required`, objects and arrays of objects recursively. */
function flatten(s: JsonSchema, base: string, rows: Array<[string, string, boolean]>): void {
  const object = s.properties ? s : s.anyOf?.find((v) => v.properties);
  for (const [key, child] of Object.entries(object?.properties ?? {})) {
    const path = base ? `${base}.${key}` : key;
    rows.push([path, describeType(child), object?.required?.includes(key) ?? false]);
    flatten(child, path, rows);
    const items = child.items ?? child.anyOf?.find((v) => v.items)?.items;
    if (items) flatten(items, `${path}[]`, rows);
  }
}

/** The zod schema and its source file for a JSON message type named in the topic map. */
function jsonSchemaOf(message: string): { schema: z.ZodType; file: string; name: string } {
  const name = `${message}Schema`;
  for (const [mod, file] of [
    [messages, 'schemas/messages.ts'],
    [profile, 'schemas/profile.ts'],
  ] as const) {
    const schema = (mod as Record<string, unknown>)[name];
    if (schema instanceof z.ZodType) return { schema, file, name };
  }
  throw new Error(`generate-docs: the topic map names JSON message ${message}, but no ${name} is exported`);
}

/** The section of one JSON message type named in the topic map: its fields, types and meanings. */
export function jsonSection(message: string): string {
  const { schema, file, name } = jsonSchemaOf(message);
  const docs = fieldDocs(join(REPO, file));
  const rows: Array<[string, string, boolean]> = [];
  flatten(z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonSchema, '', rows);
  return [
    `### JSON \`${message}\``,
    '',
    `\`${name}\` in ${file}; a receiver rejects a payload that does not match it.`,
    '',
    '| field | type | required | meaning |',
    '|---|---|---|---|',
    ...rows.map(
      ([path, type, required]) =>
        `| \`${path}\` | ${cell(type)} | ${required ? 'yes' : 'no'} | ${cell(docs.get(`${name}:${path}`) ?? '')} |`,
    ),
  ].join('\n');
}

// ---- FlatBuffers payloads: tables and enums of schemas/edgecut.fbs with their `///` comments ----

interface FbsBlock {
  kind: 'table' | 'enum';
  name: string;
  doc: string;
  rows: Array<{ name: string; type: string; extra: string; doc: string }>;
}

/** Parses the tables and enums of a .fbs file (the subset of the grammar edgecut.fbs uses). */
function parseFbs(text: string): FbsBlock[] {
  const blocks: FbsBlock[] = [];
  let doc: string[] = [];
  let open: FbsBlock | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('///')) {
      doc.push(line.slice(3).trim());
      continue;
    }
    const start = /^(table|enum)\s+(\w+)/.exec(line);
    if (start) open = { kind: start[1] as FbsBlock['kind'], name: start[2]!, doc: doc.join(' '), rows: [] };
    else if (open && line.startsWith('}')) {
      blocks.push(open);
      open = undefined;
    } else if (open?.kind === 'table') {
      const f = /^(\w+)\s*:\s*([^=(;]+?)\s*(?:=\s*([^(;]+?)\s*)?(?:\((\w+)\))?\s*;/.exec(line);
      if (f) {
        const extra = f[4] === 'required' ? 'required' : f[3] !== undefined ? `default ${f[3]}` : '';
        open.rows.push({ name: f[1]!, type: f[2]!, extra, doc: doc.join(' ') });
      }
    } else if (open?.kind === 'enum') {
      const v = /^(\w+)\s*=\s*(\d+)/.exec(line);
      if (v) open.rows.push({ name: v[1]!, type: v[2]!, extra: '', doc: doc.join(' ') });
    }
    doc = [];
  }
  return blocks;
}

/** The section describing every table and enum of schemas/edgecut.fbs. */
export function fbsSection(): string {
  const text = readFileSync(join(REPO, 'schemas/edgecut.fbs'), 'utf8');
  const identifier = /file_identifier\s+"(\w+)"/.exec(text)?.[1] ?? '';
  const out = [
    '## FlatBuffers payloads',
    '',
    `Every data-plane payload is one \`Message\` with file identifier \`${identifier}\` (bytes 4..7 of the buffer)`,
    'whose `body` union holds a `Request`, `Result` or `Error`. Generate readers and builders for your language',
    'with `flatc` from `schemas/edgecut.fbs`; multi-byte values are little-endian.',
  ];
  for (const b of parseFbs(text)) {
    out.push('', `### ${b.kind} \`${b.name}\``, '', b.doc, '');
    if (b.kind === 'table') {
      out.push('| field | type | default / required | meaning |', '|---|---|---|---|');
      for (const r of b.rows) out.push(`| \`${r.name}\` | \`${r.type}\` | ${r.extra} | ${cell(r.doc)} |`);
    } else {
      out.push('| value | name | meaning |', '|---|---|---|');
      for (const r of b.rows) out.push(`| ${r.type} | \`${r.name}\` | ${cell(r.doc)} |`);
    }
  }
  return out.join('\n');
}

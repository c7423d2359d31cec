/**
 * The import rules between the top-level rooms (docs/ARCHITECTURE.md): the services meet only through the broker
 * and the schemas, so no service imports another; the schemas and the broker know no service; nothing the running
 * services are made of imports the CLI, the benchmarks, the scripts or the tests.
 */
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

async function tsFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(ROOT, dir), { withFileTypes: true })) {
    const rel = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await tsFiles(rel)));
    else if (e.name.endsWith('.ts')) out.push(rel);
  }
  return out;
}

/** The repository paths a file imports (relative imports only). */
async function importsOf(file: string): Promise<string[]> {
  const text = await readFile(join(ROOT, file), 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+'(\.[^']+)'/g))
    out.push(relative(ROOT, resolve(ROOT, dirname(file), m[1]!)));
  return out;
}

/** Each room, and the rooms it must not import. */
const RULES: Array<[string, string[]]> = [
  ['schemas', ['services', 'broker', 'cli', 'bench', 'scripts', 'test']],
  ['broker', ['services', 'cli', 'bench', 'scripts', 'test']],
  ['common', ['services', 'broker', 'cli', 'bench', 'scripts', 'test']],
  ['services/edge-head', ['services/server-tail', 'services/planner', 'broker', 'cli', 'bench', 'test']],
  ['services/server-tail', ['services/edge-head', 'services/planner', 'broker', 'cli', 'bench', 'test']],
  ['services/planner', ['services/edge-head', 'services/server-tail', 'broker', 'cli', 'bench', 'test']],
];

for (const [room, forbidden] of RULES)
  test(`${room} imports nothing from ${forbidden.join(', ')}`, async (t) => {
    const broken: string[] = [];
    for (const file of await tsFiles(room))
      for (const target of await importsOf(file))
        if (forbidden.some((f) => target === f || target.startsWith(`${f}/`)))
          broken.push(`${file} imports ${target}`);
    t.deepEqual(broken, []);
  });

/** Import cycles among the files of a room (each as a list of files), found by depth-first search. */
async function cycles(room: string): Promise<string[][]> {
  const files = await tsFiles(room);
  const graph = new Map<string, string[]>();
  for (const f of files) {
    const targets = (await importsOf(f)).map((x) => (x.endsWith('.ts') ? x : `${x}.ts`));
    graph.set(
      f,
      targets.filter((x) => graph.has(x) || files.includes(x)),
    );
  }
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const visit = (f: string, path: string[]): void => {
    if (state.get(f) === 'done') return;
    if (state.get(f) === 'open') {
      found.push([...path.slice(path.indexOf(f)), f]);
      return;
    }
    state.set(f, 'open');
    for (const g of graph.get(f) ?? []) visit(g, [...path, f]);
    state.set(f, 'done');
  };
  for (const f of files) visit(f, []);
  return found;
}

for (const room of ['schemas', 'common', 'broker'])
  test(`no import cycle among the files of ${room}`, async (t) => {
    t.deepEqual(
      (await cycles(room)).map((c) => c.join(' -> ')),
      [],
    );
  });

/**
 * The import rules between the top-level rooms (docs/ARCHITECTURE.md): the services meet only through the broker
 * and the schemas, so no service imports another; the schemas and the broker know no service; nothing the running
 * services are made of imports the CLI, the benchmarks, the scripts or the tests. Among the shared rooms, the
 * service runtime imports no other, the model toolkit only the runtime, and planning is pure: what it runs (the
 * closure of its value imports) touches neither onnxruntime nor the file system, the host or the environment.
 * A rule is about what a room runs: `import type` (erased when compiled) may name a type of any shared room.
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

/** The repository paths a file imports (relative imports only); `values` leaves out `import type`. */
async function importsOf(file: string, values = false): Promise<string[]> {
  const out: string[] = [];
  for (const m of (await readFile(join(ROOT, file), 'utf8')).matchAll(IMPORT))
    if (!(values && m[1])) out.push(relative(ROOT, resolve(ROOT, dirname(file), m[2]!)));
  return out;
}

const IMPORT = /(?:^|\n)\s*(?:import|export)(\s+type\b)?[^'"]*?from\s+'(\.[^']+)'/g;

/** Each room, and the rooms it must not import. */
const OUTSIDE = ['services', 'broker', 'cli', 'bench', 'scripts', 'test'];
const RULES: Array<[string, string[]]> = [
  ['schemas', [...OUTSIDE, 'model', 'planning', 'measurement']],
  ['broker', ['services', 'cli', 'bench', 'scripts', 'test']],
  ['runtime', [...OUTSIDE, 'model', 'planning', 'measurement']],
  ['model', [...OUTSIDE, 'planning', 'measurement']],
  ['planning', [...OUTSIDE, 'measurement', 'runtime']],
  ['measurement', OUTSIDE],
  ['services/edge-head', ['services/server-tail', 'services/planner', 'broker', 'cli', 'bench', 'test']],
  ['services/server-tail', ['services/edge-head', 'services/planner', 'broker', 'cli', 'bench', 'test']],
  ['services/planner', ['services/edge-head', 'services/server-tail', 'broker', 'cli', 'bench', 'test']],
  [
    'services/dashboard',
    ['services/edge-head', 'services/server-tail', 'services/planner', 'broker', 'cli', 'bench', 'test'],
  ],
];

for (const [room, forbidden] of RULES)
  test(`${room} imports nothing from ${forbidden.join(', ')}`, async (t) => {
    const broken: string[] = [];
    for (const file of await tsFiles(room))
      for (const target of await importsOf(file, true))
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

/** What a pure file may not touch: onnxruntime, the file system, the host, processes, threads, the environment. */
const IMPURE = [
  /from\s+'onnxruntime-node'/,
  /import\('onnxruntime-node'\)/,
  /from\s+'node:(fs|fs\/promises|os|child_process|worker_threads|net|http|dgram)'/,
  /process\.(env|cwd|argv|platform|arch|getuid)/,
];

test('planning is pure: nothing it runs reads files, the host or the environment, or runs onnxruntime', async (t) => {
  const seen = new Set<string>();
  const broken: string[] = [];
  const visit = async (file: string, from: string): Promise<void> => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = (await readFile(join(ROOT, file), 'utf8')).replace(/^\s*(\/\/|\*|\/\*).*$/gm, '');
    for (const re of IMPURE) {
      const m = re.exec(text.replace(/import\s+type\b[^;]*;/g, ''));
      if (m) broken.push(`${file} (reached from ${from}): ${m[0]}`);
    }
    for (const target of await importsOf(file, true)) await visit(target, file);
  };
  for (const file of await tsFiles('planning')) await visit(file, file);
  t.deepEqual(broken, []);
  t.true(seen.size >= 10, `walked ${seen.size} files`);
});

for (const room of ['schemas', 'broker', 'runtime', 'model', 'planning', 'measurement'])
  test(`no import cycle among the files of ${room}`, async (t) => {
    t.deepEqual(
      (await cycles(room)).map((c) => c.join(' -> ')),
      [],
    );
  });

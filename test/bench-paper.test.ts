/**
 * `edgecut bench paper`: the quick grid runs the real services end to end and renders a doc with the structure of
 * docs/results.md; docs/results.md and its charts are exactly what docs/results.json renders to; bad flags get one
 * line.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { docStructure, renderResultsDoc } from '../bench/paper/doc.ts';
import { readResults } from '../bench/paper/results.ts';
import { edgecut } from './helpers/cli.ts';

const run = promisify(execFile);

test('npm run bench -- paper --quick measures every contender live and renders the structure of docs/results.md', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-bench-paper-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const out = join(dir, 'results.json');
  const { stdout, stderr } = await run(
    'npm',
    ['run', '--silent', 'bench', '--', 'paper', '--quick', '--out', out, '--doc', dir],
    { timeout: 240_000 },
  );
  t.regex(stdout, /wrote .*results\.md and \d+ charts/);
  t.regex(stderr, /squeezenet1\.0\|rpi3b-ncs\|host\|10mbps done \(100%/);
  const r = await readResults(out);
  if (!r) return t.fail('no results file');
  t.is(r.grid, 'quick');
  t.is(r.edgeOnly.length, 1);
  const edge = r.edgeOnly[0]!.run;
  t.true(edge.frames >= 2 && edge.fps > 0 && edge.offloaded === 0, JSON.stringify(edge));
  // The emulated NCS runs SqueezeNet in 48 ms (the paper's Table III): about 20 fps one frame at a time.
  t.true(edge.medianMs > 40 && edge.medianMs < 120, `edge only median ${edge.medianMs} ms`);
  t.is(r.scenarios.length, 1);
  const s = r.scenarios[0]!;
  t.is(s.fullOffload.cut, 0);
  t.is(s.fullOffload.offloaded, s.fullOffload.frames);
  // Full offload sends the 588 KiB input at 10 Mbit/s: at least 470 ms per frame.
  t.true(s.fullOffload.medianMs > 470, `full offload ${s.fullOffload.medianMs} ms`);
  t.is(s.oracle.measured[0]!.cut, 0);
  t.true(s.oracle.measured.length >= 2, 'the oracle measured cuts besides full offload');
  t.true(s.oracle.bestFps >= Math.max(edge.fps, ...s.oracle.measured.map((m) => m.fps)) - 1e-9);
  t.true(s.oracle.pruned > 0, 'cuts whose lower bound cannot win were not measured');
  for (const a of [s.autoSequential, s.autoPipelined]) {
    t.is(a.lost, 0);
    t.is(a.warmup, 10);
    t.true(a.frames >= 3 && a.fps > 0);
    t.true(a.plans.length >= 1, 'the planner published a plan');
  }
  t.is(s.autoSequential.window, 1);
  t.is(s.autoPipelined.window, 4, 'one frame in flight per place a frame spends time');
  // The same structure as the committed doc (which the full grid rendered).
  const doc = await readFile(join(dir, 'results.md'), 'utf8');
  const committed = await readFile('docs/results.md', 'utf8');
  // Its sections are the committed doc's, and its tables are among the committed doc's (the quick grid runs
  // neither the robot experiment nor the step response, whose tables it lacks).
  const quick = docStructure(doc);
  const full = docStructure(committed);
  const headings = (xs: string[]) => xs.filter((x) => x.startsWith('#'));
  t.deepEqual(headings(quick), headings(full));
  for (const table of quick.filter((x) => x.startsWith('|'))) t.true(full.includes(table), table);
  // Run again on the same results file: everything is measured already, so it resumes with nothing to do.
  const again = await run(
    'npm',
    ['run', '--silent', 'bench', '--', 'paper', '--quick', '--out', out, '--doc', dir],
    {
      timeout: 60_000,
    },
  );
  t.notRegex(again.stderr, /done \(/, 'nothing measured again');
  t.deepEqual(await readResults(out), r);
  t.is(await readFile(join(dir, 'results.md'), 'utf8'), doc);
  // Without --quick the file is of the other grid: refused in one line, not measured over.
  const other = await edgecut(['bench', 'paper', '--render-only', '--out', out, '--doc', dir]);
  t.is(other.code, 2);
  t.regex(
    other.stderr.trim(),
    /holds the quick grid, not the full one: run with --quick to resume it, or --fresh/,
  );
  t.deepEqual(await readResults(out), r);
});

test('docs/results.md and its charts are what docs/results.json renders to (npm run bench -- paper --render-only)', async (t) => {
  const r = await readResults('docs/results.json');
  if (!r) return t.fail('docs/results.json is missing: run npm run bench -- paper');
  t.is(r.grid, 'full');
  const doc = await renderResultsDoc(r, { chartsDir: 'results' });
  t.is(await readFile('docs/results.md', 'utf8'), doc.markdown, 'run npm run bench -- paper --render-only');
  for (const c of doc.charts) t.is(await readFile(join('docs/results', c.file), 'utf8'), c.svg, c.file);
});

test('edgecut bench paper: bad flags and a missing results file get one line', async (t) => {
  const jobs = await edgecut(['bench', 'paper', '--jobs', '0']);
  t.is(jobs.code, 2);
  t.is(jobs.stderr.trim(), 'edgecut: --jobs 0 is not allowed: expected a whole number >= 1');
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-bench-paper-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const none = await edgecut(['bench', 'paper', '--render-only', '--out', join(dir, 'none.json')]);
  t.is(none.code, 2);
  t.regex(
    none.stderr.trim(),
    /^edgecut: no results in .*none\.json: run the benchmark without --render-only first$/,
  );
  // A results file that is not one: one line naming it and what is wrong; nothing is measured over it.
  const bad = join(dir, 'bad.json');
  await writeFile(bad, '{"version": 2}');
  const wrong = await edgecut(['bench', 'paper', '--out', bad]);
  t.is(wrong.code, 2);
  t.regex(
    wrong.stderr.trim(),
    /^edgecut: .*bad\.json is not an edgecut bench paper results file: version: .+$/,
  );
  await writeFile(bad, 'not json');
  const garbage = await edgecut(['bench', 'paper', '--render-only', '--out', bad]);
  t.is(garbage.code, 2);
  t.regex(garbage.stderr.trim(), /^edgecut: .*bad\.json is not an edgecut bench paper results file: /);
  t.is(garbage.stderr.trim().split('\n').length, 1);
  const help = await edgecut(['bench', 'paper', '--help']);
  for (const flag of ['--quick', '--jobs', '--out', '--doc', '--fresh', '--render-only', '--only'])
    t.true(help.stdout.includes(flag), flag);
});

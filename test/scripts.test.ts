/**
 * Every npm script the README shows runs and succeeds (STYLE.md, convention 12).
 */
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import test from 'ava';

const run = promisify(execFile);
const npm = (args: string[]) => run('npm', ['run', '--silent', ...args], { timeout: 180_000 });

test('npm run lint passes', async (t) => {
  await t.notThrowsAsync(npm(['lint']));
});

test('npm run typecheck passes', async (t) => {
  await t.notThrowsAsync(npm(['typecheck']));
});

test('npm run schemas regenerates exactly the committed code', async (t) => {
  const file = 'schemas/generated/edgecut_generated.ts';
  const before = await readFile(file);
  try {
    await npm(['schemas']);
    const after = await readFile(file);
    t.true(
      before.equals(after),
      'regenerated code differs from the committed code: run npm run schemas and commit',
    );
  } finally {
    await writeFile(file, before);
  }
});

test('npm run demo -- --help lists the options', async (t) => {
  const { stdout } = await npm(['demo', '--', '--help']);
  for (const opt of ['--frames', '--window', '--cut']) t.true(stdout.includes(opt), opt);
});

test('npm run bench -- model measures inspect and split of Inception-v3', async (t) => {
  const { stdout } = await npm(['bench', '--', 'model', '--runs', '1']);
  t.regex(stdout, /^inspect\s+\d+/m);
  t.regex(stdout, /^split\s+\d+\s+\d+/m);
  t.regex(stdout, /split of inception-v3 at cut \d+ of \d+: load\+analyse\+split\+write \d+ ms/);
});

test('npm run bench -- planner times one re-plan over every cut of Inception-v3', async (t) => {
  const { stdout } = await npm(['bench', '--', 'planner', '--iterations', '300']);
  t.regex(stdout, /planner benchmark: inception-v3, \d+ candidate cuts/);
  t.regex(stdout, /median \d+\.\d us, p90/);
});

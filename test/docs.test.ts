/**
 * The generated docs (scripts/generate-docs.ts): the committed docs/topics.md and docs/configuration.md are what
 * `npm run docs` writes, they name every topic and every setting, and `--check` fails with one line naming a stale
 * file while a plain run rewrites only what changed.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { brokerSettings } from '../broker/config.ts';
import type { Settings } from '../runtime/config.ts';
import { commonSettings } from '../runtime/service-settings.ts';
import { sharedFilter, TAIL_GROUP, TOPIC_ROOT, topics } from '../schemas/topics.ts';
import { edgeSettings } from '../services/edge-head/config.ts';
import { plannerSettings } from '../services/planner/config.ts';
import { tailSettings } from '../services/server-tail/config.ts';
import { edgecut } from './helpers/cli.ts';

const run = promisify(execFile);

/** Runs `npm run docs -- <args>`; never throws for a non-zero exit. npm's own warnings are dropped from stderr. */
async function docs(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const clean = (s: string) =>
    s
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('npm warn'))
      .join('\n');
  try {
    const { stdout, stderr } = await run('npm', ['run', '--silent', 'docs', '--', ...args], {
      timeout: 60_000,
    });
    return { code: 0, stdout, stderr: clean(stderr) };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: clean(e.stderr) };
  }
}

/** The `## ` sections of a Markdown file, by heading line. */
function sections(md: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of md.split(/^(?=## )/m)) out.set(part.split('\n')[0]!, part);
  return out;
}

test('npm run docs -- --check: the committed docs are exactly what the generator writes', async (t) => {
  const r = await docs(['--check']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stderr, '');
});

test('docs/topics.md describes every topic of the map, the shared-subscription rule and every payload', async (t) => {
  const md = await readFile('docs/topics.md', 'utf8');
  t.true(md.includes(`\`${TOPIC_ROOT}\``), 'the root and version');
  t.true(md.includes(`\`${sharedFilter(TAIL_GROUP, topics.request.filter())}\``), 'the $share rule');
  for (const [key, spec] of Object.entries(topics)) {
    const heading = `## \`${key}\`: \`${TOPIC_ROOT}/${spec.pattern}\``;
    const section = sections(md).get(heading);
    if (!section) {
      t.fail(`no section ${heading}`);
      continue;
    }
    t.true(section.includes(`- retained: ${spec.retained ? 'yes' : 'no'}`), `${key} retained`);
    t.true(section.includes(`- published by: ${spec.publisher}`), `${key} publisher`);
    t.regex(section, /- QoS: [01]\n/, `${key} QoS`);
    t.regex(section, /- subscribed by: \S/, `${key} subscribers`);
    if (spec.payload === 'json') {
      for (const message of spec.message.split('|'))
        t.true(md.includes(`### JSON \`${message}\``), `${key}: fields of ${message}`);
    } else if (spec.payload === 'flatbuffers') {
      for (const m of /\{(.+)\}/.exec(spec.message)?.[1]?.split('|') ?? [])
        t.true(md.includes(`### table \`${m}\``), `${key}: table ${m}`);
    }
  }
  // Spot checks that the field tables come from the schemas and their doc comments.
  t.true(md.includes('| `cut.index` | integer (>= 0) | yes | Position k'), 'Plan.cut.index');
  t.true(md.includes('| `transfers[].seconds` | number | yes |'), 'DeviceTelemetry.transfers[].seconds');
  t.true(md.includes('| `model_id` | `string` | required | Lowercase hex sha256'), 'Request.model_id');
});

test('docs/configuration.md lists every setting of every service, in that service’s section', async (t) => {
  const md = await readFile('docs/configuration.md', 'utf8');
  const bySection = sections(md);
  const services: Array<[string, Settings]> = [
    ['## broker: `npx edgecut broker`', brokerSettings],
    ['## planner: `npx edgecut planner`', plannerSettings],
    ['## tail worker: `npx edgecut tail`', tailSettings],
    ['## edge device: `npx edgecut edge`', edgeSettings],
  ];
  const shared = bySection.get('## Shared settings') ?? '';
  for (const s of Object.values(commonSettings)) t.true(shared.includes(`| \`${s.env}\` |`), s.env);
  for (const [heading, settings] of services) {
    const section = bySection.get(heading);
    if (!section) {
      t.fail(`no section ${heading}`);
      continue;
    }
    for (const s of Object.values(settings)) {
      // Either a row of the service's own table, or named in its list of shared settings (with a row there).
      const row = `| \`${s.env}\` | \`--${s.flag}\` |`;
      const listed = section.includes(row) || (section.includes(`\`${s.env}\``) && shared.includes(row));
      t.true(listed, `${heading}: ${s.env}`);
    }
  }
});

test('the invalid-value example of docs/configuration.md is the line the CLI prints, with status 2', async (t) => {
  const md = await readFile('docs/configuration.md', 'utf8');
  const line = /^edgecut: BROKER_PORT=.*$/m.exec(md)?.[0];
  if (line === undefined) return t.fail('no example line `edgecut: BROKER_PORT=...`');
  t.true(md.includes('`BROKER_PORT=70000 npx edgecut broker`'));
  const r = await edgecut(['broker'], { BROKER_PORT: '70000' });
  t.is(r.code, 2);
  t.is(r.stderr.trim(), line);
});

test('--check names the stale file in one line; a plain run rewrites only that file, atomically', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'edgecut-docs-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const topicsMd = await readFile('docs/topics.md', 'utf8');
  await mkdir(join(dir, 'docs'));
  await writeFile(join(dir, 'docs/topics.md'), `${topicsMd}edited by hand\n`);
  await writeFile(join(dir, 'docs/configuration.md'), await readFile('docs/configuration.md'));

  const stale = await docs(['--check', '--dir', dir]);
  t.is(stale.code, 1);
  t.is(stale.stderr, 'docs/topics.md is stale: run npm run docs and commit the result');
  t.is(
    await readFile(join(dir, 'docs/topics.md'), 'utf8'),
    `${topicsMd}edited by hand\n`,
    '--check writes nothing',
  );

  const write = await docs(['--dir', dir]);
  t.is(write.code, 0, write.stderr);
  t.regex(write.stdout, /^wrote docs\/topics\.md$/m);
  t.regex(write.stdout, /^unchanged docs\/configuration\.md$/m);
  t.is(await readFile(join(dir, 'docs/topics.md'), 'utf8'), topicsMd);
  t.deepEqual(
    (await readdir(join(dir, 'docs'))).sort(),
    ['configuration.md', 'topics.md'],
    'no temporary files',
  );
  t.is((await docs(['--check', '--dir', dir])).code, 0);

  const missing = await docs(['--check', '--dir', join(dir, 'nowhere')]);
  t.is(missing.code, 1);
  t.is(missing.stderr, 'docs/topics.md is stale: run npm run docs and commit the result');
});

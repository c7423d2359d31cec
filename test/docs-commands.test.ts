/**
 * What docs/edge.md and docs/robots.md show a reader to run: only the CLI, npm scripts and tools of named Debian
 * packages that .ci/run installs, and a test that runs the doc's commands as written. And npm itself: the project's
 * configuration (.npmrc, package.json) gives no npm warning, and keeps onnxruntime-node's install script (which would
 * download CUDA libraries) from running.
 */
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import { edgecut } from './helpers/cli.ts';

const run = promisify(execFile);
const REPO = fileURLToPath(new URL('..', import.meta.url));

/** The command lines of a Markdown file's ```sh blocks. */
function shCommands(md: string): string[] {
  const blocks = [...md.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
  return blocks.flatMap((b) => b.split('\n')).filter((l) => l.trim() !== '' && !l.trim().startsWith('#'));
}

/** The programs a command line runs: the first word of each pipeline stage and `$(...)`, after VAR=value words. */
function programs(line: string): string[] {
  const stages = line
    .replace(/'[^']*'/g, "''")
    .split(/\||\$\(|;|&&/)
    .map((s) => s.replace(/\)/g, ' ').trim());
  return stages.map((s) => s.split(/\s+/).find((w) => !/^[A-Z_]+=/.test(w)) ?? '').filter(Boolean);
}

/** Tools of Debian packages the docs may use, with the packages a reader installs for them. */
const DEBIAN_TOOLS: Record<string, string[]> = {
  flatc: ['flatbuffers-compiler'],
  mosquitto_sub: ['mosquitto-clients'],
  mosquitto_pub: ['mosquitto-clients'],
  '/usr/bin/python3': ['python3-paho-mqtt', 'python3-flatbuffers'],
};
/** Shell built-ins and coreutils, on every Debian system. */
const BASE = new Set(['printf', 'date']);

for (const doc of ['docs/edge.md', 'docs/robots.md']) {
  test(`${doc}: every command is the CLI, an npm script or a named Debian tool that .ci/run installs`, async (t) => {
    const md = await readFile(join(REPO, doc), 'utf8');
    const ci = await readFile(join(REPO, '.ci/run'), 'utf8');
    const { scripts } = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    const commands = shCommands(md);
    t.true(commands.length > 0, `${doc} shows commands`);
    for (const line of commands) {
      for (const [i, program] of programs(line).entries()) {
        if (program === 'npx') {
          t.regex(line.split('|')[i] ?? line, /^\s*(\S+=\S+\s+)*npx edgecut \S/, `${doc}: ${line}`);
        } else if (program === 'npm') {
          const script = /npm run (\S+)/.exec(line)?.[1];
          t.true(script !== undefined && script in scripts, `${doc}: ${line}: an npm script`);
        } else if (program in DEBIAN_TOOLS) {
          for (const pkg of DEBIAN_TOOLS[program]!) {
            t.true(md.includes(`\`${pkg}\``), `${doc} names Debian's ${pkg} for ${program}`);
            t.true(ci.includes(`need+=(${pkg})`), `.ci/run installs ${pkg}`);
          }
        } else t.true(BASE.has(program), `${doc}: ${line}: "${program}" is not the CLI, npm or a named tool`);
      }
    }
    // A test takes the commands from the doc itself and runs them.
    const runners: string[] = [];
    for (const f of await readdir(join(REPO, 'test'))) {
      if (!f.endsWith('.test.ts')) continue;
      const src = await readFile(join(REPO, 'test', f), 'utf8');
      if (src.includes(`'${doc}'`) && /shCommands\(await readFile\(join\(REPO, '[^']+'\)/.test(src))
        runners.push(f);
    }
    t.true(runners.length > 0, `a test runs the commands of ${doc}`);
  });
}

/** npm's warnings in a command's stderr. */
const npmWarnings = (stderr: string) => stderr.split('\n').filter((l) => /^npm (warn|WARN|ERR)/.test(l));

test('npm: the project configuration gives no warning, and install scripts are off (no CUDA download)', async (t) => {
  const config = await run('npm', ['config', 'list'], { cwd: REPO });
  t.deepEqual(npmWarnings(config.stderr), [], config.stderr);
  // onnxruntime-node's postinstall downloads CUDA libraries on linux/x64 whatever the machine has; classic-level and
  // esbuild ship prebuilt binaries. `.npmrc` turns install scripts off for `npm ci` and `npm install` (npm 10 and 11).
  const ignore = await run('npm', ['config', 'get', 'ignore-scripts'], { cwd: REPO });
  t.is(ignore.stdout.trim(), 'true');
  const version = await run('npm', ['exec', '--', 'edgecut', '--version'], { cwd: REPO });
  t.deepEqual(npmWarnings(version.stderr), [], version.stderr);
  t.regex(version.stdout, /^\d+\.\d+\.\d+\n$/);
  const script = await run('npm', ['run', 'typecheck', '--', '--version'], { cwd: REPO });
  t.deepEqual(npmWarnings(script.stderr), [], script.stderr);
  t.regex(script.stdout, /Version \d/);
  // The CUDA libraries onnxruntime-node's script would fetch are not there; the CPU binaries it ships are.
  const binDir = join(REPO, 'node_modules/onnxruntime-node/bin/napi-v6/linux/x64');
  const bin: string[] = await readdir(binDir).catch(() => []);
  if (bin.length > 0) {
    t.false(bin.includes('libonnxruntime_providers_cuda.so'), bin.join(', '));
    t.true(bin.includes('onnxruntime_binding.node'), bin.join(', '));
  }
});

test('npm: every dependency supports the engines the project declares (no EBADENGINE at npm ci)', async (t) => {
  const pkg = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { engines: { node: string } };
  const lock = JSON.parse(await readFile(join(REPO, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { engines?: { node?: string }; optional?: boolean; dev?: boolean }>;
  };
  const declared = /^>=(\d+)$/.exec(pkg.engines.node)?.[1];
  t.truthy(declared, `engines.node is ">=N": ${pkg.engines.node}`);
  const tooNew: string[] = [];
  for (const [path, entry] of Object.entries(lock.packages)) {
    const min = /^>=\s*(\d+)(?:\.\d+)*$/.exec(entry.engines?.node ?? '')?.[1];
    if (min !== undefined && Number(min) > Number(declared))
      tooNew.push(`${path} (node ${entry.engines?.node})`);
  }
  t.deepEqual(tooNew, [], `dependencies needing a newer Node than engines.node ${pkg.engines.node}`);
  // And the CLI runs on it.
  const r = await edgecut(['--version']);
  t.is(r.code, 0, r.stderr);
});

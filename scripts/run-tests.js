#!/usr/bin/env node
// `npm test`: runs ava with its TAP reporter, passes the TAP through, and ends with the line `N passed, N failed`
// that CI reads (ava's own summary has another format). Exits non-zero when a test failed, none ran, or ava failed.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

const ava = spawn(
  process.execPath,
  ['node_modules/ava/entrypoints/cli.mjs', '--tap', ...process.argv.slice(2)],
  {
    stdio: ['ignore', 'pipe', 'inherit'],
  },
);
let passed = 0;
let failed = 0;
let skipped = 0;
createInterface({ input: ava.stdout }).on('line', (line) => {
  process.stdout.write(`${line}\n`);
  // TAP test points: "ok 3 - title", "not ok 4 - title", with "# SKIP" / "# TODO" directives.
  if (/^ok \d+/.test(line)) {
    if (/# (SKIP|TODO)/i.test(line)) skipped++;
    else passed++;
  } else if (/^not ok \d+/.test(line)) {
    if (/# TODO/i.test(line)) skipped++;
    else failed++;
  }
});
ava.on('close', (code) => {
  const ranNone = passed + failed === 0;
  if (ranNone) process.stdout.write('no test ran\n');
  process.stdout.write(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
  process.exit(failed > 0 || ranNone || code !== 0 ? 1 : 0);
});

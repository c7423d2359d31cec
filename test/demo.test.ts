/**
 * The README's demo command, run as a user runs it: separate processes, real broker, real sessions.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import test from 'ava';

const run = promisify(execFile);

test('npm run demo -- --frames 50 exits 0 and prints the equality check', async (t) => {
  const { stdout } = await run('npm', ['run', '--silent', 'demo', '--', '--frames', '50'], {
    timeout: 120_000,
  });
  const frames = stdout.split('\n').filter((l) => l.startsWith('frame '));
  t.is(frames.length, 50);
  t.true(frames.every((l) => /equal \(max diff/.test(l) && /tail by demo-tail-1/.test(l)));
  t.regex(stdout, /check: 50\/50 frames offloaded and equal to the whole model run locally, .* PASS/);
});

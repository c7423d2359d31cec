/**
 * The `edgecut` command as users run it: `npx edgecut` right after `npm ci`, one-line errors without stack
 * traces, and non-zero exit codes for user errors.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import test from 'ava';
import { edgecut } from './helpers/cli.ts';

const run = promisify(execFile);

test('npx edgecut --help lists the service commands', async (t) => {
  const { stdout } = await run('npx', ['--no-install', 'edgecut', '--help'], { timeout: 60_000 });
  for (const cmd of ['broker', 'planner', 'tail', 'edge', 'demo'])
    t.regex(stdout, new RegExp(`\\b${cmd}\\b`));
});

test('an invalid flag value is one line naming flag, value and what is allowed', async (t) => {
  const r = await edgecut(['tail', '--threads', 'many']);
  t.is(r.code, 2);
  t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  t.regex(r.stderr, /--threads="many" is not allowed: expected a whole number/);
});

test('an invalid environment value stops the service with one line', async (t) => {
  const r = await edgecut(['planner'], { MQTT_URL: 'not a url' });
  t.is(r.code, 2);
  t.regex(r.stderr, /^edgecut: MQTT_URL="not a url" is not allowed: expected a URL/);
  t.is(r.stderr.trim().split('\n').length, 1);
});

test('an unknown flag is refused', async (t) => {
  const r = await edgecut(['broker', '--prot', '1883']);
  t.not(r.code, 0);
  t.regex(r.stderr, /unknown option '--prot'/);
  t.notRegex(r.stderr, /at .*\.ts:\d+/);
});

test('a missing model file is one line naming the file', async (t) => {
  const r = await edgecut(['edge', '--model', '/nonexistent/model.onnx', '--mqtt-url', 'mqtt://127.0.0.1:1']);
  t.is(r.code, 2);
  t.regex(
    r.stderr,
    /^edgecut: model "\/nonexistent\/model.onnx" \(--model, MODEL\): no such file; expected an ONNX model file, demo, or a zoo model name/,
  );
  t.is(r.stderr.trim().split('\n').length, 1);
});

test('a file that is not ONNX is one line naming the file', async (t) => {
  const r = await edgecut(['edge', '--model', 'package.json', '--mqtt-url', 'mqtt://127.0.0.1:1']);
  t.is(r.code, 2);
  t.regex(r.stderr, /^edgecut: package.json: /);
  t.is(r.stderr.trim().split('\n').length, 1);
});

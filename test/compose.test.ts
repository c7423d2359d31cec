/**
 * compose.yaml is a valid Compose file (checked by docker-compose's own validator; no Docker engine needed).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import test from 'ava';
import { parse } from 'yaml';

const run = promisify(execFile);

test('docker-compose validates compose.yaml', async (t) => {
  const { stdout } = await run('docker-compose', ['-f', 'compose.yaml', 'config']);
  const doc = parse(stdout) as { services: Record<string, { command: string[] }> };
  t.deepEqual(Object.keys(doc.services).sort(), ['broker', 'edge-head', 'planner', 'server-tail']);
  t.deepEqual(doc.services.broker?.command, ['broker']);
  t.deepEqual(doc.services['server-tail']?.command, ['tail']);
});

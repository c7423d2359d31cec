/**
 * The edge's data-plane settings: defaults, valid values, and one clear line for each invalid one (in the settings
 * table, across settings in resolveEdge, and from the `edgecut edge` command at start).
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { ZOO } from '../model/zoo/index.ts';
import { ConfigError, parseConfig } from '../runtime/config.ts';
import { edgeSettings, resolveEdge } from '../services/edge-head/config.ts';
import { edgeModelPath } from '../services/edge-head/main.ts';
import { edgecut } from './helpers/cli.ts';
import { tempDir } from './helpers/edge.ts';

const parse = (env: Record<string, string>) => resolveEdge(parseConfig(edgeSettings, env));

test('defaults and valid values', (t) => {
  const d = parse({});
  t.deepEqual(d.source, { kind: 'synthetic' });
  t.true(d.loop);
  t.is(d.preprocess, undefined);
  t.is(d.deadlineFactor, 3);
  t.is(d.deadlineMinMs, 250);
  t.is(d.resultTimeoutMs, 5000);
  t.is(d.uplink, undefined);
  t.deepEqual(d.emulateDevice, { kind: 'none' });
  const v = parse({
    SOURCE: 'dir:/data/frames',
    LOOP: 'false',
    PREPROCESS: '{"channels":"BGR","scale":1}',
    DEADLINE_FACTOR: '2.5',
    DEADLINE_MIN_MS: '100',
    EMULATE_UPLINK: '10mbps',
    EMULATE_SETUP_MS: '5',
    EMULATE_DEVICE: 'rpi3b',
  });
  t.deepEqual(v.source, { kind: 'dir', path: '/data/frames' });
  t.false(v.loop);
  t.deepEqual(v.preprocess, { channels: 'BGR', scale: 1 });
  t.is(v.deadlineFactor, 2.5);
  t.deepEqual(v.uplink, { rateBps: 10e6, setupMs: 5 });
  t.deepEqual(v.emulateDevice, { kind: 'preset', name: 'rpi3b' });
  t.deepEqual(parse({ EMULATE_SETUP_MS: '20' }).uplink, { rateBps: 0, setupMs: 20 });
});

const invalid: Array<[Record<string, string>, RegExp]> = [
  [
    { SOURCE: 'camera' },
    /^SOURCE="camera" is not allowed: expected synthetic, image:<file> or dir:<folder> -- SOURCE: /,
  ],
  [{ LOOP: 'sometimes' }, /^LOOP="sometimes" is not allowed: expected true or false/],
  [{ PREPROCESS: '{channels:BGR}' }, /^PREPROCESS="\{channels:BGR\}" is not allowed: expected JSON, e\.g\./],
  [{ PREPROCESS: '{"chanels":"BGR"}' }, /^PREPROCESS=.* is not allowed: .*chanels/],
  [
    { PREPROCESS: '{"channels":"RGBA"}' },
    /^PREPROCESS=.* is not allowed: channels: expected channels RGB or BGR/,
  ],
  [{ PREPROCESS: '{"size":[224]}' }, /^PREPROCESS=.* is not allowed: size: expected size \[height, width\]/],
  [{ DEADLINE_FACTOR: '0.5' }, /^DEADLINE_FACTOR="0.5" is not allowed: expected a factor >= 1/],
  [{ DEADLINE_MIN_MS: 'soon' }, /^DEADLINE_MIN_MS="soon" is not allowed: expected a number of milliseconds/],
  [{ EMULATE_UPLINK: 'fast' }, /^EMULATE_UPLINK="fast" is not allowed: expected a bit rate like 10mbps/],
  [{ EMULATE_UPLINK: '10MB/s' }, /^EMULATE_UPLINK="10MB\/s" is not allowed: expected a bit rate/],
  [
    { EMULATE_SETUP_MS: '-5' },
    /^EMULATE_SETUP_MS="-5" is not allowed: expected a number of milliseconds >= 0/,
  ],
  [{ EMULATE_DEVICE: 'x0.5' }, /^EMULATE_DEVICE="x0.5" is not allowed: expected none, a device preset name/],
  [
    { EMULATE_DEVICE: 'nosuch' },
    /^EMULATE_DEVICE="nosuch" is not allowed: unknown device preset "nosuch"; known presets: rpi3b,/,
  ],
  [
    { DEVICE_PRESETS: '/nonexistent/presets.json' },
    /^DEVICE_PRESETS="\/nonexistent\/presets.json" is not allowed: .*cannot read presets/,
  ],
  [
    { DEADLINE_MIN_MS: '800', RESULT_TIMEOUT_MS: '500' },
    /^DEADLINE_MIN_MS=800 is not allowed: it exceeds RESULT_TIMEOUT_MS=500/,
  ],
];

test('each invalid value is one line naming the setting, the value and what is allowed', (t) => {
  for (const [env, pattern] of invalid) {
    const err = t.throws(() => parse(env), { instanceOf: ConfigError }, JSON.stringify(env));
    t.regex(err.message, pattern);
    t.false(err.message.includes('\n'), err.message);
  }
});

test('edgecut edge: a bad setting or source stops it at start with one line', async (t) => {
  const dir = await tempDir(t);
  const base = ['edge', '--models-dir', dir, '--mqtt-url', 'mqtt://127.0.0.1:1'];
  const flag = await edgecut([...base, '--emulate-uplink', 'fast']);
  t.is(flag.code, 2);
  t.regex(flag.stderr, /^edgecut: --emulate-uplink="fast" is not allowed: expected a bit rate/);
  t.is(flag.stderr.trim().split('\n').length, 1, flag.stderr);
  const empty = await edgecut([...base, '--source', `dir:${dir}/none`]);
  t.is(empty.code, 2);
  t.regex(empty.stderr, /^edgecut: .*none: cannot read the image directory \(ENOENT\)/);
  t.is(empty.stderr.trim().split('\n').length, 1, empty.stderr);
});

test('edgecut edge --model: a zoo name is built into the models directory once; a missing file is one line naming what is allowed', async (t) => {
  const dir = await tempDir(t);
  const path = await edgeModelPath('squeezenet1.1', dir);
  t.is(path, join(dir, 'squeezenet1.1.onnx'));
  t.deepEqual(await readFile(path), Buffer.from(ZOO['squeezenet1.1'].build()));
  const written = (await stat(path)).mtimeMs;
  t.is(await edgeModelPath('squeezenet1.1', dir), path);
  t.is((await stat(path)).mtimeMs, written, 'an identical file is not written again');
  t.is(await edgeModelPath(path, dir), path, 'a file is used where it is');
  const missing = await edgecut([
    'edge',
    '--models-dir',
    dir,
    '--mqtt-url',
    'mqtt://127.0.0.1:1',
    '--model',
    'squeezenet2',
  ]);
  t.is(missing.code, 2);
  t.regex(
    missing.stderr,
    /^edgecut: model "squeezenet2" \(--model, MODEL\): no such file; expected an ONNX model file, demo, or a zoo model name \(squeezenet1\.0, squeezenet1\.1, alexnet/,
  );
  t.is(missing.stderr.trim().split('\n').length, 1, missing.stderr);
});

test('edgecut edge --frames 3 with no broker reachable runs its 3 frames on the device and exits 0', async (t) => {
  const dir = await tempDir(t);
  const r = await edgecut(['edge', '--models-dir', dir, '--mqtt-url', 'mqtt://127.0.0.1:9', '--frames', '3']);
  t.is(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('frame '));
  t.is(lines.length, 3, r.stdout);
  t.regex(r.stderr, /broker unreachable: frames run on the device until it is/);
});

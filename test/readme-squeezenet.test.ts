/**
 * The README's walkthrough of the real SqueezeNet (../shared) on fish.png, run as the user runs it: its four
 * commands, word for word, as separate `edgecut` processes from the repository's root (the broker, a tail worker, the
 * planner, the edge), and the edge's frame lines name `tench` as the top-1 class, in the format the README shows.
 * Also the edge's own steps on the real model in process: the labels file, the class output and the top-1 of
 * fish.png against the Windows ML reference output. The only difference to a user's terminal: the broker takes a
 * free port (BROKER_PORT=0) and the others are told it through MQTT_URL, since another test may hold 1883.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test, { type ExecutionContext } from 'ava';
import { EDGECUT_BIN, type ServiceProcess, startService } from '../cli/processes.ts';
import { ModelHandle } from '../model/handle.ts';
import { classOutput, frameTop1, modelClasses, readLabelsFile } from '../model/labels.ts';
import { createSession, runWire } from '../model/runtime.ts';
import { imageInput, loadImage } from '../services/edge-head/images.ts';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SHARED = resolve(ROOT, '../shared');
const MODEL = join(SHARED, 'models/squeezenet1.0-fp16.onnx');
const FISH = join(SHARED, 'images/fish.png');
const LABELS = join(SHARED, 'images/imagenet-labels.csv');
const REFERENCE = join(SHARED, 'images/squeezenet1.0-fp16.fish.reference.csv');
const NEEDED = [MODEL, FISH, LABELS, REFERENCE];
const present = NEEDED.every((p) => existsSync(p));
const HEADING = '## A real model: SqueezeNet on a photo';

/** The words of one shell command line: single and double quotes, and a trailing `# comment` outside them. */
function shellWords(line: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  let quote: "'" | '"' | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === '\\' && quote === '"' && '"\\$`'.includes(line[i + 1] ?? '')) word += line[++i]!;
      else word += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      word ??= '';
    } else if (/\s/.test(c)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else if (c === '#' && word === undefined) break;
    else if (c === '\\') word = (word ?? '') + (line[++i] ?? '');
    else word = (word ?? '') + c;
  }
  if (quote) throw new Error(`unterminated ${quote} in: ${line}`);
  if (word !== undefined) words.push(word);
  return words;
}

/** The README section of the walkthrough: its commands (the `sh` block) and the output it shows (the plain block). */
async function walkthrough(): Promise<{ commands: string[][]; shown: string[] }> {
  const md = await readFile(join(ROOT, 'README.md'), 'utf8');
  const start = md.indexOf(`${HEADING}\n`);
  if (start < 0) throw new Error(`README.md has no section ${HEADING}`);
  const section = md.slice(start).split(/\n(?=## )/)[0]!;
  const blocks = [...section.matchAll(/```(\w*)\n([\s\S]*?)```/g)];
  const lines = (lang: string) =>
    blocks
      .filter((b) => b[1] === lang)
      .flatMap((b) => b[2]!.split('\n'))
      .filter((l) => l.trim() !== '');
  return { commands: lines('sh').map(shellWords), shown: lines('') };
}

/** A frame line without the waits it names in parentheses (`(waited N ms for the device, ...)`), which vary by run. */
const withoutWaits = (line: string) => line.trim().replace(/ \([^()]*\)(?= +[\d.]+ fps)/, '');

/** A regex of a shown frame line: numbers stand for any number, runs of spaces for any run, waits are left out. */
function linePattern(shown: string): RegExp {
  const re = withoutWaits(shown)
    .split(/(\d+(?:\.\d+)?| +)/)
    .map((p) => {
      if (p === '') return '';
      if (/^\d/.test(p)) return '\\d+(?:\\.\\d+)?';
      if (/^ +$/.test(p)) return ' +';
      return p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    })
    .join('');
  return new RegExp(`^${re}$`);
}

test('shellWords splits like sh: quotes kept together, comments dropped', (t) => {
  t.deepEqual(shellWords(`npx edgecut edge --preprocess '{"channels":"BGR"}' --x "a b" # note`), [
    'npx',
    'edgecut',
    'edge',
    '--preprocess',
    '{"channels":"BGR"}',
    '--x',
    'a b',
  ]);
  t.throws(() => shellWords(`a 'b`), { message: /unterminated/ });
});

test('the walkthrough shows four CLI commands in order: broker, tail, planner, edge with --labels on fish.png', async (t) => {
  const { commands, shown } = await walkthrough();
  t.deepEqual(
    commands.map((c) => c.slice(0, 3).join(' ')),
    ['npx edgecut broker', 'npx edgecut tail', 'npx edgecut planner', 'npx edgecut edge'],
  );
  const edge = commands[3]!;
  const flag = (name: string) => (edge.includes(name) ? edge[edge.indexOf(name) + 1] : undefined);
  t.is(flag('--source'), 'image:../shared/images/fish.png');
  t.is(flag('--labels'), '../shared/images/imagenet-labels.csv');
  t.is(flag('--model'), '../shared/models/squeezenet1.0-fp16.onnx');
  t.regex(flag('--frames') ?? '', /^\d+$/);
  t.is(flag('--models-dir'), undefined, 'the edge reads the model file itself');
  t.is(commands[1]![commands[1]!.indexOf('--models-dir') + 1], '../shared/models');
  t.true(shown.length > 0, 'the section shows the output');
  t.regex(shown[shown.length - 1]!, /^frame +\d+ .* top-1 tench, Tinca tinca 0\.\d{3}$/, 'it ends in tench');
});

const body = async (t: ExecutionContext) => {
  if (!present) {
    t.fail(`CI must provide ../shared next to the repo; missing one of ${NEEDED.join(', ')}`);
    return;
  }
  t.timeout(300_000);
  const { commands, shown } = await walkthrough();
  const args = (i: number) => commands[i]!.slice(2); // the words after `npx edgecut`
  const procs: ServiceProcess[] = [];
  t.teardown(async () => {
    for (const p of procs.reverse()) await p.stop(5000);
  });
  const logs: string[] = [];
  const keep = (name: string) => ({
    cwd: ROOT,
    onStderr: (l: string) => void logs.push(`[${name}] ${l}`),
    onStdout: (l: string) => void logs.push(`[${name}] ${l}`),
  });
  const broker = startService('broker', args(0), { ...keep('broker'), env: { BROKER_PORT: '0' } });
  procs.push(broker);
  const { port } = await broker.ready;
  const env = { MQTT_URL: `mqtt://127.0.0.1:${String(port)}` };
  const tail = startService('tail', args(1), { ...keep('tail'), env });
  const planner = startService('planner', args(2), { ...keep('planner'), env });
  procs.push(tail, planner);
  await Promise.all([tail.ready, planner.ready]);
  const { stdout } = await run(process.execPath, [EDGECUT_BIN, ...args(3)], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    timeout: 240_000,
  });
  const frames = stdout.split('\n').filter((l) => l.startsWith('frame '));
  const n = Number(commands[3]![commands[3]!.indexOf('--frames') + 1]);
  t.is(frames.length, n, stdout);
  t.log(frames.join('\n'));
  for (const line of frames)
    t.regex(line, /top-1 tench, Tinca tinca 0\.7\d\d$/, 'tench, with about the reference probability 0.7378');
  // The README's line: split at its cut, answered by tail-1 (a frame that fell back would say so instead).
  const pattern = linePattern(shown[shown.length - 1]!);
  t.true(
    frames.some((l) => pattern.test(withoutWaits(l))),
    `no frame line has the README's format ${pattern}:\n${frames.join('\n')}\nlogs:\n${logs.join('\n')}`,
  );
};

/** The edge's own steps, in process: the labels file, the class output, fish.png preprocessed, the whole model. */
const inProcess = async (t: ExecutionContext) => {
  if (!present) {
    t.fail(`CI must provide ../shared next to the repo; missing one of ${NEEDED.join(', ')}`);
    return;
  }
  const labels = await readLabelsFile(LABELS);
  t.is(labels.length, 1000);
  t.is(labels[0], 'tench, Tinca tinca');
  t.is(
    labels[999],
    'toilet tissue, toilet paper, bathroom tissue',
    'the stray quote of the last line is dropped',
  );
  const model = await ModelHandle.fromFile(MODEL);
  const classes = await modelClasses(model, LABELS);
  t.like(classes, { name: 'softmaxout_1', classes: 1000, source: `labels file ${LABELS}` });
  const session = await createSession(model.bytes, { threads: 1 });
  t.teardown(async () => {
    await session.release();
  });
  const input = imageInput(model, { channels: 'BGR' });
  const outputs = await runWire(session, [await loadImage(FISH, input)]);
  t.is(outputs[0]?.dtype, 'float16');
  const top1 = frameTop1(outputs, classes!);
  // The reference: Windows ML's output for fish.png (`Index,Value` lines); the edge reads float16, so within a step.
  const reference = (await readFile(REFERENCE, 'utf8'))
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => Number(l.split(',')[1]));
  const best = reference.indexOf(Math.max(...reference));
  t.is(best, 0);
  t.is(top1?.index, best);
  t.is(top1?.label, 'tench, Tinca tinca');
  t.true(
    Math.abs(top1!.probability - reference[best]!) <= 2 ** -11,
    `${top1?.probability} vs ${reference[best]}`,
  );
  // Without labels the same output gives the index and the probability alone.
  const bare = classOutput(model);
  t.deepEqual(bare, { output: 0, name: 'softmaxout_1', classes: 1000 });
  t.deepEqual(frameTop1(outputs, bare!), { index: 0, probability: top1!.probability });
};

if (present || process.env.CI === 'true') {
  test(
    'the real SqueezeNet: imagenet-labels.csv names its 1000 classes, fish.png is a tench as in the reference',
    inProcess,
  );
  test.serial(
    "README: the real SqueezeNet on fish.png, the README's commands as processes, ends in tench",
    body,
  );
} else test.skip('README: the real SqueezeNet on fish.png (skipped: ../shared missing)', () => undefined);

/**
 * `edgecut model inspect` and `edgecut model split`.
 */
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { resolveCutRef } from '../model/cut-ref.ts';
import type { ModelHandle } from '../model/handle.ts';
import { formatBytes, table } from './format.ts';
import { loadModelRef } from './model-source.ts';
import { startProgress, withProgress } from './progress.ts';

/** The machine-readable inspection of a model (`inspect --json`). */
export function inspection(m: ModelHandle) {
  return {
    name: m.name,
    modelId: m.id,
    fileBytes: m.bytes.length,
    params: m.totals.params,
    macs: m.totals.macs,
    flops: m.totals.flops,
    inputs: m.inputs,
    outputs: m.outputs,
    layers: m.analysis.nodes.map((n, i) => {
      const c = m.costs[i]!;
      return {
        index: n.index,
        name: n.name,
        op: n.op,
        outputShapes: c.outputShapes,
        macs: c.macs,
        flops: c.flops,
        params: c.params,
        paramBytes: c.paramBytes,
        inputBytes: c.inputBytes,
        outputBytes: c.outputBytes,
      };
    }),
    cuts: m.cuts.map((c) => ({
      index: c.index,
      after: c.after,
      op: c.op,
      bytes: c.bytes,
      tensors: c.tensors.map((t) => t.name),
      singleTensor: c.singleTensor,
      fusedAcross: c.fusedAcross,
    })),
  };
}

/** `edgecut model inspect <file|zoo-name> [--json]`. */
export async function inspectCommand(ref: string, opts: { json?: boolean }): Promise<void> {
  const m = await withProgress(
    'edgecut model inspect',
    async (p) => {
      p.step(`loading the model ${ref}`);
      return loadModelRef(ref);
    },
    { since: performance.timeOrigin },
  );
  const data = inspection(m);
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
    return;
  }
  const rows = [
    [
      '0',
      '(input)',
      'input',
      m.inputs.map((t) => `[${t.shape.join('x')}]`).join(' '),
      '',
      '',
      '',
      kib(m.cuts[0]!.bytes),
      m.cuts[0]!.singleTensor ? 'yes' : 'no',
    ],
    ...data.layers.map((l) => {
      const cut = m.cuts[l.index]!;
      return [
        String(l.index),
        l.name,
        l.op,
        l.outputShapes.map((s) => `[${s.join('x')}]`).join(' '),
        (l.flops / 1e6).toFixed(2),
        l.params.toLocaleString('en-US'),
        kib(l.outputBytes),
        kib(cut.bytes),
        cut.singleTensor ? 'yes' : `no (${cut.tensors.length})`,
      ];
    }),
  ];
  process.stdout.write(
    `${m.name}: ${m.analysis.nodes.length} layers, ${m.totals.params.toLocaleString('en-US')} parameters, ` +
      `${(m.totals.flops / 1e9).toFixed(3)} GFLOPs, ${formatBytes(m.bytes.length)}, id ${m.id.slice(0, 12)}\n\n`,
  );
  process.stdout.write(
    table(
      ['#', 'name', 'op', 'output shape', 'MFLOPs', 'params', 'out KiB', 'D_k KiB', 'single'],
      rows,
      [0, 4, 5, 6, 7],
    ),
  );
  process.stdout.write(`\nD_k: bytes crossing the cut after that layer; "single": one tensor crosses it.\n`);
}

const kib = (b: number) => (b / 1024).toFixed(1);

/** `edgecut model split <file|zoo-name> --after <node|index> --out <dir>`. */
export async function splitCommand(ref: string, opts: { after: string; out: string }): Promise<void> {
  const progress = startProgress('edgecut model split', { since: performance.timeOrigin });
  let m: ModelHandle;
  let cut: ModelHandle['cuts'][number];
  try {
    progress.step(`loading the model ${ref}`);
    m = await loadModelRef(ref);
    cut = resolveCutRef(m.cuts, m.analysis.nodes, opts.after, ref);
    await mkdir(opts.out, { recursive: true });
    progress.step('writing head.onnx');
    await m.writePart(cut.index, 'head', join(opts.out, 'head.onnx'));
    progress.step('writing tail.onnx');
    await m.writePart(cut.index, 'tail', join(opts.out, 'tail.onnx'));
    progress.stop();
  } finally {
    progress.stop('failed');
  }
  const [head, tail] = await Promise.all(['head', 'tail'].map((s) => stat(join(opts.out, `${s}.onnx`))));
  const meta = {
    model: m.name,
    modelId: m.id,
    index: cut.index,
    after: cut.after,
    op: cut.op,
    bytes: cut.bytes,
    tensors: cut.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, bytes: t.bytes })),
  };
  await writeFile(join(opts.out, 'cut.json'), `${JSON.stringify(meta, null, 2)}\n`);
  process.stdout.write(
    `cut ${cut.index} after ${cut.after ?? '(input)'}: ${cut.tensors.length} tensor(s), ${formatBytes(cut.bytes)}; ` +
      `wrote head.onnx (${formatBytes(head!.size)}), tail.onnx (${formatBytes(tail!.size)}), cut.json to ${opts.out}\n`,
  );
}

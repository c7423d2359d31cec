/**
 * Human-readable lines for the edge's per-frame output and the final check.
 */
import type { FrameReport } from './edge.ts';

/** Equality bound of the demo's check: offloaded and whole-model outputs differ by at most this. */
export const CHECK_TOLERANCE = 1e-5;

const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;

const ms = (v: number) => `${v.toFixed(1).padStart(6)} ms`;

/** One line per frame. */
export function formatFrame(r: FrameReport, fps: number): string {
  const where = r.cut.index === 0 ? 'input' : (r.cut.after ?? '?');
  // A frame the device finished itself (a fallback) is checked like any other: its outputs against the whole model.
  const check =
    r.maxAbsDiff === undefined
      ? ''
      : `  ${r.maxAbsDiff <= CHECK_TOLERANCE ? (r.tailBy === 'local' ? 'equal (run locally)' : 'equal') : 'DIFFERENT'} (max diff ${r.maxAbsDiff.toExponential(1)})`;
  const by = r.fallback ? `local fallback: ${r.fallback}` : r.tailBy;
  // Waits outside head, transfer and tail are named, so the total adds up.
  const waits = [
    (r.waitMs ?? 0) >= 1 ? `waited ${r.waitMs!.toFixed(1)} ms for the device` : '',
    (r.queueMs ?? 0) >= 1 ? `${r.queueMs!.toFixed(1)} ms in the worker's queue` : '',
  ].filter(Boolean);
  return (
    `frame ${String(r.index + 1).padStart(4)}  cut ${String(r.cut.index).padStart(2)} after ${where.padEnd(14)}` +
    `  head ${ms(r.headMs)}  transfer ${ms(r.transferMs)}  tail ${ms(r.tailMs)}  total ${ms(r.totalMs)}` +
    `${waits.length ? ` (${waits.join(', ')})` : ''}  ${fps.toFixed(1).padStart(6)} fps  tail by ${by}${check}` +
    (r.top1 ? `  ${formatTop1(r.top1)}` : '')
  );
}

/**
 * The top-1 part of a frame's line, last on it: `top-1 <label> <probability>`, or `top-1 class <index> <probability>`
 * for a model without labels; the probability with 3 decimals.
 */
export function formatTop1(top1: NonNullable<FrameReport['top1']>): string {
  const what = top1.label ?? `class ${top1.index}`;
  return `top-1 ${what} ${top1.probability.toFixed(3)}`;
}

/** Running tally of a stream of frames. */
export class Tally {
  frames = 0;
  offloadedEqual = 0;
  /** Frames the device finished itself (fallbacks, or kept there by the plan) whose outputs equal the whole model. */
  localEqual = 0;
  fallbacks = 0;
  /** Frames the plan kept entirely on the device (cut N, or no plan yet). */
  onDevice = 0;
  maxDiff = 0;
  private first = 0;

  /** Adds a frame; returns the running fps. */
  add(r: FrameReport, now: number): number {
    if (this.frames === 0) this.first = now - r.totalMs;
    this.frames++;
    if (r.fallback) this.fallbacks++;
    else if (r.tailBy === 'local') this.onDevice++;
    if (r.maxAbsDiff !== undefined) {
      this.maxDiff = Math.max(this.maxDiff, r.maxAbsDiff);
      // Offloaded: a worker ran the tail (not a fallback, and not a frame the plan kept on the device).
      if (r.maxAbsDiff <= CHECK_TOLERANCE) {
        if (!r.fallback && r.tailBy !== 'local') this.offloadedEqual++;
        else this.localEqual++;
      }
    }
    const span = now - this.first;
    return span > 0 ? (this.frames * 1000) / span : 0;
  }

  /**
   * True when every frame equals the whole model run locally, whether a worker ran its tail or the device did (the
   * plan kept it there: cut N, or no plan yet; or a fallback after a failed worker, a passed deadline or a lost
   * broker, each counted in the summary), and at least one frame was offloaded (else the split was never checked).
   * Only a frame that differs, or a run that offloaded nothing, fails.
   */
  get passed(): boolean {
    return this.offloadedEqual > 0 && this.offloadedEqual + this.localEqual === this.frames;
  }

  /** Why the check failed, in words; undefined when it passed. */
  get failure(): string | undefined {
    if (this.passed) return undefined;
    if (this.frames === 0) return 'no frames';
    const different = this.frames - this.offloadedEqual - this.localEqual;
    if (different > 0)
      return `${plural(different, 'frame')} ${different === 1 ? 'differs' : 'differ'} from the whole model`;
    return 'no frame was offloaded, so the split was never checked';
  }

  /** The closing line: every frame taken was answered (by a worker or locally). */
  done(): string {
    return (
      `done: ${this.frames} frames answered (${this.frames - this.fallbacks - this.onDevice} by tail workers, ` +
      `${this.onDevice} on the device by plan, ${this.fallbacks} local fallbacks)`
    );
  }

  /** The check's summary line. */
  summary(): string {
    return (
      `check: ${this.offloadedEqual}/${this.frames} frames offloaded and equal to the whole model run locally` +
      `, ${this.localEqual} run on the device and equal to it (${this.fallbacks} local fallbacks)` +
      ` (max abs diff ${this.maxDiff.toExponential(2)}, bound ${CHECK_TOLERANCE})` +
      ` ${this.passed ? 'PASS' : `FAIL: ${this.failure}`}`
    );
  }
}

/** One frame as a JSON line (`REPORT=json`): every figure of the text line, without the tensors. */
export function frameJson(r: FrameReport, fps: number, at: number): string {
  return JSON.stringify({
    frame: r.index + 1,
    at,
    cut: r.cut.index,
    after: r.cut.after,
    headMs: r.headMs,
    transferMs: r.transferMs,
    tailMs: r.tailMs,
    totalMs: r.totalMs,
    waitMs: r.waitMs ?? 0,
    queueMs: r.queueMs ?? 0,
    requestBytes: r.requestBytes,
    tailBy: r.tailBy,
    fallback: r.fallback ?? null,
    fps,
    ...(r.hostMs ? { hostMs: r.hostMs } : {}),
    ...(r.maxAbsDiff !== undefined ? { maxAbsDiff: r.maxAbsDiff } : {}),
    ...(r.top1 ? { top1: r.top1 } : {}),
  });
}

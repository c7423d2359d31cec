/**
 * What the edge reports about each finished frame (one report per frame, exactly once): the per-frame line, the
 * final tally and the metrics are all made from it.
 */
import type { CutInfo } from '../../model/handle.ts';
import type { Top1 } from '../../model/labels.ts';
import type { WireTensor } from '../../schemas/codec.ts';
import type { FallbackKind } from './pending.ts';

/** What happened to one frame. */
export interface FrameReport {
  index: number;
  requestId: string;
  cut: CutInfo;
  /** Where the tail ran: a worker id, or `local` (edge only, or fallback). */
  tailBy: string;
  /** Why the tail ran locally, when it was meant to be offloaded. */
  fallback?: string;
  /** The same reason as a metrics label. */
  fallbackKind?: FallbackKind;
  headMs: number;
  /** Capture to the head's start: the device was busy with other frames (or a local tail). */
  waitMs?: number;
  /** Tail compute time as measured by whoever ran it. */
  tailMs: number;
  /** Time the request waited in the worker's queue before its tail started (offloaded frames). */
  queueMs?: number;
  /** Round trip minus the worker's span (queue + tail): network and broker, both ways (same-clock differences only). */
  transferMs: number;
  totalMs: number;
  /** Bytes sent for this frame (the request message). */
  requestBytes: number;
  /** How long the device was prepared to wait for a worker (offloaded frames). */
  deadlineMs?: number;
  outputs: WireTensor[];
  /** With `verify`: largest difference to the whole model run locally. */
  maxAbsDiff?: number;
  /** Under device emulation: the real times on this host of the head and of a local tail (ms). */
  hostMs?: { head: number; tail?: number };
  /** The top-1 class of the output, when it is a class vector (model/labels.ts; the label when the model has labels). */
  top1?: Top1;
}

/**
 * Part 2 of `npm run bench -- pipeline`: what the codec and the broker cost per frame for a 1 MiB float32 tensor on
 * loopback, with no shaping and no inference.
 *
 * Two connections of this process (runtime/mqtt.ts, as every service connects): the requester encodes a Request
 * holding the tensor and publishes it; the responder, subscribed through a shared subscription like a tail worker,
 * decodes it (zero-copy: the tensor is a view over the received payload), touches
 * its first and last element, and replies with a small message (16 bytes), which the requester is subscribed to. Round trip = from before encoding to the reply's arrival. Each round is run twice:
 * with the codec (as above) and raw (the same number of bytes, pre-built, published and received with no encode or
 * decode), so the codec's share shows both as encode + decode and as codec RTT - raw RTT.
 */

import { median } from '../planning/stats.ts';
import { systemClock } from '../runtime/clock.ts';
import { silentLogger } from '../runtime/log.ts';
import { Connection } from '../runtime/mqtt.ts';
import {
  decodeMessage,
  emptyTimes,
  encodeRequest,
  type InferenceRequest,
  tensorElements,
  tensorFromTyped,
} from '../schemas/codec.ts';
import { sharedFilter, topics } from '../schemas/topics.ts';

/** Medians of one broker and QoS. */
export interface OverheadRow {
  broker: string;
  qos: 0 | 1;
  /** Bytes of the encoded request. */
  bytes: number;
  encodeMs: number;
  decodeMs: number;
  /** Round trip with the codec (encode, publish, deliver, decode, reply). */
  rttMs: number;
  /** Round trip of the same bytes without the codec. */
  rawRttMs: number;
  /** Round trip of a 16-byte message (the broker's fixed cost). */
  smallRttMs: number;
}

const DEVICE = 'bench-rtt';
const TOPIC_ROOT = 'edgecut-bench/rtt';
const TENSOR_FLOATS = (1024 * 1024) / 4;

function connection(url: string, id: string): Connection {
  return new Connection({
    url,
    clientId: id,
    role: 'bench',
    statusTopic: topics.workerStatus.build({ worker: id }),
    logger: silentLogger,
  });
}

/** Measures `rounds` round trips (after `warmup`) of each kind on the broker at `url`. */
export async function measureOverhead(
  broker: string,
  url: string,
  qos: 0 | 1,
  rounds: number,
  warmup: number,
): Promise<OverheadRow> {
  const requester = connection(url, `bench-rtt-req-${qos}`);
  const responder = connection(url, `bench-rtt-rsp-${qos}`);
  // Topics of their own: the benchmark's tail worker must not see these requests.
  const requestTopic = `${TOPIC_ROOT}/request`;
  const resultTopic = `${TOPIC_ROOT}/result`;
  const reply = Buffer.alloc(16, 1);
  let decodeMs = Number.NaN;
  let sink = 0;
  let mode: 'codec' | 'raw' = 'codec';
  let answered: (() => void) | undefined;
  try {
    await responder.start();
    await requester.start();
    await responder.subscribe(
      sharedFilter('bench-rtt', requestTopic),
      async (_topic, payload) => {
        if (mode === 'codec') {
          const t0 = systemClock.now();
          const msg = decodeMessage(payload);
          if (msg.kind !== 'request') throw new Error(`expected a request, got a ${msg.kind}`);
          const values = tensorElements(msg.value.tensors[0]!) as Float32Array;
          sink += values[0]! + values[values.length - 1]!;
          decodeMs = systemClock.now() - t0;
        }
        await responder.publish(resultTopic, reply, { qos });
      },
      qos,
    );
    await requester.subscribe(resultTopic, () => answered?.(), qos);
    const values = Float32Array.from({ length: TENSOR_FLOATS }, (_, i) => (i % 251) / 251);
    const request: InferenceRequest = {
      requestId: 'bench-rtt-0001',
      deviceId: DEVICE,
      modelId: '0'.repeat(64),
      cutId: 1,
      tensors: [tensorFromTyped('x', 'float32', [1, 256, 32, 32], values)],
      times: emptyTimes(),
      deadlineMs: 0,
    };
    const bytes = encodeRequest(request).byteLength;
    const raw = Buffer.alloc(bytes, 7);
    const small = Buffer.alloc(16, 3);
    const roundTrip = async (payload: () => Uint8Array) => {
      const got = new Promise<void>((resolve) => {
        answered = resolve;
      });
      const t0 = systemClock.now();
      const body = payload();
      const t1 = systemClock.now();
      // Like the edge (services/edge-head/faults.ts), wait for the answer, not for the PUBACK.
      const sent = requester.publish(requestTopic, body, { qos });
      await got;
      const rttMs = systemClock.now() - t0;
      await sent;
      return { encodeMs: t1 - t0, rttMs };
    };
    const samples = { encode: [] as number[], decode: [] as number[], rtt: [] as number[] };
    const rawRtt: number[] = [];
    const smallRtt: number[] = [];
    for (let i = 0; i < warmup + rounds; i++) {
      // Interleaved, so a change of load on the host hits every kind alike.
      mode = 'codec';
      const c = await roundTrip(() => encodeRequest(request));
      mode = 'raw';
      const r = await roundTrip(() => raw);
      const s = await roundTrip(() => small);
      if (i < warmup) continue;
      samples.encode.push(c.encodeMs);
      samples.decode.push(decodeMs);
      samples.rtt.push(c.rttMs);
      rawRtt.push(r.rttMs);
      smallRtt.push(s.rttMs);
    }
    if (sink < 0) process.stdout.write('');
    return {
      broker,
      qos,
      bytes,
      encodeMs: median(samples.encode),
      decodeMs: median(samples.decode),
      rttMs: median(samples.rtt),
      rawRttMs: median(rawRtt),
      smallRttMs: median(smallRtt),
    };
  } finally {
    await requester.stop();
    await responder.stop();
  }
}

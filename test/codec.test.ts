import test from 'ava';
import { mulberry32 } from '../model/random.ts';
import {
  DTYPE_BYTES,
  type DType,
  decodeMessage,
  type ErrorCode,
  emptyTimes,
  encodeError,
  encodeRequest,
  encodeResult,
  type InferenceError,
  type InferenceRequest,
  type InferenceResult,
  type StageTimes,
  tensorElements,
  tensorFromTyped,
  WIRE_LIMITS,
  WireFormatError,
  type WireMessage,
  type WireTensor,
} from '../schemas/codec.ts';

const MODEL = 'ab'.repeat(32);
const ALL_CODES: ErrorCode[] = [
  'malformed',
  'unknown-model',
  'bad-tensor',
  'too-large',
  'internal',
  'overloaded',
  'expired',
];

function times(base: number): StageTimes {
  return {
    captured: base,
    headStart: base + 1.25,
    headEnd: base + 2.5,
    sent: base + 3,
    tailReceived: base + 1000.125,
    tailStart: base + 1001,
    tailEnd: base + 1002,
    replied: base + 1003,
  };
}

/** One tensor of every dtype (incl. quantized, scalar and zero-sized shapes). */
function allTensors(): WireTensor[] {
  return [
    tensorFromTyped('f32', 'float32', [2, 3], new Float32Array([1, -2.5, 3, 4, 5e10, -0])),
    tensorFromTyped('f16', 'float16', [4], new Uint16Array([0x3c00, 0xc000, 0x7c00, 0x0001])),
    tensorFromTyped('q8', 'int8', [1, 5], new Int8Array([-128, -1, 0, 1, 127]), {
      scale: 0.0078125,
      zeroPoint: -3,
    }),
    tensorFromTyped('qu8', 'uint8', [3], new Uint8Array([0, 128, 255]), { scale: 0.5, zeroPoint: 128 }),
    tensorFromTyped('i32', 'int32', [2], new Int32Array([-(2 ** 31), 2 ** 31 - 1])),
    tensorFromTyped('i64', 'int64', [3], new BigInt64Array([-(2n ** 63n), 0n, 2n ** 63n - 1n])),
    tensorFromTyped('scalar', 'float32', [], new Float32Array([42])),
    tensorFromTyped('empty', 'float32', [0, 3], new Float32Array(0)),
  ];
}

function request(tensors = allTensors()): InferenceRequest {
  return {
    requestId: 'req-1',
    deviceId: 'cam-01',
    modelId: MODEL,
    cutId: 7,
    tensors,
    times: {
      ...emptyTimes(),
      captured: 1.7e12,
      headStart: 1.7e12 + 1,
      headEnd: 1.7e12 + 9.5,
      sent: 1.7e12 + 10,
    },
    deadlineMs: 1.7e12 + 500,
  };
}

/** Makes tensors comparable with deepEqual (data as plain arrays, default quantization for int8/uint8). */
function plain(ts: readonly WireTensor[]) {
  return ts.map((t) => ({
    ...t,
    data: Array.from(t.data),
    ...(t.dtype === 'int8' || t.dtype === 'uint8'
      ? { scale: t.scale ?? 1, zeroPoint: t.zeroPoint ?? 0 }
      : {}),
  }));
}

type Values = { request: InferenceRequest; result: InferenceResult; error: InferenceError };

function decoded<K extends WireMessage['kind']>(buf: Uint8Array, kind: K): Values[K] {
  const m = decodeMessage(buf);
  if (m.kind !== kind) throw new Error(`expected ${kind}, got ${m.kind}`);
  return m.value as Values[K];
}

/** Minimal FlatBuffers navigation for patching encoded bytes in tests (layout per schemas/edgecut.fbs). */
function nav(buf: Uint8Array) {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const field = (table: number, id: number) => {
    const vt = table - dv.getInt32(table, true);
    const vo = 4 + 2 * id;
    const fo = vo < dv.getUint16(vt, true) ? dv.getUint16(vt + vo, true) : 0;
    if (fo === 0) throw new Error(`field ${id} absent`);
    return table + fo;
  };
  const deref = (at: number) => at + dv.getUint32(at, true);
  const root = deref(0);
  const body = deref(field(root, 1)); // Message.body
  const tensor = (i: number) => deref(deref(field(body, 4)) + 4 + 4 * i); // Request.tensors[i]
  return { dv, field, deref, root, body, tensor };
}

function throwsWire(t: import('ava').ExecutionContext, fn: () => unknown, code: ErrorCode, message: RegExp) {
  const err = t.throws(fn, { instanceOf: WireFormatError, message });
  t.is(err?.code, code, err?.message);
}

test('Request round-trips with tensors of every dtype', (t) => {
  const req = request();
  const buf = encodeRequest(req);
  const got = decoded(buf, 'request');
  t.deepEqual({ ...got, tensors: plain(got.tensors) }, { ...req, tensors: plain(req.tensors) });
  for (const w of got.tensors) {
    t.is(w.data.buffer, buf.buffer, `${w.name} data is a view over the input`);
    t.is((w.data.byteOffset - buf.byteOffset) % 16, 0, `${w.name} data is 16-byte aligned in the message`);
  }
  t.deepEqual(Array.from(tensorElements(got.tensors[5]!) as BigInt64Array), [
    -(2n ** 63n),
    0n,
    2n ** 63n - 1n,
  ]);
  t.true(tensorElements(got.tensors[1]!) instanceof Uint16Array, 'float16 is returned as raw bits');
  const q = got.tensors[2]!;
  t.deepEqual(
    [q.scale, q.zeroPoint, Array.from(tensorElements(q) as Int8Array)],
    [0.0078125, -3, [-128, -1, 0, 1, 127]],
  );
});

test('Result round-trips', (t) => {
  const res: InferenceResult = {
    requestId: 'req-1',
    deviceId: 'cam-01',
    modelId: MODEL,
    cutId: 0xffffffff,
    workerId: 'worker-ä-1',
    tensors: [tensorFromTyped('logits', 'float32', [1, 4], new Float32Array([0.1, 0.2, 0.3, 0.4]))],
    times: times(1.7e12),
  };
  const got = decoded(encodeResult(res), 'result');
  t.deepEqual({ ...got, tensors: plain(got.tensors) }, { ...res, tensors: plain(res.tensors) });
  const noTensors = { ...res, tensors: [], times: emptyTimes() };
  t.deepEqual(decoded(encodeResult(noTensors), 'result'), noTensors);
});

test('Error round-trips for every code', (t) => {
  for (const code of ALL_CODES) {
    const e = {
      requestId: `r-${code}`,
      deviceId: 'cam-01',
      workerId: 'w1',
      code,
      message: `failed: ${code} ✓`,
    };
    t.deepEqual(decoded(encodeError(e), 'error'), e);
  }
  const unparsed = { requestId: '', deviceId: '', workerId: 'w1', code: 'malformed' as const, message: '' };
  t.deepEqual(decoded(encodeError(unparsed), 'error'), unparsed);
  const long = decoded(
    encodeError({ ...unparsed, message: 'é'.repeat(20000), deviceId: 'd'.repeat(999) }),
    'error',
  );
  t.is(long.message, 'é'.repeat(WIRE_LIMITS.maxMessageBytes / 2), 'long messages are clipped, not rejected');
  t.is(long.deviceId.length, WIRE_LIMITS.maxIdBytes);
});

test('a 1 MiB float32 tensor decodes with zero copies when aligned and exactly one when not', (t) => {
  const n = 256 * 1024;
  const values = Float32Array.from({ length: n }, (_, i) => i * 0.5);
  const buf = encodeRequest(request([tensorFromTyped('big', 'float32', [1, n], values)]));
  t.true(buf.buffer.byteLength < n * 4 + 4096, 'builder capacity was sized up front (never doubled)');

  // Aligned: decode straight from the encoder's output, and from a copy at offset 16 of another buffer.
  for (const [input, label] of [
    [buf, 'encoder output'],
    [new Uint8Array(new ArrayBuffer(buf.byteLength + 32), 16, buf.byteLength), 'offset 16'],
  ] as const) {
    if (input !== buf) input.set(buf);
    const w = decoded(input, 'request').tensors[0]!;
    const el = tensorElements(w) as Float32Array;
    t.is(el.buffer, input.buffer, `${label}: same ArrayBuffer (no copy)`);
    t.true(
      el.byteOffset >= input.byteOffset &&
        el.byteOffset + el.byteLength <= input.byteOffset + input.byteLength,
    );
    t.is(el.length, n);
    t.deepEqual(el, values);
  }

  // Unaligned: the message at an odd offset; decode still copies nothing, tensorElements copies once.
  const odd = new Uint8Array(new ArrayBuffer(buf.byteLength + 8), 3, buf.byteLength);
  odd.set(buf);
  const w = decoded(odd, 'request').tensors[0]!;
  t.is(w.data.buffer, odd.buffer, 'decode does not copy');
  t.not(w.data.byteOffset % 4, 0);
  const el = tensorElements(w) as Float32Array;
  t.not(el.buffer, odd.buffer, 'unaligned data is copied');
  t.is(el.buffer.byteLength, n * 4, 'into exactly one buffer of exactly the data size');
  t.is(el.byteOffset, 0);
  t.deepEqual(el, values);
});

test('tensorFromTyped views the same memory and checks dtype, shape and size', (t) => {
  const backing = new Float32Array(8);
  const sub = backing.subarray(2, 6);
  const w = tensorFromTyped('x', 'float32', [2, 2], sub);
  t.is(w.data.buffer, backing.buffer);
  t.is(w.data.byteOffset, 8);
  t.is(w.data.byteLength, 16);
  t.is(tensorElements(w).buffer, backing.buffer);
  t.deepEqual(DTYPE_BYTES, { float32: 4, float16: 2, int8: 1, uint8: 1, int32: 4, int64: 8 });
  const raw = tensorFromTyped('raw', 'int32', [2], new Uint8Array(8));
  t.true(tensorElements(raw) instanceof Int32Array);
  throwsWire(
    t,
    () => tensorFromTyped('x', 'float32', [3], sub),
    'bad-tensor',
    /"x".*needs 12 bytes but data has 16/,
  );
  throwsWire(t, () => tensorFromTyped('x', 'int32', [4], sub), 'bad-tensor', /Float32Array but dtype int32/);
  throwsWire(t, () => tensorFromTyped('x', 'float32', [-1, -4], sub), 'bad-tensor', /dim 0 is -1/);
  const q = { scale: 0.5, zeroPoint: 1 };
  throwsWire(t, () => tensorFromTyped('x', 'float32', [4], sub, q), 'bad-tensor', /only allowed for int8/);
  const bytes = new Uint8Array(4);
  throwsWire(
    t,
    () => tensorFromTyped('q', 'uint8', [4], bytes, { scale: 0, zeroPoint: 0 }),
    'bad-tensor',
    /scale 0/,
  );
  const i8 = new Int8Array(4);
  throwsWire(
    t,
    () => tensorFromTyped('q', 'int8', [4], i8, { scale: 1, zeroPoint: 200 }),
    'bad-tensor',
    /\[-128, 127\]/,
  );
});

test('the encoder rejects what the decoder would reject', (t) => {
  throwsWire(t, () => encodeRequest({ ...request(), modelId: 'model.onnx' }), 'malformed', /modelId.*sha256/);
  throwsWire(t, () => encodeRequest({ ...request(), requestId: '' }), 'malformed', /requestId: is empty/);
  throwsWire(t, () => encodeRequest({ ...request(), cutId: -1 }), 'malformed', /cutId: -1 is not a uint32/);
  throwsWire(
    t,
    () => encodeRequest({ ...request(), deadlineMs: Number.NaN }),
    'malformed',
    /deadlineMs: NaN/,
  );
  const badTimes = { ...emptyTimes(), sent: Number.POSITIVE_INFINITY };
  throwsWire(t, () => encodeRequest({ ...request(), times: badTimes }), 'malformed', /times\.sent: Infinity/);
  const bad = { name: 'x', dtype: 'float32' as const, shape: [2], data: new Uint8Array(7) };
  throwsWire(
    t,
    () => encodeRequest(request([bad])),
    'bad-tensor',
    /tensors\[0\] "x".*needs 8 bytes but data has 7/,
  );
  const many = Array.from({ length: WIRE_LIMITS.maxTensors + 1 }, () => allTensors()[6]!);
  throwsWire(t, () => encodeRequest(request(many)), 'too-large', /1025 tensors/);
  const e = { requestId: '', deviceId: '', workerId: 'w', message: '' };
  throwsWire(
    t,
    () => encodeError({ ...e, code: 'nope' as ErrorCode }),
    'malformed',
    /unknown error code "nope"/,
  );
});

test('random bytes throw WireFormatError', (t) => {
  const rand = mulberry32(1);
  const bytes = Uint8Array.from({ length: 64 }, () => Math.floor(rand() * 256));
  throwsWire(t, () => decodeMessage(bytes), 'malformed', /file_identifier: is ".*"; expected "EDGC"/);
  bytes.set([0x45, 0x44, 0x47, 0x43], 4); // "EDGC"
  const err = t.throws(() => decodeMessage(bytes), { instanceOf: WireFormatError });
  t.is(err?.code, 'malformed', err?.message);
  throwsWire(
    t,
    () => decodeMessage(new Uint8Array(0)),
    'malformed',
    /is 0 bytes; a message is at least 8 bytes/,
  );
});

test('every truncation of a valid message throws WireFormatError', (t) => {
  const small = request([tensorFromTyped('x', 'int32', [2], new Int32Array([1, 2]))]);
  for (const buf of [
    encodeRequest(small),
    encodeError({ ...small, workerId: 'w', code: 'internal', message: 'm' }),
  ]) {
    for (let n = 0; n < buf.byteLength; n++) {
      const cut = buf.slice(0, n);
      const err = t.throws(() => decodeMessage(cut), { instanceOf: WireFormatError }, `length ${n}`);
      t.is(err?.code, 'malformed', `length ${n}: ${err?.message}`);
      t.regex(
        err?.message ?? '',
        /outside the \d+-byte buffer|at least 8 bytes|not a multiple of 4/,
        `length ${n}`,
      );
    }
  }
});

test('a wrong file identifier throws malformed', (t) => {
  const buf = encodeError({ requestId: 'r', deviceId: 'd', workerId: 'w', code: 'internal', message: 'x' });
  buf.set([0x4e, 0x4f, 0x50, 0x45], 4); // "NOPE"
  const err = t.throws(() => decodeMessage(buf), {
    instanceOf: WireFormatError,
    message: /"NOPE"; expected "EDGC"/,
  });
  t.is(err?.code, 'malformed');
  t.is(err?.field, 'file_identifier');
});

test('an unknown dtype throws bad-tensor naming the tensor', (t) => {
  const buf = encodeRequest(request([tensorFromTyped('idx', 'int32', [2], new Int32Array([1, 2]))]));
  const n = nav(buf);
  n.dv.setUint8(n.field(n.tensor(0), 1), 42); // Tensor.dtype
  const err = t.throws(() => decodeMessage(buf), {
    instanceOf: WireFormatError,
    message: /unknown dtype 42/,
  });
  t.is(err?.code, 'bad-tensor');
  t.is(err?.field, 'Request.tensors[0].dtype');
  t.regex(err?.message ?? '', /allowed: 0 \(float32\).*5 \(int64\)/);
});

test('a shape/data size mismatch throws bad-tensor naming the tensor and both sizes', (t) => {
  const buf = encodeRequest(request([tensorFromTyped('feat', 'float32', [2, 3], new Float32Array(6))]));
  const n = nav(buf);
  const dims = n.deref(n.field(n.tensor(0), 2)) + 4; // Tensor.shape
  n.dv.setBigInt64(dims + 8, 4n, true);
  const err = t.throws(() => decodeMessage(buf), { instanceOf: WireFormatError });
  t.is(err?.code, 'bad-tensor');
  t.regex(err?.message ?? '', /"feat": shape \[2, 4\] of float32 needs 32 bytes but data has 24 bytes/);
  n.dv.setBigInt64(dims, -1n, true);
  throwsWire(t, () => decodeMessage(buf), 'bad-tensor', /"feat": dim 0 is -1/);
});

test('other structural problems are named', (t) => {
  const buf = encodeRequest(request());
  throwsWire(
    t,
    () => decodeMessage(buf, { maxBytes: 100 }),
    'too-large',
    /is \d+ bytes; at most 100 allowed/,
  );
  const n = nav(buf);
  const copy = buf.slice();
  new DataView(copy.buffer).setUint8(n.field(n.root, 0), 9); // Message.body_type
  throwsWire(t, () => decodeMessage(copy), 'malformed', /unknown body type 9; allowed: 1 \(Request\)/);
  const far = buf.slice();
  new DataView(far.buffer).setUint32(n.field(n.body, 0), 1 << 20, true); // Request.request_id -> past the end
  throwsWire(t, () => decodeMessage(far), 'malformed', /Request\.request_id: .*outside the \d+-byte buffer/);
});

test('2000 random byte strings never throw anything but WireFormatError', (t) => {
  const rand = mulberry32(0xedc);
  const valid = encodeRequest(request());
  const counts: Record<string, number> = {};
  for (let i = 0; i < 2000; i++) {
    let bytes: Uint8Array;
    if (i % 2 === 0) {
      // Pure noise, half of it with a valid identifier so the verifier gets past the header.
      const length = i % 4 === 0 ? 4 * Math.floor(rand() * 80) : Math.floor(rand() * 300);
      bytes = Uint8Array.from({ length }, () => Math.floor(rand() * 256));
      if (i % 4 === 0 && bytes.length >= 8) bytes.set([0x45, 0x44, 0x47, 0x43], 4);
    } else {
      // A valid message with a few random bytes changed.
      bytes = valid.slice();
      for (let k = 1 + Math.floor(rand() * 4); k > 0; k--) {
        bytes[Math.floor(rand() * bytes.length)] = Math.floor(rand() * 256);
      }
    }
    try {
      const m = decodeMessage(bytes);
      counts.ok = (counts.ok ?? 0) + 1;
      if (m.kind === 'request' || m.kind === 'result') {
        for (const w of m.value.tensors) {
          t.is(w.data.buffer, bytes.buffer);
          t.is(w.data.byteLength, w.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[w.dtype as DType]);
        }
      }
    } catch (err) {
      if (!(err instanceof WireFormatError)) {
        t.fail(`case ${i}: ${String(err)} for ${Buffer.from(bytes).toString('hex')}`);
        return;
      }
      counts[err.code] = (counts[err.code] ?? 0) + 1;
    }
  }
  t.log(counts);
  t.true((counts.malformed ?? 0) > 1000);
});

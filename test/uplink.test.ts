/**
 * The device's uplink meter (services/edge-head/uplink.ts) with an injected clock and PUBACKs resolved by hand: each
 * QoS 1 PUBLISH is timed from when it could start on the link, max(written, previous PUBACK), to its PUBACK; an
 * unacknowledged one becomes a lower bound; the probe burst grows until a probe is slow enough to measure.
 */
import test from 'ava';
import type { Clock } from '../runtime/clock.ts';
import { LoopStalls, MIN_STALL_MS, STALL_TICK_MS } from '../services/edge-head/loop-stalls.ts';
import {
  CENSOR_AFTER_MS,
  PROBE,
  probeBurst,
  publishPacketBytes,
  UplinkMeter,
} from '../services/edge-head/uplink.ts';

const EPOCH = 1_700_000_000_000;
/** The fake clock's time `ms` after its start. */
const at = (ms: number): number => EPOCH + ms;

class FakeClock implements Clock {
  t = 1_700_000_000_000;
  now = (): number => this.t;
  /** Moves to `ms` after the start. */
  at(ms: number): void {
    this.t = 1_700_000_000_000 + ms;
  }
}

/** A PUBACK to settle by hand. */
function puback(): { promise: Promise<void>; ack: () => void; fail: (e: Error) => void } {
  let ack!: () => void;
  let fail!: (e: Error) => void;
  const promise = new Promise<void>((resolve, reject) => {
    ack = resolve;
    fail = reject;
  });
  return { promise, ack, fail };
}

/** Lets the meter's promise handlers run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

function setup() {
  const clock = new FakeClock();
  const stalls = new LoopStalls(clock);
  const meter = new UplinkMeter(clock, stalls);
  /** Writes a PUBLISH of `bytes` at `ms`; returns its PUBACK. */
  const write = (ms: number, bytes: number) => {
    clock.at(ms);
    const p = puback();
    meter.track(bytes, p.promise);
    return p;
  };
  /** Acknowledges at `ms`. */
  const ackAt = async (ms: number, p: ReturnType<typeof puback>) => {
    clock.at(ms);
    p.ack();
    await settle();
  };
  return { clock, meter, write, ackAt, stalls };
}

test('a single publish gives its bytes and the time from write to PUBACK', async (t) => {
  const { meter, write, ackAt } = setup();
  const p = write(0, 5000);
  t.is(meter.pending, 1);
  await ackAt(40, p);
  t.is(meter.pending, 0);
  t.deepEqual(meter.take(), { samples: [{ bytes: 5000, seconds: 0.04 }], censored: [] });
});

test('take() hands the samples over once', async (t) => {
  const { meter, write, ackAt } = setup();
  await ackAt(10, write(0, 1000));
  await ackAt(30, write(20, 2000));
  t.deepEqual(
    meter.take().samples.map((s) => s.bytes),
    [1000, 2000],
  );
  t.deepEqual(meter.take(), { samples: [], censored: [] });
});

test('publishes written back to back: the second starts on the link at the first PUBACK', async (t) => {
  const { meter, write, ackAt } = setup();
  const a = write(0, 10_000);
  const b = write(1, 20_000);
  await ackAt(100, a);
  await ackAt(300, b);
  // A third written after the link went idle starts when written.
  const c = write(500, 4000);
  await ackAt(540, c);
  const { samples } = meter.take();
  t.deepEqual(samples, [
    { bytes: 10_000, seconds: 0.1 },
    { bytes: 20_000, seconds: 0.2 },
    { bytes: 4000, seconds: 0.04 },
  ]);
});

test('a rejected publish leaves no sample and is no longer outstanding', async (t) => {
  const { meter, clock, write, ackAt } = setup();
  const a = write(0, 8000);
  a.fail(new Error('Connection closed'));
  await settle();
  t.is(meter.pending, 0);
  clock.at(1000);
  t.deepEqual(meter.take(), { samples: [], censored: [] });
  // Nor does it move the start of the next one.
  await ackAt(1050, write(1000, 8000));
  t.deepEqual(meter.take().samples, [{ bytes: 8000, seconds: 0.05 }]);
});

test('an outstanding publish older than CENSOR_AFTER_MS is a lower bound from max(written, last PUBACK)', async (t) => {
  const { meter, clock, write, ackAt } = setup();
  const a = write(0, 8000);
  const b = write(10, 30_000);
  // Young: ordinary, not reported.
  clock.at(CENSOR_AFTER_MS - 1);
  t.deepEqual(meter.take(), { samples: [], censored: [] });
  // Old: only the oldest (the one on the link now) is reported, from when it was written.
  clock.at(300);
  t.deepEqual(meter.take(), { samples: [], censored: [{ bytes: 8000, seconds: 0.3 }] });
  // A acknowledged at 400: B is on the link since then (not since it was written at 10).
  await ackAt(400, a);
  clock.at(400 + CENSOR_AFTER_MS - 1);
  t.deepEqual(meter.take(), { samples: [{ bytes: 8000, seconds: 0.4 }], censored: [] });
  clock.at(1000);
  t.deepEqual(meter.take(), { samples: [], censored: [{ bytes: 30_000, seconds: 0.6 }] });
  // Reported again while it waits, growing.
  clock.at(2000);
  t.deepEqual(meter.take().censored, [{ bytes: 30_000, seconds: 1.6 }]);
  await ackAt(2100, b);
  t.deepEqual(meter.take(), { samples: [{ bytes: 30_000, seconds: 1.7 }], censored: [] });
  // Written after the last PUBACK: measured from when it was written.
  write(3000, 1000);
  clock.at(3500);
  t.deepEqual(meter.take().censored, [{ bytes: 1000, seconds: 0.5 }]);
});

test('a transfer during which the device loop stood still is a lower bound, not a sample; a short stall spoils none', async (t) => {
  const { meter, write, ackAt, stalls } = setup();
  // A session loaded synchronously from 100 to 3100: the PUBACK of a probe written at 50 is read at 3120. The
  // 70 ms the loop ran are too short to be a bound worth telling.
  const a = write(50, 16_384);
  stalls.record(at(100), at(3100));
  await ackAt(3120, a);
  t.deepEqual(meter.take(), { samples: [], censored: [] });
  t.is(meter.spoiled, 1);
  // A request written at 4000, a stall from 4400 to 5400, the PUBACK read at 5410: at least 410 ms.
  const c = write(4000, 50_000);
  stalls.record(at(4400), at(5400));
  await ackAt(5410, c);
  t.deepEqual(meter.take(), { samples: [], censored: [{ bytes: 50_000, seconds: 0.41 }] });
  t.is(meter.spoiled, 2);
  // A 40 ms stall within a 1 s upload (4%) leaves the sample as it is.
  const b = write(6000, 125_000);
  stalls.record(at(6500), at(6540));
  await ackAt(7000, b);
  t.deepEqual(meter.take().samples, [{ bytes: 125_000, seconds: 1 }]);
  t.is(meter.spoiled, 2);
});

test('a lower bound and the busy time count only the time the device loop was running', (t) => {
  const { meter, clock, write, stalls } = setup();
  write(0, 8000);
  stalls.record(at(100), at(2100));
  clock.at(2500);
  t.is(meter.busyMs(), 500);
  t.deepEqual(meter.take().censored, [{ bytes: 8000, seconds: 0.5 }]);
});

test('the stall monitor marks the time since its last tick when it is late by MIN_STALL_MS or more', (t) => {
  const clock = new FakeClock();
  const stalls = new LoopStalls(clock);
  clock.at(0);
  stalls.start();
  t.teardown(() => stalls.stop());
  clock.at(STALL_TICK_MS);
  stalls.check();
  clock.at(2 * STALL_TICK_MS + MIN_STALL_MS - 1);
  stalls.check();
  t.is(stalls.stalledWithin(at(0), at(10_000)), 0);
  const last = 2 * STALL_TICK_MS + MIN_STALL_MS - 1;
  clock.at(last + 2000);
  stalls.check();
  t.is(stalls.stalledWithin(at(0), at(100_000)), 2000 - STALL_TICK_MS);
  t.is(stalls.stalledWithin(at(last + 1000), at(last + 1500)), 500);
  // Stopped, it infers nothing.
  stalls.stop();
  clock.at(last + 10_000);
  stalls.check();
  t.is(stalls.stalledWithin(at(0), at(100_000)), 2000 - STALL_TICK_MS);
});

test('reset() forgets outstanding publishes; their late PUBACKs are no samples', async (t) => {
  const { meter, clock, write, ackAt } = setup();
  const a = write(0, 8000);
  write(5, 8000);
  clock.at(1000);
  t.is(meter.take().censored.length, 1);
  meter.reset();
  t.is(meter.pending, 0);
  t.deepEqual(meter.take(), { samples: [], censored: [] });
  // The connection comes back after 10 s and the client resends A, then B written meanwhile: A's PUBACK spans the
  // outage, not the link; B was on the link from A's PUBACK.
  const b = write(10_500, 4000);
  await ackAt(11_000, a);
  t.deepEqual(meter.take().samples, [], 'a PUBLISH from before the reset is no sample');
  await ackAt(11_040, b);
  t.deepEqual(meter.take().samples, [{ bytes: 4000, seconds: 0.04 }]);
  // A new publish written later is measured as usual.
  await ackAt(12_060, write(12_010, 4000));
  t.deepEqual(meter.take().samples, [{ bytes: 4000, seconds: 0.05 }]);
});

/** A send over a link of `bps` on the fake clock (resolves at the PUBACK). */
function fakeSend(clock: FakeClock, bps: number, sent: number[] = [], after?: (bytes: number) => void) {
  return async (bytes: number) => {
    sent.push(bytes);
    clock.t += (bytes * 8000) / bps;
    await Promise.resolve();
    after?.(bytes);
  };
}

test('probe burst at 1 Mbit/s: 4, 8, 16 KiB (at least three probes, then the first of at least 40 ms)', async (t) => {
  const clock = new FakeClock();
  const sent: number[] = [];
  const sizes = await probeBurst(fakeSend(clock, 1e6, sent), clock.now);
  // 4 KiB takes 33 ms, 8 KiB 66 ms, 16 KiB 131 ms: the third probe ends it.
  t.deepEqual(sizes, [4096, 8192, 16_384]);
  t.deepEqual(sent, sizes);
  t.is(PROBE.targetMs, 40);
});

test('probe burst at 100 Mbit/s stops at 512 KiB, at 10 Mbit/s at 64 KiB; at 1 Gbit/s it goes up to 1 MiB', async (t) => {
  const clock = new FakeClock();
  const kib = (sizes: number[]) => sizes.map((k) => k * 1024);
  // 512 KiB at 100 Mbit/s: 42 ms.
  t.deepEqual(await probeBurst(fakeSend(clock, 100e6), clock.now), kib([4, 8, 16, 32, 64, 128, 256, 512]));
  // 64 KiB at 10 Mbit/s: 52 ms.
  t.deepEqual(await probeBurst(fakeSend(clock, 10e6), clock.now), kib([4, 8, 16, 32, 64]));
  // 1 MiB at 1 Gbit/s: 8 ms, the largest probe.
  t.deepEqual(
    await probeBurst(fakeSend(clock, 1e9), clock.now),
    kib([4, 8, 16, 32, 64, 128, 256, 512, 1024]),
  );
});

test('a probe that stalled (far slower than twice the one before) is sent again, at most twice a burst', async (t) => {
  const clock = new FakeClock();
  const link = fakeSend(clock, 100e6);
  let n = 0;
  // The 128 KiB probe stalls for 250 ms once (a busy broker): sent again, and the burst goes on to 512 KiB.
  const stallOnce = async (bytes: number) => {
    if (bytes === 131_072 && n++ === 0) clock.t += 250;
    await link(bytes);
  };
  const kib = (sizes: number[]) => sizes.map((k) => k * 1024);
  t.deepEqual(await probeBurst(stallOnce, clock.now), kib([4, 8, 16, 32, 64, 128, 128, 256, 512]));
  // Stalling every time: sent three times, then the burst ends.
  const always = async (bytes: number) => {
    if (bytes === 131_072) clock.t += 250;
    await link(bytes);
  };
  t.deepEqual(await probeBurst(always, clock.now), kib([4, 8, 16, 32, 64, 128, 128, 128]));
  // A small probe that stalls past the target on a fast link (16 KiB, where 8 KiB took 1 ms) does not end the burst.
  let once = 0;
  const small = async (bytes: number) => {
    if (bytes === 16_384 && once++ === 0) clock.t += 100;
    await link(bytes);
  };
  t.deepEqual(await probeBurst(small, clock.now), kib([4, 8, 16, 16, 32, 64, 128, 256, 512]));
});

test('probe burst on a very slow link still sends three probes, the last four times the first', async (t) => {
  const clock = new FakeClock();
  // 100 kbit/s: the first probe already takes 328 ms.
  const sizes = await probeBurst(fakeSend(clock, 100e3), clock.now);
  t.deepEqual(sizes, [4096, 8192, 16384]);
});

test('an aborted signal stops the probe burst', async (t) => {
  const clock = new FakeClock();
  const before = new AbortController();
  before.abort();
  const sent: number[] = [];
  t.deepEqual(await probeBurst(fakeSend(clock, 100e6, sent), clock.now, before.signal), []);
  t.deepEqual(sent, []);
  // Aborted while the second probe is on the link: no third.
  const during = new AbortController();
  const sizes = await probeBurst(
    fakeSend(clock, 100e6, [], (bytes) => {
      if (bytes === 8192) during.abort();
    }),
    clock.now,
    during.signal,
  );
  t.deepEqual(sizes, [4096, 8192]);
});

test('publishPacketBytes adds the topic and the MQTT header bytes', (t) => {
  // Fixed header (up to 5), topic length (2), packet id (2), and the topic as UTF-8.
  t.is(publishPacketBytes('a/b', 100), 100 + 3 + 9);
  t.is(publishPacketBytes('edgecut/v1/devices/r1/probe', 4096), 4096 + 27 + 9);
  t.is(publishPacketBytes('ü/x', 0), 4 + 9);
});

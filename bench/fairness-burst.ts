/**
 * Robot A of `npm run bench -- fairness`, a process of its own: connects as `robot-a`, computes the request it
 * sends (the demo CNN's input, cut 0: no onnxruntime session in this process), and, on a line `go` on stdin, publishes `BURST` requests at once
 * (QoS 1), then waits for an answer to each (result or error reply, or `FAIRNESS_WAIT_MS`) and prints one JSON line:
 * `{"sent": N, "answers": {"result": n, "overloaded": n, ...}, "unanswered": n}`.
 * Environment: MQTT_URL, MODEL_FILE, BURST.
 */
import { createInterface } from 'node:readline';
import mqtt from 'mqtt';
import { ModelHandle } from '../model/handle.ts';
import { mulberry32 } from '../model/random.ts';
import { decodeMessage, emptyTimes, encodeRequest } from '../schemas/codec.ts';
import { topics } from '../schemas/topics.ts';
import { randomInputs } from '../services/edge-head/frames.ts';

const DEVICE = 'robot-a';
const CUT = 0;

async function main(): Promise<void> {
  const url = process.env.MQTT_URL;
  const file = process.env.MODEL_FILE;
  const burst = Number(process.env.BURST);
  if (!url || !file || !(burst >= 1))
    throw new Error('fairness-burst: MQTT_URL, MODEL_FILE and BURST are needed');
  const waitMs = Number(process.env.FAIRNESS_WAIT_MS ?? 30_000);
  const model = await ModelHandle.fromFile(file);
  const crossing = randomInputs(model.inputs, mulberry32(3));
  const client = await mqtt.connectAsync(url, { clientId: DEVICE, reconnectPeriod: 0 });
  const answers = new Map<string, number>();
  const pending = new Set<string>();
  let allAnswered: () => void = () => undefined;
  client.on('message', (_topic, payload) => {
    const m = decodeMessage(payload);
    const id = m.kind === 'result' || m.kind === 'error' ? m.value.requestId : '';
    if (!pending.delete(id)) return;
    const code = m.kind === 'error' ? m.value.code : m.kind;
    answers.set(code, (answers.get(code) ?? 0) + 1);
    if (pending.size === 0) allAnswered();
  });
  await client.subscribeAsync(topics.result.build({ device: DEVICE }), { qos: 1 });
  process.stdout.write('{"connected":true}\n');
  for await (const line of createInterface({ input: process.stdin })) if (line.trim() === 'go') break;
  const done = new Promise<void>((resolve) => {
    allAnswered = resolve;
    setTimeout(resolve, waitMs).unref();
  });
  const sends: Array<Promise<unknown>> = [];
  for (let j = 0; j < burst; j++) {
    const requestId = `a${j}`;
    pending.add(requestId);
    const payload = encodeRequest({
      requestId,
      deviceId: DEVICE,
      modelId: model.id,
      cutId: CUT,
      tensors: crossing,
      times: { ...emptyTimes(), sent: Date.now() },
      deadlineMs: 0,
    });
    sends.push(
      client.publishAsync(topics.request.build({ device: DEVICE }), Buffer.from(payload), { qos: 1 }),
    );
  }
  // Bounded like the answers: a PUBACK that never comes (a publisher the broker stopped reading and never resumed)
  // shows as unanswered requests in the report instead of a robot that hangs silently.
  await Promise.race([Promise.all(sends), done]);
  await done;
  process.stdout.write(
    `${JSON.stringify({ sent: burst, answers: Object.fromEntries(answers), unanswered: pending.size })}\n`,
  );
  await client.endAsync();
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});

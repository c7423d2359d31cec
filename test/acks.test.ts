/**
 * Acknowledge after the work (runtime/mqtt-patches.ts): a QoS 1 message whose handler has not finished is not
 * acknowledged, so when the subscriber dies the broker delivers it again to the session [MQTT-4.3.2];
 * with ordinary acknowledgement it is gone.
 */
import test, { type ExecutionContext } from 'ava';
import { silentLogger } from '../runtime/log.ts';
import { Connection } from '../runtime/mqtt.ts';
import { connectClient, startBroker } from './helpers/broker.ts';
import { waitFor } from './helpers/wait.ts';

async function scenario(t: ExecutionContext, ackAfterHandler: boolean): Promise<string[]> {
  const broker = await startBroker(t);
  const connect = async (got: string[], hang: boolean) => {
    const conn = new Connection({
      url: broker.url,
      clientId: 'worker-1',
      role: 'worker',
      statusTopic: 'edgecut/v1/workers/worker-1/status',
      logger: silentLogger,
      persistentSession: true,
      reconnectPeriodMs: 0,
    });
    await conn.start();
    await conn.subscribe(
      'x/req',
      async (_t, payload) => {
        got.push(payload.toString());
        if (hang) await new Promise(() => undefined);
      },
      1,
      { ackAfterHandler },
    );
    return conn;
  };
  const first: string[] = [];
  const a = await connect(first, true);
  const pub = await connectClient(t, broker.url);
  await pub.publishAsync('x/req', 'm1', { qos: 1 });
  await waitFor(() => first.length > 0, 'm1 to reach the first subscriber');
  // Whatever PUBACK it sent for m1 has been handled once the broker acknowledges a later publish of its own.
  await a.publish('x/fence', 'after m1', { qos: 1 });
  // Die without a goodbye.
  a.mqtt.stream.destroy();
  a.mqtt.end(true);
  const second: string[] = [];
  const b = await connect(second, false);
  t.teardown(() => b.stop());
  // A redelivered m1 goes out as the session resumes, before a message published now.
  await pub.publishAsync('x/req', 'm2', { qos: 1 });
  await waitFor(() => second.includes('m2'), 'm2 to reach the resumed session');
  return second.filter((m) => m !== 'm2');
}

test('an unfinished message is redelivered to the session after the subscriber dies', async (t) => {
  t.deepEqual(await scenario(t, true), ['m1']);
});

test('without ack-after-handler the same message is lost', async (t) => {
  t.deepEqual(await scenario(t, false), []);
});

/**
 * The embedded broker component: TCP and WebSocket listeners on free ports, messages across both, clean stop.
 */
import test from 'ava';
import mqtt from 'mqtt';
import { collect, connectClient, startBroker } from './helpers/broker.ts';
import { edgecut } from './helpers/cli.ts';

test('a message published over TCP reaches a WebSocket subscriber and back', async (t) => {
  const broker = await startBroker(t, true);
  t.true(broker.port > 0);
  t.true((broker.wsPort ?? 0) > 0);
  const tcp = await connectClient(t, broker.url);
  const ws = await connectClient(t, `ws://127.0.0.1:${broker.wsPort}`);
  const atWs = await collect(ws, 'edgecut/v1/test/+');
  const atTcp = await collect(tcp, 'edgecut/v1/back');
  await tcp.publishAsync('edgecut/v1/test/a', 'hello', { qos: 1 });
  t.is((await atWs.next()).payload.toString(), 'hello');
  await ws.publishAsync('edgecut/v1/back', 'again', { qos: 1 });
  t.is((await atTcp.next()).payload.toString(), 'again');
});

test('stop closes the listeners and is idempotent', async (t) => {
  const broker = await startBroker(t, true);
  const url = broker.url;
  await broker.stop();
  await broker.stop();
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 2000 });
  const err = await new Promise<Error>((resolve) => client.once('error', resolve));
  client.end(true);
  t.regex(err.message, /ECONNREFUSED/);
});

test('edgecut broker on a port in use: one line naming the setting and the port, exit 2', async (t) => {
  const busy = await startBroker(t);
  const r = await edgecut([
    'broker',
    '--host',
    '127.0.0.1',
    '--port',
    String(busy.port),
    '--metrics-port',
    '0',
  ]);
  t.is(r.code, 2);
  // The last line (the lines before it are the service's log).
  t.is(
    r.stderr.trim().split('\n').pop(),
    `edgecut: BROKER_PORT=${busy.port} (--port): cannot listen on 127.0.0.1:${busy.port}: the port is in use (another broker?); choose another, or 0 for any free port`,
  );
});

/**
 * The dashboard page: reads /config.json, connects to the broker over MQTT over WebSocket (read-only: it subscribes
 * and never publishes), and redraws at most a few times a second from what arrives.
 */

import { DashboardState } from '/assets/state.js';
import mqtt from '/assets/vendor/mqtt.esm.js';
import { View } from '/assets/view.js';

/** Redraws at most this often, ms (frame reports arrive up to 20 per second per device). */
const REDRAW_MS = 200;

async function main() {
  const view = new View(document);
  const res = await fetch('/config.json', { cache: 'no-store' });
  if (!res.ok) throw new Error(`/config.json: HTTP ${res.status}`);
  const config = await res.json();
  const state = new DashboardState(config.root, config.topics);
  const client = mqtt.connect(config.mqttUrl, {
    protocolVersion: 4,
    clean: true,
    reconnectPeriod: 2000,
    connectTimeout: 10_000,
    clientId: `dashboard-${Math.random().toString(16).slice(2, 10)}`,
    ...(config.username !== undefined ? { username: config.username } : {}),
    ...(config.password !== undefined ? { password: config.password } : {}),
  });
  window.edgecutDashboard = { state, client };
  client.on('connect', () => {
    view.setConnection('online', `connected to ${config.mqttUrl}`);
    client.subscribe(state.topics.filters, { qos: 0 }, (err, granted) => {
      const refused = (granted ?? []).filter((g) => g.qos === 128).map((g) => g.topic);
      if (err || refused.length > 0)
        view.setConnection('error', `subscription refused: ${err?.message ?? refused.join(', ')}`);
    });
  });
  client.on('reconnect', () => view.setConnection('connecting', `reconnecting to ${config.mqttUrl}`));
  client.on('close', () => {
    if (view.connection.dataset.state === 'online') view.setConnection('offline', 'disconnected');
  });
  client.on('error', (err) => view.setConnection('error', `${config.mqttUrl}: ${err.message}`));
  let drawn = -1;
  const redraw = () => {
    if (state.version !== drawn) {
      drawn = state.version;
      view.render(state);
    }
  };
  client.on('message', (topic, payload) => {
    state.apply(topic, payload);
    // A new plan is drawn at once (plans are rare); everything else at the next tick.
    if (state.topics.match(topic)?.name === 'plan') redraw();
  });
  setInterval(redraw, REDRAW_MS);
  redraw();
}

main().catch((err) => {
  const el = document.getElementById('connection');
  el.dataset.state = 'error';
  el.textContent = `dashboard failed: ${err.message}`;
});

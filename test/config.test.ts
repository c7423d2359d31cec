/**
 * Configuration: flags over environment over defaults, one clear line for an invalid value.
 */
import test from 'ava';
import { ConfigError, parseConfig } from '../runtime/config.ts';
import { edgeSettings } from '../services/edge-head/config.ts';
import { tailSettings } from '../services/server-tail/config.ts';

test('defaults, environment and flags, in that order of precedence', (t) => {
  const d = parseConfig(tailSettings, {});
  t.is(d.mqttUrl, 'mqtt://127.0.0.1:1883');
  t.is(d.threads, 1);
  t.is(d.concurrency, 'auto');
  const e = parseConfig(tailSettings, { MQTT_URL: 'mqtt://broker:1883', ORT_THREADS: '2' });
  t.is(e.mqttUrl, 'mqtt://broker:1883');
  t.is(e.threads, 2);
  const f = parseConfig(tailSettings, { ORT_THREADS: '2' }, { threads: '3' });
  t.is(f.threads, 3);
});

test('an invalid value names the variable, the value and what is allowed', (t) => {
  const url = t.throws(() => parseConfig(tailSettings, { MQTT_URL: 'localhost' }), {
    instanceOf: ConfigError,
  });
  t.regex(url.message, /^MQTT_URL="localhost" is not allowed: expected a URL like mqtt:\/\/host:1883/);
  t.false(url.message.includes('\n'));
  const num = t.throws(() => parseConfig(tailSettings, {}, { threads: 'many' }), { instanceOf: ConfigError });
  t.regex(num.message, /^--threads="many" is not allowed: expected a whole number/);
  const bool = t.throws(() => parseConfig(edgeSettings, { VERIFY: 'perhaps' }), { instanceOf: ConfigError });
  t.regex(bool.message, /VERIFY="perhaps".*expected true or false/);
  const id = t.throws(() => parseConfig(edgeSettings, { DEVICE_ID: 'a/b' }), { instanceOf: ConfigError });
  t.regex(id.message, /DEVICE_ID="a\/b"/);
});

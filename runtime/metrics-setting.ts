/**
 * The `METRICS_PORT` setting every service's table includes. It lives apart from runtime/metrics.ts so the settings
 * tables, which the CLI loads for every command, do not pull in prom-client (~130 ms to load).
 */
import { z } from 'zod';
import { setting } from './config.ts';

/** Where a service serves `/metrics` and `/healthz`: `off`, or a TCP port (0 = any free port). */
export type MetricsPort = 'off' | number;

const PORT_OR_OFF = 'expected off, 0 (any free port) or a port from 1 to 65535';

/** Parses `off` or a whole port number 0..65535, nothing else (no blanks, signs or fractions). */
export const metricsPortSchema: z.ZodType<MetricsPort> = z
  .string()
  .refine((v) => v === 'off' || (/^\d{1,5}$/.test(v) && Number(v) <= 65535), PORT_OR_OFF)
  .transform((v): MetricsPort => (v === 'off' ? 'off' : Number(v)));

/** `METRICS_PORT` / `--metrics-port`, shared by every service's settings table. */
export const metricsPortSetting = setting({
  env: 'METRICS_PORT',
  flag: 'metrics-port',
  schema: metricsPortSchema,
  default: 'off',
  doc: 'HTTP port of GET /metrics (Prometheus) and GET /healthz, bound on 0.0.0.0: off, 0 = any free port, or a port',
});

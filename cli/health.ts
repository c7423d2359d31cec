/**
 * `edgecut health [--url URL]`: asks a service's `/healthz` (runtime/metrics.ts) and exits 0 when it answers 200;
 * otherwise prints one line (the status and reason, or why there was no answer) and exits 1. It is what the
 * compose healthchecks run (`node bin/edgecut.js health`), so it needs nothing but Node.
 */
import { get as httpGet } from 'node:http';
import { errorMessage, UserError } from '../runtime/errors.ts';
import { metricsPortSchema } from '../runtime/metrics-setting.ts';

/** How long to wait for an answer. */
export const HEALTH_TIMEOUT_MS = 3000;

/** The URL to ask: `--url` (http only), else `http://127.0.0.1:$METRICS_PORT/healthz`. */
export function healthUrl(url: string | undefined, env: Record<string, string | undefined>): string {
  if (url !== undefined) {
    let protocol: string | undefined;
    try {
      protocol = new URL(url).protocol;
    } catch {
      protocol = undefined;
    }
    if (protocol !== 'http:')
      throw new UserError(
        `--url=${JSON.stringify(url)} is not allowed: expected a URL like http://127.0.0.1:9464/healthz`,
      );
    return url;
  }
  const raw = env.METRICS_PORT;
  const port = raw === undefined || raw === '' ? undefined : metricsPortSchema.safeParse(raw);
  if (!port?.success || port.data === 'off' || port.data === 0)
    throw new UserError(
      `no health URL: give --url, or set METRICS_PORT to the port the service serves (got ${JSON.stringify(raw ?? null)})`,
    );
  return `http://127.0.0.1:${port.data}/healthz`;
}

/** GETs a URL within the deadline; resolves with the status and body (up to 4 KiB), rejects with a one-line reason. */
function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (body.length < 4096) body += chunk;
      });
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, body: body.trim() });
      });
      res.on('error', (err) => req.destroy(err));
    });
    const timer = setTimeout(
      () => req.destroy(new Error(`no answer within ${HEALTH_TIMEOUT_MS / 1000} s`)),
      HEALTH_TIMEOUT_MS,
    );
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(errorMessage(err)));
    });
  });
}

/** Runs the check; returns the exit code (0 healthy, 1 not). */
export async function healthCommand(
  o: { url?: string },
  env: Record<string, string | undefined> = process.env,
): Promise<number> {
  const url = healthUrl(o.url, env);
  let answer: { status: number; body: string };
  try {
    answer = await get(url);
  } catch (err) {
    process.stderr.write(`edgecut health: ${url}: ${errorMessage(err).replace(/\s+/g, ' ')}\n`);
    return 1;
  }
  if (answer.status === 200) {
    process.stdout.write(`${answer.body}\n`);
    return 0;
  }
  let reason = answer.body;
  try {
    const parsed = JSON.parse(answer.body) as { reason?: unknown };
    if (typeof parsed.reason === 'string') reason = parsed.reason;
  } catch {
    // not our JSON body: print it as it came
  }
  process.stderr.write(
    `edgecut health: ${url}: ${answer.status} ${reason.replace(/\s+/g, ' ').slice(0, 200)}\n`,
  );
  return 1;
}

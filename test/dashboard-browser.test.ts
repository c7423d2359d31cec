/**
 * The dashboard in a real browser against a running stack of real processes: broker (with its WebSocket
 * listener), planner, three tail workers, an edge and `edgecut dashboard`, and Debian's chromium driven headless by
 * playwright-core (no browser download: the system's /usr/bin/chromium, or EDGECUT_CHROMIUM). The page must show the
 * retained plan's cut, follow a newer plan within 2 s, and log no console error; a screenshot is saved under
 * test-artifacts/ (ignored by git). Under CI=true a missing chromium fails the test; elsewhere it is skipped.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import type { Page } from 'playwright-core';
import { type ServiceProcess, startBrokerProcess, startService } from '../cli/processes.ts';
import { type Plan, PlanSchema } from '../schemas/messages.ts';
import { ProfileSchema } from '../schemas/profile.ts';
import { topics } from '../schemas/topics.ts';
import { collect, connectClient } from './helpers/broker.ts';
import { demoModelDir } from './helpers/models.ts';
import { until } from './helpers/wait.ts';

const CHROMIUM = process.env.EDGECUT_CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = fileURLToPath(new URL('../test-artifacts/', import.meta.url));
const DEVICE = 'dash-robot';
const WORKERS = ['dash-tail-1', 'dash-tail-2', 'dash-tail-3'];
const haveChromium = existsSync(CHROMIUM);
const inCi = process.env.CI === 'true';

/** A selector of the device's element with this test id. */
const sel = (testid: string) => `[data-testid="${testid}"][data-device="${DEVICE}"]`;

/** The cut and plan number the page shows for the device (null before it shows the device). */
async function shown(page: Page): Promise<{ cut: string | null; seq: string | null }> {
  const attr = async (testid: string, name: string) =>
    (await page.locator(sel(testid)).count()) === 0 ? null : page.locator(sel(testid)).getAttribute(name);
  return { cut: await attr('cut', 'data-cut'), seq: await attr('plan-seq', 'data-seq') };
}

(haveChromium || inCi ? test : test.skip)(
  'the dashboard shows the retained plan, follows a new one within 2 s, without console errors',
  async (t) => {
    t.timeout(180_000);
    if (!haveChromium) return t.fail(`no chromium at ${CHROMIUM} (apt-get install chromium; .ci/run does)`);
    const { chromium } = await import('playwright-core');
    const { dir, path: model } = await demoModelDir(t);
    const procs: ServiceProcess[] = [];
    t.teardown(async () => {
      for (const p of procs.reverse()) await p.stop(5000);
    });
    const quiet = { onStderr: () => undefined, env: { LOG_LEVEL: 'warn' } };
    const { proc: broker, url } = await startBrokerProcess(quiet);
    procs.push(broker);
    const wsPort = (await broker.ready).wsPort as number;
    t.true(typeof wsPort === 'number' && wsPort > 0, 'the broker opened its WebSocket listener');
    const env = { LOG_LEVEL: 'warn', MQTT_URL: url };
    const start = (name: string, args: string[]) => {
      const p = startService(name, args, { ...quiet, env, onStdout: () => undefined });
      procs.push(p);
      return p;
    };
    const dashboard = start('dashboard', [
      'dashboard',
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--mqtt-ws-url',
      `ws://127.0.0.1:${wsPort}`,
    ]);
    const services = [
      start('planner', ['planner', '--planner-id', 'dash-planner']),
      ...WORKERS.map((id) => start(id, ['tail', '--worker-id', id, '--models-dir', dir])),
    ];
    await Promise.all(services.map((p) => p.ready));
    start('edge', ['edge', '--device-id', DEVICE, '--model', model, '--fps', '10']);
    const ready = await dashboard.ready;
    t.regex(String(ready.url), /^http:\/\/127\.0\.0\.1:\d+\/$/, 'the ready line gives the URL');
    const pageUrl = String(ready.url);

    // The plans as any subscriber sees them (the retained one first).
    const watcher = await connectClient(t, url);
    const plans = await collect(watcher, topics.plan.build({ device: DEVICE }));
    // collect() sees every message of its client: one client per topic.
    const profiles = await collect(
      await connectClient(t, url),
      topics.deviceProfile.build({ device: DEVICE }),
    );
    let latest: Plan = PlanSchema.parse(JSON.parse((await plans.next(90_000)).payload.toString()));
    const profile = ProfileSchema.parse(JSON.parse((await profiles.next(90_000)).payload.toString()));

    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // Running as root in a container: chromium's sandbox needs user namespaces it may not have.
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    });
    t.teardown(() => browser.close());
    const page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
    page.on('response', (r) => {
      if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()}`);
    });
    await page.goto(pageUrl);

    // The page shows the plan in force: the newest one the broker delivered (the planner re-plans meanwhile: its
    // first plan is the safe start, then, once the device's uplink is measured, one with the predicted curve).
    await until(
      async () => {
        for (const m of plans.all.splice(0)) latest = PlanSchema.parse(JSON.parse(m.payload.toString()));
        const s = await shown(page);
        return (
          latest.curve !== undefined && s.seq === String(latest.seq) && s.cut === String(latest.cut.index)
        );
      },
      'the page to show the retained plan, one with a predicted curve',
      60_000,
    );
    t.is(
      await page.getAttribute(sel('curve'), 'data-points'),
      String(latest.curve?.length),
      'the curve of every cut is drawn',
    );
    t.pass(`page shows cut ${latest.cut.index} of plan #${latest.seq}`);
    // Between plans the chart follows the planner's predictions of now (devices/{device}/predictions, once a second
    // on the device's telemetry), the plan's cut still marked.
    await page.waitForFunction(
      `document.querySelector('${sel('curve')}')?.dataset.source === 'predictions'`,
      undefined,
      { timeout: 15_000 },
    );
    t.is(await page.getAttribute(sel('curve'), 'data-points'), String(latest.curve?.length));

    // A newer plan (published retained, as a planner would, with a higher seq and another cut) within 2 s.
    const other = profile.cuts.find((c) => c.index !== latest.cut.index && c.index > 0) ?? profile.cuts[0]!;
    const point = latest.curve?.find((p) => p.cut === other.index);
    const forged: Plan = {
      ...latest,
      // Well above the planner's own numbering, so a re-plan meanwhile cannot take its place.
      seq: latest.seq + 1000,
      cut: { index: other.index, after: other.after, bytes: other.bytes, tensors: other.tensors },
      predicted: point
        ? {
            edgeMs: point.headMs,
            transferMs: point.transferMs,
            serverMs: point.tailMs,
            totalMs: point.totalMs,
          }
        : null,
      reason: `cut ${other.index} forced by the dashboard test`,
      issuedAt: Date.now(),
    };
    const sent = performance.now();
    await watcher.publishAsync(topics.plan.build({ device: DEVICE }), JSON.stringify(forged), {
      qos: 1,
      retain: true,
    });
    // Evaluated in the page (a string: this project's TypeScript has no DOM types).
    await page.waitForFunction(
      `document.querySelector('${sel('cut')}')?.dataset.cut === '${other.index}'`,
      undefined,
      { timeout: 2000, polling: 20 },
    );
    t.log(
      `the page showed the new cut ${other.index} ${(performance.now() - sent).toFixed(0)} ms after the publish`,
    );
    t.is((await shown(page)).seq, String(forged.seq));

    // What the screenshot should show: every worker online, the curve with the forced cut marked, some timeline points.
    for (const id of WORKERS)
      await page.waitForSelector(`[data-testid="worker"][data-worker="${id}"][data-state="online"]`, {
        timeout: 30_000,
      });
    await page.waitForFunction(
      `(window.edgecutDashboard?.state.devices.get('${DEVICE}')?.load.t.length ?? 0) >= 3`,
      undefined,
      { timeout: 30_000 },
    );
    t.log(
      `curve: ${latest.curve?.length} cuts; chosen by the planner: ${latest.cut.index}, forced: ${other.index}`,
    );
    await mkdir(ARTIFACTS, { recursive: true });
    const shot = `${ARTIFACTS}dashboard.png`;
    await page.screenshot({ path: shot, fullPage: true });
    t.log(`screenshot: ${shot}`);
    t.deepEqual(problems, [], 'no console errors, failed requests or HTTP errors');
  },
);

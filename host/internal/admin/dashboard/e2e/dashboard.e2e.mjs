// Browser test of the Keel admin dashboard in headless Chromium (Debian's package,
// driven by playwright-core; no browser download). dashboard_e2e_test.go starts a real
// host and runs this script twice: KEEL_MODE=flow operates a plugin through the UI,
// KEEL_MODE=perf measures first paint against a registry seeded with many versions.
//
// Environment: KEEL_BASE (http://127.0.0.1:port), KEEL_ADMIN_TOKEN, KEEL_ARTIFACTS
// (screenshot directory), KEEL_CHROMIUM (default /usr/bin/chromium); flow mode also
// KEEL_BUNDLE (example 2.0.0, signed) and KEEL_BAD_BUNDLE (not a bundle), and optionally
// KEEL_EVENT_TOPIC and KEEL_EVENT_TENANT (the poison guest's topic, where the Go test had it
// park a "flaky" and a "poison" order, and the orders' tenant); perf mode
// KEEL_PERF_PLUGINS and KEEL_PERF_VERSIONS (what the registry holds).
// The last line printed is `RESULT <json>`.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};
const BASE = env('KEEL_BASE');
const TOKEN = env('KEEL_ADMIN_TOKEN');
const ARTIFACTS = env('KEEL_ARTIFACTS');
const MODE = env('KEEL_MODE', 'flow');
mkdirSync(ARTIFACTS, { recursive: true });

const result = { mode: MODE, screenshots: [], steps: [] };
const pageErrors = [];
let step = 'start';
const log = (...a) => console.log(`[${new Date().toISOString().slice(11, 23)}] ${step}:`, ...a);

function expect(cond, msg) { if (!cond) throw new Error(msg); }

async function shot(page, name) {
  const path = join(ARTIFACTS, name + '.png');
  await page.screenshot({ path, fullPage: true });
  result.screenshots.push(path);
  log('screenshot', path);
}

async function servedVersion() {
  const r = await fetch(BASE + '/api/example/hello/x');
  if (r.status !== 200) return `status ${r.status}`;
  return (await r.json()).version;
}

async function until(what, fn, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last === true) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

// confirm checks that an action asks first, screenshots the question and confirms.
async function confirm(page, shotName, expectText) {
  const dlg = page.locator('dialog#confirm[open]');
  await dlg.waitFor({ state: 'visible' });
  const text = await dlg.innerText();
  expect(text.includes(expectText), `confirmation dialog says ${JSON.stringify(text)}, want ${expectText}`);
  if (shotName) await shot(page, shotName);
  await page.click('#confirm-ok');
  await dlg.waitFor({ state: 'detached' }).catch(() => {});
}

// measure reads the navigation's paint timings once the page marked itself rendered.
async function measure(page, name) {
  await page.waitForSelector(`body[data-rendered=${name}]`, { timeout: 15000 });
  return page.evaluate((name) => {
    const paint = Object.fromEntries(performance.getEntriesByType('paint').map((e) => [e.name, e.startTime]));
    const mark = performance.getEntriesByName('keel:rendered:' + name)[0];
    const api = performance.getEntriesByType('resource').find((e) => e.name.endsWith('/admin/api/plugins'));
    const nav = performance.getEntriesByType('navigation')[0];
    return {
      first_paint_ms: paint['first-paint'] ?? null,
      first_contentful_paint_ms: paint['first-contentful-paint'] ?? null,
      data_rendered_ms: mark ? mark.startTime : null,
      dom_content_loaded_ms: nav ? nav.domContentLoadedEventEnd : null,
      plugins_api_ms: api ? api.duration : null,
      plugins_api_bytes: api ? api.transferSize || api.encodedBodySize : null,
    };
  }, name);
}

async function flow(context) {
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(`${step}: ${e.message}`));
  page.on('console', (m) => { if (/Content Security Policy|Uncaught/.test(m.text())) pageErrors.push(`${step}: console: ${m.text()}`); });
  page.setDefaultTimeout(20000);

  step = 'login';
  await page.goto(BASE + '/admin/');
  await page.waitForSelector('#login-form');
  await shot(page, '01-login');
  await page.fill('#token', 'not-the-token');
  await page.click('#login-submit');
  await page.waitForFunction(() => document.querySelector('#login-error').textContent.includes('refused'));
  await shot(page, '02-login-refused');
  await page.fill('#token', TOKEN);
  await page.click('#login-submit');
  await page.waitForSelector('body[data-rendered=overview]');
  expect(await page.evaluate(() => sessionStorage.getItem('keel.admin.token')) === TOKEN, 'the token is not kept in sessionStorage');

  step = 'overview';
  // Measure a load with the token already in the tab, as an operator reloading sees it.
  await page.reload();
  result.overview_paint = await measure(page, 'overview');
  log('first paint', JSON.stringify(result.overview_paint));
  await page.waitForSelector('[data-testid=readiness] .badge');
  await page.waitForSelector('#ov-deps tr[data-dep=postgres]');
  await page.waitForSelector('#ov-plugins tr[data-plugin=example]');
  const hostID = await page.textContent('[data-testid=host-id]');
  expect(hostID.trim() !== '', 'overview shows no host id');
  result.readiness = await page.textContent('[data-testid=readiness]');
  await page.waitForTimeout(2300); // a second poll, so req/s and CPU have two samples
  await shot(page, '03-overview');

  step = 'plugins';
  await page.click('#nav a[data-nav=plugins]');
  await page.waitForSelector('body[data-rendered=plugins]');
  const active = await page.textContent('tr[data-plugin=example] [data-testid=active]');
  expect(active.includes('1.0.0'), `plugins page shows example active ${active}, want 1.0.0`);
  await shot(page, '04-plugins');

  step = 'upload';
  await page.setInputFiles('#bundle-file', env('KEEL_BUNDLE'));
  await page.click('#upload-submit');
  await confirm(page, '05-upload-confirm', 'Upload');
  await page.waitForSelector('[data-testid=upload-result]');
  const uploaded = await page.textContent('[data-testid=upload-result]');
  expect(uploaded.includes('example 2.0.0'), `upload result: ${uploaded}`);
  await page.waitForSelector('tr[data-plugin=example] .chip.uploaded:text("2.0.0")');
  await shot(page, '06-uploaded');

  step = 'upload-refused';
  await page.setInputFiles('#bundle-file', env('KEEL_BAD_BUNDLE'));
  await page.click('#upload-submit');
  await confirm(page, null, 'Upload');
  await page.waitForSelector('[data-testid=flash-error]');
  const refusal = await page.textContent('[data-testid=flash-error]');
  expect(/bundle_\w+/.test(refusal) && /request/.test(refusal), `upload refusal shows ${refusal}, want the error code and request id`);
  result.refusal = refusal.trim();
  await shot(page, '07-upload-refused');
  await page.click('[data-testid=flash-error] [data-action=dismiss]');

  step = 'activate';
  await page.click('tr[data-plugin=example] a');
  await page.waitForSelector('body[data-rendered=plugin]');
  await page.click('tr[data-version="2.0.0"] button[data-action=activate]');
  await confirm(page, '08-activate-confirm', 'Make example 2.0.0 the active version');
  await page.waitForSelector('[data-testid=flash-ok]', { timeout: 120000 });
  await page.waitForSelector('[data-testid=active-version]:has-text("2.0.0")');
  await page.waitForSelector('[data-testid=running-version]:has-text("2.0.0")');
  const v2 = await servedVersion();
  expect(v2 === '2.0.0', `after activating 2.0.0 the host serves ${v2}`);
  log('GET /api/example/hello/x answers version', v2);
  await shot(page, '09-activated');

  step = 'charts';
  // The Go test sends steady traffic; wait until the charts have several points of it.
  await until('request rate and latency charts with data', () => page.evaluate(() => {
    const c = (id) => document.querySelector(`canvas[data-chart=${id}]`);
    const r = c('requests'), l = c('latency'), p = c('pool');
    if (!r || !l || !p) return 'no charts';
    const ok = +r.dataset.points >= 5 && +r.dataset.max > 0 && +l.dataset.points >= 3 && +l.dataset.max > 0 && +p.dataset.max > 0;
    return ok || { requests: [r.dataset.points, r.dataset.max], latency: [l.dataset.points, l.dataset.max], pool: p.dataset.max };
  }), 40000);
  result.charts = await page.evaluate(() => Object.fromEntries([...document.querySelectorAll('canvas[data-chart]')]
    .map((c) => [c.dataset.chart, { points: +c.dataset.points, max: +c.dataset.max, label: c.getAttribute('aria-label') }])));
  log('charts', JSON.stringify(result.charts));
  // The chart pixels themselves, not only its data: the request-rate line is drawn.
  const inked = await page.evaluate(() => {
    const c = document.querySelector('canvas[data-chart=requests]');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 100 && d[i + 2] - d[i] > 60) n++; // the blue of the series
    return n;
  });
  expect(inked > 40, `the request-rate chart has ${inked} pixels of its line`);
  await shot(page, '10-plugin-charts');

  step = 'rollback';
  await page.click('button[data-action=rollback]');
  await confirm(page, '11-rollback-confirm', 'Roll example back to 1.0.0');
  await page.waitForSelector('[data-testid=active-version]:has-text("1.0.0")', { timeout: 120000 });
  await page.waitForSelector('[data-testid=running-version]:has-text("1.0.0")');
  const v1 = await servedVersion();
  expect(v1 === '1.0.0', `after rolling back the host serves ${v1}`);
  log('GET /api/example/hello/x answers version', v1);
  await shot(page, '12-rolled-back');

  step = 'activity';
  await page.click('#nav a[data-nav=activity]');
  await page.waitForSelector('body[data-rendered=activity]');
  const rows = await page.$$eval('#activity tbody tr', (trs) => trs.map((tr) => tr.innerText.replace(/\s+/g, ' ')));
  for (const [action, version] of [['rollback', '1.0.0'], ['activate', '2.0.0'], ['upload', '2.0.0']]) {
    expect(rows.some((r) => r.includes(action) && r.includes(version) && r.includes('admin-token')),
      `activity has no ${action} of ${version} by admin-token: ${JSON.stringify(rows.slice(0, 6))}`);
  }
  await shot(page, '13-activity');

  if (process.env.KEEL_EVENT_TOPIC) await deadLetters(page, process.env.KEEL_EVENT_TOPIC, env('KEEL_EVENT_TENANT'));

  step = 'deactivate';
  await page.goto(BASE + '/admin/#/plugins/example');
  await page.waitForSelector('body[data-rendered=plugin]');
  const routes = await page.evaluate(() => [...document.querySelectorAll('h3')].find((h) => h.textContent === 'Routes').parentElement.textContent.replace(/\s+/g, ' '));
  expect(routes.includes('Database') && routes.includes('/echo') && routes.includes('read-write'), `the routes table lacks the database access column: ${routes}`);
  await page.click('button[data-action=deactivate]');
  await confirm(page, null, 'Stop serving example');
  await page.waitForSelector('[data-testid=active-version]:has-text("none")', { timeout: 60000 });
  const gone = await servedVersion();
  expect(gone === 'status 404', `after deactivating, /api/example answers ${gone}`);
  await shot(page, '14-deactivated');

  step = 'sign-out';
  await page.click('#logout');
  await page.waitForSelector('#login-form');
  expect(await page.evaluate(() => sessionStorage.getItem('keel.admin.token')) === null, 'sign out left the token in sessionStorage');
  await page.close();
}

// deadLetters visits the events page, opens the topic's dead letters, replays the flaky
// order once the guest is healed, and discards the poison one.
async function deadLetters(page, topic, tenant) {
  const guest = (path, method = 'GET') => fetch(BASE + '/api/poison' + path, { method, headers: { 'X-Tenant-ID': tenant } }).then((r) => r.json());

  step = 'events';
  await page.click('#nav a[data-nav=events]');
  await page.waitForSelector('body[data-rendered=events]');
  const row = `#topics tr[data-topic="${topic}"]`;
  await page.waitForSelector(`${row} [data-testid=dlq-count]:has-text("2 parked")`);
  const lag = (await page.textContent(`${row} [data-group=poison] [data-testid=lag]`)).trim();
  expect(lag === '0', `group poison shows lag ${lag}, want 0 (its orders are handled or parked)`);
  result.events = (await page.textContent(row)).replace(/\s+/g, ' ').trim();
  log('topic row', result.events);
  await shot(page, '13a-events');

  step = 'dead-letters';
  await page.click(`${row} [data-testid=dlq-count]`);
  await page.waitForSelector('body[data-rendered=dead-letters]');
  await page.waitForSelector('#dead-letters tbody tr');
  const parked = await page.$$eval('#dead-letters tbody tr', (trs) => trs.map((tr) => ({
    id: tr.dataset.id, payload: tr.querySelector('[data-testid=payload]').textContent, error: tr.querySelector('[data-testid=error]').textContent,
  })));
  expect(parked.length === 2, `${parked.length} dead letters listed, want 2: ${JSON.stringify(parked)}`);
  const flaky = parked.find((m) => JSON.parse(m.payload).note === 'flaky');
  const poison = parked.find((m) => JSON.parse(m.payload).note === 'poison');
  expect(flaky && poison, `dead letters ${JSON.stringify(parked)}, want the flaky and the poison order`);
  expect(JSON.parse(flaky.payload).amount === 42, `payload ${flaky.payload} is not the order's JSON`);
  expect(/refused/.test(flaky.error) && /refused/.test(poison.error), `errors ${flaky.error} / ${poison.error}`);
  await page.click(`tr[data-id="${flaky.id}"] details summary`);
  await shot(page, '13b-dead-letters');

  step = 'replay';
  const healed = await guest('/heal', 'POST');
  expect(healed.healed === true, `healing the guest: ${JSON.stringify(healed)}`);
  await page.click(`tr[data-id="${flaky.id}"] button[data-action=replay]`);
  await confirm(page, '13c-replay-confirm', `Republish message ${flaky.id}`);
  await page.waitForSelector('[data-testid=flash-ok]');
  await page.waitForSelector(`tr[data-id="${flaky.id}"]`, { state: 'detached' });
  await until('the guest to handle the replayed order', async () => { const r = await guest('/handled/flaky'); return r.handled === 1 || r; });
  await shot(page, '13d-replayed');
  const again = await fetch(`${BASE}/admin/api/events/dlq/${topic}/${flaky.id}/replay`, { method: 'POST', headers: { Authorization: 'Bearer ' + TOKEN } });
  const againBody = await again.json();
  expect(again.status === 200 && againBody.result === 'gone', `a second replay answers ${again.status} ${JSON.stringify(againBody)}, want 200 gone`);

  step = 'discard';
  await page.click(`tr[data-id="${poison.id}"] button[data-action=discard]`);
  await confirm(page, null, `Remove message ${poison.id}`);
  await page.waitForSelector('[data-testid=dlq-empty]');
  await shot(page, '13e-discarded');
  const handled = await guest('/handled/poison');
  expect(handled.handled === 0, `the discarded order was handled: ${JSON.stringify(handled)}`);

  step = 'events-after';
  await page.click('#nav a[data-nav=events]');
  await page.waitForSelector(`${row} [data-testid=dlq-count]:text-is("0")`);
  await shot(page, '13f-events-empty');
}

async function perf(context) {
  const plugins = +env('KEEL_PERF_PLUGINS');
  const versions = +env('KEEL_PERF_VERSIONS');
  await context.addInitScript((t) => sessionStorage.setItem('keel.admin.token', t), TOKEN);
  const runs = [];
  for (let i = 0; i < 5; i++) {
    step = `perf run ${i + 1}`;
    const page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(`${step}: ${e.message}`));
    await page.goto(BASE + '/admin/#/plugins');
    const m = await measure(page, 'plugins');
    const counted = await page.evaluate(() => ({
      rows: document.querySelectorAll('#plugins tbody tr').length,
      chips: document.querySelectorAll('#plugins .chip').length,
    }));
    m.rows = counted.rows;
    m.version_chips = counted.chips;
    // Responsiveness: filter the list and wait for the redraw.
    m.filter_ms = await page.evaluate(async () => {
      const t0 = performance.now();
      const f = document.querySelector('#filter');
      f.value = 'load-0';
      f.dispatchEvent(new Event('input'));
      await new Promise((r) => { const check = () => (document.querySelector('#count').textContent.includes('shown') ? r() : requestAnimationFrame(check)); check(); });
      await new Promise((r) => requestAnimationFrame(() => r()));
      return performance.now() - t0 - 80; // minus the input debounce
    });
    log(JSON.stringify(m));
    runs.push(m);
    if (i === 0) {
      await page.evaluate(() => { const f = document.querySelector('#filter'); f.value = ''; f.dispatchEvent(new Event('input')); });
      await page.waitForTimeout(200);
      await shot(page, `15-plugins-${plugins}x${versions}`);
    }
    await page.close();
  }
  const median = (k) => { const v = runs.map((r) => r[k]).filter((x) => x != null).sort((a, b) => a - b); return v.length ? v[Math.floor(v.length / 2)] : null; };
  result.perf = { runs, cold: runs[0], median: Object.fromEntries(['first_contentful_paint_ms', 'data_rendered_ms', 'plugins_api_ms', 'filter_ms'].map((k) => [k, median(k)])) };
  const cold = runs[0];
  expect(cold.rows >= plugins, `the plugins page lists ${cold.rows} plugins, want at least ${plugins}`);
  expect(cold.version_chips >= plugins * versions, `the plugins page shows ${cold.version_chips} versions, want at least ${plugins * versions}`);
  const fcp = cold.first_contentful_paint_ms ?? cold.first_paint_ms;
  expect(fcp != null && fcp < 1000, `first contentful paint ${fcp} ms, want < 1000`);
  expect(cold.data_rendered_ms != null && cold.data_rendered_ms < 1000, `plugins table rendered at ${cold.data_rendered_ms} ms, want < 1000`);
}

// A fresh profile per run: nothing cached or stored from an earlier run. Playwright
// takes the profile directory as launchPersistentContext's argument and refuses
// --user-data-dir among the args, so that is how the fresh --user-data-dir is passed.
const profile = mkdtempSync(join(tmpdir(), 'keel-chromium-'));
let context;
let failed = null;
try {
  step = 'launch';
  context = await chromium.launchPersistentContext(profile, {
    executablePath: env('KEEL_CHROMIUM', '/usr/bin/chromium'),
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    viewport: { width: 1440, height: 1000 },
    timeout: 60000,
  });
  // The start page stays open (closing a persistent context's last page can end the browser).
  const probe = context.pages()[0] || await context.newPage();
  result.browser = await probe.evaluate(() => navigator.userAgent);
  log('browser', result.browser);
  if (MODE === 'flow') await flow(context);
  else if (MODE === 'perf') await perf(context);
  else throw new Error(`unknown KEEL_MODE ${MODE}`);
  expect(pageErrors.length === 0, `errors in the page: ${pageErrors.join('; ')}`);
} catch (e) {
  failed = `${step}: ${e.message}`;
  console.error('FAILED', failed);
  const open = context ? context.pages().filter((p) => p.url() !== 'about:blank') : [];
  for (const [i, p] of open.entries()) {
    await p.screenshot({ path: join(ARTIFACTS, `failure-${MODE}${i ? '-' + i : ''}.png`), fullPage: true }).catch(() => {});
  }
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
result.failed = failed;
result.page_errors = pageErrors;
console.log('RESULT ' + JSON.stringify(result));
process.exit(failed ? 1 : 0);

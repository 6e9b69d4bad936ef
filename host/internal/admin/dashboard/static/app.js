// app.js: the Keel admin dashboard, a single page application with hash routes.
//
// Rendering rule: every page builds its HTML as one string and assigns it once, and
// the 2-second poll updates only charts and the few cells that change, so a host with
// hundreds of plugin versions costs one layout per render, not one per row.
import { api, ApiError, token, esc, fmtBytes, fmtDuration, fmtTime, fmtAgo, fmtNum, decodeDetail } from './api.js';
import { drawChart, quantile, histDelta, GAP_MS } from './chart.js';

const $ = (sel, el = document) => el.querySelector(sel);
const main = $('#main');
const POLL_MS = 2000;
const HISTORY = 151; // five minutes of 2-second snapshots
const WINDOW_MS = 5 * 60e3;
const PALETTE = ['#2f6fab', '#d9822b', '#b3261e', '#1e7b34', '#7b4fb0', '#138086', '#8a6d3b', '#c2185b'];

// ---------------------------------------------------------------- page lifecycle

// page holds what the current page started: polls stop and requests are aborted
// when the operator navigates away.
let page = newPage('');
function newPage(name) { return { name, timers: new Set(), abort: new AbortController(), gen: Symbol(name) }; }
function leavePage(name) {
  for (const t of page.timers) clearTimeout(t);
  page.abort.abort();
  page = newPage(name);
  return page;
}
const alive = (p) => p === page;

// poll calls fn now and then every POLL_MS after the previous call finished, while
// the page is current; a hidden tab skips polls instead of queueing them.
function poll(p, fn, every = POLL_MS) {
  const tick = async () => {
    if (!alive(p)) return;
    if (!document.hidden) {
      try { await fn(); } catch (e) { if (alive(p)) report(e, 'Refreshing'); }
    }
    if (alive(p)) { const t = setTimeout(tick, every); p.timers.add(t); }
  };
  return tick();
}

// ---------------------------------------------------------------- flash messages

let flashTimer = 0;
function flash(kind, html, { sticky = kind === 'error' } = {}) {
  clearTimeout(flashTimer);
  $('#flash').innerHTML = `<div class="flash ${kind}" data-testid="flash-${kind}"><div class="text">${html}</div><button type="button" aria-label="Dismiss" data-action="dismiss">×</button></div>`;
  if (!sticky) flashTimer = setTimeout(() => { $('#flash').innerHTML = ''; }, 8000);
}
function clearFlash() { clearTimeout(flashTimer); $('#flash').innerHTML = ''; }
$('#flash').addEventListener('click', (e) => { if (e.target.closest('[data-action=dismiss]')) clearFlash(); });

function errorHTML(e) {
  if (e instanceof ApiError) {
    return `<span class="err-code">${esc(e.code)}</span> ${esc(e.message)}` +
      (e.status ? ` <span class="muted small">(HTTP ${e.status}${e.requestId ? `, request <code>${esc(e.requestId)}</code>` : ''})</span>` : '');
  }
  return esc(e && e.message ? e.message : String(e));
}

// report shows a failure; a refused token sends the operator back to the sign-in page.
function report(e, what) {
  if (e && e.name === 'AbortError') return;
  if (e instanceof ApiError && e.status === 401) {
    token.clear();
    loginNotice = 'The host refused the admin token; sign in again.';
    location.hash = '#/login';
    return;
  }
  flash('error', `<strong>${esc(what)} failed:</strong> ${errorHTML(e)}`);
}

// ---------------------------------------------------------------- confirmation

// confirmStep asks before anything that changes what hosts serve.
function confirmStep(title, text, okLabel, danger = false) {
  const dlg = $('#confirm');
  $('#confirm-title').textContent = title;
  $('#confirm-text').textContent = text;
  const ok = $('#confirm-ok');
  ok.textContent = okLabel;
  ok.className = danger ? 'danger' : '';
  dlg.returnValue = '';
  dlg.showModal();
  ok.focus();
  return new Promise((resolve) => dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true }));
}

// act runs one change with the page's action buttons disabled and reports the result.
async function act(label, fn, done) {
  main.classList.add('busy');
  flash('info', `<span class="spinner"></span> ${esc(label)}…`, { sticky: true });
  try {
    const res = await fn();
    flash('ok', esc(done(res)));
    return res;
  } catch (e) {
    report(e, label);
    return undefined;
  } finally {
    main.classList.remove('busy');
  }
}

// ---------------------------------------------------------------- metrics history

// Snapshots are kept per query ('' for all plugins) across page changes, so going
// back to a plugin shows the minutes already seen.
const series = new Map();
async function sample(plugin, signal) {
  const snap = await api('/metrics' + (plugin ? '?plugin=' + encodeURIComponent(plugin) : ''), { signal });
  let h = series.get(plugin);
  if (!h) { h = []; series.set(plugin, h); }
  if (!h.length || snap.unix_ms > h[h.length - 1].unix_ms) h.push(snap);
  if (h.length > HISTORY) h.splice(0, h.length - HISTORY);
  return h;
}

const sumValues = (o) => Object.values(o || {}).reduce((a, b) => a + b, 0);

// rate turns a cumulative counter read by f into per-second points; a drop (host
// restart) leaves a gap rather than a negative spike.
function rate(h, f) {
  const out = [];
  for (let i = 1; i < h.length; i++) {
    const dt = (h[i].unix_ms - h[i - 1].unix_ms) / 1000, d = f(h[i]) - f(h[i - 1]);
    out.push({ t: h[i].unix_ms, v: dt > 0 && dt * 1000 <= GAP_MS && d >= 0 ? d / dt : null });
  }
  return out;
}
const gaugeOf = (h, f) => h.map((s) => ({ t: s.unix_ms, v: f(s) }));

// ---------------------------------------------------------------- router

let loginNotice = '';
let hostInfo = null;
const routes = [
  [/^#?\/?$/, 'overview', overviewPage],
  [/^#\/plugins\/?$/, 'plugins', pluginsPage],
  [/^#\/plugins\/([^/]+)$/, 'plugins', pluginPage],
  [/^#\/events\/?$/, 'events', eventsPage],
  [/^#\/events\/([^/]+)$/, 'events', deadLettersPage],
  [/^#\/activity$/, 'activity', activityPage],
  [/^#\/login$/, 'login', loginPage],
];

async function route() {
  const hash = location.hash || '#/';
  if (!token.get() && hash !== '#/login') {
    sessionStorage.setItem('keel.after-login', hash);
    location.replace('#/login');
    return;
  }
  let match = null;
  for (const [re, nav, fn] of routes) {
    const m = hash.match(re);
    if (m) { match = { nav, fn, args: m.slice(1).map(decodeURIComponent) }; break; }
  }
  if (!match) match = { nav: '', fn: notFoundPage, args: [] };
  const p = leavePage(match.nav);
  const signedIn = !!token.get();
  $('#nav').hidden = !signedIn;
  $('#logout').hidden = !signedIn;
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('current', a.dataset.nav === match.nav);
  if (signedIn && !hostInfo) loadHostInfo();
  try {
    await match.fn(p, ...match.args);
  } catch (e) {
    if (!alive(p) || e.name === 'AbortError') return;
    if (e instanceof ApiError && e.status === 401) { report(e, ''); return; }
    main.innerHTML = `<div class="panel"><h2>Could not load this page</h2><p>${errorHTML(e)}</p><button type="button" data-action="reload">Try again</button></div>`;
  }
}

// rendered marks the first paint of real data, which the browser test measures.
function rendered(name) {
  performance.mark('keel:rendered:' + name);
  document.body.dataset.rendered = name;
}

main.addEventListener('click', (e) => { if (e.target.closest('[data-action=reload]')) route(); });
$('#logout').addEventListener('click', () => { token.clear(); hostInfo = null; series.clear(); $('#hostinfo').textContent = ''; clearFlash(); location.hash = '#/login'; });
window.addEventListener('hashchange', route);

async function loadHostInfo() {
  try {
    hostInfo = await api('/host');
    $('#hostinfo').textContent = `host ${hostInfo.host || '(unnamed)'}`;
  } catch (e) { if (!(e instanceof ApiError && e.status === 401)) hostInfo = null; }
}

// ---------------------------------------------------------------- login

async function loginPage(p) {
  main.innerHTML = `<form class="panel login" id="login-form" autocomplete="off">
    <h1>Sign in</h1>
    <p class="muted">Enter the host's admin token (<code>KEEL_ADMIN_TOKEN</code>). It is kept in this tab only and sent as a bearer token to <code>/admin/api</code>.</p>
    <label for="token">Admin token</label>
    <input type="password" id="token" name="token" required autofocus>
    <button type="submit" id="login-submit">Sign in</button>
    <div class="error" id="login-error" role="alert">${esc(loginNotice)}</div>
  </form>`;
  loginNotice = '';
  rendered('login');
  $('#login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const t = $('#token').value.trim();
    if (!t) return;
    token.set(t);
    $('#login-submit').disabled = true;
    try {
      hostInfo = await api('/host', { signal: p.abort.signal });
      $('#hostinfo').textContent = `host ${hostInfo.host || '(unnamed)'}`;
      clearFlash();
      const next = sessionStorage.getItem('keel.after-login');
      sessionStorage.removeItem('keel.after-login');
      location.hash = next && next !== '#/login' ? next : '#/';
    } catch (err) {
      token.clear();
      if (!alive(p)) return;
      $('#login-submit').disabled = false;
      $('#login-error').innerHTML = err instanceof ApiError && err.status === 401
        ? 'The host refused this token.' + ` <span class="muted small">${errorHTML(err)}</span>`
        : errorHTML(err);
    }
  });
}

function notFoundPage() {
  main.innerHTML = `<div class="panel"><h2>No such page</h2><p><a href="#/">Back to the overview</a></p></div>`;
}

// ---------------------------------------------------------------- overview

const badge = (status, text = status) => `<span class="badge ${esc(status || 'none')}">${esc(text || 'unknown')}</span>`;
const ACTION_LOOK = { activate: 'active', rollback: 'active', upload: 'uploaded', fail: 'failed' };

async function overviewPage(p) {
  main.innerHTML = `<div class="page-head"><div><h1>Overview</h1><div class="muted small">This host, as its admin API reports it. Refreshes every 2 s.</div></div></div>
    <div class="grid">
      <div class="panel"><h2>Host</h2><dl class="kv" id="ov-host"><dt>Host id</dt><dd>…</dd></dl></div>
      <div class="panel"><h2>Readiness</h2><div id="ov-ready" class="big">…</div><div class="muted small" id="ov-checked"></div></div>
      <div class="panel"><h2>Go runtime</h2><dl class="kv" id="ov-mem"><dt>Heap</dt><dd>…</dd></dl></div>
    </div>
    <div class="panel"><h2>Hosts</h2><div id="ov-hosts" class="table-wrap"><p class="muted">Loading…</p></div></div>
    <div class="panel"><h2>Dependencies</h2><div id="ov-deps" class="table-wrap"><p class="muted">Loading…</p></div></div>
    <div class="panel"><h2>Plugins</h2><div id="ov-plugins" class="table-wrap"><p class="muted">Loading…</p></div></div>`;
  let first = true;
  await poll(p, async () => {
    const [host, health, hist, hosts] = await Promise.all([
      api('/host', { signal: p.abort.signal }),
      api('/health', { signal: p.abort.signal }).catch((e) => (e.name === 'AbortError' ? Promise.reject(e) : { error: e })),
      sample('', p.abort.signal),
      api('/hosts', { signal: p.abort.signal }).catch((e) => (e.name === 'AbortError' ? Promise.reject(e) : { error: e })),
    ]);
    if (!alive(p)) return;
    renderOverview(host, health, hist);
    renderHosts(hosts);
    if (first) { first = false; rendered('overview'); }
  });
}

// renderHosts lists every host sharing the database (heartbeats in the registry).
function renderHosts(data) {
  if (data.error) { $('#ov-hosts').innerHTML = `<p class="muted">${errorHTML(data.error)}</p>`; return; }
  const hs = data.hosts || [];
  $('#ov-hosts').innerHTML = hs.length ? `<table data-testid="hosts"><thead><tr><th>Host</th><th>State</th><th>Version</th><th>Up since</th><th>Last seen</th><th>Plugins</th></tr></thead><tbody>${hs.map((h) =>
    `<tr><td>${esc(h.id)}${h.self ? ' <span class="muted small">(this host)</span>' : ''}</td><td>${h.alive ? badge('ok') : '<span class="badge failing">silent</span>'}</td><td>${esc(h.version)}</td><td>${fmtTime(h.started)}</td><td>${fmtTime(h.last_seen)}</td><td class="small">${Object.entries(h.plugins || {}).sort(([a], [b]) => a.localeCompare(b)).map(([n, v]) => `${esc(n)} ${esc(v)}`).join(', ') || '—'}</td></tr>`).join('')}</tbody></table>`
    : '<div class="empty">No host has reported yet.</div>';
}

function renderOverview(host, health, hist) {
  const snap = hist[hist.length - 1];
  const prev = hist.length > 1 ? hist[hist.length - 2] : null;
  $('#ov-host').innerHTML = `<dt>Host id</dt><dd data-testid="host-id">${esc(host.host || '(unnamed)')}</dd>
    <dt>Uptime</dt><dd data-testid="uptime">${fmtDuration(host.uptime_s)}</dd>
    <dt>Started</dt><dd>${fmtTime(host.started)}</dd>
    <dt>Registry</dt><dd>${host.registry ? 'PostgreSQL registry: upload and activation enabled' : '<span class="badge degraded">none</span> no database: plugins come from the plugins directory only'}</dd>`;
  const hm = snap.host;
  const cpu = prev ? (hm.cpu_seconds - prev.host.cpu_seconds) / ((snap.unix_ms - prev.unix_ms) / 1000) : null;
  $('#ov-mem').innerHTML = `<dt>Heap in use</dt><dd>${fmtBytes(hm.heap_inuse_bytes)} <span class="muted">(${fmtBytes(hm.heap_alloc_bytes)} live)</span></dd>
    <dt>From the OS</dt><dd>${fmtBytes(hm.sys_bytes)} <span class="muted">Go</span> · ${fmtBytes(hm.resident_bytes)} <span class="muted">resident</span></dd>
    <dt>Goroutines</dt><dd>${fmtNum(hm.goroutines, 0)}</dd>
    <dt>CPU</dt><dd>${cpu == null || cpu < 0 ? '—' : (cpu * 100).toFixed(0) + ' % of a core'}</dd>
    <dt>GC cycles</dt><dd>${fmtNum(hm.gc_cycles, 0)}</dd>`;

  if (health.error) {
    $('#ov-ready').innerHTML = '<span class="badge none">unavailable</span>';
    $('#ov-checked').innerHTML = errorHTML(health.error);
    $('#ov-deps').innerHTML = `<p class="muted">The readiness report is not available: ${errorHTML(health.error)}</p>`;
  } else {
    $('#ov-ready').innerHTML = `<span data-testid="readiness">${badge(health.status)}</span>`;
    $('#ov-checked').textContent = 'checked ' + fmtTime(health.checked_at);
    const deps = Object.entries(health.dependencies || {}).sort(([a], [b]) => a.localeCompare(b));
    $('#ov-deps').innerHTML = deps.length ? `<table><thead><tr><th>Dependency</th><th>Status</th><th class="num">Check</th><th>Error</th></tr></thead><tbody>` +
      deps.map(([n, e]) => `<tr data-dep="${esc(n)}"><td>${esc(n)}</td><td>${badge(e.status)}</td><td class="num">${e.latency_ms.toFixed(1)} ms</td><td>${esc(e.error || '')}</td></tr>`).join('') +
      '</tbody></table>' : '<p class="muted">No external dependencies configured (in-process cache and embedded event bus only).</p>';
  }

  const pluginHealth = (health && health.plugins) || {};
  const names = new Set([...Object.keys(pluginHealth), ...Object.keys(snap.plugins)]);
  const rows = [...names].sort().map((n) => {
    const e = pluginHealth[n], m = snap.plugins[n], pm = prev && prev.plugins[n];
    const dt = prev ? (snap.unix_ms - prev.unix_ms) / 1000 : 0;
    const rps = m && pm && dt > 0 ? Math.max(0, sumValues(m.requests) - sumValues(pm.requests)) / dt : null;
    const err = m && pm && dt > 0 ? Math.max(0, (m.requests['5xx'] || 0) - (pm.requests['5xx'] || 0)) / dt : null;
    return `<tr data-plugin="${esc(n)}"><td><a href="#/plugins/${encodeURIComponent(n)}">${esc(n)}</a></td>
      <td>${e ? esc(e.version) : '<span class="muted">not running</span>'}</td><td>${e ? badge(e.status) : ''}</td>
      <td class="num">${rps == null ? '—' : fmtNum(rps)}</td><td class="num">${err == null ? '—' : fmtNum(err)}</td>
      <td class="num">${m ? fmtNum(m.in_flight, 0) : '—'}</td><td class="num">${m ? `${fmtNum(m.pool.in_use, 0)} / ${fmtNum(m.pool.instances, 0)}` : '—'}</td>
      <td class="num">${m ? fmtBytes(m.pool.memory_bytes) : '—'}</td><td>${esc(e && e.error || '')}</td></tr>`;
  });
  $('#ov-plugins').innerHTML = rows.length ? `<table><thead><tr><th>Plugin</th><th>Version</th><th>Health</th><th class="num">Req/s</th><th class="num">5xx/s</th><th class="num">In flight</th><th class="num">In use / instances</th><th class="num">Memory</th><th>Error</th></tr></thead><tbody>${rows.join('')}</tbody></table>`
    : '<p class="muted">No plugin is running on this host. Upload one on the <a href="#/plugins">plugins page</a>.</p>';
}

// ---------------------------------------------------------------- plugins list

let pluginsCache = null; // the last /plugins answer, to draw a page at once on return

async function fetchPlugins(signal) {
  pluginsCache = await api('/plugins', { signal });
  pluginsCache.plugins.sort((a, b) => a.name.localeCompare(b.name));
  return pluginsCache;
}

const activeVersion = (pl) => (pl.active && pl.active.Version) || '';

function capsSummary(m) {
  if (!m) return '<span class="muted">—</span>';
  const c = m.capabilities || {}, out = [];
  if (c.sql) out.push('sql');
  if (c.cache) out.push('cache');
  if (c.publish && c.publish.length) out.push(`publish ${c.publish.length}`);
  if (c.subscribe && c.subscribe.length) out.push(`subscribe ${c.subscribe.length}`);
  if (c.http) out.push(`http ${(c.http.hosts || []).length} host${(c.http.hosts || []).length === 1 ? '' : 's'}`);
  if (c.config && c.config.length) out.push(`config ${c.config.length}`);
  if (c.call && c.call.length) out.push(`call ${c.call.length}`);
  if (c.metrics && c.metrics.length) out.push(`metrics ${c.metrics.length}`);
  return out.length ? `<div class="chips">${out.map((x) => `<span class="chip">${esc(x)}</span>`).join('')}</div>` : '<span class="muted">none</span>';
}

function limitsSummary(m) {
  if (!m) return '<span class="muted">—</span>';
  const l = m.limits || {};
  return `<span class="small">${l.memory_mib ? esc(l.memory_mib) + ' MiB' : '—'} · ${l.call_timeout_ms ? esc(l.call_timeout_ms) + ' ms' : '—'} · pool ${esc(l.pool_min ?? '?')}–${esc(l.pool_max ?? '?')}</span>`;
}

function pluginRow(pl) {
  const m = pl.running && pl.running.manifest;
  const act = activeVersion(pl);
  const chips = pl.versions.map((v) => `<span class="chip ${esc(v.state)}" title="${esc(v.state)}${v.last_error ? ': ' + esc(v.last_error) : ''}">${esc(v.version)}</span>`).join('');
  const routes = m && m.routes ? m.routes.length : null;
  const subs = m && m.capabilities && m.capabilities.subscribe ? m.capabilities.subscribe.map((s) => s.topic) : [];
  return `<tr data-plugin="${esc(pl.name)}">
    <td><a href="#/plugins/${encodeURIComponent(pl.name)}"><strong>${esc(pl.name)}</strong></a>${m && m.description ? `<div class="muted small">${esc(m.description)}</div>` : ''}</td>
    <td data-testid="active">${act ? `<span class="badge active">${esc(act)}</span>` : '<span class="badge none">none</span>'}</td>
    <td>${pl.running ? `${esc(pl.running.version)}<div class="muted small">${pl.running.in_use}/${pl.running.instances} in use · ${pl.running.memory_mib.toFixed(0)} MiB</div>` : '<span class="muted">not running here</span>'}</td>
    <td><div class="chips">${chips || '<span class="muted small">not in the registry</span>'}</div></td>
    <td class="num">${routes == null ? '—' : routes}</td>
    <td>${subs.length ? subs.map((t) => `<code>${esc(t)}</code>`).join(' ') : '<span class="muted">—</span>'}</td>
    <td>${capsSummary(m)}</td>
    <td>${limitsSummary(m)}</td></tr>`;
}

async function pluginsPage(p) {
  main.innerHTML = `<div class="page-head"><div><h1>Plugins</h1><div class="muted small">Registry versions and what this host runs. Routes, subscriptions, capabilities and limits are those of the version running here.</div></div></div>
    <div class="panel"><h2>Upload a bundle</h2>${uploadForm()}</div>
    <div class="panel"><div class="actions"><input type="search" id="filter" placeholder="Filter by name" aria-label="Filter plugins"><span class="muted small" id="count"></span></div>
    <div class="table-wrap" id="plugins-table"><p class="muted">Loading…</p></div></div>`;
  bindUpload(p);
  const draw = (data) => {
    const q = $('#filter').value.trim().toLowerCase();
    const list = q ? data.plugins.filter((x) => x.name.toLowerCase().includes(q)) : data.plugins;
    const nv = data.plugins.reduce((a, x) => a + x.versions.length, 0);
    $('#count').textContent = `${data.plugins.length} plugins, ${nv} versions${q ? `, ${list.length} shown` : ''}`;
    $('#plugins-table').innerHTML = list.length ? `<table id="plugins"><thead><tr><th>Plugin</th><th>Active</th><th>Running here</th><th>Versions (newest first)</th><th class="num">Routes</th><th>Subscriptions</th><th>Capabilities</th><th>Limits</th></tr></thead><tbody>${list.map(pluginRow).join('')}</tbody></table>`
      : `<div class="empty">${data.plugins.length ? 'No plugin matches the filter.' : 'No plugins yet: upload a bundle above.'}</div>`;
  };
  if (pluginsCache) draw(pluginsCache);
  let timer = 0;
  $('#filter').addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(() => pluginsCache && draw(pluginsCache), 80); });
  p.refresh = async () => {
    const data = await fetchPlugins(p.abort.signal);
    if (alive(p)) draw(data);
  };
  await p.refresh();
  if (alive(p)) rendered('plugins');
}

// ---------------------------------------------------------------- upload

function uploadForm() {
  return `<form class="inline" id="upload-form">
    <input type="file" id="bundle-file" name="bundle" accept=".keel,application/octet-stream" required aria-label="Bundle file">
    <button type="submit" class="act" id="upload-submit">Upload</button>
    <span class="muted small">A signed <code>.keel</code> bundle. It is verified and stored; it serves nothing until activated.</span>
  </form><div id="upload-result"></div>`;
}

function bindUpload(p) {
  $('#upload-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = $('#bundle-file').files[0];
    if (!f) return;
    if (!(await confirmStep('Upload bundle', `Upload ${f.name} (${fmtBytes(f.size)}) to the registry?\nThe host verifies its signature and manifest and stores it. Nothing changes in what is served until you activate it.`, 'Upload'))) return;
    const body = new FormData();
    body.append('bundle', f, f.name);
    const res = await act(`Uploading ${f.name}`, () => api('/plugins', { method: 'POST', body }),
      (r) => `Uploaded ${r.name} ${r.version} (${r.state}).`);
    if (!res || !alive(p)) return;
    $('#upload-form').reset();
    $('#upload-result').innerHTML = `<p data-testid="upload-result">Stored <strong>${esc(res.name)} ${esc(res.version)}</strong> <span class="badge ${esc(res.state)}">${esc(res.state)}</span>
      <span class="muted small">digest <code>${esc(String(res.digest).slice(0, 19))}</code>${res.signer ? ` · signed by <code>${esc(res.signer)}</code>` : ''}</span>
      <button type="button" class="act small" data-action="activate" data-name="${esc(res.name)}" data-version="${esc(res.version)}">Activate ${esc(res.version)}…</button>
      <a href="#/plugins/${encodeURIComponent(res.name)}">open ${esc(res.name)}</a></p>`;
    if (alive(p) && p.refresh) p.refresh().catch((err) => report(err, 'Refreshing the list'));
  });
}

// Buttons anywhere on a page carry data-action; one listener handles them all.
main.addEventListener('click', async (e) => {
  const b = e.target.closest('button[data-action]');
  if (!b || b.disabled) return;
  const { action, name, version, previous, topic, id } = b.dataset;
  switch (action) {
    case 'activate':
      if (!(await confirmStep(`Activate ${name} ${version}`, `Make ${name} ${version} the active version on every host?\nThe new version is verified, compiled, migrated and health-checked before it takes traffic; if any step fails the current version keeps serving.`, `Activate ${version}`))) return;
      await act(`Activating ${name} ${version}`, () => api(`/plugins/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}/activate`, { method: 'POST' }),
        (r) => `${name} ${r.Version || version} is active (generation ${r.Generation ?? '?'}).`);
      break;
    case 'rollback':
      if (!(await confirmStep(`Roll back ${name}`, `Roll ${name} back to ${previous}, the version that was active before?\nEvery host switches once the previous version is built and healthy.`, `Roll back to ${previous}`, true))) return;
      await act(`Rolling back ${name}`, () => api(`/plugins/${encodeURIComponent(name)}/rollback`, { method: 'POST' }),
        (r) => `${name} rolled back to ${r.Version || previous} (generation ${r.Generation ?? '?'}).`);
      break;
    case 'deactivate':
      if (!(await confirmStep(`Deactivate ${name}`, `Stop serving ${name} on every host?\nIts routes answer 404 and its subscriptions stop until a version is activated again. Stored versions are kept.`, 'Deactivate', true))) return;
      await act(`Deactivating ${name}`, () => api(`/plugins/${encodeURIComponent(name)}/deactivate`, { method: 'POST' }), () => `${name} is deactivated.`);
      break;
    case 'delete':
      if (!(await confirmStep(`Delete ${name} ${version}`, `Delete ${name} ${version} from the registry?\nThe bundle is removed for good; its history entries stay.`, 'Delete', true))) return;
      await act(`Deleting ${name} ${version}`, () => api(`/plugins/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}`, { method: 'DELETE' }), () => `${name} ${version} deleted.`);
      break;
    case 'replay':
      if (!(await confirmStep(`Replay a dead letter of ${topic}`, `Republish message ${id} to ${topic} and remove it from ${topic}.dlq?\nEvery consumer group subscribed to ${topic} receives it again, starting a fresh count of attempts; if it fails again it is parked again.`, 'Replay'))) return;
      await act(`Replaying ${id}`, () => api(`/events/dlq/${encodeURIComponent(topic)}/${encodeURIComponent(id)}/replay`, { method: 'POST' }),
        (r) => (r.result === 'gone' ? `Message ${id} was no longer parked: nothing was replayed.` : `Message ${id} replayed to ${r.topic}.`));
      break;
    case 'discard':
      if (!(await confirmStep(`Discard a dead letter of ${topic}`, `Remove message ${id} from ${topic}.dlq without processing it?\nThe event is lost for every subscriber that had failed on it.`, 'Discard', true))) return;
      await act(`Discarding ${id}`, () => api(`/events/dlq/${encodeURIComponent(topic)}/${encodeURIComponent(id)}/discard`, { method: 'POST' }),
        (r) => (r.result === 'gone' ? `Message ${id} was no longer parked.` : `Message ${id} discarded.`));
      break;
    default:
      return;
  }
  // Redraw from the API's state even after a failure: a failed activation marks the
  // version failed. The flash message lives outside the page and stays.
  if (token.get()) route();
});

// ---------------------------------------------------------------- plugin detail

function manifestDetails(m) {
  if (!m) return '<p class="muted">This plugin is not running on this host, so its manifest is not shown (the admin API reports manifests of running versions only).</p>';
  const c = m.capabilities || {}, l = m.limits || {};
  const list = (xs, f) => (xs && xs.length ? xs.map(f).join('') : '');
  const capRows = [
    ['SQL', c.sql ? 'own schema and role, one transaction per call' : ''],
    ['Cache', c.cache ? 'yes' + (c.cache.classes ? ' · classes ' + Object.entries(c.cache.classes).map(([k, v]) => `<code>${esc(k)}=${esc(v)}</code>`).join(' ') : '') : ''],
    ['Publishes', list(c.publish, (x) => `<code>${esc(x.topic)}</code>${x.partitions ? ` <span class="muted small">${esc(x.partitions)} partitions</span>` : ''} `)],
    ['Outbound HTTP', c.http ? list(c.http.hosts, (h) => `<code>${esc(h)}</code> `) + (c.http.allow_http ? ' <span class="badge degraded">plain http allowed</span>' : '') + (c.http.allow_private ? ' <span class="badge degraded">private addresses allowed</span>' : '') : ''],
    ['Settings', list(c.config, (x) => `<code>${esc(x.key)}</code>${x.secret ? ' <span class="muted small">secret</span>' : ''}${x.required ? ' <span class="muted small">required</span>' : ''} `)],
    ['Calls plugins', list(c.call, (x) => `<code>${esc(x)}</code> `)],
    ['Own metrics', list(c.metrics, (x) => `<code>${esc(x.name)}</code> `)],
  ].filter(([, v]) => v);
  return `<div class="grid">
    <div><h3>Routes</h3>${m.routes && m.routes.length ? `<table><thead><tr><th>Method</th><th>Path (under /api/${esc(m.name)})</th><th>Access</th><th>Database</th></tr></thead><tbody>${m.routes.map((r) => `<tr><td><code>${esc(r.method)}</code></td><td><code>${esc(r.path)}</code></td><td>${r.public ? 'public' : r.permission ? `permission <code>${esc(r.permission)}</code>` : 'authenticated'}</td><td>${r.read_only ? 'read-only' : 'read-write'}</td></tr>`).join('')}</tbody></table>` : '<p class="muted">No HTTP routes.</p>'}</div>
    <div><h3>Subscriptions</h3>${c.subscribe && c.subscribe.length ? `<table><thead><tr><th>Topic</th><th>Group</th><th class="num">Attempts</th></tr></thead><tbody>${c.subscribe.map((s) => `<tr><td><code>${esc(s.topic)}</code></td><td>${esc(s.group || m.name)}</td><td class="num">${esc(s.max_attempts || 'default')}</td></tr>`).join('')}</tbody></table>` : '<p class="muted">None.</p>'}</div>
    <div><h3>Capabilities</h3>${capRows.length ? `<dl class="kv">${capRows.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join('')}</dl>` : '<p class="muted">None: pure computation.</p>'}</div>
    <div><h3>Limits</h3><dl class="kv"><dt>Memory</dt><dd>${esc(l.memory_mib ?? '—')} MiB per instance</dd><dt>Call timeout</dt><dd>${esc(l.call_timeout_ms ?? '—')} ms</dd><dt>Pool</dt><dd>${esc(l.pool_min ?? '—')} to ${esc(l.pool_max ?? '—')} instances</dd>
      <dt>Request body</dt><dd>${l.max_request_bytes ? fmtBytes(l.max_request_bytes) : 'host default'}</dd><dt>Response body</dt><dd>${l.max_response_bytes ? fmtBytes(l.max_response_bytes) : 'host default'}</dd><dt>ABI</dt><dd>${esc(m.abi)}</dd></dl></div>
  </div>`;
}

function versionsTable(pl) {
  if (!pl.versions.length) return '<p class="muted">This plugin is not in the registry (loaded from the plugins directory at boot), so there is nothing to activate or roll back.</p>';
  const act = activeVersion(pl);
  return `<table id="versions"><thead><tr><th>Version</th><th>State</th><th>Uploaded</th><th class="num">Size</th><th>Signer</th><th>Digest</th><th></th></tr></thead><tbody>${pl.versions.map((v) => `
    <tr data-version="${esc(v.version)}"><td><strong>${esc(v.version)}</strong></td>
    <td>${badge(v.state)}${v.last_error ? `<div class="small err-text">${esc(v.last_error)}</div>` : ''}</td>
    <td>${fmtTime(v.uploaded_at)}<div class="muted small">by ${esc(v.uploaded_by)}</div></td><td class="num">${fmtBytes(v.size)}</td>
    <td>${v.signer ? `<code>${esc(v.signer)}</code>` : '<span class="badge degraded">unsigned</span>'}</td><td><code title="${esc(v.digest)}">${esc(String(v.digest).slice(0, 19))}</code></td>
    <td><div class="actions">${v.version === act ? '<span class="muted small">active</span>' : `<button type="button" class="act small" data-action="activate" data-name="${esc(pl.name)}" data-version="${esc(v.version)}">Activate…</button>
      <button type="button" class="act small danger secondary" data-action="delete" data-name="${esc(pl.name)}" data-version="${esc(v.version)}">Delete…</button>`}</div></td></tr>`).join('')}</tbody></table>`;
}

function historyTable(events, withPlugin) {
  if (!events.length) return '<p class="muted">No changes recorded.</p>';
  return `<table class="history"><thead><tr><th>When</th>${withPlugin ? '<th>Plugin</th>' : ''}<th>Action</th><th>Version</th><th>Actor</th><th>Detail</th></tr></thead><tbody>${events.map((ev) => {
    const d = decodeDetail(ev.Detail);
    const detail = [d.from ? `from ${d.from}` : '', d.generation ? `generation ${d.generation}` : '', d.reason || '', d.signer ? `signer ${d.signer}` : '', d.size ? fmtBytes(d.size) : '']
      .filter(Boolean).map(esc).join(' · ');
    return `<tr data-action-row="${esc(ev.Action)}"><td title="${esc(ev.At)}">${fmtTime(ev.At)}<div class="muted small">${fmtAgo(ev.At)}</div></td>${withPlugin ? `<td><a href="#/plugins/${encodeURIComponent(ev.Name)}">${esc(ev.Name)}</a></td>` : ''}
      <td>${badge(ACTION_LOOK[ev.Action] || 'inactive', ev.Action)}</td>
      <td>${esc(ev.Version || '—')}</td><td>${esc(ev.Actor)}</td><td class="small">${detail}</td></tr>`;
  }).join('')}</tbody></table>`;
}

const CHARTS = [
  ['requests', 'Requests /s'],
  ['errors', 'Errors /s'],
  ['latency', 'Latency (ms)'],
  ['pool', 'Instance pool'],
  ['failures', 'Failed calls /s'],
  ['memory', 'Linear memory (MiB)'],
];

async function pluginPage(p, name) {
  const [data, hist] = await Promise.all([
    fetchPlugins(p.abort.signal),
    api(`/plugins/${encodeURIComponent(name)}/history?limit=20`, { signal: p.abort.signal }).catch((e) => (e.name === 'AbortError' ? Promise.reject(e) : { error: e })),
  ]);
  if (!alive(p)) return;
  const pl = data.plugins.find((x) => x.name === name);
  if (!pl) {
    main.innerHTML = `<div class="panel"><h2>No plugin named ${esc(name)}</h2><p><a href="#/plugins">All plugins</a></p></div>`;
    return;
  }
  main.innerHTML = `<div class="page-head" id="plugin-head"></div>
    <div class="panel"><div class="actions"><strong>Totals since start</strong><span class="muted small" id="totals">…</span></div></div>
    <div class="charts">${CHARTS.map(([id, title]) => `<div class="chart"><h2>${title}</h2><canvas data-chart="${id}" role="img"></canvas><div class="legend" id="legend-${id}"></div></div>`).join('')}</div>
    <div class="panel"><h2>Versions</h2><div class="table-wrap" id="plugin-versions"></div></div>
    <div class="panel"><h2>Manifest of the running version</h2><div id="plugin-manifest"></div></div>
    <div class="panel"><h2>Recent changes</h2><div class="table-wrap" id="plugin-history"></div><p class="small"><a href="#/activity">All activity</a></p></div>`;
  const drawInfo = (pl) => {
    const act = activeVersion(pl), prev = pl.active && pl.active.PreviousVersion;
    const r = pl.running;
    $('#plugin-head').innerHTML = `<div><h1>${esc(pl.name)}</h1><div class="muted">${esc(r && r.manifest && r.manifest.description || '')}</div></div>
      <div class="panel"><dl class="kv">
        <dt>Active (registry)</dt><dd data-testid="active-version">${act ? `<span class="badge active">${esc(act)}</span> <span class="muted small">generation ${esc(pl.active.Generation)} · by ${esc(pl.active.UpdatedBy)} ${fmtAgo(pl.active.UpdatedAt)}</span>` : '<span class="badge none">none</span>'}</dd>
        <dt>Serving here</dt><dd data-testid="running-version">${r ? `<strong>${esc(r.version)}</strong> <span class="muted small">since ${fmtTime(r.activated)} · ${esc(r.source)}</span>` : '<span class="muted">not running on this host</span>'}</dd>
        <dt>Pool now</dt><dd id="pool-now">${r ? `${r.in_use} in use of ${r.instances} · ${r.memory_mib.toFixed(1)} MiB` : '—'}</dd>
      </dl></div><span class="spacer"></span>
      <div class="actions">
        <button type="button" class="act danger secondary" data-action="rollback" data-name="${esc(pl.name)}" data-previous="${esc(prev || '')}" ${prev ? '' : 'disabled title="No previous version to roll back to"'}>Roll back${prev ? ' to ' + esc(prev) : ''}…</button>
        <button type="button" class="act danger" data-action="deactivate" data-name="${esc(pl.name)}" ${act ? '' : 'disabled title="No active version"'}>Deactivate…</button>
      </div>`;
    $('#plugin-versions').innerHTML = versionsTable(pl);
    $('#plugin-manifest').innerHTML = manifestDetails(r && r.manifest);
  };
  drawInfo(pl);
  $('#plugin-history').innerHTML = hist.error ? `<p class="muted">${errorHTML(hist.error)}</p>` : historyTable(hist.events || [], false);
  let shown = JSON.stringify(pl);
  rendered('plugin');

  let n = 0;
  await poll(p, async () => {
    const h = await sample(name, p.abort.signal);
    if (!alive(p)) return;
    drawPluginCharts(name, h);
    // The registry state changes rarely; re-read it every 10 s and redraw only when it did.
    if (++n % 5 === 0) {
      const fresh = (await fetchPlugins(p.abort.signal)).plugins.find((x) => x.name === name);
      if (alive(p) && fresh && JSON.stringify(fresh) !== shown) { shown = JSON.stringify(fresh); drawInfo(fresh); }
    }
  });
}

function legend(id, items) {
  $('#legend-' + id).innerHTML = items.map((it, i) => `<span><i class="sw-${it.sw ?? i}"></i>${esc(it.label)} <b>${esc(it.value)}</b></span>`).join('');
}

function drawPluginCharts(name, h) {
  const now = h[h.length - 1].unix_ms;
  // Show what there is: the window grows from one minute to five as snapshots accumulate.
  const windowMs = Math.min(WINDOW_MS, Math.max(60e3, now - h[0].unix_ms));
  const P = (s) => s.plugins[name] || { requests: {}, failures: {}, pool: {}, latency: { le: [], counts: [], count: 0, sum: 0 } };
  const last = (pts) => { for (let i = pts.length - 1; i >= 0; i--) if (pts[i].v != null) return pts[i].v; return null; };
  const chart = (id, ss, fmt, minMax) => {
    drawChart($(`canvas[data-chart=${id}]`), { series: ss, now, windowMs, fmt, minMax });
    legend(id, ss.map((s, i) => ({ label: s.label, value: last(s.points) == null ? '—' : fmt(last(s.points)), sw: s.sw ?? i })));
  };
  const num = (v) => fmtNum(v, v < 10 ? 2 : 1);

  chart('requests', [{ label: 'all', color: PALETTE[0], points: rate(h, (s) => sumValues(P(s).requests)) }], num, 1);
  chart('errors', [
    { label: '5xx', color: PALETTE[2], sw: 2, points: rate(h, (s) => P(s).requests['5xx'] || 0) },
    { label: '4xx', color: PALETTE[1], sw: 1, points: rate(h, (s) => P(s).requests['4xx'] || 0) },
  ], num, 1);

  // Percentiles over the last 10 s (five snapshots), recomputed at every point.
  const q = { p50: [], p95: [], p99: [] };
  for (let i = 1; i < h.length; i++) {
    let j = Math.max(0, i - 5);
    while (j < i - 1 && h[i].unix_ms - h[j].unix_ms > 12e3) j++; // not across a pause in polling
    const d = histDelta(P(h[i]).latency, P(h[j]).latency);
    const ok = h[i].unix_ms - h[j].unix_ms <= 12e3;
    for (const [k, qq] of [['p50', 0.5], ['p95', 0.95], ['p99', 0.99]]) {
      const v = ok ? quantile(qq, d.le, d.counts, d.count) : null;
      q[k].push({ t: h[i].unix_ms, v: v == null ? null : v * 1000 });
    }
  }
  const ms = (v) => (v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(2));
  chart('latency', [
    { label: 'p50', color: PALETTE[0], points: q.p50 },
    { label: 'p95', color: PALETTE[1], points: q.p95 },
    { label: 'p99', color: PALETTE[2], points: q.p99 },
  ], ms, 1);

  chart('pool', [
    { label: 'instances', color: PALETTE[0], points: gaugeOf(h, (s) => P(s).pool.instances ?? 0) },
    { label: 'in use', color: PALETTE[1], points: gaugeOf(h, (s) => P(s).pool.in_use ?? 0) },
  ], (v) => fmtNum(v, 1), 2);

  const reasons = new Set();
  for (const s of h) for (const r of Object.keys(P(s).failures)) reasons.add(r);
  const fs = [...reasons].sort().map((r, i) => ({ label: r, color: PALETTE[(i + 2) % PALETTE.length], sw: (i + 2) % PALETTE.length, points: rate(h, (s) => P(s).failures[r] || 0) }));
  chart('failures', fs.length ? fs : [{ label: 'none so far', color: PALETTE[3], sw: 3, points: rate(h, () => 0) }], num, 1);

  chart('memory', [{ label: 'all instances', color: PALETTE[4], sw: 4, points: gaugeOf(h, (s) => (P(s).pool.memory_bytes ?? 0) / 1048576) }], (v) => fmtNum(v, 1), 1);

  const cur = P(h[h.length - 1]);
  const fails = Object.entries(cur.failures).map(([k, v]) => `${k} ${fmtNum(v, 0)}`).join(', ');
  $('#totals').textContent = `requests: ${['2xx', '3xx', '4xx', '5xx', 'other'].filter((k) => cur.requests[k]).map((k) => `${k} ${fmtNum(cur.requests[k], 0)}`).join(', ') || 'none'}` +
    ` · in flight ${fmtNum(cur.in_flight ?? 0, 0)} · failed calls: ${fails || 'none'} · latency mean ${cur.latency.count ? ms(cur.latency.sum / cur.latency.count * 1000) + ' ms' : '—'}`;
  const pn = $('#pool-now');
  if (pn && cur.pool.instances != null) pn.textContent = `${fmtNum(cur.pool.in_use, 0)} in use of ${fmtNum(cur.pool.instances, 0)} · ${fmtBytes(cur.pool.memory_bytes)}`;
}

// ---------------------------------------------------------------- events

const EVENTS_POLL_MS = 5000; // topic statistics cost broker round trips: poll slower than metrics

function subsCell(subs) {
  if (!subs.length) return '<span class="muted">none</span>';
  return subs.map((s) => `<div data-group="${esc(s.group)}"><code>${esc(s.group)}</code>${s.plugin !== s.group ? ` <span class="muted small">${esc(s.plugin)}</span>` : ''}
    · lag <span class="badge ${s.lag > 0 ? 'degraded' : 'ok'}" data-testid="lag">${fmtNum(s.lag, 0)}</span>${s.pending != null ? ` <span class="muted small">${fmtNum(s.pending, 0)} in flight</span>` : ''}${s.known ? '' : ' <span class="muted small">(no position yet)</span>'}</div>`).join('');
}

function topicRow(t, inspectable) {
  const dlq = t.dlq;
  const parked = inspectable ? (dlq.messages > 0
    ? `<a href="#/events/${encodeURIComponent(t.topic)}" class="badge failed" data-testid="dlq-count">${fmtNum(dlq.messages, 0)} parked</a>`
    : `<a href="#/events/${encodeURIComponent(t.topic)}" class="badge ok" data-testid="dlq-count">0</a>`) : '<span class="muted">—</span>';
  return `<tr data-topic="${esc(t.topic)}">
    <td><code><strong>${esc(t.topic)}</strong></code>${t.error ? `<div class="small err-text">${esc(t.error)}</div>` : ''}${inspectable && !t.exists && !t.error ? '<div class="muted small">not created on the broker yet</div>' : ''}</td>
    <td>${t.publishers.length ? t.publishers.map((x) => esc(x)).join(', ') : '<span class="muted">—</span>'}</td>
    <td class="num">${inspectable ? fmtNum(t.messages, 0) : '—'}${t.partitions > 1 ? `<div class="muted small">${t.partitions} partitions</div>` : ''}</td>
    <td>${subsCell(t.subscriptions)}</td>
    <td>${parked}${dlq.subscriptions.length ? `<div class="small muted">read by</div>${subsCell(dlq.subscriptions)}` : ''}</td></tr>`;
}

async function eventsPage(p) {
  main.innerHTML = `<div class="page-head"><div><h1>Events</h1><div class="muted small">The topics the plugins active on this host declare, how far behind each consumer group is, and what their dead-letter topics hold. Refreshes every 5 s.</div></div></div>
    <div id="ev-note"></div>
    <div class="panel"><div class="actions"><span class="muted small" id="ev-count"></span></div><div class="table-wrap" id="ev-topics"><p class="muted">Loading…</p></div>
    <p class="muted small">Stored counts what the broker keeps (for its retention period), consumed or not. Lag counts what a group has not finished: not delivered yet, or delivered and not acknowledged. A message its subscriber keeps failing on is parked in the topic's dead-letter topic after the subscription's attempts.</p></div>`;
  let first = true, shown = '';
  await poll(p, async () => {
    const data = await api('/events', { signal: p.abort.signal });
    if (!alive(p)) return;
    const json = JSON.stringify(data);
    if (json !== shown) {
      shown = json;
      const parked = data.topics.reduce((a, t) => a + (t.dlq.messages || 0), 0);
      $('#ev-note').innerHTML = data.inspectable ? '' : '<div class="panel"><span class="badge degraded">limited</span> This host\'s event bus cannot be inspected: only the declarations are shown.</div>';
      $('#ev-count').textContent = `${data.topics.length} topic${data.topics.length === 1 ? '' : 's'}${data.inspectable ? ` · ${parked} parked message${parked === 1 ? '' : 's'}` : ''}`;
      $('#ev-topics').innerHTML = data.topics.length
        ? `<table id="topics"><thead><tr><th>Topic</th><th>Publishers</th><th class="num">Stored</th><th>Subscriptions</th><th>Dead letters</th></tr></thead><tbody>${data.topics.map((t) => topicRow(t, data.inspectable)).join('')}</tbody></table>`
        : '<div class="empty">No active plugin declares a topic.</div>';
    }
    if (first) { first = false; rendered('events'); }
  }, EVENTS_POLL_MS);
}

function prettyJSON(v) {
  try { return JSON.stringify(v, null, 2); } catch { return String(v); }
}

function parkedRow(topic, m) {
  const ev = m.event;
  const payload = m.payload !== undefined ? prettyJSON(m.payload) : m.payload_text || (m.payload_base64 ? 'base64: ' + m.payload_base64 : '');
  const headers = Object.entries(m.headers || {}).map(([k, v]) => `${k}: ${v}`).join('\n');
  const why = m.removable ? '' : ' disabled title="Kafka removes only the oldest message of a partition: handle the older ones first"';
  return `<tr data-id="${esc(m.id)}">
    <td title="${esc(m.parked_at)}">${fmtTime(m.parked_at)}<div class="muted small">${fmtAgo(m.parked_at)}</div></td>
    <td>${ev ? `<strong>${esc(ev.type)}</strong><div class="muted small"><code>${esc(ev.id)}</code>${ev.tenant ? ` · tenant ${esc(ev.tenant)}` : ''} · from ${esc(ev.source)}</div>` : `<code>${esc(m.message_id || m.id)}</code>`}
      <details><summary class="small">Payload${m.size ? ` (${fmtBytes(m.size)} message)` : ''}</summary><pre class="json" data-testid="payload">${esc(payload)}</pre>${headers ? `<pre class="json small">${esc(headers)}</pre>` : ''}</details></td>
    <td><code>${esc(m.group || '—')}</code></td>
    <td class="num">${esc(m.attempts || '—')}</td>
    <td class="err-text small" data-testid="error">${esc(m.error)}</td>
    <td><div class="actions"><button type="button" class="act small" data-action="replay" data-topic="${esc(topic)}" data-id="${esc(m.id)}"${why}>Replay…</button>
      <button type="button" class="act small danger secondary" data-action="discard" data-topic="${esc(topic)}" data-id="${esc(m.id)}"${why}>Discard…</button></div>
      <div class="muted small">#${esc(m.id)}</div></td></tr>`;
}

async function deadLettersPage(p, topic) {
  main.innerHTML = `<div class="page-head"><div><h1>Dead letters of <code>${esc(topic)}</code></h1><div class="muted small">Messages parked in <code>${esc(topic)}.dlq</code> after a subscriber gave up on them, oldest first. <strong>Replay</strong> republishes one to <code>${esc(topic)}</code>, where every subscribed group receives it again, and removes it from here; <strong>discard</strong> removes it. Refreshes every 5 s.</div></div>
    <span class="spacer"></span><a href="#/events">All topics</a></div>
    <div class="panel"><div class="actions"><span id="dlq-count" class="muted small"></span></div><div class="table-wrap" id="dlq-list"><p class="muted">Loading…</p></div></div>`;
  let first = true, shown = '';
  await poll(p, async () => {
    const data = await api(`/events/dlq/${encodeURIComponent(topic)}?limit=100`, { signal: p.abort.signal });
    if (!alive(p)) return;
    const json = JSON.stringify(data);
    if (json !== shown) { // redraw only on change, so open payloads stay open
      shown = json;
      $('#dlq-count').textContent = `${data.total} parked${data.messages.length < data.total ? `, the oldest ${data.messages.length} shown` : ''}`;
      $('#dlq-list').innerHTML = data.messages.length
        ? `<table id="dead-letters"><thead><tr><th>Parked</th><th>Event</th><th>Group</th><th class="num">Attempts</th><th>Last error</th><th></th></tr></thead><tbody>${data.messages.map((m) => parkedRow(topic, m)).join('')}</tbody></table>`
        : '<div class="empty" data-testid="dlq-empty">Nothing is parked for this topic.</div>';
    }
    if (first) { first = false; rendered('dead-letters'); }
  }, EVENTS_POLL_MS);
}

// ---------------------------------------------------------------- activity

async function activityPage(p) {
  main.innerHTML = `<div class="page-head"><div><h1>Recent admin activity</h1><div class="muted small">Uploads, activations, rollbacks, deactivations, deletions and failed activations, newest first, with the actor who made them.</div></div></div>
    <div class="panel"><div class="actions"><input type="search" id="act-filter" placeholder="Filter by plugin, action or actor" aria-label="Filter activity"><span class="muted small" id="act-count"></span></div>
    <div class="table-wrap" id="activity"><p class="muted">Loading…</p></div></div>`;
  // One request: the registry's history across every plugin, newest first.
  let events = [], failed = null;
  try {
    const r = await api('/history?limit=1000', { signal: p.abort.signal });
    events = r.events || [];
  } catch (e) { if (e.name === 'AbortError') throw e; failed = e; }
  const names = [...new Set(events.map((e) => e.Name))];
  if (!alive(p)) return;
  events.sort((a, b) => (b.At > a.At ? 1 : b.At < a.At ? -1 : b.ID - a.ID));
  const draw = () => {
    const q = $('#act-filter').value.trim().toLowerCase();
    const list = (q ? events.filter((e) => `${e.Name} ${e.Action} ${e.Actor} ${e.Version}`.toLowerCase().includes(q)) : events).slice(0, 300);
    $('#act-count').textContent = `${events.length} entries from ${names.length} plugins${list.length < events.length ? `, ${list.length} shown` : ''}`;
    $('#activity').innerHTML = list.length ? historyTable(list, true) : '<div class="empty">No activity recorded.</div>';
  };
  draw();
  if (failed) report(failed, 'Reading some plugin histories');
  $('#act-filter').addEventListener('input', draw);
  rendered('activity');
}

route();

// api.js: the admin API client and small formatting helpers shared by the pages.

const TOKEN_KEY = 'keel.admin.token';

// The token lives in sessionStorage: it survives reloads of this tab but not the
// closing of the browser, and is never sent anywhere but /admin/api.
export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY) || '',
  set: (t) => sessionStorage.setItem(TOKEN_KEY, t),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

// ApiError carries the platform's error shape {"error":{code,message,request_id}}.
export class ApiError extends Error {
  constructor(status, code, message, requestId) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId || '';
  }
}

// api calls /admin/api + path with the bearer token and returns the decoded JSON.
// Failures throw ApiError, network failures included (code "network").
export async function api(path, { method = 'GET', body, headers = {}, signal } = {}) {
  let resp;
  try {
    resp = await fetch('/admin/api' + path, {
      method, body, signal, cache: 'no-store', credentials: 'omit',
      headers: { ...headers, Authorization: 'Bearer ' + token.get() },
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'the host did not answer: ' + e.message, '');
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON: reported below */ }
  if (!resp.ok) {
    const e = (data && data.error) || {};
    throw new ApiError(resp.status, e.code || 'http_' + resp.status,
      e.message || text.slice(0, 300) || resp.statusText, e.request_id || resp.headers.get('X-Request-ID'));
  }
  if (data === null && text) throw new ApiError(resp.status, 'bad_response', 'the host answered with something that is not JSON', resp.headers.get('X-Request-ID'));
  return data;
}

const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
// esc makes any value safe inside HTML text and attribute values.
export const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (c) => ESC[c]);

export function fmtBytes(n) {
  if (n == null || !isFinite(n)) return '—';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(n < 10 ? 1 : 0)) + ' ' + u[i];
}

export function fmtDuration(s) {
  if (s == null || !isFinite(s)) return '—';
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60), sec = s % 60;
  if (d) return `${d}d ${h}h ${m}m`;
  if (h) return `${h}h ${m}m ${sec}s`;
  if (m) return `${m}m ${sec}s`;
  return `${sec}s`;
}

export function fmtTime(t) {
  if (!t) return '—';
  const d = new Date(t);
  if (isNaN(d) || d.getFullYear() < 2000) return '—';
  return d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

export function fmtAgo(t) {
  const d = new Date(t);
  if (isNaN(d) || d.getFullYear() < 2000) return '';
  const s = (Date.now() - d.getTime()) / 1000;
  if (s < 0) return 'just now';
  return fmtDuration(s) + ' ago';
}

export function fmtNum(v, digits = 1) {
  if (v == null || !isFinite(v)) return '—';
  if (Math.abs(v) >= 1e6) return (v / 1e6).toFixed(digits) + 'M';
  if (Math.abs(v) >= 1e4) return (v / 1e3).toFixed(digits) + 'k';
  return Number.isInteger(v) ? String(v) : v.toFixed(digits);
}

// decodeDetail turns a history event's Detail (JSON bytes, base64 in the API's JSON)
// into an object.
export function decodeDetail(d) {
  if (!d) return {};
  if (typeof d === 'object') return d;
  try { return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(d), (c) => c.charCodeAt(0)))); } catch { return {}; }
}

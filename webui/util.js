// Small helpers for the console: DOM building, API calls, human units.

/** Builds an element: h('div', {class: 'x', onclick: f}, child, 'text', ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'style') Object.assign(el.style, v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** An API error with the server's code and message. */
export class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

export const api = {
  csrf: null,
  onUnauthorized: null,
  async req(method, path, body) {
    const headers = { 'Accept': 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (method !== 'GET' && this.csrf) headers['X-CSRF-Token'] = this.csrf;
    const resp = await fetch(path, {
      method, headers, credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (resp.status === 204) return null;
    let data = null;
    try { data = await resp.json(); } catch { data = null; }
    if (!resp.ok) {
      const err = data && data.error ? data.error : { code: 'http_' + resp.status, message: resp.statusText };
      if (resp.status === 401 && this.onUnauthorized && !path.startsWith('/api/v1/auth/')) this.onUnauthorized();
      throw new ApiError(resp.status, err.code, err.message);
    }
    return data;
  },
  get(p) { return this.req('GET', p); },
  post(p, b) { return this.req('POST', p, b); },
  put(p, b) { return this.req('PUT', p, b); },
  del(p) { return this.req('DELETE', p); },
};

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
/** 1536 -> "1.5 KiB". */
export function bytes(n) {
  if (n === null || n === undefined || !isFinite(n)) return '–';
  let i = 0; let v = n;
  while (v >= 1024 && i < UNITS.length - 1) { v /= 1024; i++; }
  const txt = i === 0 || v >= 100 || Number.isInteger(v) ? v.toFixed(0) : v.toFixed(1);
  return txt + ' ' + UNITS[i];
}
/** Bytes per second in decimal MB/s (storage convention). */
export function rate(bps) {
  if (!isFinite(bps)) return '–';
  if (bps >= 1e9) return (bps / 1e9).toFixed(2) + ' GB/s';
  if (bps >= 1e8) return (bps / 1e6).toFixed(0) + ' MB/s';
  if (bps >= 1e6) return (bps / 1e6).toFixed(1) + ' MB/s';
  if (bps >= 1e3) return (bps / 1e3).toFixed(0) + ' kB/s';
  return bps.toFixed(0) + ' B/s';
}
/** Operations per second. */
export function iops(v) {
  if (!isFinite(v)) return '–';
  return v >= 10000 ? (v / 1000).toFixed(1) + 'k' : Math.round(v).toLocaleString('en-US');
}
/** Milliseconds with sensible precision. */
export function ms(v) {
  if (!isFinite(v)) return '–';
  return v < 1 ? (v * 1000).toFixed(0) + ' µs' : v < 10 ? v.toFixed(2) + ' ms' : v.toFixed(0) + ' ms';
}
/** Seconds as "2 h 5 min", "12 min", "45 s". */
export function duration(s) {
  if (s === null || s === undefined || !isFinite(s)) return '–';
  s = Math.max(0, Math.round(s));
  if (s < 60) return s + ' s';
  const m = Math.floor(s / 60);
  if (m < 60) return m + ' min';
  const hh = Math.floor(m / 60);
  if (hh < 48) return hh + ' h ' + (m % 60) + ' min';
  return Math.floor(hh / 24) + ' d ' + (hh % 24) + ' h';
}
/** "12 min left". */
export function eta(s) { return s === null || s === undefined ? 'estimating…' : s === 0 ? 'done' : duration(s) + ' left'; }
/** Unix ms to a local date-time string. */
export function when(ms) {
  if (!ms) return '–';
  const d = new Date(ms);
  if (d.toDateString() === new Date().toDateString()) return d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  return d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}
/** Percent with one decimal. */
export function pct(done, total) { return total > 0 ? Math.min(100, (100 * done) / total) : 0; }

/** Shows a transient message. */
export function toast(msg, kind = 'info') {
  const box = document.getElementById('toasts');
  for (const old of box.children) if (old.textContent === msg) old.remove();
  while (box.children.length >= 3) box.firstChild.remove();
  const t = h('div', { class: 'toast ' + kind, role: kind === 'error' ? 'alert' : 'status' }, msg);
  box.append(t);
  setTimeout(() => t.remove(), kind === 'error' ? 7000 : 3500);
}

/** A state badge. */
export function badge(state, text) {
  return h('span', { class: 'badge ' + state }, text ?? state);
}

const ICONS = {
  ok: 'M5 12.5l4.5 4.5L19 7.5',
  warn: 'M12 3.5l9.5 17h-19zM12 10v4.5M12 17.5v.5',
  bad: 'M12 3.5l9.5 17h-19zM12 10v4.5M12 17.5v.5',
  lock: 'M6.5 11h11v9h-11zM8.5 11V8a3.5 3.5 0 017 0v3',
};
/** A small stroke icon (inline SVG, no font needed). */
export function icon(name) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24'); svg.setAttribute('width', '30'); svg.setAttribute('height', '30');
  svg.setAttribute('aria-hidden', 'true'); svg.setAttribute('class', 'icon');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', ICONS[name] || ICONS.warn);
  path.setAttribute('fill', 'none'); path.setAttribute('stroke', 'currentColor');
  path.setAttribute('stroke-width', '2.2'); path.setAttribute('stroke-linecap', 'round'); path.setAttribute('stroke-linejoin', 'round');
  svg.append(path);
  return svg;
}

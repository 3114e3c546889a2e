// Ingot console: a small single-page app (hash routes), no framework.
import { h, api, ApiError, bytes, rate, iops, ms, duration, eta, when, pct, toast, badge, icon } from './util.js';
import { LineChart } from './charts.js';

const S = {
  system: null, pool: null, devices: [], jobs: [], encryption: null, export: null,
  prevStats: null, series: { rb: [], wb: [], ro: [], wo: [], rl: [], wl: [] },
  charts: {}, page: null, es: null, refreshTimer: null,
};
const POINTS = 120;

const PAGES = {
  dashboard: { title: 'Dashboard', render: renderDashboard, update: updateDashboard },
  pool: { title: 'Pool & jobs', render: renderPool, update: updatePool },
  devices: { title: 'Devices', render: renderDevices, update: updateDevices },
  encryption: { title: 'Encryption & export', render: renderEncryption, update: updateEncryption },
  events: { title: 'Events', render: renderEvents },
  settings: { title: 'Settings', render: renderSettings },
  tokens: { title: 'API tokens', render: renderTokens },
};

const app = () => document.getElementById('app');

// ---------- boot, login, setup ----------

async function boot() {
  api.onUnauthorized = () => { stopLive(); showLogin(); };
  let st;
  try { st = await api.get('/api/v1/auth/status'); } catch (e) { app().replaceChildren(h('p', { class: 'login-wrap' }, 'Console unavailable: ' + e.message)); return; }
  if (!st.password_set) return showSetup();
  if (!st.authenticated) return showLogin();
  api.csrf = st.csrf_token;
  startShell();
}

function authCard(title, intro, fields, submitText, onSubmit) {
  const err = h('div', { class: 'form-error', role: 'alert' });
  const btn = h('button', { class: 'primary', type: 'submit' }, submitText);
  const form = h('form', { class: 'stack', onsubmit: async (e) => {
    e.preventDefault(); err.textContent = ''; btn.disabled = true;
    try { await onSubmit(new FormData(form)); } catch (ex) { err.textContent = ex.message; } finally { btn.disabled = false; }
  } }, fields, err, btn);
  app().replaceChildren(h('div', { class: 'login-wrap' }, h('div', { class: 'login' },
    h('div', { class: 'brand' }, h('img', { src: '/favicon.svg', alt: '' }), 'Ingot'),
    h('h1', {}, title), h('p', {}, intro), form)));
  form.querySelector('input')?.focus();
}

function showSetup() {
  authCard('Set the admin password', 'This appliance has no admin password yet. Choose one (at least 8 characters) to secure the console.',
    [h('label', {}, 'New password', h('input', { type: 'password', name: 'password', autocomplete: 'new-password', required: true, minlength: 8 })),
     h('label', {}, 'Repeat password', h('input', { type: 'password', name: 'password2', autocomplete: 'new-password', required: true, minlength: 8 }))],
    'Set password and continue', async (fd) => {
      if (fd.get('password') !== fd.get('password2')) throw new Error('The passwords do not match.');
      const r = await api.post('/api/v1/auth/setup', { password: fd.get('password') });
      api.csrf = r.csrf_token; startShell();
    });
}

function showLogin() {
  authCard('Sign in', 'Sign in with the appliance admin password.',
    [h('label', {}, 'Password', h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true }))],
    'Sign in', async (fd) => {
      try {
        const r = await api.post('/api/v1/auth/login', { password: fd.get('password') });
        api.csrf = r.csrf_token; startShell();
      } catch (e) {
        if (e instanceof ApiError && e.status === 429) throw new Error('Too many failed attempts. ' + e.message);
        throw e;
      }
    });
}

// ---------- shell, live data ----------

function navLink(key) {
  return h('a', { href: '#/' + key, id: 'nav-' + key, dataset: { page: key } }, PAGES[key].title, h('span', { class: 'dot', 'aria-hidden': 'true' }));
}

async function startShell() {
  const nav = h('nav', { class: 'nav', 'aria-label': 'Main' },
    h('div', { class: 'brand' }, h('img', { src: '/favicon.svg', alt: '' }), 'Ingot'),
    Object.keys(PAGES).map(navLink),
    h('div', { class: 'spacer' }),
    h('div', { class: 'who', id: 'who' }),
    h('button', { class: 'link', onclick: logout }, 'Sign out'));
  const main = h('main', { id: 'main' }, h('div', { id: 'banner' }), h('div', { id: 'page' }));
  app().replaceChildren(h('div', { class: 'shell' }, nav, main));
  S.page = null;
  window.onhashchange = route;
  await refresh();
  route();
  startLive();
}

async function logout() {
  try { await api.post('/api/v1/auth/logout'); } catch { /* already gone */ }
  stopLive(); api.csrf = null; showLogin();
}

async function refresh() {
  try {
    const [system, pool, devices, jobs, encryption, exp] = await Promise.all([
      api.get('/api/v1/system'), api.get('/api/v1/pool'), api.get('/api/v1/devices'),
      api.get('/api/v1/jobs'), api.get('/api/v1/encryption'), api.get('/api/v1/export')]);
    Object.assign(S, { system, pool, devices, jobs, encryption, export: exp });
  } catch (e) { if (!(e instanceof ApiError && e.status === 401)) toast('Refresh failed: ' + e.message, 'error'); return; }
  renderBanner();
  const who = document.getElementById('who');
  if (who) who.textContent = `${S.system.hostname} · v${S.system.version}`;
  if (S.page && PAGES[S.page].update) PAGES[S.page].update();
}

let refreshPending = null;
function refreshSoon() {
  if (refreshPending) return;
  refreshPending = setTimeout(() => { refreshPending = null; refresh(); }, 150);
}

function startLive() {
  stopLive();
  const es = new EventSource('/api/v1/events/stream');
  S.es = es;
  es.addEventListener('stats', (m) => onStats(JSON.parse(m.data)));
  es.addEventListener('event', (m) => onEvent(JSON.parse(m.data)));
  es.addEventListener('lagged', () => refreshSoon());
  es.onerror = () => { /* EventSource reconnects by itself */ };
  S.refreshTimer = setInterval(refresh, 15000);
}
function stopLive() {
  if (S.es) { S.es.close(); S.es = null; }
  if (S.refreshTimer) { clearInterval(S.refreshTimer); S.refreshTimer = null; }
}

function avgLatencyMs(cur, prev) {
  const c = cur.counts.reduce((a, b) => a + b, 0) - prev.counts.reduce((a, b) => a + b, 0);
  return c > 0 ? (cur.sum_us - prev.sum_us) / c / 1000 : 0;
}

function onStats(st) {
  const p = S.prevStats;
  S.prevStats = st;
  if (!p) return;
  const dt = Math.max(0.001, (st.time_ms - p.time_ms) / 1000);
  const a = st.pool, b = p.pool, s = S.series;
  const add = (k, v) => { s[k].push(v); if (s[k].length > POINTS) s[k].shift(); };
  add('rb', (a.read_bytes - b.read_bytes) / dt); add('wb', (a.write_bytes - b.write_bytes) / dt);
  add('ro', (a.read_ops - b.read_ops) / dt); add('wo', (a.write_ops - b.write_ops) / dt);
  add('rl', avgLatencyMs(a.read_latency, b.read_latency)); add('wl', avgLatencyMs(a.write_latency, b.write_latency));
  if (S.page === 'dashboard') updateLive();
}

function upsertJob(job) {
  const i = S.jobs.findIndex((j) => j.id === job.id);
  if (i >= 0) S.jobs[i] = job; else S.jobs.unshift(job);
}

function onEvent(ev) {
  const d = ev.data;
  if (d.type === 'job_progress') {
    upsertJob(d.job);
    updateJobs();
    if (d.job.state !== 'running') refreshSoon();
  } else {
    refreshSoon();
    if (ev.severity === 'critical') toast(ev.message, 'error');
    if (S.page === 'dashboard') loadRecentAlerts();
  }
}

function route() {
  let key = (location.hash.replace(/^#\/?/, '') || 'dashboard').split('?')[0];
  if (!PAGES[key]) key = 'dashboard';
  S.page = key;
  document.querySelectorAll('.nav a').forEach((a) => {
    const on = a.dataset.page === key;
    a.classList.toggle('active', on);
    if (on) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  });
  document.title = PAGES[key].title + ' · Ingot';
  const page = document.getElementById('page');
  page.replaceChildren();
  S.charts = {};
  PAGES[key].render(page);
  if (PAGES[key].update) PAGES[key].update();
}

// ---------- banner ----------

function renderBanner() {
  const el = document.getElementById('banner');
  if (!el || !S.pool) return;
  const p = S.pool;
  const bad = S.pool.members.filter((m) => m.state !== 'ONLINE');
  const resilver = S.jobs.find((j) => j.kind === 'resilver' && (j.state === 'running' || j.state === 'paused'));
  let cls, ic, title, text;
  if (p.state === 'FAULTED') {
    cls = 'bad'; ic = 'bad'; title = `Pool ${p.name} is FAULTED`; text = `${bad.length} devices have failed. Data is not available.`;
  } else if (p.state === 'DEGRADED') {
    cls = 'bad'; ic = 'bad'; title = `Pool ${p.name} is DEGRADED`;
    const left = resilver && resilver.eta_secs != null ? eta(resilver.eta_secs) : 'estimating time left';
    text = resilver ? `Resilvering ${resilver.device}: ${pct(resilver.bytes_done, resilver.bytes_total).toFixed(0)}% done, ${left}. Redundancy is reduced until it completes.`
      : `${bad.map((m) => `${m.device} is ${m.state}`).join(', ')}. Redundancy is lost: replace the device now.`;
  } else if (p.locked) {
    cls = 'warn'; ic = 'lock'; title = `Pool ${p.name} is locked`; text = 'Data is encrypted and not available until the pool is unlocked.';
  } else {
    cls = 'ok'; ic = 'ok'; title = `Pool ${p.name} is healthy`; text = `All ${p.members.length} devices are online.`;
  }
  const link = cls === 'ok' ? null : p.locked && p.state === 'ONLINE' ? h('a', { href: '#/encryption' }, 'Unlock…') : h('a', { href: '#/pool' }, 'View pool…');
  el.replaceChildren(h('div', { class: 'banner ' + cls, role: cls === 'ok' ? 'status' : 'alert', id: 'health-banner', dataset: { state: p.state } },
    icon(ic),
    h('div', { class: 'grow' }, h('strong', {}, title), h('div', {}, text)), link));
  const dot = document.querySelector('#nav-pool .dot');
  if (dot) dot.classList.toggle('bad', p.state !== 'ONLINE');
}

// ---------- jobs (shared by dashboard and pool) ----------

function jobTitle(j) { return j.kind === 'scrub' ? 'Scrub' : `Resilver of ${j.device}`; }

function jobCard(j) {
  const p = pct(j.bytes_done, j.bytes_total);
  const active = j.state === 'running' || j.state === 'paused';
  const bar = h('div', {});
  bar.style.width = p.toFixed(1) + '%';
  const barBox = h('div', { class: 'bar big' + (j.state === 'completed' ? ' done' : j.state === 'paused' ? ' warn' : ''), role: 'progressbar',
    'aria-label': jobTitle(j) + ' progress', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': p.toFixed(1) }, bar);
  const act = (verb) => async () => {
    try { const nj = await api.post(`/api/v1/jobs/${encodeURIComponent(j.id)}/${verb}`); upsertJob(nj); updateJobs(); }
    catch (e) { toast(`Cannot ${verb}: ${e.message}`, 'error'); }
  };
  return h('div', { class: 'job', dataset: { job: j.id, kind: j.kind, state: j.state } },
    h('div', { class: 'head' },
      h('div', {}, h('span', { class: 'title' }, jobTitle(j)), ' ', badge(j.state)),
      h('span', { class: 'pct', 'data-role': 'pct' }, p.toFixed(1) + '%')),
    barBox,
    h('div', { class: 'facts' },
      h('span', {}, h('b', {}, bytes(j.bytes_done)), ' of ', h('b', {}, bytes(j.bytes_total))),
      active ? h('span', {}, 'Rate ', h('b', {}, j.state === 'paused' ? 'paused' : rate(j.rate_bytes_per_sec))) : null,
      active ? h('span', {}, h('b', {}, j.state === 'paused' ? 'paused' : eta(j.eta_secs))) : h('span', {}, 'Finished ', h('b', {}, when(j.finished_ms))),
      h('span', {}, 'Errors found ', h('b', {}, j.errors_found), ', repaired ', h('b', {}, j.errors_repaired))),
    active ? h('div', { class: 'actions', style: { marginTop: '.75rem' } },
      j.state === 'running' ? h('button', { class: 'small', onclick: act('pause') }, 'Pause') : h('button', { class: 'small', onclick: act('resume') }, 'Resume'),
      h('button', { class: 'small danger', onclick: act('cancel') }, 'Cancel')) : null);
}

function updateJobs() {
  updateScrubButton();
  document.querySelectorAll('[data-jobs]').forEach((box) => {
    const mode = box.dataset.jobs;
    let list = S.jobs.filter((j) => j.state === 'running' || j.state === 'paused');
    if (mode === 'all') {
      const recent = S.jobs.filter((j) => !(j.state === 'running' || j.state === 'paused')).slice(0, 3);
      list = list.concat(recent);
    }
    if (list.length === 0) { box.replaceChildren(h('div', { class: 'empty' }, 'No scrub or resilver is running.')); return; }
    box.replaceChildren(...list.map(jobCard));
  });
  renderBanner();
}

// ---------- dashboard ----------

function statCard(id, label) {
  return h('div', { class: 'card stat', id }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, '–'), h('div', { class: 'sub' }));
}

function chartCard(key, title) {
  const canvas = h('canvas', { class: 'chart', role: 'img', 'aria-label': title + ' chart' });
  return h('div', { class: 'card' },
    h('div', { class: 'chart-head' }, h('h2', {}, title), h('span', { class: 'now', id: 'now-' + key })),
    canvas, h('div', { class: 'legend' }, h('span', { class: 'read' }, h('i'), 'read'), h('span', { class: 'write' }, h('i'), 'write')));
}

function renderDashboard(page) {
  page.append(
    h('div', { class: 'topline' }, h('h1', {}, 'Dashboard'), h('span', { class: 'muted', id: 'sysline' })),
    h('div', { class: 'grid cols-4' }, statCard('st-pool', 'Pool'), statCard('st-cap', 'Capacity'), statCard('st-comp', 'Compression'), statCard('st-io', 'Throughput now')),
    h('div', { class: 'card' }, h('h2', {}, 'Jobs'), h('div', { dataset: { jobs: 'active' } })),
    h('div', { class: 'grid cols-3' }, chartCard('tp', 'Throughput'), chartCard('iops', 'IOPS'), chartCard('lat', 'Latency')),
    h('div', { class: 'grid cols-2' },
      h('div', { class: 'card' }, h('h2', {}, 'Recent alerts'), h('div', { id: 'recent' }, h('div', { class: 'empty' }, 'Loading…'))),
      h('div', { class: 'card' }, h('h2', {}, 'System'), h('dl', { class: 'kv', id: 'sysinfo' }))));
  const cv = page.querySelectorAll('canvas');
  S.charts = {
    tp: new LineChart(cv[0], { format: rate, points: POINTS }),
    iops: new LineChart(cv[1], { format: iops, points: POINTS }),
    lat: new LineChart(cv[2], { format: ms, points: POINTS }),
  };
  updateLive();
  loadRecentAlerts();
}

function setStat(id, value, sub, extra) {
  const c = document.getElementById(id); if (!c) return;
  c.querySelector('.value').replaceChildren(value);
  c.querySelector('.sub').replaceChildren(sub ?? '');
  c.querySelector('.bar')?.remove();
  if (extra) c.append(extra);
}

// The record cache (ARC): hit ratio since import, then what it holds of its limit.
function arcText(c) {
  if (!c || !c.limit_bytes) return '–';
  const n = c.hits + c.misses;
  const ratio = n > 0 ? `${(100 * c.hits / n).toFixed(1)}% hits` : 'no reads yet';
  return `${ratio} · ${bytes(c.bytes)} of ${bytes(c.limit_bytes)}`;
}

function updateDashboard() {
  const p = S.pool; if (!p || !document.getElementById('st-pool')) return;
  setStat('st-pool', badge(p.state, p.state + (p.locked ? ' · locked' : '')), `${p.name} · ${p.layout} · ${p.members.length} devices`);
  const used = pct(p.used_bytes, p.capacity_bytes);
  const bar = h('div', { class: 'bar' + (used > 85 ? ' warn' : ''), role: 'progressbar', 'aria-label': 'Capacity used', 'aria-valuenow': used.toFixed(0), 'aria-valuemin': 0, 'aria-valuemax': 100 }, h('div', {}));
  bar.firstChild.style.width = used.toFixed(1) + '%';
  setStat('st-cap', `${used.toFixed(0)}% used`, `${bytes(p.used_bytes)} of ${bytes(p.capacity_bytes)}`, bar);
  const saved = p.used_bytes * (p.compression_ratio - 1);
  setStat('st-comp', `${p.compression_ratio.toFixed(2)}×`, saved > 0 ? `${bytes(saved)} saved` : 'no savings');
  const sys = S.system;
  document.getElementById('sysline').textContent = `${sys.hostname} · up ${duration(sys.uptime_secs)}`;
  const kv = document.getElementById('sysinfo');
  const items = [['Host', sys.hostname], ['Firmware', 'v' + sys.version], ['Build', sys.build], ['Uptime', duration(sys.uptime_secs)],
    ['Transaction group', p.txg.toLocaleString('en-US')], ['Encryption', S.encryption?.encrypted ? (S.encryption.locked ? 'locked' : 'unlocked') + ` (${S.encryption.cipher})` : 'off'],
    ['Export', S.export ? `${S.export.mountpoint} (${S.export.state})` : '–'], ['Read cache (ARC)', arcText(S.prevStats?.cache)]];
  kv.replaceChildren(...items.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  updateJobs();
  updateLive();
}

function last(a) { return a.length ? a[a.length - 1] : NaN; }

function updateLive() {
  const s = S.series;
  const arc = [...document.querySelectorAll('#sysinfo dt')].find((d) => d.textContent === 'Read cache (ARC)');
  if (arc?.nextElementSibling) arc.nextElementSibling.textContent = arcText(S.prevStats?.cache);
  if (S.charts.tp) {
    S.charts.tp.setData(s.rb, s.wb); S.charts.iops.setData(s.ro, s.wo); S.charts.lat.setData(s.rl, s.wl);
  }
  const set = (id, t) => { const e = document.getElementById(id); if (e) e.textContent = t; };
  if (s.rb.length) {
    set('now-tp', `${rate(last(s.rb))} / ${rate(last(s.wb))}`);
    set('now-iops', `${iops(last(s.ro))} / ${iops(last(s.wo))}`);
    set('now-lat', `${ms(last(s.rl))} / ${ms(last(s.wl))}`);
    setStat('st-io', rate(last(s.rb) + last(s.wb)), `${iops(last(s.ro) + last(s.wo))} IOPS`);
  } else {
    setStat('st-io', '–', 'waiting for data…');
  }
}

async function loadRecentAlerts() {
  const box = document.getElementById('recent'); if (!box) return;
  try {
    const page = await api.get('/api/v1/events?severity=warning&limit=5');
    if (!page.events.length) { box.replaceChildren(h('div', { class: 'empty' }, 'No warnings or critical events.')); return; }
    box.replaceChildren(h('table', {}, h('tbody', {}, page.events.map((e) => h('tr', {},
      h('td', {}, badge(e.severity)), h('td', {}, e.message), h('td', { class: 'muted r nw hide-narrow' }, when(e.time_ms)))))),
    h('div', { class: 'pager' }, h('a', { href: '#/events' }, 'All events →')));
  } catch (e) { box.replaceChildren(h('div', { class: 'empty' }, 'Cannot load events: ' + e.message)); }
}

// ---------- pool ----------

function renderPool(page) {
  page.append(
    h('div', { class: 'topline' }, h('h1', {}, 'Pool & jobs')),
    h('div', { class: 'card' }, h('div', { id: 'pool-head', class: 'topline' }), h('div', { class: 'topo', id: 'topo' }),
      h('div', { class: 'facts pool-health' }, h('div', { id: 'pool-health', class: 'facts' }),
        h('button', { class: 'small', id: 'clear-errors', onclick: clearErrors }, 'Clear errors'))),
    h('div', { class: 'card' },
      h('div', { class: 'topline' }, h('h2', {}, 'Scrub and resilver'),
        h('button', { class: 'primary', id: 'start-scrub', onclick: startScrub }, 'Start scrub')),
      h('div', { dataset: { jobs: 'all' } })),
    replaceDialog());
}

async function clearErrors() {
  try { S.pool = await api.post('/api/v1/pool/clear'); toast('Error counters cleared'); refresh(); }
  catch (e) { toast('Cannot clear errors: ' + e.message, 'error'); }
}

async function startScrub() {
  try { const j = await api.post('/api/v1/jobs/scrub'); upsertJob(j); updateJobs(); toast('Scrub started'); }
  catch (e) { toast('Cannot start scrub: ' + e.message, 'error'); }
}

function updatePool() {
  const p = S.pool; if (!p) return;
  const head = document.getElementById('pool-head'); if (!head) return;
  head.replaceChildren(h('div', {}, h('h2', {}, `${p.name}`), h('span', { class: 'muted' }, `${p.layout} · ${p.members.length} devices · ${bytes(p.capacity_bytes)} usable · txg ${p.txg}`)),
    h('div', {}, badge(p.state), ' ', p.encrypted ? badge(p.locked ? 'locked' : 'unlocked') : null));
  const devs = Object.fromEntries(S.devices.map((d) => [d.id, d]));
  document.getElementById('topo').replaceChildren(...p.members.map((m) => {
    const d = devs[m.device];
    const errs = m.errors ? m.errors.read + m.errors.write + m.errors.checksum : 0;
    const rj = S.jobs.find((j) => j.kind === 'resilver' && j.device === m.device && (j.state === 'running' || j.state === 'paused'));
    let mini = null;
    if (rj) {
      const bar = h('div', {}); bar.style.width = pct(rj.bytes_done, rj.bytes_total).toFixed(1) + '%';
      mini = h('div', { class: 'bar', role: 'progressbar', 'aria-label': `Resilver of ${m.device}`, 'aria-valuemin': 0, 'aria-valuemax': 100,
        'aria-valuenow': pct(rj.bytes_done, rj.bytes_total).toFixed(1) }, bar);
    }
    return h('div', { class: 'disk ' + m.state, dataset: { device: m.device } },
      h('div', { class: 'topline', style: { marginBottom: 0 } }, h('span', { class: 'id' }, `${m.slot}: ${m.device}`), badge(m.state)),
      h('div', { class: 'meta' }, d ? `${d.model} · ${bytes(d.capacity_bytes)}` : 'unknown device', h('br'), d ? h('span', { class: 'mono' }, d.serial) : null),
      m.fault_reason ? h('div', { class: 'reason', title: m.fault_reason }, m.fault_reason) : null,
      m.errors ? h('div', { class: 'meta' + (errs ? ' errs' : '') }, `Errors R/W/C ${m.errors.read} / ${m.errors.write} / ${m.errors.checksum}`) : null,
      mini,
      h('button', { class: 'small' + (m.state === 'FAULTED' || m.state === 'REMOVED' ? ' primary' : ''), onclick: () => openReplace(m.device), 'aria-label': `Replace ${m.device}` }, 'Replace…'));
  }), ...(p.spares || []).map((id) => {
    const d = devs[id];
    return h('div', { class: 'disk spare', dataset: { device: id } },
      h('div', { class: 'topline', style: { marginBottom: 0 } }, h('span', { class: 'id' }, `spare: ${id}`), badge('spare', 'hot spare')),
      h('div', { class: 'meta' }, d ? `${d.model} · ${bytes(d.capacity_bytes)}` : 'unknown device', h('br'), d ? h('span', { class: 'mono' }, d.serial) : null),
      h('div', { class: 'meta' }, 'Takes over automatically when a member fails.'));
  }));
  const health = document.getElementById('pool-health');
  if (health) {
    const dmg = p.damaged || [];
    health.replaceChildren(...[
      h('span', {}, 'Checksum errors since import ', h('b', {}, String(p.checksum_errors ?? 0))),
      dmg.length ? h('span', { class: 'errs' }, h('b', {}, String(dmg.length)), ' unrecoverable blocks (reads there fail): ',
        dmg.slice(0, 5).map((b) => b.path ? `${b.path} @ ${b.offset}` : b.object != null ? `object ${b.object} @ ${b.offset}` : `sector ${b.addr}`).join(', ')) : null,
      p.suspended ? h('span', { class: 'errs' }, 'Suspended: ', p.suspended) : null].filter(Boolean));
  }
  updateJobs();
}

/** The Start scrub button follows the jobs (updated every second) and the pool. */
function updateScrubButton() {
  const p = S.pool, sb = document.getElementById('start-scrub');
  if (!sb || !p) return;
  const running = S.jobs.some((j) => j.state === 'running' || j.state === 'paused');
  sb.disabled = running || p.read_only;
  sb.title = p.read_only ? 'The pool is imported read-only' : running ? 'A job is already running' : p.locked ? 'Scrub runs without the key: it verifies and repairs ciphertext' : '';
}

function replaceDialog() {
  const err = h('div', { class: 'form-error', role: 'alert' });
  const dlg = h('dialog', { id: 'replace-dialog', 'aria-labelledby': 'replace-title' },
    h('form', { class: 'stack', method: 'dialog', onsubmit: async (e) => {
      e.preventDefault(); err.textContent = '';
      const fd = new FormData(e.target);
      try {
        const j = await api.post('/api/v1/pool/replace', { old: fd.get('old'), new: fd.get('new') });
        dlg.close(); upsertJob(j); toast(`Replacing ${fd.get('old')} by ${fd.get('new')}: resilver started`); refresh();
      } catch (ex) { err.textContent = ex.message; }
    } },
    h('h2', { id: 'replace-title' }, 'Replace a device'),
    h('p', { class: 'muted' }, 'The new device takes the old one\'s slot and is rebuilt (resilvered) from the rest of the pool.'),
    h('label', {}, 'Device to replace', h('select', { name: 'old', id: 'replace-old' })),
    h('label', {}, 'New device', h('select', { name: 'new', id: 'replace-new' })),
    err,
    h('div', { class: 'actions' }, h('button', { class: 'primary', type: 'submit' }, 'Replace and resilver'),
      h('button', { type: 'button', onclick: () => dlg.close() }, 'Cancel'))));
  return dlg;
}

function openReplace(old) {
  const dlg = document.getElementById('replace-dialog');
  const o = document.getElementById('replace-old');
  o.replaceChildren(...S.pool.members.map((m) => h('option', { value: m.device, selected: m.device === old }, `${m.device} (${m.state})`)));
  const candidates = S.devices.filter((d) => !d.in_pool && d.state === 'ONLINE');
  const n = document.getElementById('replace-new');
  n.replaceChildren(...(candidates.length ? candidates.map((d) => h('option', { value: d.id }, `${d.id} · ${d.model} · ${bytes(d.capacity_bytes)} · ${d.serial}`))
    : [h('option', { value: '', disabled: true }, 'No unused device available')]));
  dlg.querySelector('.form-error').textContent = '';
  dlg.showModal();
}

// ---------- devices ----------

function renderDevices(page) {
  const cols = [['Device', ''], ['State', ''], ['Model', ''], ['Capacity', 'r'], ['Temp', 'r'], ['Wear', 'r'], ['Media errors', 'r'],
    ['Errors R/W/C', 'r'], ['Power-on', 'r'], ['Data read', 'r']];
  page.append(h('div', { class: 'topline' }, h('h1', {}, 'Devices'), h('span', { class: 'muted', id: 'dev-count' })),
    h('div', { class: 'card table-wrap' }, h('table', { id: 'devices-table' },
      h('thead', {}, h('tr', {}, cols.map(([t, c]) => h('th', { class: c, scope: 'col' }, t)))),
      h('tbody', {}))));
}

function updateDevices() {
  const tb = document.querySelector('#devices-table tbody'); if (!tb) return;
  document.getElementById('dev-count').textContent = `${S.devices.length} NVMe devices, ${S.devices.filter((d) => d.in_pool).length} in the pool`;
  tb.replaceChildren(...S.devices.map((d) => {
    const s = d.smart;
    const errs = d.errors.read + d.errors.write + d.errors.checksum;
    const hot = s && s.temperature_celsius >= 70;
    return h('tr', { class: d.state === 'FAULTED' || d.state === 'REMOVED' ? 'bad' : '', dataset: { device: d.id } },
      h('td', {}, h('b', {}, d.id), h('div', { class: 'muted mono small' }, d.location)),
      h('td', { class: 'nw' }, badge(d.state),
        d.in_pool ? null : h('div', { class: 'sub-badge' }, (S.pool && (S.pool.spares || []).includes(d.id)) ? badge('spare', 'hot spare') : badge('spare', 'unassigned')),
        d.fault_reason ? h('div', { class: 'reason', title: d.fault_reason }, d.fault_reason) : null),
      h('td', { class: 'nw' }, d.model, h('div', { class: 'muted mono small' }, `SN ${d.serial} · FW ${d.firmware}`)),
      h('td', { class: 'r num nw' }, bytes(d.capacity_bytes), h('div', { class: 'muted small' }, `${bytes(d.lba_size)} LBA`)),
      h('td', { class: 'r num nw' + (hot ? ' errs' : '') }, s ? `${s.temperature_celsius} °C` : '–'),
      h('td', { class: 'r num nw' + (s && s.percentage_used >= 90 ? ' errs' : '') }, s ? `${s.percentage_used}%` : '–'),
      h('td', { class: 'r num nw' + (s && s.media_errors ? ' errs' : '') }, s ? String(s.media_errors) : '–'),
      h('td', { class: 'r num nw' + (errs ? ' errs' : '') }, `${d.errors.read} / ${d.errors.write} / ${d.errors.checksum}`),
      h('td', { class: 'r num nw' }, s ? `${s.power_on_hours.toLocaleString('en-US')} h` : '–'),
      h('td', { class: 'r num nw' }, s ? bytes(s.data_read_bytes) : '–', h('div', { class: 'muted small' }, s ? bytes(s.data_written_bytes) + ' written' : '')));
  }));
}

// ---------- encryption and export ----------

function formCard(title, fields, submit, onSubmit, opts = {}) {
  const err = h('div', { class: 'form-error', role: 'alert' });
  const btn = h('button', { class: opts.danger ? 'danger' : 'primary', type: 'submit' }, submit);
  const form = h('form', { class: 'stack', 'aria-label': title, onsubmit: async (e) => {
    e.preventDefault(); err.textContent = ''; btn.disabled = true;
    try { await onSubmit(new FormData(form), form); } catch (ex) { err.textContent = ex.message; } finally { btn.disabled = false; }
  } }, fields, err, h('div', { class: 'actions' }, btn));
  return h('div', { class: 'card' }, h('h2', {}, title), opts.intro ? h('p', { class: 'muted' }, opts.intro) : null, form);
}

function renderEncryption(page) {
  page.append(h('div', { class: 'topline' }, h('h1', {}, 'Encryption & export')),
    h('div', { class: 'grid cols-2' }, h('div', { class: 'card', id: 'enc-card' }), h('div', { class: 'card', id: 'exp-card' })),
    formCard('Change passphrase', [
      h('label', {}, 'Current passphrase', h('input', { type: 'password', name: 'old', required: true, autocomplete: 'current-password' })),
      h('label', {}, 'New passphrase', h('span', { class: 'hint' }, 'At least 8 characters.'), h('input', { type: 'password', name: 'new', required: true, minlength: 8, autocomplete: 'new-password' })),
      h('label', {}, 'Repeat new passphrase', h('input', { type: 'password', name: 'new2', required: true, minlength: 8, autocomplete: 'new-password' }))],
    'Change passphrase', async (fd, form) => {
      if (fd.get('new') !== fd.get('new2')) throw new Error('The new passphrases do not match.');
      await api.post('/api/v1/encryption/passphrase', { old: fd.get('old'), new: fd.get('new') });
      form.reset(); toast('Passphrase changed');
    }, { intro: 'The data key is re-wrapped under the new passphrase; data is not rewritten.' }));
}

function updateEncryption() {
  const enc = S.encryption, ex = S.export;
  const ec = document.getElementById('enc-card'); if (!ec || !enc) return;
  // Rebuild a card only when what it shows changes: a periodic refresh must not wipe a
  // passphrase being typed or the error of the last attempt.
  const encKey = `${enc.encrypted}/${enc.locked}/${enc.cipher}/${ex ? ex.state : ''}`;
  if (ec.dataset.key === encKey) { /* unchanged */ }
  else if (!enc.encrypted) { ec.replaceChildren(h('h2', {}, 'Encryption'), h('p', {}, 'This pool is not encrypted.')); }
  else if (enc.locked) {
    const err = h('div', { class: 'form-error', role: 'alert' });
    ec.replaceChildren(h('h2', {}, 'Encryption ', badge('locked')),
      h('p', { class: 'muted' }, `Data is encrypted with ${enc.cipher}; enter the passphrase to load the key.`),
      h('form', { class: 'stack', 'aria-label': 'Unlock', onsubmit: async (e) => {
        e.preventDefault(); err.textContent = '';
        try { await api.post('/api/v1/encryption/unlock', { passphrase: new FormData(e.target).get('passphrase') }); toast('Pool unlocked'); refresh(); }
        catch (x) { err.textContent = x.message; }
      } }, h('label', {}, 'Passphrase', h('input', { type: 'password', name: 'passphrase', required: true, autocomplete: 'current-password' })), err,
      h('div', { class: 'actions' }, h('button', { class: 'primary', type: 'submit' }, 'Unlock pool'))));
  } else {
    ec.replaceChildren(h('h2', {}, 'Encryption ', badge('unlocked')),
      h('p', { class: 'muted' }, `Data is encrypted with ${enc.cipher}. The key is loaded.`),
      h('div', { class: 'actions' }, h('button', { class: 'danger', onclick: async () => {
        try { await api.post('/api/v1/encryption/lock'); toast('Pool locked'); refresh(); } catch (x) { toast('Cannot lock: ' + x.message, 'error'); }
      } }, 'Lock pool')),
      ex && ex.state === 'mounted' ? h('p', { class: 'muted' }, 'Unmount the export before locking.') : null);
  }
  ec.dataset.key = encKey;
  const xc = document.getElementById('exp-card');
  const expKey = ex ? `${ex.state}/${ex.mountpoint}/${enc.locked}` : '';
  if (ex && xc.dataset.key !== expKey) {
    xc.dataset.key = expKey;
    const act = (what) => async () => { try { await api.post('/api/v1/export/' + what); toast(what === 'mount' ? 'Export mounted' : 'Export unmounted'); refresh(); } catch (x) { toast(`Cannot ${what}: ${x.message}`, 'error'); } };
    xc.replaceChildren(h('h2', {}, 'Export ', badge(ex.state)),
      h('dl', { class: 'kv' }, h('dt', {}, 'Mountpoint'), h('dd', { class: 'mono' }, ex.mountpoint), h('dt', {}, 'State'), h('dd', {}, ex.state)),
      h('div', { class: 'actions', style: { marginTop: '1rem' } }, ex.state === 'mounted'
        ? h('button', { onclick: act('unmount') }, 'Unmount')
        : h('button', { class: 'primary', onclick: act('mount'), disabled: enc && enc.locked }, 'Mount')));
  }
}

// ---------- events ----------

function renderEvents(page) {
  const st = { severity: '', cursors: [undefined], idx: 0 };
  const tb = h('tbody', {});
  const info = h('span', { class: 'muted' });
  const newer = h('button', { class: 'small', onclick: () => { st.idx--; load(); } }, '← Newer');
  const older = h('button', { class: 'small', onclick: () => { st.idx++; load(); } }, 'Older →');
  const sel = h('select', { id: 'sev-filter', onchange: () => { st.severity = sel.value; st.cursors = [undefined]; st.idx = 0; load(); } },
    h('option', { value: '' }, 'All severities'), h('option', { value: 'warning' }, 'Warning and critical'), h('option', { value: 'critical' }, 'Critical only'));
  async function load() {
    const q = new URLSearchParams({ limit: '25' });
    if (st.severity) q.set('severity', st.severity);
    const before = st.cursors[st.idx];
    if (before !== undefined) q.set('before', before);
    try {
      const r = await api.get('/api/v1/events?' + q);
      st.cursors[st.idx + 1] = r.next_before ?? undefined;
      tb.replaceChildren(...(r.events.length ? r.events.map((e) => h('tr', {},
        h('td', { class: 'muted num' }, when(e.time_ms)), h('td', {}, badge(e.severity)), h('td', {}, e.message)))
        : [h('tr', {}, h('td', { colspan: 3, class: 'empty' }, 'No events.'))]));
      newer.disabled = st.idx === 0; older.disabled = r.next_before === null || r.next_before === undefined;
      info.textContent = `Page ${st.idx + 1}`;
    } catch (e) { toast('Cannot load events: ' + e.message, 'error'); }
  }
  page.append(h('div', { class: 'topline' }, h('h1', {}, 'Events'), h('label', { class: 'actions' }, 'Show', sel)),
    h('div', { class: 'card table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Time'), h('th', {}, 'Severity'), h('th', {}, 'Message'))), tb),
      h('div', { class: 'pager' }, info, newer, older)));
  load();
}

// ---------- settings ----------

function renderSettings(page) {
  const box = h('div', {});
  page.append(h('div', { class: 'topline' }, h('h1', {}, 'Settings')), box,
    formCard('Admin password', [
      h('label', {}, 'Current password', h('input', { type: 'password', name: 'old', required: true, autocomplete: 'current-password' })),
      h('label', {}, 'New password', h('span', { class: 'hint' }, 'At least 8 characters. Other sessions are signed out.'), h('input', { type: 'password', name: 'new', required: true, minlength: 8, autocomplete: 'new-password' }))],
    'Change password', async (fd, form) => { await api.post('/api/v1/auth/password', { old: fd.get('old'), new: fd.get('new') }); form.reset(); toast('Password changed'); }));
  api.get('/api/v1/settings').then((s) => {
    box.replaceChildren(formCard('Pool settings', [
      h('label', {}, 'Compression level', h('span', { class: 'hint' }, 'zstd level for new writes: 0 = off, 1 (fast) to 19 (small).'),
        h('input', { type: 'number', name: 'compression_level', min: 0, max: 19, required: true, value: s.compression_level })),
      h('label', {}, 'Transaction group interval (ms)', h('span', { class: 'hint' }, 'How often writes are committed: 100 to 60000 ms.'),
        h('input', { type: 'number', name: 'txg_interval_ms', min: 100, max: 60000, required: true, value: s.txg_interval_ms })),
      h('label', {}, 'Automatic scrub', h('select', { name: 'scrub_schedule' }, ['off', 'daily', 'weekly', 'monthly'].map((v) => h('option', { value: v, selected: v === s.scrub_schedule }, v[0].toUpperCase() + v.slice(1)))))],
    'Save settings', async (fd) => {
      await api.put('/api/v1/settings', { compression_level: Number(fd.get('compression_level')), txg_interval_ms: Number(fd.get('txg_interval_ms')), scrub_schedule: fd.get('scrub_schedule') });
      toast('Settings saved'); refresh();
    }));
  }).catch((e) => box.replaceChildren(h('div', { class: 'card' }, 'Cannot load settings: ' + e.message)));
}

// ---------- tokens ----------

function renderTokens(page) {
  const tb = h('tbody', {});
  const secretBox = h('div', {});
  async function load() {
    const list = await api.get('/api/v1/tokens');
    tb.replaceChildren(...(list.length ? list.map((t) => h('tr', {}, h('td', {}, h('b', {}, t.name)), h('td', { class: 'mono' }, t.id),
      h('td', { class: 'muted' }, when(t.created_ms)), h('td', { class: 'muted' }, t.last_used_ms ? when(t.last_used_ms) : 'never'),
      h('td', { class: 'r' }, h('button', { class: 'small danger', 'aria-label': `Revoke token ${t.name}`, onclick: async () => {
        if (!confirm(`Revoke token "${t.name}"? Scripts using it stop working.`)) return;
        try { await api.del('/api/v1/tokens/' + encodeURIComponent(t.id)); toast('Token revoked'); load(); } catch (e) { toast(e.message, 'error'); }
      } }, 'Revoke'))))
      : [h('tr', {}, h('td', { colspan: 5, class: 'empty' }, 'No API tokens yet.'))]));
  }
  page.append(h('div', { class: 'topline' }, h('h1', {}, 'API tokens')),
    h('p', { class: 'muted' }, 'Scripts and Prometheus authenticate with a bearer token: ', h('span', { class: 'mono' }, 'Authorization: Bearer ingot_…'), '. Only a hash is stored; the token is shown once.'),
    secretBox,
    formCard('Create a token', [h('label', {}, 'Name', h('span', { class: 'hint' }, 'What will use it, e.g. "prometheus".'), h('input', { name: 'name', required: true, maxlength: 64 }))],
      'Create token', async (fd, form) => {
        const r = await api.post('/api/v1/tokens', { name: fd.get('name') });
        form.reset();
        secretBox.replaceChildren(h('div', { class: 'callout', role: 'status' }, h('b', {}, `Token "${r.info.name}" created. `), 'Copy it now; it will not be shown again.',
          h('div', { class: 'secret mono', id: 'new-token' }, r.token),
          h('div', { class: 'actions', style: { marginTop: '.5rem' } }, h('button', { class: 'small', onclick: () => navigator.clipboard?.writeText(r.token).then(() => toast('Copied')) }, 'Copy'))));
        load();
      }),
    h('div', { class: 'card table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, ['Name', 'Id', 'Created', 'Last used', ''].map((t) => h('th', {}, t)))), tb)));
  load().catch((e) => toast(e.message, 'error'));
}

window.addEventListener('resize', () => Object.values(S.charts).forEach((c) => c.draw()));
boot();

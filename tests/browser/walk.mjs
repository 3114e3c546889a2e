// The browser walk through the Ingot console (see ./run). Every step must
// pass; failures save target/browser-screenshots/failure.png and exit 1.
import { chromium } from 'playwright-core';
import { execSync, spawn } from 'node:child_process';

const BASE = process.env.INGOT_CONSOLE_URL;
const SHOTS = process.env.SCREENSHOT_DIR;
const ADMIN = process.env.INGOT_ADMIN_PASSWORD || 'browser-test-admin-pw';
const PASSPHRASE = process.env.INGOT_PASSPHRASE || 'correct horse battery staple';
const FAULT_DEVICE = process.env.INGOT_FAULT_DEVICE || 'nvme1';
const LONG = 60_000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
const page = await context.newPage();
const problems = [];
if (process.env.WALK_DEBUG) page.on('response', (r) => console.log('# http', r.status(), r.request().method(), r.url()));
page.on('pageerror', (e) => problems.push('page error: ' + e.message));
page.on('console', (m) => { if (process.env.WALK_DEBUG) console.log('# console', m.type(), m.text());
   if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) problems.push('console error: ' + m.text()); });

let passed = 0, failed = 0;
const t0 = Date.now();
async function step(name, fn) {
  const t = Date.now();
  try {
    await fn();
    if (problems.length) throw new Error(problems.splice(0).join('; '));
    passed++;
    console.log(`ok ${passed + failed} - ${name} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
  } catch (e) {
    failed++;
    console.log(`not ok ${passed + failed} - ${name}: ${e.message.split('\n')[0]}`);
    await page.screenshot({ path: `${SHOTS}/failure.png`, fullPage: true }).catch(() => {});
    throw e;
  }
}
const shot = (name) => page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
const nav = async (title) => { await page.getByRole('link', { name: title, exact: true }).click(); await page.getByRole('heading', { level: 1, name: title }).waitFor(); };
const banner = (state) => page.locator(`#health-banner[data-state="${state}"]`).waitFor({ timeout: LONG });

/** Waits until the job card of `kind` shows 100% and is completed. */
async function waitJobDone(kind, shotName) {
  const card = page.locator(`.job[data-kind="${kind}"]`).first();
  await card.waitFor();
  const bar = card.getByRole('progressbar');
  let mid = false;
  await page.waitForFunction((k) => {
    const c = document.querySelector(`.job[data-kind="${k}"]`);
    return c && c.dataset.state === 'completed';
  }, kind, { timeout: LONG, polling: 100 }).catch((e) => { throw new Error(`${kind} did not complete: ${e.message}`); });
  const v = Number(await page.locator(`.job[data-kind="${kind}"]`).first().getByRole('progressbar').getAttribute('aria-valuenow'));
  if (v !== 100) throw new Error(`${kind} finished at ${v}%`);
  void bar; void mid;
  if (shotName) await shot(shotName);
}

try {
  await step('first start shows the set-password page', async () => {
    await page.goto(BASE);
    await page.getByRole('heading', { name: 'Set the admin password' }).waitFor();
    await shot('01-set-password');
    await page.getByLabel('New password').fill(ADMIN);
    await page.getByLabel('Repeat password').fill(ADMIN);
    await page.getByRole('button', { name: 'Set password and continue' }).click();
    await page.getByRole('heading', { level: 1, name: 'Dashboard' }).waitFor();
  });

  await step('sign out, wrong password refused, sign in', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    await page.getByLabel('Password').fill('not-the-password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('wrong password').waitFor();
    await shot('02-login');
    await page.getByLabel('Password').fill(ADMIN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { level: 1, name: 'Dashboard' }).waitFor();
  });

  await step('dashboard shows live numbers that change', async () => {
    await banner('ONLINE');
    // Write through the appliance's mount meanwhile, so the numbers really move.
    // It runs until the screenshot is taken, then its process group is stopped.
    let load = null, loadExit = null, stopped = false;
    if (process.env.INGOT_LOAD_CMD) {
      load = spawn('sh', ['-c', process.env.INGOT_LOAD_CMD], { stdio: 'inherit', detached: true });
      loadExit = new Promise((resolve) => load.on('exit', (code) => resolve(stopped ? 0 : code)));
    }
    const val = page.locator('#now-tp');
    await page.waitForFunction(() => (document.getElementById('now-tp')?.textContent || '').includes('/'), null, { timeout: LONG });
    const first = await val.textContent();
    await page.waitForFunction((f) => { const t = document.getElementById('now-tp')?.textContent; return t && t !== f; }, first, { timeout: LONG });
    // Let the charts gather a few points for the screenshot.
    await page.waitForFunction(() => document.querySelectorAll('canvas').length === 3, null);
    await page.waitForTimeout(4000);
    const cap = await page.locator('#st-cap .value').textContent();
    if (!/% used/.test(cap)) throw new Error('capacity not shown: ' + cap);
    // The record cache line, from the stats stream (hit ratio and its fill of the limit).
    await page.waitForFunction(() => {
      const dt = [...document.querySelectorAll('#sysinfo dt')].find((d) => d.textContent === 'Read cache (ARC)');
      return dt && / of /.test(dt.nextElementSibling?.textContent || '');
    }, null, { timeout: LONG });
    await shot('03-dashboard');
    if (load) {
      stopped = true;
      try { process.kill(-load.pid, 'SIGTERM'); } catch { /* already ended */ }
      const code = await loadExit;
      if (code !== 0) throw new Error('load command failed: ' + code);
    }
  });

  await step('start a scrub, pause, resume, watch it reach 100%', async () => {
    await nav('Pool & jobs');
    await page.getByRole('button', { name: 'Start scrub' }).click();
    const card = page.locator('.job[data-kind="scrub"]').first();
    await card.waitFor();
    await page.waitForFunction(() => Number(document.querySelector('.job[data-kind="scrub"] [role=progressbar]')?.getAttribute('aria-valuenow')) > 0, null, { timeout: LONG });
    await card.getByRole('button', { name: 'Pause' }).click();
    await page.locator('.job[data-kind="scrub"][data-state="paused"]').waitFor();
    await shot('04-scrub-paused');
    await page.locator('.job[data-kind="scrub"]').first().getByRole('button', { name: 'Resume' }).click();
    await page.locator('.job[data-kind="scrub"][data-state="running"]').waitFor();
    await page.waitForFunction(() => /left/.test(document.querySelector('.job[data-kind="scrub"] .facts')?.textContent || ''), null, { timeout: LONG });
    await shot('05-scrub-running');
    await waitJobDone('scrub', '06-scrub-done');
  });

  await step(`fault ${FAULT_DEVICE}: the degraded banner appears`, async () => {
    if (process.env.INGOT_FAULT_CMD) {
      execSync(process.env.INGOT_FAULT_CMD, { stdio: 'inherit', env: { ...process.env, INGOT_FAULT_DEVICE: FAULT_DEVICE } });
    } else {
      const r = await fetch(`${BASE}/demo/fault/${FAULT_DEVICE}`, { method: 'POST' });
      if (!r.ok) throw new Error('demo fault endpoint: ' + r.status);
    }
    await banner('DEGRADED');
    const text = await page.locator('#health-banner').textContent();
    if (!text.includes('DEGRADED') || !text.includes(FAULT_DEVICE)) throw new Error('banner: ' + text);
    await page.locator(`.disk:is(.FAULTED, .REMOVED)[data-device="${FAULT_DEVICE}"]`).waitFor({ timeout: LONG });
    await shot('07-pool-degraded');
    await nav('Dashboard');
    await banner('DEGRADED');
    await shot('08-dashboard-degraded');
    await nav('Devices');
    await page.locator(`#devices-table tr[data-device="${FAULT_DEVICE}"] .badge:is(.FAULTED, .REMOVED)`).waitFor({ timeout: LONG });
    await shot('09-devices');
  });

  await step('replace the faulted device and watch the resilver finish', async () => {
    if (process.env.INGOT_ADD_CMD) execSync(process.env.INGOT_ADD_CMD, { stdio: 'inherit' });
    await nav('Pool & jobs');
    const dlg = page.getByRole('dialog');
    // The hot-added drive shows up with the next refresh (its event triggers one).
    const until = Date.now() + LONG;
    for (;;) {
      await page.getByRole('button', { name: `Replace ${FAULT_DEVICE}` }).click();
      await dlg.waitFor();
      if (await page.locator('#replace-new option:not([disabled])').count() > 0) break;
      if (Date.now() > until) throw new Error('no replacement device offered');
      await dlg.getByRole('button', { name: 'Cancel' }).click();
      await page.waitForTimeout(250);
    }
    await shot('10-replace-dialog');
    await dlg.getByRole('button', { name: 'Replace and resilver' }).click();
    await dlg.waitFor({ state: 'hidden' });
    await page.locator('.job[data-kind="resilver"]').first().waitFor();
    await shot('11-resilver-running');
    await waitJobDone('resilver');
    await banner('ONLINE');
    await shot('12-resilver-done');
    // The pulled drive's write error is still counted in its old slot: clear it.
    await page.getByRole('button', { name: 'Clear errors' }).click();
    await page.getByText('Error counters cleared').waitFor();
    await page.waitForFunction(() => [...document.querySelectorAll('.disk .meta')]
      .filter((m) => m.textContent.startsWith('Errors R/W/C')).every((m) => m.textContent.endsWith('0 / 0 / 0')), null, { timeout: LONG });
  });

  await step('lock and unlock the pool', async () => {
    await nav('Encryption & export');
    await page.getByRole('button', { name: 'Unmount' }).click();
    await page.getByRole('button', { name: 'Mount' }).waitFor();
    await page.getByRole('button', { name: 'Lock pool' }).click();
    await page.getByRole('button', { name: 'Unlock pool' }).waitFor();
    await banner('ONLINE');
    await page.locator('#health-banner.warn').waitFor();
    await shot('13-locked');
    // Scrub needs no key: it verifies and repairs the ciphertext of the locked pool.
    await nav('Pool & jobs');
    const scrubs = await page.locator('.job[data-kind="scrub"]').count();
    await page.getByRole('button', { name: 'Start scrub' }).click();
    await page.waitForFunction((n) => document.querySelectorAll('.job[data-kind="scrub"]').length > n, scrubs, { timeout: LONG });
    await waitJobDone('scrub', '13b-locked-scrub-done');
    await nav('Encryption & export');
    await page.getByLabel('Passphrase', { exact: true }).fill('wrong passphrase');
    await page.getByRole('button', { name: 'Unlock pool' }).click();
    await page.getByText('wrong passphrase', { exact: false }).first().waitFor();
    await page.getByLabel('Passphrase', { exact: true }).fill(PASSPHRASE);
    await page.getByRole('button', { name: 'Unlock pool' }).click();
    await page.getByRole('button', { name: 'Lock pool' }).waitFor();
    await page.getByRole('button', { name: 'Mount' }).click();
    await page.getByRole('button', { name: 'Unmount' }).waitFor();
    await page.locator('#health-banner.ok').waitFor();
    await shot('14-unlocked');
  });

  await step('events list with severity filter', async () => {
    await nav('Events');
    await page.locator('tbody tr .badge').first().waitFor();
    await shot('15-events');
    await page.getByLabel('Show').selectOption('critical');
    await page.waitForFunction(() => {
      const b = [...document.querySelectorAll('tbody tr .badge')];
      return b.length > 0 && b.every((x) => x.textContent === 'critical');
    }, null, { timeout: LONG });
  });

  await step('settings can be changed', async () => {
    await nav('Settings');
    await page.getByLabel('Automatic scrub').selectOption('weekly');
    await page.getByLabel('Compression level').fill('3');
    await page.getByLabel('Transaction group interval (ms)').fill('2000');
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.getByText('Settings saved').waitFor();
    // The running pool took them: the API reports what the pool now uses.
    const s = await page.evaluate(async () => (await fetch('/api/v1/settings')).json());
    if (s.compression_level !== 3 || s.txg_interval_ms !== 2000 || s.scrub_schedule !== 'weekly') {
      throw new Error('settings not applied: ' + JSON.stringify(s));
    }
    await shot('16-settings');
  });

  await step('create an API token, shown once', async () => {
    await nav('API tokens');
    await page.getByLabel('Name').fill('prometheus');
    await page.getByRole('button', { name: 'Create token' }).click();
    const secret = await page.locator('#new-token').textContent();
    if (!/^ingot_[0-9a-f]{64}$/.test(secret)) throw new Error('token: ' + secret);
    const r = await fetch(`${BASE}/metrics`, { headers: { Authorization: 'Bearer ' + secret } });
    if (r.status !== 200) throw new Error('/metrics with the new token: ' + r.status);
    await page.getByRole('cell', { name: 'prometheus', exact: true }).waitFor();
    await shot('17-tokens');
  });

  await step('narrow window', async () => {
    await page.setViewportSize({ width: 420, height: 900 });
    await nav('Dashboard');
    await page.waitForTimeout(1500);
    await shot('18-narrow-dashboard');
    await nav('Pool & jobs');
    await shot('19-narrow-pool');
  });
} catch {
  // reported by step()
}
await browser.close();
console.log(`${passed} passed, ${failed} failed (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
process.exit(failed ? 1 : 0);

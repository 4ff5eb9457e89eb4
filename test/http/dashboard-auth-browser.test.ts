/**
 * The dashboard with `--auth`, in Debian's headless Chromium (as dashboard-browser.test.ts):
 * without a token it shows the token form and no data (it fetches nothing but the open
 * /api/v1/auth); a wrong token and a non-admin token show the server's refusal; the
 * admin token shows the volume and is sent on every fetch; the token lives in
 * sessionStorage, so a reload keeps working; a stored token the server refuses brings the
 * form back with the error. The form, showing a refusal, is captured as
 * test-artifacts/dashboard-auth-form.png.
 *
 * A missing Chromium FAILS this test (CI installs it).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { Authenticator, sha256 } from '../../server/auth/authenticator';
import { Principal } from '../../server/auth/principal';
import { REPO_ROOT } from '../support/start-server';
import { startHttpDaxd, type HttpDaxd } from './fixture';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const TOKEN_KEY = 'daxd.token';
const SCREENSHOT = path.join(REPO_ROOT, 'test-artifacts', 'dashboard-auth-form.png');

// What the page functions below touch in the browser (tsconfig has no DOM lib).
interface El {
  hidden: boolean;
  textContent: string | null;
  dataset: Record<string, string | undefined>;
  querySelector(selector: string): El | null;
}
declare const document: El & { getElementById(id: string): El | null };
declare const window: { daxdDashboard?: { ticks: number; volume: { uuid: string } | null } };
declare const sessionStorage: { getItem(key: string): string | null; setItem(key: string, value: string): void };

/** What the page shows, read in the browser. */
interface Shown {
  formShown: boolean;
  mainShown: boolean;
  error: string;
  status: string | undefined;
  meta: string;
  ticks: number;
  volumeUuid: string | null;
  stored: string | null;
}

function shown(page: Page): Promise<Shown> {
  return page.evaluate((key) => ({
    formShown: !document.getElementById('auth')!.hidden,
    mainShown: !document.querySelector('main')!.hidden,
    error: document.getElementById('auth-error')!.textContent ?? '',
    status: document.getElementById('status')!.dataset.state,
    meta: document.getElementById('meta')!.textContent ?? '',
    ticks: window.daxdDashboard?.ticks ?? -1,
    volumeUuid: window.daxdDashboard?.volume?.uuid ?? null,
    stored: sessionStorage.getItem(key),
  }), TOKEN_KEY);
}

/** Waits until the form is shown again with an error (after a refused token). */
async function formWithError(page: Page): Promise<Shown> {
  await page.waitForFunction(() => !document.getElementById('auth')!.hidden && (document.getElementById('auth-error')!.textContent ?? '') !== '', undefined, { timeout: 20_000, polling: 50 });
  return shown(page);
}

async function submit(page: Page, token: string): Promise<void> {
  await page.fill('#auth-token', token);
  await page.click('#auth-submit');
}

describe('the dashboard with --auth in headless Chromium', function () {
  this.timeout(120_000);
  const tokens = { admin: randomBytes(24).toString('base64url'), rw: randomBytes(24).toString('base64url') };
  let s: HttpDaxd | undefined;
  let browser: BrowserContext | undefined;
  let page: Page;
  let profile: string | undefined;
  let uuid: string;
  const problems: string[] = [];
  /** Every request the page made: path and the authorization header it carried. */
  const requests: Array<{ path: string; authorization: string | undefined }> = [];

  before(async function () {
    assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium; .ci/run does)`);
    const auth = new Authenticator([
      new Principal('operator', 'admin', '', {}, { tokenSha256: sha256(tokens.admin) }),
      new Principal('app', 'rw', '', {}, { tokenSha256: sha256(tokens.rw) }),
    ]);
    s = await startHttpDaxd('dashboard-auth', { auth });
    uuid = s.daxd.fs.statVolume().uuid;
    profile = fs.mkdtempSync(path.join(os.tmpdir(), 'daxd-chromium-'));
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS, viewport: { width: 1280, height: 800 },
    });
    page = browser.pages()[0] ?? await browser.newPage();
    page.on('request', (r) => requests.push({ path: new URL(r.url()).pathname, authorization: r.headers().authorization }));
    page.on('console', (m) => {
      // A refused fetch is logged by Chromium itself; the refusals below are on purpose.
      if (/status of (401|403)\b/.test(m.text())) return;
      if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  });

  after(async function () {
    await browser?.close();
    if (profile) fs.rmSync(profile, { recursive: true, force: true });
    await s?.stop();
  });

  it('without a token: the form, no data, and no data fetched', async function () {
    await page.goto(`${s!.base}/?interval=200`);
    await page.waitForFunction(() => !document.getElementById('auth')!.hidden, undefined, { timeout: 20_000, polling: 50 });
    const now = await shown(page);
    assert.deepEqual({ ...now, status: now.status }, {
      formShown: true, mainShown: false, error: '', status: 'auth', meta: '', ticks: 0, volumeUuid: null, stored: null,
    });
    const fetched = requests.map((r) => r.path).filter((p) => p.startsWith('/api/') || p === '/metrics');
    assert.deepEqual(fetched, ['/api/v1/auth'], 'only the open endpoint was asked');
  });

  it('a wrong token and a non-admin token show the refusal, and are not kept', async function () {
    await submit(page, randomBytes(24).toString('base64url'));
    let now = await formWithError(page);
    assert.match(now.error, /HTTP 401: .*the token is not valid/);
    assert.equal(now.mainShown, false);
    assert.equal(now.stored, null);
    assert.equal(now.volumeUuid, null);
    await submit(page, tokens.rw);
    now = await formWithError(page);
    assert.match(now.error, /HTTP 403: .*\bapp\b.*admin/);
    assert.equal(now.stored, null);
    assert.equal(now.ticks, 0, 'no data was shown');
    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT });
  });

  it('the admin token shows the volume, goes with every fetch, and stays in sessionStorage across a reload', async function () {
    requests.length = 0;
    await submit(page, tokens.admin);
    await page.waitForFunction(() => (window.daxdDashboard?.ticks ?? 0) >= 2, undefined, { timeout: 30_000, polling: 50 });
    let now = await shown(page);
    assert.equal(now.formShown, false);
    assert.equal(now.mainShown, true);
    assert.equal(now.status, 'live');
    assert.equal(now.volumeUuid, uuid);
    assert.ok(now.meta.includes(uuid.slice(0, 8)), now.meta);
    assert.equal(now.stored, tokens.admin);
    const data = requests.filter((r) => r.path.startsWith('/api/v1/') && r.path !== '/api/v1/auth' || r.path === '/metrics');
    assert.ok(data.length >= 12, `${data.length} data fetches`);
    assert.deepEqual(data.filter((r) => r.authorization !== `Bearer ${tokens.admin}`), [], 'a fetch went without the token');

    await page.reload();
    await page.waitForFunction(() => (window.daxdDashboard?.ticks ?? 0) >= 1, undefined, { timeout: 30_000, polling: 50 });
    now = await shown(page);
    assert.deepEqual([now.formShown, now.mainShown, now.status, now.volumeUuid, now.stored], [false, true, 'live', uuid, tokens.admin]);
  });

  it('a stored token the server refuses brings the form back with the error', async function () {
    await page.evaluate((key) => sessionStorage.setItem(key, 'not-the-token-of-anyone-at-all'), TOKEN_KEY);
    await page.reload();
    const now = await formWithError(page);
    assert.match(now.error, /HTTP 401/);
    assert.deepEqual([now.mainShown, now.stored, now.volumeUuid], [false, null, null]);
    assert.deepEqual(problems, [], 'the page logged errors (a CSP violation, a script error)');
  });
});

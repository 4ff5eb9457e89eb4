/**
 * The dashboard in a real browser: Debian's Chromium (/usr/bin/chromium, installed by
 * .ci/run), driven headless by playwright-core, loads the dashboard of a live daxd while
 * a small load runs against it (file I/O, faults of every kind with entry-lock contention,
 * DMA, layout changes refused by a pin, NBD reads and writes on two connections), waits until every chart has points and every
 * table rows, and checks what it shows against /api/v1/*. The screenshot goes to
 * test-artifacts/dashboard.png.
 *
 * A missing Chromium FAILS this test: CI installs it, and a dashboard nobody looked at
 * is not tested.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { REPO_ROOT } from '../support/start-server';
import type { ArmedFailpoint } from '../../server/dax/failpoints';
import { getJson, rpc, startHttpDaxd, type HttpDaxd } from './fixture';
import { RawNbd, W } from '../support/raw-nbd';
import { MiB, PAGE } from '../support/units';
import { until } from '../support/until';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const SCREENSHOT = path.join(REPO_ROOT, 'test-artifacts', 'dashboard.png');
/** The load stops by itself after this long, whatever happens to the test. */
const LOAD_MS_MAX = 90_000;

// What the page functions below touch in the browser (tsconfig has no DOM lib; these are
// module-scoped, so nothing leaks into the other tests' types).
interface El {
  dataset: Record<string, string | undefined>;
  id: string;
  scrollWidth: number;
  clientWidth: number;
  textContent: string | null;
  querySelector(selector: string): El | null;
  querySelectorAll(selector: string): Iterable<El> & ArrayLike<El>;
}
interface DashboardState {
  ticks: number;
  series: Record<string, Record<string, Array<number | null>>>;
}
declare const document: El & { getElementById(id: string): El | null; body: El };
declare const window: { daxdDashboard?: DashboardState };

interface SessionsApi { total: number; sessions: Array<{ id: string; clientName: string }> }
interface PinsApi { total: number; pinnedBlocks: number; pins: Array<{ id: string; ino: number }> }
interface LocksApi { held: number; waiters: number; locks: Array<{ ino: number; pgoff: number; waiters: number; heldMs: number }> }
interface VolumeApi { uuid: string; files: number; blocks: { total: number; used: number } }
interface NbdApi { total: number; connections: Array<{ id: number; export: string | null }> }

/** A small, bounded load: several clients in parallel until stop() or LOAD_MS_MAX. */
function startLoad(s: HttpDaxd, files: { data: number; sparse: number; grow: number; pinned: number }, sessions: { io: string; mapper: string; dma: string }, pinId: string, nbd: RawNbd[]) {
  const r = rpc(s.raw);
  const deadline = Date.now() + LOAD_MS_MAX;
  let stopped = false;
  const running = () => !stopped && Date.now() < deadline;
  const errors: unknown[] = [];
  const loop = async (body: (i: number) => Promise<unknown>) => {
    for (let i = 0; running(); i++) {
      try {
        await body(i);
      } catch (err) {
        errors.push(err);
        if (errors.length > 20) return;
      }
    }
  };
  const chunk = Buffer.alloc(16 * 1024, 0x5a);
  const workers = [
    // File I/O over data already allocated: reads and overwrites.
    loop(async (i) => {
      const offset = ((i * 7) % 60) * 16 * 1024;
      await r.write(files.data, offset, chunk);
      await r.read(files.data, offset, chunk.length);
    }),
    // Hole faults over a sparse file, a COW now and then, loads and stores through a PTE.
    loop(async (i) => {
      await r.fault(sessions.mapper, files.sparse, i % 64, 'READ');
      if (i % 5 === 0) await r.fault(sessions.mapper, files.data, i % 16, 'COW');
      const token = (await r.fault(sessions.mapper, files.data, 3, 'WRITE')).pte!.token;
      await r.store(sessions.mapper, token, 0, chunk.subarray(0, 512));
      await r.load(sessions.mapper, token, 0, 4096);
    }),
    // MAP_SYNC write faults, four at once on one page: they queue on its entry lock.
    loop(async () => {
      await Promise.all([0, 1, 2, 3].map(() => r.fault(sessions.mapper, files.data, 7, 'WRITE', true)));
    }),
    // Allocating faults, a page at a time, through a file that grows (bounded: 1024 pages).
    loop(async (i) => {
      if (i >= 1024) return new Promise((resolve) => setTimeout(resolve, 50));
      return r.fault(sessions.io, files.grow, i, 'WRITE');
    }),
    // DMA through a pin, and a truncate over the pin that FAIL refuses (a layout-break wait).
    loop(async (i) => {
      await r.dmaWrite(sessions.dma, pinId, i % 4, 0, chunk.subarray(0, 4096));
      await r.dmaRead(sessions.dma, pinId, i % 4, 0, 4096);
      if (i % 10 === 0) await r.truncate(files.pinned, 0, 'FAIL').catch(() => undefined);
    }),
    // NBD: 4 KiB writes and reads of the data file on each connection.
    ...nbd.map((c, k) => loop(async (i) => {
      const offset = ((i * 5 + k * 31) % 256) * 4096;
      const { error } = await c.command(W.NBD_CMD_WRITE, { offset, length: 4096, data: chunk.subarray(0, 4096) });
      if (error !== 0) throw new Error(`NBD WRITE: error ${error}`);
      await c.read(offset, 4096);
    })),
  ];
  return {
    errors,
    async stop() {
      stopped = true;
      await Promise.all(workers);
    },
  };
}

/** What a viewport shows badly: clipped table columns, cut tile subtitles, repeated axis labels. */
interface LayoutProblems {
  clippedTables: string[];
  cutSubtitles: string[];
  repeatedAxisLabels: string[];
  volumeSize: string;
  volumeTileSub: string;
}

/** Resizes the page, waits two dashboard ticks (a redraw at the new width), screenshots it, and measures it. */
async function layoutAt(page: Page, width: number, shot: string): Promise<LayoutProblems> {
  await page.setViewportSize({ width, height: 900 });
  const ticks = await page.evaluate(() => window.daxdDashboard!.ticks);
  await page.waitForFunction((t) => window.daxdDashboard!.ticks >= t + 2, ticks, { timeout: 30_000, polling: 100 });
  fs.mkdirSync(path.dirname(shot), { recursive: true });
  await page.screenshot({ path: shot, fullPage: true });
  return page.evaluate(() => {
    const clippedTables: string[] = [];
    for (const table of [...document.querySelectorAll('section.tables table')]) {
      // The card holds the table: a wider table spills out of it (or would scroll in it).
      const card = (table as unknown as { parentElement: El }).parentElement;
      for (const [what, box] of [['table', table], ['card', card]] as const) {
        if (box.scrollWidth > box.clientWidth) clippedTables.push(`${table.id} ${what}: ${box.scrollWidth} > ${box.clientWidth}`);
      }
    }
    const cutSubtitles = [...document.querySelectorAll('.tile .sub')]
      .filter((sub) => (sub.textContent ?? '').endsWith('\u2026') || sub.scrollWidth > sub.clientWidth)
      .map((sub) => `${sub.textContent} (${sub.scrollWidth} > ${sub.clientWidth})`);
    const repeatedAxisLabels: string[] = [];
    for (const chart of [...document.querySelectorAll('figure.chart')]) {
      // The y labels: every axis text but the time axis's two ("-N s" and "now").
      const labels = [...chart.querySelectorAll('text.axis')].map((t) => t.textContent ?? '').filter((t) => !/^(now|-\d+ s)$/.test(t));
      if (labels.length < 2 || new Set(labels).size !== labels.length) repeatedAxisLabels.push(`${chart.id}: ${labels.join(', ')}`);
    }
    return {
      clippedTables, cutSubtitles, repeatedAxisLabels,
      volumeSize: document.querySelector('#volume-facts dd[data-fact="size"]')?.textContent ?? '',
      volumeTileSub: document.querySelector('#tile-volume .sub')?.textContent ?? '',
    };
  });
}

/** No clipped column, no cut subtitle, distinct axis labels; the volume's usable size said the same way twice. */
function assertLayout(width: number, shown: LayoutProblems): void {
  assert.deepEqual(shown.clippedTables, [], `${width} px: table columns clipped`);
  assert.deepEqual(shown.cutSubtitles, [], `${width} px: tile subtitles cut short`);
  assert.deepEqual(shown.repeatedAxisLabels, [], `${width} px: y-axis labels repeat`);
  const usable = /of (\S+ \S+) usable$/.exec(shown.volumeTileSub)?.[1];
  assert.ok(usable !== undefined, `the volume tile says "of N usable": ${shown.volumeTileSub}`);
  assert.ok(shown.volumeSize.includes(`${usable} usable`) && / raw\b/.test(shown.volumeSize), `the size fact says raw and the same usable size: ${shown.volumeSize} vs ${shown.volumeTileSub}`);
}

describe('the dashboard in headless Chromium', function () {
  this.timeout(180_000);
  let s: HttpDaxd | undefined;
  let browser: BrowserContext | undefined;
  let page: Page;
  let load: ReturnType<typeof startLoad> | undefined;
  let held: ArmedFailpoint | undefined;
  let heldFaults: Array<Promise<unknown>> = [];
  let profile: string | undefined;
  const consoleProblems: string[] = [];
  let lockedIno = 0;
  const nbd: RawNbd[] = [];

  before(async function () {
    assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium; .ci/run does)`);
    s = await startHttpDaxd('dashboard', { sizeBytes: 128 * MiB });
    const r = rpc(s.raw);
    const data = await r.create('dataset.bin');
    await r.write(data, 0, Buffer.alloc(MiB, 1));
    const sparse = await r.create('sparse.bin');
    await r.truncate(sparse, 256 * PAGE);
    const grow = await r.create('growing.bin');
    await r.truncate(grow, 1024 * PAGE);
    const pinned = await r.create('dma-target.bin');
    await r.fallocate(pinned, 0, 64 * PAGE);
    const sessions = {
      io: (await r.open('loadgen-io')).session_id,
      mapper: (await r.open('loadgen-mapper')).session_id,
      dma: (await r.open('rdma-nic-0')).session_id,
    };
    const pinId = (await r.pin(sessions.dma, pinned, 0, 4, true)).pin_id;
    await r.pin(sessions.dma, pinned, 16, 8, false);
    // One entry lock held for the whole test, with two faults queued behind it.
    lockedIno = sparse;
    held = s.daxd.dax.failpoints.arm('fault:after-entry-lock', { ino: sparse, pgoff: 200 });
    heldFaults = [r.fault(sessions.io, sparse, 200, 'WRITE')];
    await held.reached;
    heldFaults.push(r.fault(sessions.io, sparse, 200, 'READ'), r.fault(sessions.dma, sparse, 200, 'READ'));
        await until(() => s!.daxd.dax.inspect(sparse, 200, 200)[0]?.waiters === 2, 'two waiters on the held lock');
    for (let k = 0; k < 2; k++) {
      const c = await RawNbd.connect(s.nbd);
      nbd.push(c);
      await c.greet();
      await c.go('dataset.bin', { structured: true });
    }
    load = startLoad(s, { data, sparse, grow, pinned }, sessions, pinId, nbd);

    profile = fs.mkdtempSync(path.join(os.tmpdir(), 'daxd-chromium-'));
    // A fresh, empty profile (--user-data-dir) per run.
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS, viewport: { width: 1680, height: 880 }, deviceScaleFactor: 1,
    });
    page = browser.pages()[0] ?? await browser.newPage();
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') consoleProblems.push(`${m.type()}: ${m.text()}`); });
    page.on('pageerror', (err) => consoleProblems.push(`pageerror: ${err.message}`));
  });

  after(async function () {
    await load?.stop();
    for (const c of nbd) c.end();
    held?.release();
    await Promise.allSettled(heldFaults);
    await browser?.close();
    if (profile) fs.rmSync(profile, { recursive: true, force: true });
    await s?.stop();
  });

  it('fills its charts and tables under load, agrees with /api/v1/*, and is captured as test-artifacts/dashboard.png', async function () {
    const server = s!;
    await page.goto(`${server.base}/?interval=500`);
    // Charts with a history, every table with rows, and a lock wait percentile.
    await page.waitForFunction(() => {
      const d = window.daxdDashboard;
      const charts = [...document.querySelectorAll('figure.chart')];
      return d !== undefined && d.ticks >= 12 && charts.every((c) => Number(c.dataset.points) >= 10)
        && d.series.lockwait.p99.some((v) => v !== null && v > 0)
        && document.querySelectorAll('#table-locks tbody tr[data-key]').length > 0;
    }, undefined, { timeout: 60_000, polling: 250 });
    assert.deepEqual(load!.errors, [], 'the load ran without errors');
    // The artefact first: a failed check below still leaves the picture to look at.
    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    const shown = await page.evaluate(() => {
      const text = (sel: string) => document.querySelector(sel)?.textContent ?? '';
      const rows = (id: string) => [...document.querySelectorAll(`#${id} tbody tr[data-key]`)].map((tr) => ({
        key: tr.dataset.key!, cells: [...tr.querySelectorAll('td')].map((td) => td.textContent ?? ''),
      }));
      const legend = (id: string) => Object.fromEntries([...document.querySelectorAll(`#${id} .legend .series`)].map((el) => [
        el.dataset.series!, el.dataset.value === '' ? null : Number(el.dataset.value),
      ])) as Record<string, number | null>;
      const tile = (id: string) => Number(document.querySelector(`#${id} .value`)!.dataset.value);
      const d = window.daxdDashboard!;
      const peak = (chart: string, series: string) => Math.max(0, ...d.series[chart][series].map((v) => v ?? 0));
      return {
        status: document.getElementById('status')!.dataset.state,
        meta: text('#meta'),
        files: text('#volume-facts dd[data-fact="files"]'),
        sessions: rows('table-sessions'), pins: rows('table-pins'), locks: rows('table-locks'), nbd: rows('table-nbd'),
        tiles: { sessions: tile('tile-sessions'), pins: tile('tile-pins'), iops: tile('tile-iops'), bandwidth: tile('tile-bandwidth'), volumeUsed: tile('tile-volume') },
        legends: { iops: legend('chart-iops'), bandwidth: legend('chart-bandwidth'), pins: legend('chart-pins'), volume: legend('volume-card') },
        peaks: {
          read: peak('iops', 'read'), write: peak('iops', 'write'), hole: peak('faults', 'hole'), allocate: peak('faults', 'allocate'),
          cow: peak('faults', 'cow'), sync: peak('faults', 'sync'), mapped: peak('faults', 'mapped'), p99: peak('lockwait', 'p99'),
          layoutBreaks: peak('pins', 'layout-break waits /s'), nbdOps: peak('iops', 'nbd'), nbdBytes: peak('bandwidth', 'nbd'),
        },
      };
    });
    const [sessions, pins, locks, volume, nbdApi] = await Promise.all([
      getJson<SessionsApi>(server.base, '/api/v1/sessions'), getJson<PinsApi>(server.base, '/api/v1/pins'),
      getJson<LocksApi>(server.base, '/api/v1/locks'), getJson<VolumeApi>(server.base, '/api/v1/volume'), getJson<NbdApi>(server.base, '/api/v1/nbd'),
    ]).then((all) => all.map((x) => x.body) as [SessionsApi, PinsApi, LocksApi, VolumeApi, NbdApi]);

    assert.equal(shown.status, 'live');
    // Tables: the same sessions, pins and the held lock as the API (stable under this load).
    assert.deepEqual(shown.sessions.map((x) => x.key).sort(), sessions.sessions.map((x) => x.id).sort());
    assert.deepEqual(shown.sessions.map((x) => x.cells[1]).sort(), sessions.sessions.map((x) => x.clientName).sort());
    assert.equal(shown.tiles.sessions, sessions.total);
    assert.deepEqual(shown.pins.map((x) => x.key), pins.pins.map((x) => x.id));
    assert.equal(shown.tiles.pins, pins.total);
    assert.equal(shown.legends.pins['pins active'], pins.total);
    const heldLock = locks.locks.find((l) => l.ino === lockedIno && l.pgoff === 200);
    assert.ok(heldLock, 'the API lists the held lock');
    assert.equal(shown.locks[0].key, `${lockedIno}:200`, 'the longest-held lock comes first');
    assert.equal(shown.locks[0].cells[4], String(heldLock.waiters));
    assert.equal(heldLock.waiters, 2);
    // NBD: the two connections, by id, each on the data file.
    assert.equal(nbdApi.total, 2);
    assert.deepEqual(shown.nbd.map((x) => x.key), nbdApi.connections.map((x) => String(x.id)));
    assert.deepEqual(shown.nbd.map((x) => x.cells[2]), ['dataset.bin', 'dataset.bin']);
    // Volume: identity and namespace are stable; usage only grows under this load.
    assert.ok(shown.meta.includes(volume.uuid.slice(0, 8)), shown.meta);
    assert.ok(shown.files.startsWith(`${volume.files} of `), shown.files);
    assert.ok(shown.tiles.volumeUsed > 0 && shown.tiles.volumeUsed <= volume.blocks.used, `${shown.tiles.volumeUsed} vs ${volume.blocks.used}`);
    const { free, written, unwritten } = shown.legends.volume;
    assert.ok(free !== null && written !== null && unwritten !== null && free + written + unwritten <= volume.blocks.total, JSON.stringify(shown.legends.volume));
    // Charts: live values under load.
    assert.ok(shown.tiles.iops > 0 && shown.tiles.bandwidth > 0, JSON.stringify(shown.tiles));
    assert.ok((shown.legends.iops.read ?? 0) + (shown.legends.iops.write ?? 0) > 0, JSON.stringify(shown.legends.iops));
    for (const [what, v] of Object.entries(shown.peaks)) assert.ok(v > 0, `${what} never showed a value`);
    assert.deepEqual(consoleProblems, [], 'the page logged errors (a CSP violation, a failed fetch, a script error)');
    assert.ok(fs.statSync(SCREENSHOT).size > 20_000, 'the screenshot is not empty');
  });

  for (const width of [1280, 1400, 1920]) {
    it(`at ${width} px under load: no clipped table column, no cut tile subtitle, distinct axis labels (test-artifacts/dashboard-${width}.png)`, async function () {
      assertLayout(width, await layoutAt(page, width, path.join(REPO_ROOT, 'test-artifacts', `dashboard-${width}.png`)));
    });
  }
});

describe('the dashboard of an idle server in headless Chromium', function () {
  this.timeout(120_000);
  let s: HttpDaxd | undefined;
  let browser: BrowserContext | undefined;
  let profile: string | undefined;

  after(async function () {
    await browser?.close();
    if (profile) fs.rmSync(profile, { recursive: true, force: true });
    await s?.stop();
  });

  it('idle at 1280 and 1920 px: the bandwidth and other axes read distinct values, not "1 B, 1 B, 1 B"', async function () {
    assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing`);
    s = await startHttpDaxd('dashboard-idle', { sizeBytes: 64 * MiB });
    profile = fs.mkdtempSync(path.join(os.tmpdir(), 'daxd-chromium-'));
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS, viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1,
    });
    const page = browser.pages()[0] ?? await browser.newPage();
    await page.goto(`${s.base}/?interval=250`);
    await page.waitForFunction(() => (window.daxdDashboard?.ticks ?? 0) >= 3, undefined, { timeout: 30_000, polling: 100 });
    for (const width of [1280, 1920]) {
      assertLayout(width, await layoutAt(page, width, path.join(REPO_ROOT, 'test-artifacts', `dashboard-idle-${width}.png`)));
    }
  });
});

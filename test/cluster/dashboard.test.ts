/**
 * The cluster view of a node's admin API and dashboard: GET /api/v1/cluster (schema-checked)
 * and the dashboard's Cluster card in headless Chromium, live, then fenced (the keep-alive
 * failpoint) and live again. A lone server's card stays hidden (test/http/endpoints.test.ts
 * checks its `enabled: false` answer).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { clusterSchema } from '../../server/http/admin-schemas';
import { Daxd } from '../../server/server';
import { getJson, validate } from '../http/fixture';
import { assertEtcdInstalled, startEtcd, type StartedEtcd } from '../support/etcd';
import { tempDir } from '../support/start-server';
import { MiB } from '../support/units';
import { startNode, TEST_TTL_S, type InProcessNode } from './fixture';

const CHROMIUM = '/usr/bin/chromium';

interface El { textContent: string | null; hidden: boolean }
declare const document: { getElementById(id: string): El | null; querySelectorAll(selector: string): ArrayLike<El> };

interface ClusterApi { enabled: boolean; self: string; fenced: boolean; nodes: Array<{ name: string; state: string; files: number }> }

describe('cluster: GET /api/v1/cluster and the dashboard\'s Cluster card', function () {
  this.timeout(60_000);
  let etcd: StartedEtcd;
  let other: InProcessNode;
  let daxd: Daxd;
  let base: string;
  let browser: BrowserContext;
  let page: Page;
  let profile: string;
  const tmp = tempDir('daxd-cluster-http-');

  before(async function () {
    assertEtcdInstalled();
    etcd = await startEtcd();
    other = await startNode(etcd.url, 'other');
    daxd = await Daxd.start({
      volumePath: path.join(tmp.dir, 'web.vol'), sizeBytes: 64 * MiB, grpcAddress: '127.0.0.1:0', httpAddress: '127.0.0.1:0', log: pino({ level: 'silent' }),
      cluster: { etcdUrls: [etcd.url], nodeName: 'web', prefix: '/daxd', ttlS: TEST_TTL_S },
    });
    base = `http://${daxd.httpAddress}`;
    profile = fs.mkdtempSync(path.join(os.tmpdir(), 'daxd-chromium-'));
    browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ['--headless', '--no-sandbox', '--disable-gpu'] });
    page = browser.pages()[0] ?? await browser.newPage();
  });

  after(async () => {
    await browser?.close();
    if (profile) fs.rmSync(profile, { recursive: true, force: true });
    daxd?.cluster?.dropKeepAlives(false);
    await daxd?.stop();
    if (other) { await other.stop(); other.removeDir(); }
    await etcd?.stop();
    tmp.remove();
  });

  it('lists the nodes with health and files; shows this node fenced, then live again', async () => {
    const { status, body } = await getJson<ClusterApi>(base, '/api/v1/cluster');
    assert.equal(status, 200);
    validate(clusterSchema, body, '/api/v1/cluster');
    assert.equal(body.enabled, true);
    assert.equal(body.self, 'web');
    assert.deepEqual(body.nodes.map((n) => [n.name, n.state]), [['other', 'live'], ['web', 'live']]);

    await page.goto(`${base}/?interval=250`);
    const card = () => page.evaluate(() => ({
      hidden: document.getElementById('card-cluster')!.hidden,
      count: document.getElementById('cluster-count')!.textContent,
      rows: Array.from(document.querySelectorAll('#table-cluster tbody tr')).map((r) => r.textContent),
    }));
    await page.waitForFunction(() => !document.getElementById('card-cluster')!.hidden, undefined, { timeout: 20_000, polling: 100 });
    let shown = await card();
    assert.match(shown.count!, /this node: web · 2 live of 2/);
    assert.equal(shown.rows.length, 2);
    assert.match(shown.rows[1]!, /^web \(this node\)live/);

    daxd.cluster!.dropKeepAlives(true);
    await page.waitForFunction(() => /FENCED/.test(document.getElementById('cluster-count')!.textContent ?? ''), undefined, { timeout: 20_000, polling: 100 });
    shown = await card();
    assert.match(shown.rows.find((r) => r!.startsWith('web'))!, /^web \(this node\)fenced/);
    assert.equal((await getJson<ClusterApi>(base, '/api/v1/cluster')).body.fenced, true);
    daxd.cluster!.dropKeepAlives(false);
    await page.waitForFunction(() => /this node: web · 2 live of 2$/.test(document.getElementById('cluster-count')!.textContent ?? ''), undefined, { timeout: 20_000, polling: 100 });
  });
});

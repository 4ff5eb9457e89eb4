/**
 * Every HTTP endpoint answers what its schema says, through fastify's inject (no socket)
 * and over real TCP against a live server holding a file, a session, a mapping, a pin
 * and a held entry lock, so that no list is empty when its schema is checked.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import {
  filesSchema, healthSchema, locksSchema, pinsSchema, readySchema, sessionsSchema, volumeSchema,
} from '../../server/http/admin-schemas';
import { clusterSchema, nbdSchema } from '../../server/http/admin-schemas';
import { buildHttpApp } from '../../server/http/http-server';
import type { HttpDeps } from '../../server/http/deps';
import { ADMIN_ID_PREFIX_CHARS } from '../../server/http/limits';
import { REPO_ROOT } from '../support/start-server';
import { getJson, rpc, startHttpDaxd, validate, type HttpDaxd } from './fixture';
import { PAGE } from '../support/units';
import { until } from '../support/until';

const JSON_ENDPOINTS: Array<[string, object]> = [
  ['/healthz', healthSchema],
  ['/readyz', readySchema],
  ['/api/v1/volume', volumeSchema],
  ['/api/v1/files', filesSchema],
  ['/api/v1/sessions', sessionsSchema],
  ['/api/v1/pins', pinsSchema],
  ['/api/v1/locks', locksSchema],
  ['/api/v1/nbd', nbdSchema],
  ['/api/v1/cluster', clusterSchema],
];

describe('HTTP endpoints and their schemas', function () {
  this.timeout(60_000);
  let s: HttpDaxd;
  let sessionId: string;
  let pinId: string;
  let ino: number;
  let releaseLock: () => void;
  let pendingFaults: Array<Promise<unknown>>;

  before(async function () {
    s = await startHttpDaxd('endpoints');
    const r = rpc(s.raw);
    ino = await r.create('data.bin');
    await r.truncate(ino, 16 * PAGE);
    sessionId = (await r.open('endpoint-test')).session_id;
    await r.fault(sessionId, ino, 0, 'READ');
    pinId = (await r.pin(sessionId, ino, 4, 2, true)).pin_id;
    // One entry lock held (a fault paused at a failpoint) with one waiter behind it.
    const fp = s.daxd.dax.failpoints.arm('fault:after-entry-lock', { ino, pgoff: 8 });
    pendingFaults = [r.fault(sessionId, ino, 8, 'WRITE')];
    await fp.reached;
    pendingFaults.push(r.fault(sessionId, ino, 8, 'READ'));
    await until(() => s.daxd.dax.inspect(ino, 8, 8)[0]?.waiters === 1, 'a waiter on page 8');
    releaseLock = () => fp.release();
  });

  after(async function () {
    releaseLock?.();
    await Promise.allSettled(pendingFaults ?? []);
    await s?.stop();
  });

  for (const [url, schema] of JSON_ENDPOINTS) {
    it(`GET ${url} (inject) matches its schema`, async function () {
      const res = await s.daxd.http!.app.inject({ method: 'GET', url });
      assert.equal(res.statusCode, 200, res.body);
      assert.match(String(res.headers['content-type']), /^application\/json/);
      validate(schema, res.json(), url);
    });

    it(`GET ${url} (live) matches its schema`, async function () {
      const { status, body } = await getJson(s.base, url);
      assert.equal(status, 200);
      validate(schema, body, url);
    });
  }

  it('the lists show the file, the session, the pin and the held lock; ids are prefixes only', async function () {
    const files = (await getJson<{ files: Array<{ ino: number; name: string; mappedPages: number; pinnedPages: number; mappers: number }> }>(s.base, '/api/v1/files')).body;
    const file = files.files.find((f) => f.ino === ino);
    assert.ok(file, 'the file is listed');
    assert.equal(file.name, 'data.bin');
    assert.equal(file.pinnedPages, 2);
    assert.equal(file.mappers, 1);
    assert.ok(file.mappedPages >= 3, `mapped pages ${file.mappedPages}`);

    const sessions = (await getJson<{ total: number; sessions: Array<{ id: string; clientName: string; pins: number; mappings: number }> }>(s.base, '/api/v1/sessions')).body;
    assert.equal(sessions.total, 1);
    assert.deepEqual(sessions.sessions.map((x) => [x.id, x.clientName, x.pins, x.mappings]), [[sessionId.slice(0, ADMIN_ID_PREFIX_CHARS), 'endpoint-test', 1, 1]]);

    const pins = (await getJson<{ total: number; pinnedBlocks: number; pins: Array<Record<string, unknown>> }>(s.base, '/api/v1/pins')).body;
    assert.equal(pins.total, 1);
    assert.equal(pins.pinnedBlocks, 2);
    assert.deepEqual(
      { ...pins.pins[0], createdAtMs: 0, ageMs: 0 },
      { id: pinId.slice(0, ADMIN_ID_PREFIX_CHARS), sessionId: sessionId.slice(0, ADMIN_ID_PREFIX_CHARS), clientName: 'endpoint-test', ino,
        firstPgoff: 4, npages: 2, pinnedBlocks: 2, writable: true, state: 'active', createdAtMs: 0, ageMs: 0, leaseMs: 30_000, dmaInFlight: 0 },
    );

    const locks = (await getJson<{ held: number; waiters: number; locks: Array<{ ino: number; pgoff: number; waiters: number; heldMs: number; longestWaitMs: number }> }>(s.base, '/api/v1/locks')).body;
    assert.equal(locks.held, 1);
    assert.equal(locks.waiters, 1);
    assert.equal(locks.locks[0].ino, ino);
    assert.equal(locks.locks[0].pgoff, 8);
    assert.equal(locks.locks[0].waiters, 1);
    assert.ok(locks.locks[0].heldMs >= locks.locks[0].longestWaitMs, 'the holder came before its waiter');

    const everything = JSON.stringify([files, sessions, pins, locks]);
    assert.ok(!everything.includes(sessionId), 'a whole session id (a capability) was served');
    assert.ok(!everything.includes(pinId), 'a whole pin id was served');
  });

  it('paging and bounds: ?page_size, ?limit, and 400 for what the schema refuses', async function () {
    const r = rpc(s.raw);
    for (const name of ['p-a', 'p-b', 'p-c']) await r.create(name);
    const first = (await getJson<{ files: Array<{ name: string }>; nextPageToken: string }>(s.base, '/api/v1/files?prefix=p-&page_size=2')).body;
    assert.deepEqual(first.files.map((f) => f.name), ['p-a', 'p-b']);
    assert.notEqual(first.nextPageToken, '');
    const second = (await getJson<{ files: Array<{ name: string }>; nextPageToken: string }>(s.base, `/api/v1/files?prefix=p-&page_size=2&page_token=${first.nextPageToken}`)).body;
    assert.deepEqual(second.files.map((f) => f.name), ['p-c']);
    assert.equal(second.nextPageToken, '');
    for (const bad of ['/api/v1/pins?limit=0', '/api/v1/locks?limit=x', '/api/v1/files?page_size=-1', '/api/v1/files?prefix=a%00b', '/api/v1/files?page_token=!!']) {
      const res = await fetch(s.base + bad);
      assert.equal(res.status, 400, `${bad} -> ${res.status}`);
    }
    assert.equal((await getJson<{ pins: unknown[] }>(s.base, '/api/v1/pins?limit=1')).body.pins.length, 1);
  });

  it('GET /metrics is Prometheus text with daxd and process metrics', async function () {
    const res = await s.daxd.http!.app.inject({ method: 'GET', url: '/metrics' });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    for (const name of ['daxd_rpc_duration_seconds_bucket', 'daxd_page_faults_total', 'daxd_volume_blocks', 'process_cpu_seconds_total', 'nodejs_eventloop_lag_seconds']) {
      assert.ok(res.body.includes(`\n${name}`) || res.body.startsWith(name), `${name} missing`);
    }
  });

  it('deploy/grafana and deploy/prometheus name only metrics this server exports', async function () {
    const text = await (await fetch(`${s.base}/metrics`)).text();
    const exported = new Set([...text.matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]));
    const grafana = fs.readFileSync(path.join(REPO_ROOT, 'deploy', 'grafana', 'dashboards', 'daxd.json'), 'utf8');
    const used = new Set([...grafana.matchAll(/\b((?:daxd|process|nodejs)_[a-z0-9_]+)/g)].map((m) => m[1].replace(/_(bucket|count|sum)$/, '')));
    assert.ok(used.size > 20, `${used.size} metrics in the Grafana dashboard`);
    assert.deepEqual([...used].filter((name) => !exported.has(name)), []);
    const prometheus = fs.readFileSync(path.join(REPO_ROOT, 'deploy', 'prometheus', 'prometheus.yml'), 'utf8');
    assert.match(prometheus, /metrics_path: \/metrics/);
  });

  it('GET / is the self-contained dashboard: its assets come from daxd, the CSP allows nothing else', async function () {
    const page = await fetch(`${s.base}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'none'.*connect-src 'self'/);
    const html = await page.text();
    const refs = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]).filter((ref) => ref !== 'data:,');
    assert.deepEqual(refs.sort(), ['/dashboard.css', '/dashboard.js']);
    for (const asset of refs) {
      const res = await fetch(s.base + asset);
      assert.equal(res.status, 200, asset);
      const urls = (await res.text()).match(/https?:\/\/[^\s'"]+/g) ?? [];
      assert.deepEqual(urls.filter((u) => u !== 'http://www.w3.org/2000/svg'), [], `${asset} refers to another origin`);
    }
  });

  it('GET /readyz is 503 with the failing check when the server does not accept calls', async function () {
    const deps: HttpDeps = {
      fs: s.daxd.fs, dax: s.daxd.dax, sessions: s.daxd.rpc.sessions, metrics: s.daxd.metrics,
      facts: { version: 'test', volumePath: s.volumePath, grpcAddress: s.grpc, httpAddress: '', startedAtMs: Date.now(), mount: s.daxd.fs.mountReport },
      readiness: () => ({ volumeMounted: true, journalReplayed: true, acceptingCalls: false }),
      auth: null, metricsAuth: 'none',
    };
    const app = buildHttpApp(deps, pino({ level: 'silent' }));
    try {
      const res = await app.inject({ method: 'GET', url: '/readyz' });
      assert.equal(res.statusCode, 503);
      validate(readySchema, res.json(), '/readyz (503)');
      assert.deepEqual(res.json(), { ready: false, checks: { volumeMounted: true, journalReplayed: true, acceptingCalls: false } });
      assert.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, 'liveness does not depend on readiness');
    } finally {
      await app.close();
    }
  });

  it('unknown paths are 404 JSON', async function () {
    const res = await s.daxd.http!.app.inject({ method: 'GET', url: '/api/v1/nope' });
    assert.equal(res.statusCode, 404);
  });
});

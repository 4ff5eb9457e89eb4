/**
 * Metric values move exactly as a known sequence of RPCs says they must, scraped from a
 * live server's /metrics before and after each step. Also: the request id of a failed
 * call, and the warn lines of slow operations (a long entry-lock wait, a layout change
 * that met a pinned page).
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { failure } from '../support/raw-rpc';
import { getJson, Prom, rpc, scrape, startHttpDaxd, type HttpDaxd } from './fixture';
import { PAGE } from '../support/units';
import { until } from '../support/until';

describe('metrics after known RPC sequences', function () {
  this.timeout(60_000);
  let s: HttpDaxd;
  let r: ReturnType<typeof rpc>;
  let sessionId: string;

  before(async function () {
    s = await startHttpDaxd('metrics');
    r = rpc(s.raw);
    sessionId = (await r.open('metrics-test')).session_id;
  });

  after(async function () {
    await s?.stop();
  });

  /** Runs `step` and returns the differences of the named samples across it. */
  async function delta(step: () => Promise<unknown>): Promise<(name: string, labels?: Record<string, string>) => number> {
    const before = await scrape(s.base);
    await step();
    const after = await scrape(s.base);
    return (name, labels = {}) => after.value(name, labels) - before.value(name, labels);
  }

  it('one WRITE fault on a hole: exactly one allocate fault, nothing else', async function () {
    const ino = await r.create('hole-write');
    await r.truncate(ino, 4 * PAGE);
    const d = await delta(() => r.fault(sessionId, ino, 0, 'WRITE'));
    assert.equal(d('daxd_page_faults_total', { kind: 'allocate' }), 1);
    for (const kind of ['hole', 'mapped', 'cow', 'sync']) assert.equal(d('daxd_page_faults_total', { kind }), 0, kind);
    assert.equal(d('daxd_rpc_duration_seconds_count', { method: 'Mapping.Fault', code: 'OK' }), 1);
    assert.equal(d('daxd_ptes'), 1);
  });

  it('READ fault on a hole then WRITE fault: one hole fault, one allocate, one HOLE_FILLED invalidation', async function () {
    const ino = await r.create('hole-read-write');
    await r.truncate(ino, 4 * PAGE);
    const read = await delta(() => r.fault(sessionId, ino, 1, 'READ'));
    assert.equal(read('daxd_page_faults_total', { kind: 'hole' }), 1);
    assert.equal(read('daxd_page_faults_total', { kind: 'allocate' }), 0);
    const write = await delta(() => r.fault(sessionId, ino, 1, 'WRITE'));
    assert.equal(write('daxd_page_faults_total', { kind: 'allocate' }), 1);
    assert.equal(write('daxd_page_faults_total', { kind: 'hole' }), 0);
    assert.equal(write('daxd_pte_invalidations_total', { reason: 'HOLE_FILLED' }), 1, 'the zero-page PTE was revoked');
    assert.equal(write('daxd_ptes_revoked_total'), 1);
    const cow = await delta(() => r.fault(sessionId, ino, 1, 'COW'));
    assert.equal(cow('daxd_page_faults_total', { kind: 'cow' }), 1);
    const sync = await delta(() => r.fault(sessionId, ino, 2, 'WRITE', true));
    assert.equal(sync('daxd_page_faults_total', { kind: 'allocate' }), 1);
    assert.equal(sync('daxd_page_faults_total', { kind: 'sync' }), 1);
    assert.ok(sync('daxd_journal_commits_total') >= 1, 'MAP_SYNC commits');
  });

  it('bytes and ops by path: file write/read, mapping store/load, DMA write/read', async function () {
    const ino = await r.create('io');
    const file = await delta(async () => {
      await r.write(ino, 0, Buffer.alloc(3 * PAGE, 1));
      await r.read(ino, 0, 5000);
    });
    assert.equal(file('daxd_io_bytes_total', { path: 'file', direction: 'write' }), 3 * PAGE);
    assert.equal(file('daxd_io_ops_total', { path: 'file', direction: 'write' }), 1);
    assert.equal(file('daxd_io_bytes_total', { path: 'file', direction: 'read' }), 5000);
    assert.equal(file('daxd_io_ops_total', { path: 'file', direction: 'read' }), 1);

    const token = (await r.fault(sessionId, ino, 0, 'WRITE')).pte!.token;
    const mapping = await delta(async () => {
      await r.store(sessionId, token, 10, Buffer.alloc(100, 2));
      await r.load(sessionId, token, 0, 300);
    });
    assert.equal(mapping('daxd_io_bytes_total', { path: 'mapping', direction: 'write' }), 100);
    assert.equal(mapping('daxd_io_bytes_total', { path: 'mapping', direction: 'read' }), 300);
    assert.equal(mapping('daxd_io_ops_total', { path: 'mapping' }), 2);

    const { pin_id: pinId } = await r.pin(sessionId, ino, 1, 2, true);
    const dma = await delta(async () => {
      await r.dmaWrite(sessionId, pinId, 1, 0, Buffer.alloc(512, 3));
      await r.dmaRead(sessionId, pinId, 0, 0, 256);
    });
    assert.equal(dma('daxd_io_bytes_total', { path: 'dma', direction: 'write' }), 512);
    assert.equal(dma('daxd_io_bytes_total', { path: 'dma', direction: 'read' }), 256);
    const unpin = await delta(() => r.unpin(sessionId, pinId));
    assert.equal(unpin('daxd_pins_active'), -1);
    assert.equal(unpin('daxd_pinned_blocks'), -2);
  });

  it('a failed call is counted under its status code and returns its request id', async function () {
    const d = await delta(() => failure(r.lookup('no-such-file')));
    assert.equal(d('daxd_rpc_duration_seconds_count', { method: 'Files.Lookup', code: 'NOT_FOUND' }), 1);
    const trailer = await new Promise<grpc.Metadata>((resolve) => {
      s.raw.files.Lookup({ name: 'no-such-file' }, (err) => resolve((err as grpc.ServiceError).metadata));
    });
    assert.match(String(trailer.get('daxd-request-id')[0]), /^[0-9a-f]{8}-[0-9a-z]+$/);
    // A client may name its request: the server keeps a sane id, and returns it.
    const named = await new Promise<grpc.Metadata>((resolve) => {
      const md = new grpc.Metadata();
      md.set('daxd-request-id', 'client-42');
      s.raw.files.Lookup({ name: 'no-such-file' }, md, (err) => resolve((err as grpc.ServiceError).metadata));
    });
    assert.equal(named.get('daxd-request-id')[0], 'client-42');
  });

  it('histogram buckets start at 50 µs and the labels stay bounded', async function () {
    const prom = await scrape(s.base);
    const les = prom.samples.filter((x) => x.name === 'daxd_rpc_duration_seconds_bucket' && x.labels.method === 'Mapping.Fault' && x.labels.code === 'OK').map((x) => x.labels.le);
    assert.equal(les[0], '0.00005');
    const labelNames = new Set(prom.samples.filter((x) => x.name.startsWith('daxd_')).flatMap((x) => Object.keys(x.labels)));
    assert.deepEqual([...labelNames].sort(), ['code', 'direction', 'kind', 'le', 'method', 'order', 'outcome', 'path', 'policy', 'reason', 'state'].filter((l) => labelNames.has(l)));
    for (const bad of ['ino', 'pgoff', 'offset', 'session', 'pin']) assert.ok(!labelNames.has(bad), `label ${bad}`);
    for (const [name, type] of prom.types) {
      if (!name.startsWith('daxd_')) continue;
      if (type === 'counter') assert.match(name, /_total$/, `${name} is a counter`);
      assert.doesNotMatch(name, /_(ms|milliseconds|kb|mb|kib|mib)(_|$)/, `${name}: base units`);
    }
  });

  it('sessions: opened, active, ended by reason', async function () {
    let id = '';
    const open = await delta(async () => { id = (await r.open('short')).session_id; });
    assert.equal(open('daxd_sessions_opened_total'), 1);
    assert.equal(open('daxd_sessions_active'), 1);
    const close = await delta(() => r.close(id));
    assert.equal(close('daxd_sessions_ended_total', { reason: 'closed' }), 1);
    assert.equal(close('daxd_sessions_active'), -1);
  });

  it('volume blocks: fallocate of 16 pages adds exactly 16 unwritten blocks; a write converts one', async function () {
    await until(async () => (await scrape(s.base)).has('daxd_volume_blocks', { state: 'unwritten' }), 'the first unwritten count');
    const ino = await r.create('prealloc');
    const alloc = await delta(() => r.fallocate(ino, 0, 16 * PAGE));
    assert.equal(alloc('daxd_volume_blocks', { state: 'unwritten' }), 16);
    assert.ok(alloc('daxd_volume_blocks', { state: 'used' }) >= 16);
    assert.equal(alloc('daxd_volume_blocks', { state: 'free' }), -alloc('daxd_volume_blocks', { state: 'used' }));
    const write = await delta(() => r.write(ino, 0, Buffer.alloc(PAGE, 7)));
    assert.equal(write('daxd_volume_blocks', { state: 'unwritten' }), -1);
    const volume = (await getJson<{ blocks: { unwritten: number; used: number } }>(s.base, '/api/v1/volume')).body;
    const prom = await scrape(s.base);
    assert.equal(volume.blocks.unwritten, prom.value('daxd_volume_blocks', { state: 'unwritten' }));
    const cut = await delta(() => r.truncate(ino, 0));
    assert.equal(cut('daxd_volume_blocks', { state: 'unwritten' }), -15);
  });

  it('journal: every commit is one observation of the commit latency', async function () {
    // Create is durable on return: each one commits.
    const d = await delta(async () => {
      for (let i = 0; i < 3; i++) await r.create(`journal-${i}`);
    });
    assert.ok(d('daxd_journal_commits_total') >= 3);
    assert.ok(d('daxd_journal_blocks_logged_total') >= 3);
    assert.equal(d('daxd_journal_commit_duration_seconds_count'), d('daxd_journal_commits_total'));
  });

  it('an entry-lock wait: counted, timed, shown by /api/v1/locks while it lasts, logged at warn when long', async function () {
    const ino = await r.create('contended');
    await r.truncate(ino, 4 * PAGE);
    const fp = s.daxd.dax.failpoints.arm('fault:after-entry-lock', { ino, pgoff: 2 });
    const before = await scrape(s.base);
    const holder = r.fault(sessionId, ino, 2, 'WRITE');
    await fp.reached;
    const waiter = r.fault(sessionId, ino, 2, 'READ');
    await until(async () => (await scrape(s.base)).value('daxd_entry_lock_waiters') === 1, 'one waiter');
    const during = await scrape(s.base);
    assert.equal(during.value('daxd_entry_locks_held'), 1);
    assert.equal(during.value('daxd_entry_lock_waits_total') - before.value('daxd_entry_lock_waits_total'), 1);
    const locks = (await getJson<{ locks: Array<{ ino: number; pgoff: number; waiters: number }> }>(s.base, '/api/v1/locks')).body;
    assert.deepEqual(locks.locks.map((l) => [l.ino, l.pgoff, l.waiters]), [[ino, 2, 1]]);
    // Long enough to be a slow wait (SLOW_ENTRY_LOCK_WAIT_MS): this test is about time.
    await new Promise((resolve) => setTimeout(resolve, 120));
    fp.release();
    await Promise.all([holder, waiter]);
    const after = await scrape(s.base);
    assert.equal(after.value('daxd_entry_lock_wait_seconds_count') - before.value('daxd_entry_lock_wait_seconds_count'), 1);
    assert.ok(after.value('daxd_entry_lock_wait_seconds_sum') - before.value('daxd_entry_lock_wait_seconds_sum') >= 0.1);
    assert.equal(after.value('daxd_entry_lock_waiters'), 0);
    assert.equal(after.value('daxd_entry_locks_held'), 0);
    const warn = s.logs.find((l) => l.msg === 'slow entry-lock wait' && l.ino === ino);
    assert.ok(warn, 'the slow wait was logged');
    assert.equal(warn.level, 40);
    assert.equal(warn.pgoff, 2);
    assert.ok((warn.waitedMs as number) >= 100);
  });

  it('a layout change that meets a pin: counted by policy and outcome, logged at warn with its request id', async function () {
    const ino = await r.create('pinned');
    await r.truncate(ino, 4 * PAGE);
    const { pin_id: pinId } = await r.pin(sessionId, ino, 0, 1, true);
    const fail = await delta(() => failure(r.truncate(ino, 0, 'FAIL')));
    assert.equal(fail('daxd_layout_break_waits_total', { policy: 'FAIL', outcome: 'failed' }), 1);
    assert.equal(fail('daxd_rpc_duration_seconds_count', { method: 'Files.Truncate', code: 'FAILED_PRECONDITION' }), 1);
    const warn = s.logs.find((l) => l.msg === 'layout change met pinned pages' && l.ino === ino);
    assert.ok(warn, 'logged');
    assert.equal(warn.level, 40);
    assert.deepEqual([warn.policy, warn.outcome, warn.change], ['FAIL', 'failed', 'TRUNCATE']);
    assert.match(String(warn.reqId), /^[0-9a-f]{8}-[0-9a-z]+$/);

    // WAIT: the truncate waits until the pin goes, then completes: outcome done, with a duration.
    const before = await scrape(s.base);
    const truncating = r.truncate(ino, 0, 'WAIT');
    await until(async () => (await scrape(s.base)).value('daxd_layout_breaks_waiting') === 1, 'the truncate waits for the pin');
    await r.unpin(sessionId, pinId);
    await truncating;
    const after = await scrape(s.base);
    const done = (p: Prom, n: string) => p.value(n, { policy: 'WAIT', outcome: 'done' });
    assert.equal(done(after, 'daxd_layout_break_waits_total') - done(before, 'daxd_layout_break_waits_total'), 1);
    assert.equal(done(after, 'daxd_layout_break_wait_seconds_count') - done(before, 'daxd_layout_break_wait_seconds_count'), 1);
    assert.equal(after.value('daxd_layout_breaks_waiting'), 0);
  });
});

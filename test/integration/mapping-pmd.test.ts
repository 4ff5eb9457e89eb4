/**
 * PMD (2 MiB) faults over the wire, against a real daxd in this process (gRPC and HTTP on
 * 127.0.0.1): Fault and FaultBatch with size PMD (the huge zero page of a hole, a fallback
 * with its reason), Inspect's order, Load through PMD and PAGE tokens and the EINVAL
 * edges of each, FaultBatch's PMD + load refusal, the metrics (pmd / pmd_fallback faults,
 * fallbacks by reason, mapping entries by order), and the SDK's MappedFile { huge: true }:
 * a 4 MiB write-then-read round trip on PMD faults, a transparent fallback at EOF, and
 * generic/428 at PMD size (a write(2) under a huge zero mapping shows through it); and a
 * PMD write fault of a principal whose allocated-bytes quota cannot hold 2 MiB, which
 * falls back to a 4 KiB fault (NO_ALIGNED_SPACE) instead of failing EDQUOT.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import type { DaxClient, DaxSession } from '../../client';
import type { FaultBatchResponse__Output } from '../../wire/generated/daxd/v1/FaultBatchResponse';
import type { FaultOp } from '../../wire/generated/daxd/v1/FaultOp';
import type { FaultResponse__Output } from '../../wire/generated/daxd/v1/FaultResponse';
import type { InspectResponse__Output } from '../../wire/generated/daxd/v1/InspectResponse';
import { PMD_BYTES, PMD_PAGES } from '../../wire/limits';
import { openRawSession, pattern, type RawMapping } from './mapping-fixture';
import { scrape, startHttpDaxd, type HttpDaxd } from '../http/fixture';
import { call, failure } from '../support/raw-rpc';
import { clientFor } from '../support/start-server';
import { QUOTA, startAuthServer, type AuthServer } from '../support/auth-server';
import { MiB, PAGE } from '../support/units';

const S = grpc.status;

describe('PMD faults over the wire (Fault, FaultBatch, Load, Inspect, metrics, MappedFile huge)', function () {
  this.timeout(60_000);
  let d: HttpDaxd;
  let client: DaxClient;
  let s: RawMapping;
  let files = 0;

  before(async function () {
    d = await startHttpDaxd('pmd-wire', { sizeBytes: 128 * MiB });
    client = clientFor({ address: d.grpc });
    s = await openRawSession(d.raw);
  });

  after(async function () {
    client?.close();
    await d?.stop();
  });

  async function sparse(sizeBytes: number): Promise<number> {
    const { ino } = await client.create(`pmd-${files++}`);
    await client.truncate(ino, sizeBytes);
    return ino;
  }

  function fault(ino: number, pgoff: number, kind: 'READ' | 'WRITE', size: 'PAGE' | 'PMD' | number): Promise<FaultResponse__Output> {
    return call((cb) => d.raw.mapping.Fault({ session_id: s.sessionId, ino, pgoff, kind, size: size as 'PMD' }, cb));
  }

  function faultBatch(ino: number, ops: FaultOp[]): Promise<FaultBatchResponse__Output> {
    return call((cb) => d.raw.mapping.FaultBatch({ session_id: s.sessionId, ino, ops }, cb));
  }

  async function inspectOrders(ino: number, first: number, last: number): Promise<Array<[number, number, string, number]>> {
    const r = await call<InspectResponse__Output>((cb) => d.raw.mapping.Inspect({ ino, first_pgoff: first, last_pgoff: last }, cb));
    return r.entries.map((e) => [Number(e.pgoff), e.order, e.state, Number(e.pfn)]);
  }

  /** Runs `step` and returns the differences of the named samples across it. */
  async function delta(step: () => Promise<unknown>): Promise<(name: string, labels?: Record<string, string>) => number> {
    const before = await scrape(d.base);
    await step();
    const after = await scrape(d.base);
    return (name, labels = {}) => after.value(name, labels) - before.value(name, labels);
  }

  it('Fault PMD on a hole of a 4 MiB sparse file: an order-9 PTE of pfn 0 at the aligned base; Inspect shows one order-9 ZERO entry; a Load at 1 MiB + 5 reads zeros', async function () {
    const ino = await sparse(4 * MiB);
    const r = await fault(ino, PMD_PAGES + 7, 'READ', 'PMD');
    assert.ok(r.pte);
    assert.deepEqual([r.pte.size, r.pte.pgoff, r.pte.pfn, r.pte.writable, r.pte.fallback_reason], ['PMD', String(PMD_PAGES), '0', false, '']);
    assert.deepEqual(await inspectOrders(ino, 0, 2 * PMD_PAGES - 1), [[PMD_PAGES, 9, 'ZERO', 0]]);
    assert.deepEqual(await s.load(r.pte.token, MiB + 5, 7), Buffer.alloc(7));
    assert.deepEqual(await s.load(r.pte.token, PMD_BYTES - 1, 1), Buffer.alloc(1), 'the last byte of the 2 MiB');
    assert.equal((await client.stat(ino)).blocks, 0, 'a READ PMD fault allocates nothing');
  });

  it('a PAGE fault (size left out) answers as before: no size or reason on the wire, Inspect order 0', async function () {
    const ino = await sparse(4 * MiB);
    const r = await s.fault(ino, 3, 'READ');
    assert.ok(r.pte);
    assert.deepEqual([r.pte.size, r.pte.pgoff, r.pte.fallback_reason], ['PAGE', '3', '']);
    assert.deepEqual(await inspectOrders(ino, 0, 10), [[3, 0, 'ZERO', 0]]);
  });

  it('Fault PMD crossing EOF falls back: a PAGE PTE of the asked page, fallback_reason CROSSES_EOF', async function () {
    const ino = await sparse(3 * MiB);
    const r = await fault(ino, PMD_PAGES + 10, 'READ', 'PMD');
    assert.ok(r.pte);
    assert.deepEqual([r.pte.size, r.pte.pgoff, r.pte.pfn, r.pte.fallback_reason], ['PAGE', String(PMD_PAGES + 10), '0', 'CROSSES_EOF']);
    assert.deepEqual(await inspectOrders(ino, PMD_PAGES, 2 * PMD_PAGES - 1), [[PMD_PAGES + 10, 0, 'ZERO', 0]]);
  });

  it('Load through a PAGE token past its 4 KiB, or through a PMD token past its 2 MiB: INVALID_ARGUMENT / EINVAL', async function () {
    const ino = await sparse(4 * MiB);
    const page = await fault(ino, 0, 'READ', 'PAGE');
    const pmd = await fault(ino, PMD_PAGES, 'READ', 'PMD');
    assert.equal(pmd.pte?.size, 'PMD');
    const cases: Array<[string, string, number, number]> = [
      ['PAGE token, 4000 + 200', page.pte!.token, 4000, 200],
      ['PAGE token, 4096 + 1', page.pte!.token, PAGE, 1],
      ['PAGE token, 0 + 8192', page.pte!.token, 0, 2 * PAGE],
      ['PMD token, 2 MiB - 4 + 8', pmd.pte!.token, PMD_BYTES - 4, 8],
      ['PMD token, 0 + 2 MiB + 1', pmd.pte!.token, 0, PMD_BYTES + 1],
      ['PMD token, at 2 MiB', pmd.pte!.token, PMD_BYTES, 1],
    ];
    for (const [what, token, offset, length] of cases) {
      const err = await failure(s.load(token, offset, length));
      assert.deepEqual([err.code, err.reason], [S.INVALID_ARGUMENT, 'EINVAL'], what);
    }
    assert.equal((await s.load(pmd.pte!.token, 0, PMD_BYTES)).length, PMD_BYTES, 'the whole 2 MiB in one Load');
    assert.equal((await s.load(page.pte!.token, 0, PAGE)).length, PAGE);
  });

  it('AccessBatch: loads through a PMD token add up to at most RPC_IO_BYTES_MAX per call; the ops past it fail alone with ELIMIT', async function () {
    const ino = await sparse(4 * MiB);
    const pmd = await fault(ino, 0, 'READ', 'PMD');
    const token = pmd.pte!.token;
    const r = await s.accessBatch([
      { token, offset: 0, length: PMD_BYTES },
      { token, offset: 0, length: PMD_BYTES },
      { token, offset: 0, length: 1 },
      { token, offset: 8, data: Buffer.from('x'), store: true },
    ]);
    assert.deepEqual(r.results.map((o) => o.data.length), [PMD_BYTES, PMD_BYTES, 0, 0]);
    assert.deepEqual([r.results[0].error, r.results[1].error], [null, null]);
    assert.deepEqual([r.results[2].error?.code, r.results[2].error?.reason], [S.RESOURCE_EXHAUSTED, 'ELIMIT']);
    assert.match(r.results[2].error!.message, /bytes loaded per AccessBatch exceeded \(4194305 vs\. max 4194304\)/);
    assert.equal(r.results[3].error?.reason, 'PTE_STALE', 'the store after it still ran (through a read-only token)');
  });

  it('an unknown size: INVALID_ARGUMENT / EINVAL for Fault, and for that op alone in a FaultBatch', async function () {
    const ino = await sparse(4 * MiB);
    const err = await failure(fault(ino, 0, 'READ', 7));
    assert.deepEqual([err.code, err.reason], [S.INVALID_ARGUMENT, 'EINVAL']);
    assert.match(err.message, /size 7 is not one of PAGE, PMD/);
    const r = await faultBatch(ino, [{ pgoff: 0, kind: 'READ', size: 7 as unknown as 'PMD' }, { pgoff: 1, kind: 'READ' }]);
    assert.deepEqual([r.results[0].error?.code, r.results[0].error?.reason, r.results[0].pte], [S.INVALID_ARGUMENT, 'EINVAL', null]);
    assert.equal(r.results[1].error, null);
    assert.ok(r.results[1].pte);
  });

  it('FaultBatch: a PMD op with load is EINVAL for that op; PMD ops without load and PAGE ops with load are answered', async function () {
    const ino = await sparse(4 * MiB);
    const r = await faultBatch(ino, [
      { pgoff: 5, kind: 'READ', size: 'PMD', load: true },
      { pgoff: PMD_PAGES, kind: 'READ', size: 'PMD' },
      { pgoff: 9, kind: 'READ', size: 'PAGE', load: true },
    ]);
    assert.deepEqual([r.results[0].error?.code, r.results[0].error?.reason], [S.INVALID_ARGUMENT, 'EINVAL']);
    assert.match(r.results[0].error!.message, /load applies to PAGE faults only/);
    assert.deepEqual([r.results[1].error, r.results[1].pte?.size, r.results[1].pte?.pgoff, r.results[1].data.length], [null, 'PMD', String(PMD_PAGES), 0]);
    assert.deepEqual([r.results[2].error, r.results[2].pte?.size, r.results[2].data], [null, 'PAGE', Buffer.alloc(PAGE)]);
    assert.deepEqual(await inspectOrders(ino, 0, 2 * PMD_PAGES - 1), [[9, 0, 'ZERO', 0], [PMD_PAGES, 9, 'ZERO', 0]], 'the refused op faulted nothing');
  });

  it('metrics: a PMD fault counts pmd and one order-9 mapping entry; a fallback counts pmd_fallback and its reason', async function () {
    const ino = await sparse(3 * MiB);
    const huge = await delta(() => fault(ino, 0, 'READ', 'PMD'));
    assert.equal(huge('daxd_page_faults_total', { kind: 'pmd' }), 1);
    assert.equal(huge('daxd_page_faults_total', { kind: 'pmd_fallback' }), 0);
    assert.equal(huge('daxd_mapping_entries', { order: '9' }), 1);
    assert.equal(huge('daxd_mapping_entries', { order: '0' }), 0);
    const back = await delta(() => fault(ino, PMD_PAGES, 'READ', 'PMD'));
    assert.equal(back('daxd_page_faults_total', { kind: 'pmd' }), 0);
    assert.equal(back('daxd_page_faults_total', { kind: 'pmd_fallback' }), 1);
    assert.equal(back('daxd_pmd_fallbacks_total', { reason: 'CROSSES_EOF' }), 1);
    assert.equal(back('daxd_pmd_fallbacks_total'), 1, 'no other reason counted');
    assert.equal(back('daxd_mapping_entries', { order: '0' }), 1);
    assert.equal(back('daxd_mapping_entries', { order: '9' }), 0);
    const prom = await scrape(d.base);
    assert.ok(prom.has('daxd_pmd_fallbacks_total', { reason: 'NO_ALIGNED_SPACE' }), 'every reason is exported, at 0 until it happens');
  });

  describe('MappedFile { huge: true }', function () {
    let session: DaxSession;

    before(async function () {
      session = await client.openSession({ clientName: 'pmd-sdk' });
      await session.attached;
    });

    after(async function () {
      await session?.close();
    });

    it('a 4 MiB write-then-read round trip equals the data, on two PMD write faults (the server counts them too)', async function () {
      const ino = await sparse(4 * MiB);
      const data = pattern(15, 4 * MiB);
      const map = session.mmap(ino, { shared: true, writable: true, huge: true });
      const counted = await delta(async () => {
        await map.write(0, data);
        assert.deepEqual(await map.read(0, 4 * MiB), data);
      });
      assert.equal(counted('daxd_page_faults_total', { kind: 'pmd' }), 2);
      assert.equal(counted('daxd_page_faults_total', { kind: 'pmd_fallback' }), 0);
      assert.deepEqual([map.stats.pmdFaults, map.stats.pmdFallbacks, map.stats.pmdPtesCached, map.stats.ptesCached], [2, 0, 2, 2]);
      assert.deepEqual([map.stats.faultBatchCalls, map.stats.faultOps], [1, 2], 'one FaultBatch of two PMD ops for 1024 pages');
      await map.msync();
      assert.deepEqual(await client.read(ino, 0, 4 * MiB), data);
      const rows = await inspectOrders(ino, 0, 2 * PMD_PAGES - 1);
      assert.deepEqual(rows.map(([pg, order, state]) => [pg, order, state]), [[0, 9, 'MAPPED'], [PMD_PAGES, 9, 'MAPPED']]);
      await map.unmap();
    });

    it('falls back transparently where the server says so: a 3 MiB file reads and writes the same bytes, the tail on 4 KiB faults', async function () {
      const ino = await sparse(3 * MiB);
      const data = pattern(16, 3 * MiB - 100);
      const map = session.mmap(ino, { shared: true, writable: true, huge: true });
      await map.write(50, data);
      assert.deepEqual(await map.read(50, data.length), data);
      assert.deepEqual(await client.read(ino, 50, data.length), data);
      assert.equal(map.stats.pmdFaults, 1, 'the first 2 MiB on one PMD fault');
      assert.ok(map.stats.pmdFallbacks >= 1, 'the range crossing EOF fell back');
      const rows = await inspectOrders(ino, 0, 2 * PMD_PAGES - 1);
      assert.deepEqual(rows[0].slice(0, 3), [0, 9, 'MAPPED']);
      assert.equal(rows.length, 1 + (3 * MiB - 2 * MiB) / PAGE, 'then one 4 KiB entry per page of the tail');
      assert.ok(rows.slice(1).every(([, order]) => order === 0));
      await map.unmap();
    });

    it('an fsync between the PMD write fault and the stores costs no re-fault: the stores fault 4 KiB pages in the same AccessBatch (fault_if_stale)', async function () {
      const ino = await sparse(2 * MiB);
      const map = session.mmap(ino, { shared: true, writable: true, huge: true });
      const rpc = map.rpc;
      const faultBatch = rpc.faultBatch.bind(rpc);
      let fsyncs = 0;
      rpc.faultBatch = async (...args) => {
        const out = await faultBatch(...args);
        await client.fsync(ino); // writeback revokes the fresh writable PMD PTE
        fsyncs++;
        return out;
      };
      const data = pattern(19, 2 * PAGE);
      await map.write(MiB + PAGE / 2, data);
      assert.deepEqual([map.stats.pmdFaults, fsyncs, map.stats.faultBatchCalls, map.stats.accessBatchCalls, map.stats.staleRetries], [1, 1, 1, 1, 0]);
      assert.deepEqual(await client.read(ino, MiB + PAGE / 2, data.length), data);
      assert.deepEqual(await map.read(MiB + PAGE / 2, data.length), data);
      await map.unmap();
    });

    it('ro -> rw upgrade: a huge zero mapping read first, then written in its middle: a PMD WRITE fault replaces it, the bytes land', async function () {
      const ino = await sparse(2 * MiB);
      const map = session.mmap(ino, { shared: true, writable: true, huge: true });
      assert.deepEqual(await map.read(0, 64), Buffer.alloc(64));
      assert.deepEqual(await inspectOrders(ino, 0, PMD_PAGES - 1), [[0, 9, 'ZERO', 0]]);
      const data = pattern(17, 3 * PAGE + 11);
      await map.write(MiB - 5, data);
      assert.deepEqual(await map.read(MiB - 5, data.length), data);
      assert.deepEqual([map.stats.pmdFaults, map.stats.pmdFallbacks], [2, 0], 'a READ then a WRITE PMD fault');
      assert.deepEqual((await inspectOrders(ino, 0, PMD_PAGES - 1)).map(([pg, order, state]) => [pg, order, state]), [[0, 9, 'MAPPED']]);
      assert.deepEqual(await client.read(ino, MiB - 5, data.length), data);
      await map.unmap();
    });

    it('a private huge mapping reads through a PMD PTE and writes to 4 KiB private copies (COW stays 4 KiB); the file is unchanged', async function () {
      const ino = await sparse(2 * MiB);
      await client.fallocate(ino, 'ALLOCATE', 0, 2 * MiB); // one aligned extent (a plain write(2) allocates block by block)
      await client.write(ino, 0, pattern(18, 2 * MiB));
      const map = session.mmap(ino, { private: true, writable: true, huge: true });
      assert.deepEqual(await map.read(PAGE, 16), pattern(18, 2 * MiB).subarray(PAGE, PAGE + 16));
      assert.equal(map.stats.pmdFaults, 1);
      await map.write(PAGE + 3, Buffer.from('private'));
      assert.deepEqual(await map.read(PAGE, 16), Buffer.concat([pattern(18, 2 * MiB).subarray(PAGE, PAGE + 3), Buffer.from('private'), pattern(18, 2 * MiB).subarray(PAGE + 10, PAGE + 16)]));
      assert.deepEqual(await map.read(5 * PAGE, 8), pattern(18, 2 * MiB).subarray(5 * PAGE, 5 * PAGE + 8), 'the other pages still through the PMD PTE');
      assert.deepEqual([map.stats.privatePages, map.stats.pmdFaults], [1, 1]);
      assert.deepEqual(await client.read(ino, 0, 2 * MiB), pattern(18, 2 * MiB));
      await map.unmap();
    });

    it('generic/428 at PMD size: a read-only huge zero mapping at 2 MiB; Files.Write of 12 bytes there; the mapping shows them (its PMD PTE revoked by the Invalidate)', async function () {
      const ino = await sparse(4 * MiB);
      const map = session.mmap(ino, { shared: true, huge: true });
      assert.deepEqual(await map.read(2 * MiB, PMD_BYTES), Buffer.alloc(PMD_BYTES));
      assert.deepEqual([map.stats.pmdFaults, map.stats.pmdPtesCached], [1, 1]);
      assert.deepEqual(await inspectOrders(ino, PMD_PAGES, 2 * PMD_PAGES - 1), [[PMD_PAGES, 9, 'ZERO', 0]]);
      const invalidated = once(session, 'invalidate');
      await client.write(ino, 2 * MiB, Buffer.from('hello, world'));
      const [event] = (await invalidated) as [{ ino: number; firstPgoff: number; lastPgoff: number; reason: string }];
      assert.deepEqual([event.ino, event.firstPgoff, event.lastPgoff, event.reason], [ino, PMD_PAGES, 2 * PMD_PAGES - 1, 'HOLE_FILLED']);
      assert.equal(map.stats.pmdPtesCached, 0, 'the event dropped the PMD PTE');
      assert.deepEqual(await map.read(2 * MiB, 12), Buffer.from('hello, world'));
      assert.deepEqual(await map.read(2 * MiB + 12, 4), Buffer.alloc(4));
      await map.unmap();
    });
  });
});

describe('a PMD write fault over the allocated-bytes quota', function () {
  this.timeout(60_000);
  let auth: AuthServer;

  before(async function () {
    auth = await startAuthServer({ principals: [{ name: 'q-bytes', role: 'rw', prefix: 'q-bytes/', quotas: { allocated_bytes: QUOTA.allocatedBlocks * PAGE } }] });
  });

  after(async function () {
    await auth?.stop();
  });

  it('falls back to a 4 KiB fault (NO_ALIGNED_SPACE) that fits the quota, instead of failing EDQUOT; MappedFile huge writes through it', async function () {
    const q = auth.as('q-bytes');
    const file = await q.create('q-bytes/huge');
    await q.truncate(file.ino, 4 * MiB);
    const session = await q.openSession({ clientName: 'pmd-quota' });
    try {
      const map = session.mmap(file.ino, { shared: true, writable: true, huge: true });
      const [outcome] = await map.rpc.faultBatch(file.ino, [{ pgoff: 3, kind: 'WRITE', size: 'PMD' }]);
      assert.ok(outcome.ok, outcome.ok ? '' : `${outcome.error.reason}: ${outcome.error.message}`);
      assert.deepEqual([outcome.pte?.size, outcome.pte?.pgoff, outcome.pte?.writable, outcome.pte?.fallbackReason], ['PAGE', 3, true, 'NO_ALIGNED_SPACE']);
      await map.write(PMD_BYTES + 10, Buffer.from('within quota'));
      assert.deepEqual([map.stats.pmdFaults, map.stats.pmdFallbacks], [0, 1]);
      assert.deepEqual(await q.read(file.ino, PMD_BYTES + 10, 12), Buffer.from('within quota'));
      assert.equal((await q.stat(file.ino)).blocks, 2, 'one block per 4 KiB fault, not 2 MiB');
      await map.unmap();
    } finally {
      await session.close();
    }
  });
});

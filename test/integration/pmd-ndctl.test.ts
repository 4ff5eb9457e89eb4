/**
 * ndctl's dax-pmd test (test/dax-pmd.c) and generic/428 at PMD size, over the wire against
 * a real daxd in this process (gRPC and the metrics endpoint on 127.0.0.1).
 *
 * dax-pmd, per 2 MiB-aligned range of files preallocated in aligned extents:
 * - write from an unfaulted mapping: the bytes of an unfaulted huge mapping of file A go to
 *   file B through Files.Write (the mapping's first access is a PMD READ fault);
 * - read into an unfaulted mapping: Files.Read of B lands in an unfaulted writable huge
 *   mapping of sparse file C (a PMD WRITE fault allocates one aligned extent);
 * - a pre-faulted PMD mapping shared by two sessions: session 1 PMD-write-faults and
 *   stores; session 2's PMD READ fault maps the same entry (same pfn, one order-9 entry,
 *   two mappers) and sees session 1's stores before any msync, and later ones too;
 * - ro -> rw upgrade: a read-only PMD PTE, then a PMD WRITE fault on the same entry.
 * PMD fault counts are checked on the server (daxd_page_faults_total{kind="pmd"} and
 * {kind="pmd_fallback"}) and in the MappedFile stats.
 *
 * generic/428 at PMD size with raw RPCs: a PMD READ fault on a hole maps the huge zero
 * page; Files.Write of 12 bytes at 2 MiB; the PMD token is stale (PTE_STALE) and a re-fault
 * (falling back: one written block among holes) loads the 12 bytes.
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import type { DaxClient, DaxSession } from '../../client';
import type { FaultResponse__Output } from '../../wire/generated/daxd/v1/FaultResponse';
import type { InspectResponse__Output } from '../../wire/generated/daxd/v1/InspectResponse';
import { PMD_BYTES, PMD_PAGES } from '../../wire/limits';
import { openRawSession, pattern, type RawMapping } from './mapping-fixture';
import { scrape, startHttpDaxd, type HttpDaxd } from '../http/fixture';
import { call, failure } from '../support/raw-rpc';
import { clientFor } from '../support/start-server';
import { MiB } from '../support/units';

describe('ndctl dax-pmd and generic/428 at PMD size, over the wire', function () {
  this.timeout(60_000);
  let d: HttpDaxd;
  let client: DaxClient;
  let files = 0;

  before(async function () {
    d = await startHttpDaxd('pmd-ndctl', { sizeBytes: 128 * MiB });
    client = clientFor({ address: d.grpc });
  });

  after(async function () {
    client?.close();
    await d?.stop();
  });

  async function file(sizeBytes: number, prealloc: boolean): Promise<number> {
    const { ino } = await client.create(`ndctl-${files++}`);
    if (prealloc) await client.fallocate(ino, 'ALLOCATE', 0, sizeBytes);
    else await client.truncate(ino, sizeBytes);
    return ino;
  }

  function fault(s: RawMapping, ino: number, pgoff: number, kind: 'READ' | 'WRITE'): Promise<FaultResponse__Output> {
    return call((cb) => d.raw.mapping.Fault({ session_id: s.sessionId, ino, pgoff, kind, size: 'PMD' }, cb));
  }

  async function entries(ino: number, first: number, last: number): Promise<Array<[number, number, string, number, number]>> {
    const r = await call<InspectResponse__Output>((cb) => d.raw.mapping.Inspect({ ino, first_pgoff: first, last_pgoff: last }, cb));
    return r.entries.map((e) => [Number(e.pgoff), e.order, e.state, Number(e.pfn), e.mappers]);
  }

  async function counts(step: () => Promise<unknown>): Promise<{ pmd: number; fallback: number }> {
    const before = await scrape(d.base);
    await step();
    const after = await scrape(d.base);
    const diff = (kind: string) => after.value('daxd_page_faults_total', { kind }) - before.value('daxd_page_faults_total', { kind });
    return { pmd: diff('pmd'), fallback: diff('pmd_fallback') };
  }

  describe('dax-pmd (SDK MappedFile { huge: true })', function () {
    let session: DaxSession;

    before(async function () {
      session = await client.openSession({ clientName: 'dax-pmd' });
      await session.attached;
    });

    after(async function () {
      await session?.close();
    });

    it('write from an unfaulted mapping, then read into an unfaulted mapping: one PMD fault each per 2 MiB, no fallback', async function () {
      const data = pattern(21, 4 * MiB);
      const a = await file(4 * MiB, true);
      await client.write(a, 0, data);
      await client.fsync(a);
      const b = await file(4 * MiB, true);
      const c = await file(4 * MiB, false);

      // write(2) whose source is an unfaulted mapping of A.
      const mapA = session.mmap(a, { shared: true, huge: true });
      const wrote = await counts(async () => {
        for (let off = 0; off < 4 * MiB; off += PMD_BYTES) await client.write(b, off, await mapA.read(off, PMD_BYTES));
      });
      assert.deepEqual(wrote, { pmd: 2, fallback: 0 }, 'one PMD READ fault per 2 MiB of A');
      assert.deepEqual([mapA.stats.pmdFaults, mapA.stats.pmdFallbacks], [2, 0]);
      assert.deepEqual(await client.read(b, 0, 4 * MiB), data);
      assert.deepEqual((await entries(a, 0, 2 * PMD_PAGES - 1)).map(([pg, order, state]) => [pg, order, state]), [[0, 9, 'MAPPED'], [PMD_PAGES, 9, 'MAPPED']]);

      // read(2) into an unfaulted writable mapping of sparse C.
      const mapC = session.mmap(c, { shared: true, writable: true, huge: true });
      const read = await counts(async () => {
        for (let off = 0; off < 4 * MiB; off += PMD_BYTES) await mapC.write(off, await client.read(b, off, PMD_BYTES));
      });
      assert.deepEqual(read, { pmd: 2, fallback: 0 }, 'one PMD WRITE fault per 2 MiB of C');
      await mapC.msync();
      assert.deepEqual(await client.read(c, 0, 4 * MiB), data);
      const rowsC = await entries(c, 0, 2 * PMD_PAGES - 1);
      assert.deepEqual(rowsC.map(([pg, order, state]) => [pg, order, state]), [[0, 9, 'MAPPED'], [PMD_PAGES, 9, 'MAPPED']]);
      assert.ok(rowsC.every(([, , , pfn]) => pfn !== 0 && pfn % PMD_PAGES === 0), 'aligned extents');
      assert.equal((await client.stat(c)).blocks, 2 * PMD_PAGES);
      await mapA.unmap();
      await mapC.unmap();
    });
  });

  it('a pre-faulted PMD mapping shared by two sessions: one entry, two mappers, stores seen without msync', async function () {
    const ino = await file(2 * MiB, false);
    const s1 = await openRawSession(d.raw, 0, 'pmd-1');
    const s2 = await openRawSession(d.raw, 0, 'pmd-2');
    let w!: FaultResponse__Output;
    let r!: FaultResponse__Output;
    const counted = await counts(async () => {
      w = await fault(s1, ino, 5, 'WRITE');
      await s1.store(w.pte!.token, MiB + 3, Buffer.from('from session 1'));
      r = await fault(s2, ino, PMD_PAGES - 1, 'READ');
    });
    assert.deepEqual(counted, { pmd: 2, fallback: 0 });
    assert.deepEqual([w.pte!.size, r.pte!.size, r.pte!.pgoff, r.pte!.pfn, r.pte!.writable], ['PMD', 'PMD', '0', w.pte!.pfn, false]);
    assert.deepEqual(await entries(ino, 0, PMD_PAGES - 1), [[0, 9, 'MAPPED', Number(w.pte!.pfn), 2]]);
    assert.deepEqual(await s2.load(r.pte!.token, MiB + 3, 14), Buffer.from('from session 1'));
    await s1.store(w.pte!.token, PMD_BYTES - 5, Buffer.from('tail!'));
    assert.deepEqual(await s2.load(r.pte!.token, PMD_BYTES - 5, 5), Buffer.from('tail!'), 'the shared entry shows later stores');
    await s1.msync(ino, 0, PMD_PAGES - 1);
    assert.deepEqual(await s2.load(r.pte!.token, MiB + 3, 14), Buffer.from('from session 1'), 'msync leaves the read-only PMD PTE');
    assert.equal((await failure(s1.store(w.pte!.token, 0, Buffer.from('x')))).code, grpc.status.ABORTED, 'msync revoked the writable PMD PTE');
  });

  it('ro -> rw upgrade of a PMD entry: a read-only PMD PTE, then a PMD WRITE fault on the same entry', async function () {
    const ino = await file(2 * MiB, true);
    const s = await openRawSession(d.raw, 0, 'pmd-upgrade');
    let ro!: FaultResponse__Output;
    let rw!: FaultResponse__Output;
    const counted = await counts(async () => {
      ro = await fault(s, ino, 100, 'READ');
      rw = await fault(s, ino, 200, 'WRITE');
    });
    assert.deepEqual(counted, { pmd: 2, fallback: 0 });
    assert.deepEqual([ro.pte!.size, ro.pte!.pfn, ro.pte!.writable], ['PMD', '0', false], 'preallocated: the huge zero page');
    assert.deepEqual([rw.pte!.size, rw.pte!.writable], ['PMD', true]);
    assert.ok(Number(rw.pte!.pfn) % PMD_PAGES === 0 && rw.pte!.pfn !== '0');
    await s.store(rw.pte!.token, 7, Buffer.from('upgraded'));
    assert.equal((await failure(s.load(ro.pte!.token, 0, 1))).code, grpc.status.ABORTED, 'the zero-page PMD PTE went with the upgrade');
    assert.deepEqual(await client.read(ino, 7, 8), Buffer.from('upgraded'));
    assert.deepEqual((await entries(ino, 0, PMD_PAGES - 1)).map(([pg, order, state]) => [pg, order, state]), [[0, 9, 'MAPPED']]);
  });

  it('generic/428 at PMD size (raw RPCs): Files.Write under a huge zero PTE makes it stale; the re-fault loads the 12 bytes', async function () {
    const ino = await file(4 * MiB, false);
    const s = await openRawSession(d.raw, 0, 'g428');
    const z = await fault(s, ino, PMD_PAGES, 'READ');
    assert.deepEqual([z.pte!.size, z.pte!.pgoff, z.pte!.pfn], ['PMD', String(PMD_PAGES), '0']);
    assert.deepEqual(await s.load(z.pte!.token, 0, 12), Buffer.alloc(12));
    await client.write(ino, 2 * MiB, Buffer.from('hello, world'));
    assert.equal((await failure(s.load(z.pte!.token, 0, 12))).code, grpc.status.ABORTED, 'the huge zero PTE is stale');
    const again = await fault(s, ino, PMD_PAGES, 'READ');
    assert.deepEqual([again.pte!.size, again.pte!.fallback_reason], ['PAGE', 'NOT_CONTIGUOUS']);
    assert.deepEqual(await s.load(again.pte!.token, 0, 12), Buffer.from('hello, world'));
  });
});

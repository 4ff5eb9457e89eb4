/**
 * S3: write(2) invalidates hole pages only where, and after, it allocates.
 * - Overwrites of WRITTEN blocks invalidate nothing (their PTEs already point at the block):
 *   counters stay zero, no Invalidate notice, every PTE keeps working and shows the data.
 * - An allocation over mapped holes revokes exactly the zero-page PTEs of the allocated
 *   pages: one per mapper and page, one HOLE_FILLED notice per session with the pgoff range.
 * - Invalidation never drops a DIRTY entry (or one being written back).
 */
import assert from 'node:assert/strict';
import { Dax } from '../../server/dax/dax';
import { invalidateAllocated } from '../../server/dax/invalidate';
import { freshDax, isCode, sparseFile, waitersAt, writtenFile } from '../support/dax-volume';
import { PAGE } from '../support/units';
import { reached, track } from '../support/track';
import { TestClient, TestOwner } from '../support/test-owner';
import { until } from '../support/until';

const totalInvalidations = (counters: { invalidations: Record<string, number> }): number =>
  Object.values(counters.invalidations).reduce((a, b) => a + b, 0);

describe('dax invalidation counts (S3)', function () {
  this.timeout(30_000);

  it('overwriting WRITTEN mapped blocks invalidates nothing; every PTE stays valid and shows the new bytes', async function () {
    const v = await freshDax();
    const pages = 8;
    const ino = await writtenFile(v, 'f', pages, (pg) => pg + 1);
    const a = new TestOwner('a');
    const b = new TestOwner('b');
    const tokens: Array<{ owner: TestOwner; token: string; pg: number; writable: boolean }> = [];
    for (let pg = 0; pg < pages; pg++) {
      const ra = await v.dax.fault(a, ino, pg, 'READ', false);
      const rb = await v.dax.fault(b, ino, pg, 'WRITE', false);
      tokens.push({ owner: a, token: ra.pte!.token, pg, writable: false }, { owner: b, token: rb.pte!.token, pg, writable: true });
    }
    const revokedBefore = v.dax.counters().revokedPtes;
    // Whole pages, a partial page, and an unaligned span across pages.
    await v.fs.write(ino, 0, Buffer.alloc(pages * PAGE, 0x77), false);
    await v.fs.write(ino, 3 * PAGE + 100, Buffer.alloc(50, 0x11), false);
    await v.fs.write(ino, 5 * PAGE - 10, Buffer.alloc(20, 0x22), true);

    assert.equal(totalInvalidations(v.dax.counters()), 0, `invalidations: ${JSON.stringify(v.dax.counters().invalidations)}`);
    assert.equal(v.dax.counters().revokedPtes, revokedBefore);
    assert.equal(v.dax.spaceStats(ino)!.invalidations, 0);
    assert.deepEqual(a.events, []);
    assert.deepEqual(b.events, []);
    const file = await v.fs.read(ino, 0, pages * PAGE);
    for (const t of tokens) {
      assert.deepEqual(v.dax.load(t.owner, t.token, 0, PAGE), file.subarray(t.pg * PAGE, (t.pg + 1) * PAGE), `PTE on page ${t.pg}`);
    }
    for (const e of v.dax.inspect(ino, 0, pages - 1)) assert.deepEqual([e.state, e.mappers], ['MAPPED', 2]);
  });

  it('allocation over one read-faulted hole: exactly 1 PTE revoked, one HOLE_FILLED notice for that page', async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', 8 * PAGE);
    const a = new TestOwner('a');
    const bystander = new TestOwner('b');
    const zero = await v.dax.fault(a, ino, 3, 'READ', false);
    assert.equal(zero.pte!.pfn, 0);
    await v.fs.write(ino, 0, Buffer.alloc(8 * PAGE, 0x42), false); // allocates pages 0..7

    assert.deepEqual(v.dax.counters().invalidations, { HOLE_FILLED: 1 });
    assert.equal(v.dax.spaceStats(ino)?.invalidations ?? 1, 1);
    assert.deepEqual(a.events, [{ kind: 'invalidate', ino, firstPgoff: 3, lastPgoff: 3, reason: 'HOLE_FILLED' }]);
    assert.deepEqual(bystander.events, []);
    assert.throws(() => v.dax.load(a, zero.pte!.token, 0, 1), (err: unknown) => isCode(err, 'PTE_STALE'));
    assert.deepEqual(v.dax.inspect(ino, 0, 7), [], 'the ZERO entry is gone, nothing else was created');
    const again = await v.dax.fault(a, ino, 3, 'READ', false);
    assert.deepEqual(v.dax.load(a, again.pte!.token, 0, PAGE), Buffer.alloc(PAGE, 0x42));
  });

  it('a write over written and hole pages invalidates only the hole pages it allocated, per mapper', async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', 8 * PAGE);
    await v.fs.write(ino, 0, Buffer.alloc(4 * PAGE, 1), false); // 0..3 WRITTEN, 4..7 holes
    const a = new TestOwner('a');
    const b = new TestOwner('b');
    const ptes = new Map<string, string>();
    for (const [o, pg] of [[a, 1], [a, 2], [a, 5], [a, 6], [b, 2], [b, 6], [b, 7]] as const) {
      ptes.set(`${o.id}:${pg}`, (await v.dax.fault(o, ino, pg, 'READ', false)).pte!.token);
    }
    await v.fs.write(ino, 2 * PAGE + 10, Buffer.alloc(4 * PAGE, 9), false); // pages 2..6: allocates 4, 5, 6
    // Revoked: a:5, a:6, b:6. Page 7 (not written) and pages 1, 2 (WRITTEN) keep their PTEs.
    assert.deepEqual(v.dax.counters().invalidations, { HOLE_FILLED: 3 });
    assert.deepEqual(a.events.map((e) => [e.reason, e.firstPgoff, e.lastPgoff]), [['HOLE_FILLED', 5, 6]]);
    assert.deepEqual(b.events.map((e) => [e.reason, e.firstPgoff, e.lastPgoff]), [['HOLE_FILLED', 6, 6]]);
    const file = await v.fs.read(ino, 0, 8 * PAGE);
    for (const [key, token] of ptes) {
      const [id, pgs] = key.split(':');
      const pg = Number(pgs);
      const owner = id === 'a' ? a : b;
      if ((id === 'a' && (pg === 5 || pg === 6)) || (id === 'b' && pg === 6)) {
        assert.throws(() => v.dax.load(owner, token, 0, 1), (err: unknown) => isCode(err, 'PTE_STALE'), key);
      } else {
        assert.deepEqual(v.dax.load(owner, token, 0, PAGE), file.subarray(pg * PAGE, (pg + 1) * PAGE), key);
      }
    }
    assert.deepEqual(v.dax.inspect(ino, 0, 7).map((e) => [e.pgoff, e.state, e.mappers]), [[1, 'MAPPED', 1], [2, 'MAPPED', 2], [7, 'ZERO', 1]]);
  });

  it('a write to a hole nobody mapped invalidates nothing', async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', 8 * PAGE);
    const a = new TestOwner('a');
    await v.dax.fault(a, ino, 0, 'READ', false);
    await v.fs.write(ino, 4 * PAGE, Buffer.alloc(PAGE, 3), false);
    assert.equal(totalInvalidations(v.dax.counters()), 0);
    assert.deepEqual(a.events, []);
  });

  it('a failed write (ENOSPC) allocates nothing and invalidates nothing', async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', 8 * PAGE);
    const a = new TestOwner('a');
    const zero = await v.dax.fault(a, ino, 1, 'READ', false);
    const tooBig = Buffer.alloc((v.fs.statVolume().blocksFree + 8) * PAGE);
    await assert.rejects(v.fs.write(ino, 0, tooBig, false), (err: unknown) => isCode(err, 'ENOSPC'));
    assert.equal(totalInvalidations(v.dax.counters()), 0, 'no invalidation before (or without) an allocation');
    assert.deepEqual(v.dax.load(a, zero.pte!.token, 0, 4), Buffer.alloc(4));
  });

  it('never drops a DIRTY entry: a write around a write-faulted page keeps its entry, PTE and stores', async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', 4 * PAGE);
    const a = new TestClient(v.dax, new TestOwner('a'));
    const b = new TestClient(v.dax, new TestOwner('b'));
    await a.store(ino, 2 * PAGE, Buffer.from('dirty!'));
    const writable = a.cached(ino, 2)!;
    await b.fault(ino, 1, 'READ');
    await b.fault(ino, 3, 'READ');
    await v.fs.write(ino, PAGE + 8, Buffer.alloc(3 * PAGE - 16, 0xee), false); // pages 1..3
    const [e2] = v.dax.inspect(ino, 2, 2);
    assert.deepEqual([e2.state, e2.dirty, e2.mappers], ['MAPPED', true, 1], 'the dirty entry survives');
    v.dax.store(a.owner, writable.token, 0, Buffer.from('still!')); // its writable PTE still works
    assert.deepEqual(await v.fs.read(ino, 2 * PAGE, 8), Buffer.concat([Buffer.from('still!'), Buffer.from([0xee, 0xee])]));
    assert.deepEqual(v.dax.counters().invalidations, { HOLE_FILLED: 2 });
  });

  it('never drops DIRTY or TOWRITE entries even when asked to invalidate their range', async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', 4 * PAGE);
    const a = new TestClient(v.dax, new TestOwner('a'));
    await a.store(ino, 0, Buffer.from('page0'));
    await a.store(ino, PAGE, Buffer.from('page1'));
    await a.fault(ino, 2, 'READ'); // a ZERO entry: this one may go
    // Writeback paused on page 0: page 1 is tagged TOWRITE (and DIRTY) meanwhile.
    const fp = v.dax.failpoints.arm('writeback:after-downgrade', { ino, pgoff: 0 });
    const wb = track(v.dax.msync(ino, 0, 3));
    await reached(fp, wb.promise, 'writeback:after-downgrade');
    const [, e1] = v.dax.inspect(ino, 0, 1);
    assert.deepEqual([e1.dirty, e1.towrite], [true, true]);
    const inval = track(invalidateAllocated(Dax.contextForTests(v.dax), ino, 0, 3));
    await until(() => waitersAt(v.dax, ino, 0) === 1, 'the invalidation waits for the entry writeback holds');
    fp.release();
    await Promise.all([wb.promise, inval.promise]);
    const left = v.dax.inspect(ino, 0, 3).map((e) => [e.pgoff, e.state]);
    assert.deepEqual(left, [[0, 'MAPPED'], [1, 'MAPPED']], 'only the ZERO entry was dropped');
    assert.deepEqual(await v.fs.read(ino, 0, 5), Buffer.from('page0'));
    assert.deepEqual(await a.load(ino, PAGE, 5), Buffer.from('page1'));
  });

  it("a session's own write fault and msync do not notify it; the other mappers are notified", async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', 4 * PAGE);
    const a = new TestOwner('a');
    const b = new TestOwner('b');
    await v.dax.fault(a, ino, 1, 'READ', false); // both map the hole read-only (zero page)
    await v.dax.fault(b, ino, 1, 'READ', false);
    await v.dax.fault(a, ino, 1, 'WRITE', false); // a fills the hole: b's zero-page PTE goes
    assert.deepEqual(a.events, [], 'its own write fault');
    assert.deepEqual(b.events.map((e) => [e.reason, e.firstPgoff]), [['HOLE_FILLED', 1]]);
    await v.dax.fault(b, ino, 1, 'WRITE', false);
    await v.dax.msync(ino, 0, 3, a); // a's msync write-protects both writable PTEs
    assert.deepEqual(a.events, [], 'its own msync');
    assert.deepEqual(b.events.map((e) => [e.reason, e.firstPgoff]), [['HOLE_FILLED', 1], ['WRITEBACK', 1]]);
  });
});

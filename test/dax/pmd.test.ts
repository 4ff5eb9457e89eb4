/**
 * PMD (2 MiB) entries in the engine: the huge zero page and its invalidation by write(2)
 * (generic/428), PMD write faults on aligned extents, 4 KiB faults inside PMD entries
 * (downgrade of a zero entry, a page of a real one), each fallback reason, writeback of a
 * PMD entry, and layout changes over pinned PMD entries (S4).
 */
import assert from 'node:assert/strict';
import { PMD_PAGES } from '../../server/limits';
import { expectCode, freshDax, isCode, sparseFile, writtenFile } from '../support/dax-volume';
import { MiB, PAGE } from '../support/units';
import { TestOwner } from '../support/test-owner';

describe('dax PMD entries', function () {
  this.timeout(30_000);

  it('a READ PMD fault on a hole maps the huge zero page; write(2) in its range drops it whole (generic/428)', async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', 4 * MiB);
    const a = new TestOwner('a');
    const r = await v.dax.fault(a, ino, PMD_PAGES + 7, 'READ', false, 'PMD');
    assert.equal(r.fallback, undefined);
    assert.deepEqual([r.pte!.order, r.pte!.pgoff, r.pte!.pfn, r.pte!.writable], [9, PMD_PAGES, 0, false]);
    const rows = v.dax.inspect(ino, 0, 2 * PMD_PAGES - 1);
    assert.deepEqual(rows.map((e) => [e.pgoff, e.order, e.state]), [[PMD_PAGES, 9, 'ZERO']]);
    assert.deepEqual(v.dax.load(a, r.pte!.token, MiB + 5, 3), Buffer.alloc(3));

    await v.fs.write(ino, 2 * MiB, Buffer.from('hello, world'), false);
    assert.equal(v.dax.inspect(ino, 0, 2 * PMD_PAGES - 1).length, 0, 'the PMD zero entry is gone');
    assert.throws(() => v.dax.load(a, r.pte!.token, 0, 12), (err: unknown) => isCode(err, 'PTE_STALE'));
    const again = await v.dax.fault(a, ino, PMD_PAGES, 'READ', false, 'PMD');
    assert.equal(again.fallback, 'NOT_CONTIGUOUS', 'one written block among holes: 4 KiB pages');
    assert.deepEqual(v.dax.load(a, again.pte!.token, 0, 12), Buffer.from('hello, world'));
    assert.deepEqual(a.events.map((n) => [n.firstPgoff, n.lastPgoff, n.reason]), [[PMD_PAGES, 2 * PMD_PAGES - 1, 'HOLE_FILLED']]);
  });

  it('a WRITE PMD fault allocates one aligned extent; a store at any byte of the 2 MiB lands in the file', async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', 4 * MiB);
    const a = new TestOwner('a');
    const w = await v.dax.fault(a, ino, 3, 'WRITE', false, 'PMD');
    assert.equal(w.fallback, undefined);
    assert.equal(w.pte!.order, 9);
    assert.equal(w.pte!.pfn % PMD_PAGES, 0, 'aligned');
    v.dax.store(a, w.pte!.token, 2 * MiB - 4, Buffer.from('tail'));
    v.dax.store(a, w.pte!.token, 0, Buffer.from('head'));
    assert.deepEqual(await v.fs.read(ino, 2 * MiB - 4, 4), Buffer.from('tail'));
    assert.deepEqual(await v.fs.read(ino, 0, 4), Buffer.from('head'));
    for (let pg = 0; pg < PMD_PAGES; pg++) assert.deepEqual(v.fs.iomap(ino, pg), { state: 'WRITTEN', pfn: w.pte!.pfn + pg });

    // A 4 KiB fault inside the real PMD maps its page of the extent, and uses the PMD entry.
    const p = await v.dax.fault(a, ino, 300, 'READ', false);
    assert.deepEqual([p.pte!.order, p.pte!.pgoff, p.pte!.pfn], [0, 300, w.pte!.pfn + 300]);
    await expectCode(() => v.dax.load(a, p.pte!.token, 4000, 200), 'EINVAL', 'past the page');
    assert.deepEqual(v.dax.inspect(ino, 0, PMD_PAGES - 1).map((e) => [e.pgoff, e.order, e.state, e.dirty, e.mappers]), [[0, 9, 'MAPPED', true, 2]]);

    // Writeback flushes the 2 MiB and revokes the writable PMD PTE; the read-only one stays.
    await v.dax.fsync(ino, false);
    await expectCode(() => v.dax.store(a, w.pte!.token, 0, Buffer.from('x')), 'PTE_STALE');
    assert.deepEqual(v.dax.load(a, p.pte!.token, 0, 4), Buffer.alloc(4));
    assert.deepEqual(v.dax.inspect(ino, 0, 0).map((e) => [e.dirty, e.mappers]), [[false, 1]]);
  });

  it('a 4 KiB fault inside a PMD zero entry downgrades it: PMD PTE revoked, one 4 KiB entry', async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', 2 * MiB);
    const a = new TestOwner('a');
    const b = new TestOwner('b');
    const z = await v.dax.fault(a, ino, 0, 'READ', false, 'PMD');
    const w = await v.dax.fault(b, ino, 9, 'WRITE', false);
    assert.equal(w.pte!.order, 0);
    assert.deepEqual(v.dax.inspect(ino, 0, PMD_PAGES - 1).map((e) => [e.pgoff, e.order, e.state]), [[9, 0, 'MAPPED']]);
    await expectCode(() => v.dax.load(a, z.pte!.token, 0, 1), 'PTE_STALE');
    const again = await v.dax.fault(a, ino, 0, 'READ', false, 'PMD');
    assert.equal(again.fallback, 'PTE_ENTRIES');
    assert.equal(again.pte!.order, 0);
  });

  it('falls back with a reason: past EOF, COW, scattered blocks', async function () {
    const v = await freshDax();
    const a = new TestOwner('a');
    const short = await sparseFile(v, 'short', MiB);
    assert.equal((await v.dax.fault(a, short, 0, 'READ', false, 'PMD')).fallback, 'CROSSES_EOF');
    const big = await sparseFile(v, 'big', 2 * MiB);
    const cow = await v.dax.fault(a, big, 0, 'COW', false, 'PMD');
    assert.equal(cow.fallback, 'COW');
    assert.equal(cow.data!.length, PAGE);
    const written = await writtenFile(v, 'w', PMD_PAGES, (pg) => pg & 0xff);
    const r = await v.dax.fault(a, written, 0, 'READ', false, 'PMD');
    // write(2) allocates with a goal, not alignment: a real PMD only if the extent happens to be aligned.
    const first = v.fs.iomap(written, 0);
    const aligned = first.state === 'WRITTEN' && first.pfn % PMD_PAGES === 0;
    assert.equal(r.fallback, aligned ? undefined : 'NOT_CONTIGUOUS');
    const c = v.dax.counters();
    assert.equal(c.faults.pmd_fallback, aligned ? 2 : 3);
    assert.equal(c.pmdFallbacks.CROSSES_EOF, 1);
    assert.equal(c.pmdFallbacks.COW, 1);
  });

  it('fallocate gives whole 2 MiB ranges aligned extents: a later PMD fault maps them', async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', 0);
    await v.fs.fallocate(ino, 'ALLOCATE', 0, 4 * MiB);
    const a = new TestOwner('a');
    const r = await v.dax.fault(a, ino, PMD_PAGES, 'READ', false, 'PMD');
    assert.equal(r.fallback, undefined);
    assert.equal(r.pte!.pfn, 0, 'unwritten reads as the zero page');
    const w = await v.dax.fault(a, ino, PMD_PAGES, 'WRITE', false, 'PMD');
    assert.equal(w.fallback, undefined);
    assert.equal(w.pte!.pfn % PMD_PAGES, 0);
    assert.deepEqual(v.dax.load(a, w.pte!.token, 0, 8), Buffer.alloc(8), 'converted blocks read as zeros (S2)');
  });

  it('truncate over a pinned PMD entry waits only for pins on truncated pages (the entry is split)', async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', 2 * MiB);
    const a = new TestOwner('a');
    const w = await v.dax.fault(a, ino, 0, 'WRITE', false, 'PMD');
    v.dax.store(a, w.pte!.token, 10 * PAGE, Buffer.from('pinned'));
    const pin = await v.dax.pin(a, { ino, firstPgoff: 10, npages: 1, writable: true, leaseMs: 0 });
    await v.fs.truncate(ino, MiB, { policy: 'FAIL' }); // pages 256.. go; page 10 stays pinned
    assert.deepEqual(v.dax.inspect(ino, 0, PMD_PAGES - 1).map((e) => [e.pgoff, e.order, e.pinCount]), [[10, 0, 1]]);
    assert.deepEqual(await v.dax.dmaRead(a, pin.id, 0, 0, 6), Buffer.from('pinned'));
    await expectCode(() => v.fs.truncate(ino, 0, { policy: 'FAIL' }), 'EBUSY');
    v.dax.unpin(a, pin.id);
    await v.fs.truncate(ino, 0, { policy: 'FAIL' });
    assert.equal(v.dax.inspect(ino, 0, PMD_PAGES - 1).length, 0);
  });
});

/**
 * PMD (2 MiB) entries and power loss (S5, S6, S2), in-process on MemoryStorage, whose
 * durable image is what survives a power cut (storage.crash with nothing unflushed kept).
 *
 * - Writeback of a MAPPED PMD entry dirtied by 4 KiB write faults inside it: fsync flushes
 *   the whole 2 MiB (one flush of the extent), revokes the writable 4 KiB PTEs on its pages
 *   and keeps the read-only ones; the stores survive the power cut.
 * - A MAP_SYNC PMD write fault: the 2 MiB extent is allocated after a power cut right after
 *   the fault returned, without fsync, and its blocks read as zeros (S2). A plain PMD write
 *   fault on the other range, taken afterwards, is not (the control: the check can fail).
 */
import assert from 'node:assert/strict';
import { FileSystem } from '../../server/fs/filesystem';
import { PMD_PAGES } from '../../server/limits';
import { durableBlock, freshDax, isCode, remountDax, sparseFile, type DaxVolume } from '../support/dax-volume';
import { MiB, PAGE } from '../support/units';
import { TestOwner } from '../support/test-owner';

const PMD_BYTES = PMD_PAGES * PAGE;

/** Power loss now (nothing unflushed survives), then mount the medium. */
async function powerCycle(v: DaxVolume): Promise<FileSystem> {
  v.storage.crash(() => 0.5, 0);
  return FileSystem.mount(v.storage.reboot());
}

/** Records every flush range of the volume's storage. */
function recordFlushes(v: DaxVolume): Array<[number, number]> {
  const seen: Array<[number, number]> = [];
  const flush = v.storage.flush.bind(v.storage);
  v.storage.flush = (offsetBytes: number, lengthBytes: number) => {
    seen.push([offsetBytes, lengthBytes]);
    return flush(offsetBytes, lengthBytes);
  };
  return seen;
}

describe('dax PMD entries and power loss (S5, S6)', function () {
  this.timeout(30_000);

  it('fsync of a PMD entry dirtied by 4 KiB write faults flushes the whole 2 MiB; the stores survive a power cut', async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', 4 * MiB);
    const a = new TestOwner('a');
    const b = new TestOwner('b');
    const w = await v.dax.fault(a, ino, PMD_PAGES, 'WRITE', false, 'PMD');
    assert.equal(w.fallback, undefined);
    const pfn = w.pte!.pfn;
    v.dax.store(a, w.pte!.token, 0, Buffer.from('first'));
    await v.dax.fsync(ino, false);
    assert.deepEqual(v.dax.inspect(ino, PMD_PAGES, PMD_PAGES).map((e) => [e.order, e.dirty]), [[9, false]], 'clean after fsync');
    const ro = await v.dax.fault(b, ino, PMD_PAGES, 'READ', false, 'PMD');
    assert.equal(ro.pte!.order, 9);

    // Two 4 KiB write faults inside the clean PMD entry (two sessions): it is dirty again.
    const p300 = await v.dax.fault(a, ino, PMD_PAGES + 300, 'WRITE', false);
    const p7 = await v.dax.fault(b, ino, PMD_PAGES + 7, 'WRITE', false);
    assert.deepEqual([p300.pte!.order, p300.pte!.pfn, p7.pte!.pfn], [0, pfn + 300, pfn + 7]);
    assert.deepEqual(v.dax.inspect(ino, PMD_PAGES, 2 * PMD_PAGES - 1).map((e) => [e.pgoff, e.order, e.dirty]), [[PMD_PAGES, 9, true]]);
    v.dax.store(a, p300.pte!.token, 100, Buffer.from('page 300'));
    v.dax.store(b, p7.pte!.token, PAGE - 6, Buffer.from('page 7'));
    assert.notDeepEqual(durableBlock(v.storage, pfn + 300).subarray(100, 108), Buffer.from('page 300'), 'precondition: not durable yet');

    const flushes = recordFlushes(v);
    await v.dax.fsync(ino, false);
    assert.ok(flushes.some(([off, len]) => off <= pfn * PAGE && off + len >= pfn * PAGE + PMD_BYTES),
      `no flush covered the 2 MiB at pfn ${pfn}: ${JSON.stringify(flushes)}`);
    assert.deepEqual(v.dax.inspect(ino, PMD_PAGES, PMD_PAGES).map((e) => [e.dirty, e.towrite]), [[false, false]]);
    // S5: the writable 4 KiB PTEs inside the PMD are revoked; the read-only PMD PTE stays.
    for (const [o, t] of [[a, p300.pte!.token], [b, p7.pte!.token]] as const) {
      assert.throws(() => v.dax.store(o, t, 0, Buffer.from('x')), (err: unknown) => isCode(err, 'PTE_STALE'));
    }
    assert.deepEqual(v.dax.load(b, ro.pte!.token, 300 * PAGE + 100, 8), Buffer.from('page 300'));
    assert.deepEqual(durableBlock(v.storage, pfn + 300).subarray(100, 108), Buffer.from('page 300'));
    assert.deepEqual(durableBlock(v.storage, pfn + 7).subarray(PAGE - 6), Buffer.from('page 7'));

    const fs2 = await powerCycle(v);
    assert.deepEqual(await fs2.read(ino, PMD_BYTES, 5), Buffer.from('first'));
    assert.deepEqual(await fs2.read(ino, PMD_BYTES + 300 * PAGE + 100, 8), Buffer.from('page 300'));
    assert.deepEqual(await fs2.read(ino, PMD_BYTES + 8 * PAGE - 6, 6), Buffer.from('page 7'));
  });

  it('a store through a writable PMD PTE reaches the medium at fsync wherever it lands in the 2 MiB', async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', 2 * MiB);
    const a = new TestOwner('a');
    const w = await v.dax.fault(a, ino, 0, 'WRITE', false, 'PMD');
    const pfn = w.pte!.pfn;
    const at = [0, PAGE - 2, 255 * PAGE + 17, PMD_BYTES - 3];
    for (const off of at) v.dax.store(a, w.pte!.token, off, Buffer.from('abc'));
    await v.dax.fsync(ino, false);
    const fs2 = await powerCycle(v);
    for (const off of at) assert.deepEqual(await fs2.read(ino, off, 3), Buffer.from('abc'), `offset ${off}`);
    assert.deepEqual(durableBlock(v.storage, pfn + 511).subarray(PAGE - 3), Buffer.from('abc'));
  });

  it('a MAP_SYNC PMD write fault: the 2 MiB extent is allocated after a power cut without fsync, zeroed (S2)', async function () {
    // Old bytes in the blocks the extent will reuse: a file of 0xCC, freed and committed.
    const v0 = await freshDax(16 * MiB);
    const junk = await v0.fs.create('junk', true);
    await v0.fs.write(junk.ino, 0, Buffer.alloc(8 * MiB, 0xcc), false);
    await v0.fs.unlink('junk');
    await v0.fs.sync();
    const v = await remountDax(v0, { canaryByte: 0xcc });

    const ino = await sparseFile(v, 'f', 4 * MiB);
    await v.fs.sync();
    const a = new TestOwner('a');
    const r = await v.dax.fault(a, ino, PMD_PAGES + 3, 'WRITE', true, 'PMD');
    assert.equal(r.fallback, undefined);
    const pfn = r.pte!.pfn;
    assert.ok(pfn !== 0 && pfn % PMD_PAGES === 0);
    assert.equal(v.dax.counters().faults.sync, 1);
    // The control, after the sync fault's commit: a plain PMD write fault on the first range.
    const plain = await v.dax.fault(a, ino, 0, 'WRITE', false, 'PMD');
    assert.equal(plain.fallback, undefined);

    const fs2 = await powerCycle(v);
    for (let i = 0; i < PMD_PAGES; i++) {
      assert.deepEqual(fs2.iomap(ino, PMD_PAGES + i), { state: 'WRITTEN', pfn: pfn + i }, `page ${PMD_PAGES + i} after the power cut`);
    }
    const data = await fs2.read(ino, PMD_BYTES, PMD_BYTES);
    assert.equal(data.findIndex((x) => x !== 0), -1, 'the extent reads as zeros (S2): no 0xCC from the freed file');
    assert.equal(fs2.iomap(ino, 0).state, 'HOLE', 'control: the plain PMD write fault was not committed');
  });
});

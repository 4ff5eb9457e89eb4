/**
 * PMD (2 MiB) write faults on a volume short of aligned space: the fault falls back to a
 * 4 KiB page (NO_ALIGNED_SPACE), as the kernel's PMD fault falls back on any failure of the
 * huge path; ENOSPC only when the 4 KiB fault itself finds no block.
 */
import assert from 'node:assert/strict';
import { PMD_PAGES } from '../../server/limits';
import { assertFsckClean, expectCode, freshDax, sparseFile, writtenFile } from '../support/dax-volume';
import { MiB, PAGE } from '../support/units';
import { TestOwner } from '../support/test-owner';

describe('dax PMD write faults without aligned space', function () {
  this.timeout(30_000);

  it('regression: fewer than PMD_PAGES free blocks: a PMD WRITE fault falls back (NO_ALIGNED_SPACE), not ENOSPC', async function () {
    const v = await freshDax(16 * MiB);
    const free0 = v.fs.statVolume().blocksFree;
    // Leave ~100 blocks free: a 4 KiB fault fits, a 2 MiB extent does not.
    await writtenFile(v, 'filler', free0 - 100 - 16, (pg) => pg & 0xff);
    await v.fs.sync();
    const free = v.fs.statVolume().blocksFree;
    assert.ok(free > 16 && free < PMD_PAGES, `precondition: ${free} blocks free`);
    const ino = await sparseFile(v, 'f', 2 * MiB);
    const a = new TestOwner('a');
    const r = await v.dax.fault(a, ino, 7, 'WRITE', false, 'PMD');
    assert.equal(r.fallback, 'NO_ALIGNED_SPACE');
    assert.deepEqual([r.pte!.order, r.pte!.pgoff, r.pte!.writable], [0, 7, true]);
    v.dax.store(a, r.pte!.token, 0, Buffer.from('fits'));
    assert.deepEqual(await v.fs.read(ino, 7 * PAGE, 4), Buffer.from('fits'));
    assert.equal(v.fs.stat(ino).blocks, 1, 'one data block, as a 4 KiB fault takes');
    assert.equal(v.dax.counters().pmdFallbacks.NO_ALIGNED_SPACE, 1);
    await v.dax.fsync(ino, false);
    await assertFsckClean(v, 'after the fallback');
  });

  it('a full volume: the PMD WRITE fault\'s 4 KiB fallback answers ENOSPC', async function () {
    const v = await freshDax(16 * MiB);
    const ino = await sparseFile(v, 'f', 2 * MiB);
    const { ino: filler } = await v.fs.create('filler', true);
    // Fill every block with 4 KiB write faults of another file until ENOSPC.
    const a = new TestOwner('a');
    await v.fs.truncate(filler, 64 * MiB);
    let pg = 0;
    for (; pg < 64 * MiB / PAGE; pg++) {
      try {
        await v.dax.fault(a, filler, pg, 'WRITE', false);
      } catch (err) {
        await expectCode(() => Promise.reject(err), 'ENOSPC', 'filling');
        break;
      }
    }
    assert.ok(pg > 0 && pg < 64 * MiB / PAGE, `filled ${pg} pages`);
    await expectCode(() => v.dax.fault(a, ino, 0, 'WRITE', false, 'PMD'), 'ENOSPC', 'PMD write fault on a full volume');
  });

  it('free space without an aligned 2 MiB run: NO_ALIGNED_SPACE, the 4 KiB fallback allocates', async function () {
    const v = await freshDax(16 * MiB);
    const free0 = v.fs.statVolume().blocksFree;
    // Fill, then punch every other 64 KiB: half the space free, no aligned 2 MiB run.
    const filler = await writtenFile(v, 'filler', free0 - 64, () => 0x11);
    const pages = v.fs.stat(filler).sizeBytes / PAGE;
    for (let pg = 0; pg + 16 <= pages; pg += 32) await v.fs.fallocate(filler, 'PUNCH_HOLE', pg * PAGE, 16 * PAGE);
    await v.fs.sync();
    assert.ok(v.fs.statVolume().blocksFree > 2 * PMD_PAGES, 'precondition: space enough for a PMD in 4 KiB blocks');
    const ino = await sparseFile(v, 'f', 2 * MiB);
    const a = new TestOwner('a');
    const r = await v.dax.fault(a, ino, 0, 'WRITE', false, 'PMD');
    assert.equal(r.fallback, 'NO_ALIGNED_SPACE');
    assert.equal(r.pte!.order, 0);
    assert.equal(v.fs.iomap(ino, 0).state, 'WRITTEN');
  });
});

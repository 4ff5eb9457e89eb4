/**
 * Every durable point of S6, checked at the very moment it is acknowledged: the power goes
 * right after the call returns, with nothing in between (no msync, no other commit, not
 * one more turn of the event loop), and nothing that was not flushed survives. Then the
 * medium is mounted again and the acknowledged state must be there:
 * - a MAP_SYNC write fault (Fault{sync}): the page is WRITTEN and reads its bytes (zeros
 *   for a hole or an UNWRITTEN block, the old data for a written page);
 * - Fault{sync} then Store then Msync: the stored bytes;
 * - Write{sync} (O_DSYNC, FUA-like): the bytes and the size;
 * - Write then Fsync;
 * - a mapped Store (non-sync fault) then an acknowledged Msync;
 * - a mapped Store whose page another client's collapse (or partial zeroing) moved under
 *   it, then a re-fault and an Msync: the layout break handed its dirty state to the file;
 * - DMA write through a writable pin then Fsync.
 */
import assert from 'node:assert/strict';
import { FileSystem } from '../../server/fs/filesystem';
import { freshDax, sparseFile, writtenFile, type DaxVolume } from '../support/dax-volume';
import { PAGE } from '../support/units';
import { TestOwner } from '../support/test-owner';

/** Power loss now: only what was flushed survives. Then mount the medium. */
async function powerCutNow(v: DaxVolume): Promise<FileSystem> {
  v.storage.crash(() => 0.5, 0);
  return FileSystem.mount(v.storage.reboot());
}

function bytes(text: string): Buffer {
  return Buffer.from(text);
}

/** A file of 4 pages: page 0 written and durable ('old0...'), page 1 UNWRITTEN, pages 2-3 holes. */
async function mixedFile(v: DaxVolume): Promise<number> {
  const ino = await sparseFile(v, 'f', 4 * PAGE);
  await v.fs.write(ino, 0, Buffer.alloc(PAGE, 0x6f), true);
  await v.fs.fallocate(ino, 'KEEP_SIZE', PAGE, PAGE);
  await v.fs.sync();
  return ino;
}

describe('durable points: power cut the moment they are acknowledged (S6)', () => {
  for (const [pg, what] of [[3, 'a hole'], [1, 'an UNWRITTEN block'], [0, 'a WRITTEN page']] as const) {
    it(`MAP_SYNC write fault on ${what}: WRITTEN with its data intact right after the fault returns`, async () => {
      const v = await freshDax();
      const ino = await mixedFile(v);
      const before = await v.fs.read(ino, pg * PAGE, PAGE);
      const { pte } = await v.dax.fault(new TestOwner('a'), ino, pg, 'WRITE', true);
      assert.ok(pte?.writable);
      const fs2 = await powerCutNow(v);
      assert.equal(fs2.iomap(ino, pg).state, 'WRITTEN', `page ${pg} (${what}) is WRITTEN after the MAP_SYNC fault returned`);
      assert.deepEqual(await fs2.read(ino, pg * PAGE, PAGE), before, 'its bytes are intact');
      assert.equal(fs2.stat(ino).sizeBytes, 4 * PAGE);
    });
  }

  it('MAP_SYNC fault, Store, Msync: the store survives a power cut right after Msync returns', async () => {
    const v = await freshDax();
    const ino = await mixedFile(v);
    const a = new TestOwner('a');
    const { pte } = await v.dax.fault(a, ino, 2, 'WRITE', true);
    v.dax.store(a, pte!.token, 100, bytes('map-sync store'));
    await v.dax.msync(ino, 2, 2);
    const fs2 = await powerCutNow(v);
    assert.equal((await fs2.read(ino, 2 * PAGE + 100, 14)).toString(), 'map-sync store');
  });

  it('Write{sync}: bytes and size survive a power cut right after it returns', async () => {
    const v = await freshDax();
    const ino = await mixedFile(v);
    await v.fs.write(ino, 5 * PAGE + 7, bytes('O_DSYNC extend'), true); // extends: new block and size
    await v.fs.write(ino, 10, bytes('O_DSYNC overwrite'), true); // in place
    const fs2 = await powerCutNow(v);
    assert.equal(fs2.stat(ino).sizeBytes, 5 * PAGE + 7 + 14);
    assert.equal((await fs2.read(ino, 5 * PAGE + 7, 14)).toString(), 'O_DSYNC extend');
    assert.equal((await fs2.read(ino, 10, 17)).toString(), 'O_DSYNC overwrite');
  });

  it('Write then Fsync: survives a power cut right after Fsync returns', async () => {
    const v = await freshDax();
    const ino = await mixedFile(v);
    await v.fs.write(ino, 20, bytes('buffered overwrite'), false);
    await v.fs.write(ino, 3 * PAGE + 1, bytes('buffered fill'), false);
    await v.dax.fsync(ino, false);
    const fs2 = await powerCutNow(v);
    assert.equal((await fs2.read(ino, 20, 18)).toString(), 'buffered overwrite');
    assert.equal((await fs2.read(ino, 3 * PAGE + 1, 13)).toString(), 'buffered fill');
  });

  it('mapped Store then Msync: survives a power cut right after Msync returns', async () => {
    const v = await freshDax();
    const ino = await mixedFile(v);
    const a = new TestOwner('a');
    for (const pg of [0, 1, 3]) {
      const { pte } = await v.dax.fault(a, ino, pg, 'WRITE', false);
      v.dax.store(a, pte!.token, 64, bytes(`mapped store ${pg}`));
    }
    await v.dax.msync(ino, 0, 3);
    const fs2 = await powerCutNow(v);
    for (const pg of [0, 1, 3]) assert.equal((await fs2.read(ino, pg * PAGE + 64, 14)).toString(), `mapped store ${pg}`);
  });

  for (const [what, change, storePg, readPg] of [
    ['COLLAPSE_RANGE of page 0 shifts the stored page down', (v: DaxVolume, ino: number) => v.fs.fallocate(ino, 'COLLAPSE_RANGE', 0, PAGE), 5, 4],
    ['a PUNCH_HOLE over part of the stored page keeps its block', (v: DaxVolume, ino: number) => v.fs.fallocate(ino, 'PUNCH_HOLE', 5 * PAGE + 2048, 1024), 5, 5],
    ['a truncate inside the stored page keeps its block', (v: DaxVolume, ino: number) => v.fs.truncate(ino, 5 * PAGE + 2048), 5, 5],
  ] as const) {
    it(`mapped Store, then ${what}, then a READ re-fault and Msync: the store survives a power cut right after Msync returns`, async () => {
      const v = await freshDax();
      const ino = await writtenFile(v, 'f', 8, (pg) => 0x30 + pg);
      await v.fs.sync();
      const a = new TestOwner('a');
      const { pte } = await v.dax.fault(a, ino, storePg, 'WRITE', false);
      v.dax.store(a, pte!.token, 64, bytes('store before the layout change'));
      // Another client's change (the file layer call, as its RPC makes it): the layout break
      // revokes A's PTE and hands the page's unflushed dirty state to the file.
      await change(v, ino);
      const { pte: again } = await v.dax.fault(a, ino, readPg, 'READ', false);
      assert.ok(again, 're-faulted for read');
      await v.dax.msync(ino, 0, 7, a);
      const fs2 = await powerCutNow(v);
      assert.equal((await fs2.read(ino, readPg * PAGE + 64, 30)).toString(), 'store before the layout change');
    });
  }

  it('DMA write through a writable pin then Fsync: survives a power cut right after Fsync returns', async () => {
    const v = await freshDax();
    const ino = await mixedFile(v);
    const a = new TestOwner('a');
    const p = await v.dax.pin(a, { ino, firstPgoff: 1, npages: 3, writable: true, leaseMs: 0 });
    await v.dax.dmaWrite(a, p.id, 0, 0, bytes('dma into unwritten'));
    await v.dax.dmaWrite(a, p.id, 2, 4000, bytes('dma into a hole'));
    await v.dax.fsync(ino, false);
    const fs2 = await powerCutNow(v);
    assert.equal((await fs2.read(ino, PAGE, 18)).toString(), 'dma into unwritten');
    assert.equal((await fs2.read(ino, 3 * PAGE + 4000, 15)).toString(), 'dma into a hole');
  });
});

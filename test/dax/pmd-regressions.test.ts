/**
 * Regressions found in review of the PMD change (each seen failing before its fix):
 * - fallocate steps that only took aligned extents did not commit between steps, so a
 *   long fallocate grew one transaction past the journal;
 * - fallocate reserved map space even for steps without holes (ENOSPC on a full volume
 *   over an allocated range, which needs no block);
 * - a fault_if_stale store with a valid PMD token stored at the PMD offset, while the same
 *   request with the token stale stored at the target page's offset.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FileSystem } from '../../server/fs/filesystem';
import { mkfs } from '../../server/fs/mkfs';
import { MmapStorage } from '../../server/media/mmap-storage';
import { PMD_PAGES } from '../../server/limits';
import { freshDax, isCode, sparseFile } from '../support/dax-volume';
import { GiB, MiB, PAGE } from '../support/units';
import { TestOwner } from '../support/test-owner';

describe('dax PMD: review regressions', function () {
  this.timeout(60_000);

  it('fallocate commits between its steps even when a step took only aligned extents', async function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'daxd-pmd-falloc-'));
    const storage = MmapStorage.open(path.join(dir, 'v.vol'), { create: { sizeBytes: 2 * GiB + 256 * MiB } });
    try {
      await mkfs(storage);
      const fsys = await FileSystem.mount(storage);
      try {
        const { ino } = await fsys.create('f', true);
        // Two steps of LAYOUT_STEP_PAGES (1 GiB), each wholly aligned 2 MiB ranges of holes.
        let calls = 0;
        const makeRoom = fsys.journal.makeRoom.bind(fsys.journal);
        fsys.journal.makeRoom = () => {
          calls++;
          return makeRoom();
        };
        await fsys.fallocate(ino, 'KEEP_SIZE', 0, 2 * GiB);
        assert.ok(calls >= 2, `makeRoom ran ${calls} times over two steps: a step's images must be committed before the next`);
        assert.equal(fsys.iomap(ino, 0).state, 'UNWRITTEN');
      } finally {
        await fsys.unmount();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fallocate over a fully allocated range needs no free space (a full volume does not ENOSPC)', async function () {
    const v = await freshDax(64 * MiB);
    const { ino } = await v.fs.create('full', true);
    await v.fs.write(ino, 0, Buffer.alloc(40 * MiB, 1), false);
    const { ino: filler } = await v.fs.create('filler', true);
    // Fill the volume: 256 KiB writes, then single pages, until ENOSPC (bounded by its size).
    let off = 0;
    for (const chunk of [256 * 1024, PAGE]) {
      for (let i = 0; i < (64 * MiB) / chunk; i++, off += chunk) {
        try {
          await v.fs.write(filler, off, Buffer.alloc(chunk, 2), false);
        } catch (err) {
          if (isCode(err, 'ENOSPC')) break;
          throw err;
        }
      }
    }
    await v.fs.fallocate(ino, 'KEEP_SIZE', 0, 40 * MiB);
    assert.deepEqual(await v.fs.read(ino, 0, 4), Buffer.alloc(4, 1));
  });

  it('a fault_if_stale store lands in its target page whether its PMD token is valid or stale', async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', 2 * MiB);
    const a = new TestOwner('a');
    const w = await v.dax.fault(a, ino, 0, 'WRITE', false, 'PMD');
    assert.equal(w.pte!.order, 9);
    const target = { ino, pgoff: 5, sync: false };
    assert.equal(await v.dax.storeFaultIfStale(a, w.pte!.token, 10, Buffer.from('AAAA'), target), null, 'valid token: a plain store');
    await v.dax.fsync(ino, false); // the PMD token becomes read-only: the next store faults
    assert.notEqual(await v.dax.storeFaultIfStale(a, w.pte!.token, 20, Buffer.from('BBBB'), target), null, 'downgraded token: a fault');
    assert.deepEqual(await v.fs.read(ino, 5 * PAGE + 10, 4), Buffer.from('AAAA'));
    assert.deepEqual(await v.fs.read(ino, 5 * PAGE + 20, 4), Buffer.from('BBBB'));
    assert.deepEqual(await v.fs.read(ino, 10, 4), Buffer.alloc(4), 'nothing at the PMD offset');
    assert.ok(PMD_PAGES > 5);
  });
});

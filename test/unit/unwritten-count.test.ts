/**
 * The volume-wide count of UNWRITTEN blocks (server/fs/unwritten-count.ts): counted by a
 * background scan on first read after mount, kept by block-map deltas after that, through
 * fallocate, conversion by write, zero range, truncate and unlink.
 */
import assert from 'node:assert/strict';
import { FileSystem } from '../../server/fs/filesystem';
import { mkfs } from '../../server/fs/mkfs';
import { MemoryStorage } from '../../server/media/memory-storage';
import { PAGE } from '../support/units';

async function settled(fs: FileSystem): Promise<number> {
  for (let i = 0; i < 10_000; i++) {
    const n = fs.unwrittenBlocks();
    if (n !== null) return n;
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.fail('the unwritten count never finished');
}

describe('unwritten block count', function () {
  it('scans what the volume held at mount, then follows every change', async function () {
    const storage = new MemoryStorage(64 * 1024 * 1024);
    await mkfs(storage);
    let fs = await FileSystem.mount(storage);
    // Many files, so the scan takes several steps (64 inodes each).
    for (let i = 0; i < 150; i++) {
      const { ino } = await fs.create(`f${i}`, true);
      await fs.fallocate(ino, 'ALLOCATE', 0, 2 * PAGE);
    }
    await fs.unmount();
    fs = await FileSystem.mount(storage.reboot());
    assert.equal(fs.unwrittenBlocks(), null, 'the first read starts the scan');
    // Changes while the scan runs: to a scanned-later file, and to a new file.
    const late = fs.lookup('f149').ino;
    await fs.write(late, 0, Buffer.alloc(PAGE, 1), false);
    const { ino } = await fs.create('new', true);
    await fs.fallocate(ino, 'ALLOCATE', 0, 10 * PAGE);
    assert.equal(await settled(fs), 300 - 1 + 10);
    await fs.write(ino, 0, Buffer.alloc(3 * PAGE, 2), false);
    assert.equal(fs.unwrittenBlocks(), 300 - 1 + 7);
    await fs.fallocate(ino, 'ZERO_RANGE', 0, 2 * PAGE);
    assert.equal(fs.unwrittenBlocks(), 300 - 1 + 9, 'zero range makes written pages unwritten');
    await fs.truncate(ino, 4 * PAGE);
    assert.equal(fs.unwrittenBlocks(), 300 - 1 + 3);
    await fs.unlink('f0');
    assert.equal(fs.unwrittenBlocks(), 300 - 1 + 3 - 2);
    await fs.unmount();
  });
});

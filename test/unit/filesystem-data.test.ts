import assert from 'node:assert/strict';
import { BLOCK_SIZE, FILE_BYTES_MAX, IO_BYTES_MAX } from '../../server/limits';
import { MemoryStorage } from '../../server/media/memory-storage';
import { mkfs } from '../../server/fs/mkfs';
import { FileSystem } from '../../server/fs/filesystem';
import { mapBlocksBound } from '../../server/fs/file-data';
import { fallocateRequest } from '../../server/rpc/validate';
import type { FallocateMode } from '../../server/fs/types';
import { MiB, PAGE } from '../support/units';
import { Volume, freshVolume, powerCycle, staleVolume, pfnOf, blockOf, isCode, pattern, snapshot, RecordingHooks } from './fs-fixture';

/** A fallocate's arguments as the edge checks them (every caller goes through it). */
function edgeFallocate(mode: FallocateMode, offset: number, length: number): [FallocateMode, number, number] {
  const r = fallocateRequest(mode, offset, length);
  return [r.mode, r.offset, r.length];
}

describe('file system: read, write and journal bounds', () => {
  describe('read and write', () => {
    it('reads of holes are zeros; reads are short at EOF and empty at or past it', async () => {
      const { fs } = await freshVolume();
      const f = await fs.create('f', true);
      const data = pattern(10, 6);
      const r = await fs.write(f.ino, 3 * PAGE, data, false);
      assert.deepEqual(r, { written: 10, sizeBytes: 3 * PAGE + 10 });
      const all = await fs.read(f.ino, 0, 20000);
      assert.equal(all.length, 3 * PAGE + 10);
      assert.ok(all.subarray(0, 3 * PAGE).every((b) => b === 0));
      assert.deepEqual(all.subarray(3 * PAGE), data);
      assert.deepEqual(await fs.read(f.ino, 3 * PAGE + 5, 100), data.subarray(5));
      assert.equal((await fs.read(f.ino, 3 * PAGE + 10, 100)).length, 0);
      assert.equal((await fs.read(f.ino, 5 * PAGE, 100)).length, 0);
      assert.equal((await fs.read(f.ino, 0, 0)).length, 0);
      assert.equal(fs.stat(f.ino).blocks, 1, 'holes take no blocks');
      assert.deepEqual(fs.iomap(f.ino, 0), { state: 'HOLE' });
    });

    it('unwritten blocks read as zeros although their media holds stale data', async () => {
      const { fs, storage, stale } = await staleVolume(8);
      const f = await fs.create('f', true);
      await fs.fallocate(f.ino, 'ALLOCATE', 0, 8 * PAGE);
      assert.equal(fs.stat(f.ino).sizeBytes, 8 * PAGE);
      assert.equal(fs.stat(f.ino).blocks, 8);
      const m = fs.iomap(f.ino, 2);
      assert.equal(m.state, 'UNWRITTEN');
      assert.ok(stale.has(pfnOf(m)), 'the test needs the stale blocks reused');
      assert.ok(blockOf(storage, pfnOf(m)).every((b) => b === 0xcc));
      const r = await fs.read(f.ino, 0, 8 * PAGE);
      assert.ok(r.every((b) => b === 0), 'stale bytes exposed through an unwritten block');
    });

    it('a 1-byte write into an UNWRITTEN block zeroes the rest of it (media too, durably)', async () => {
      const hooks = new RecordingHooks();
      const prepared = await staleVolume(16);
      const stale = prepared.stale;
      let v: Volume = prepared;
      v.fs.setHooks(hooks);
      const f = await v.fs.create('f', true);
      await v.fs.fallocate(f.ino, 'KEEP_SIZE', 0, 16 * PAGE);
      assert.equal(v.fs.stat(f.ino).sizeBytes, 0);
      const pfn = pfnOf(v.fs.iomap(f.ino, 3));
      assert.ok(stale.has(pfn), 'the test needs the stale blocks reused');
      hooks.take();

      await v.fs.write(f.ino, 3 * PAGE + 100, Buffer.from([0x42]), false);
      assert.deepEqual(v.fs.iomap(f.ino, 3), { state: 'WRITTEN', pfn });
      assert.deepEqual(hooks.take(), [['allocated', f.ino, 3, 3]]);
      const media = blockOf(v.storage, pfn);
      assert.equal(media[100], 0x42);
      assert.equal(media.filter((b) => b !== 0).length, 1, 'the rest of the block is zero on media');

      await v.fs.truncate(f.ino, 4 * PAGE); // extend over the whole page
      const page = await v.fs.read(f.ino, 3 * PAGE, PAGE);
      assert.equal(page[100], 0x42);
      assert.equal(page.filter((b) => b !== 0).length, 1);
      assert.ok((await v.fs.read(f.ino, 0, 3 * PAGE)).every((b) => b === 0));

      await v.fs.fsync(f.ino, false);
      v = await powerCycle(v);
      const after = await v.fs.read(f.ino, 0, 4 * PAGE);
      assert.equal(after[3 * PAGE + 100], 0x42);
      assert.equal(after.filter((b) => b !== 0).length, 1, 'after a power loss too');
    });

    it('a write into a hole zeroes the rest of the new block even over stale media', async () => {
      const { fs, storage, stale } = await staleVolume(4);
      const f = await fs.create('f', true);
      await fs.write(f.ino, 10, Buffer.from([1, 2, 3]), false);
      const pfn = pfnOf(fs.iomap(f.ino, 0));
      assert.ok(stale.has(pfn), 'the test needs the stale blocks reused');
      const media = blockOf(storage, pfn);
      assert.deepEqual([...media.subarray(10, 13)], [1, 2, 3]);
      assert.equal(media.filter((b) => b !== 0).length, 3);
    });

    it('overwrite, extension and a write spanning hole/unwritten/written pages read back exactly', async () => {
      const { fs } = await freshVolume();
      const f = await fs.create('f', true);
      const model = Buffer.alloc(10 * PAGE);
      const apply = async (off: number, data: Buffer): Promise<void> => {
        await fs.write(f.ino, off, data, false);
        data.copy(model, off);
      };
      await apply(PAGE + 5, pattern(2 * PAGE, 1));
      await fs.fallocate(f.ino, 'KEEP_SIZE', 5 * PAGE, 2 * PAGE);
      await apply(2 * PAGE - 3, pattern(6 * PAGE, 2));
      await apply(0, pattern(100, 3));
      const size = fs.stat(f.ino).sizeBytes;
      assert.equal(size, 8 * PAGE - 3);
      assert.deepEqual(await fs.read(f.ino, 0, size), model.subarray(0, size));
    });

    it('writes from a Buffer slice and reads across a storage chunk boundary are exact', async () => {
      const storage = new MemoryStorage(16 * MiB, { chunkBytes: 2 * MiB });
      await mkfs(storage);
      const fs = await FileSystem.mount(storage);
      const f = await fs.create('f', true);
      const big = pattern(700 * PAGE, 4);
      const data = big.subarray(7, 7 + 600 * PAGE + 5); // crosses the 2 MiB chunk at block 1024
      await fs.write(f.ino, 3, data, false);
      const first = pfnOf(fs.iomap(f.ino, 0));
      const last = pfnOf(fs.iomap(f.ino, 600));
      const chunkBlocks = (2 * MiB) / BLOCK_SIZE;
      assert.notEqual(Math.floor(first / chunkBlocks), Math.floor(last / chunkBlocks), 'the file must cross a chunk');
      assert.deepEqual(await fs.read(f.ino, 3, data.length), data);
      const patch = pattern(520 * PAGE, 5).subarray(1);
      await fs.write(f.ino, 100 * PAGE + 1, patch, false); // an overwrite across the boundary
      const expected = Buffer.alloc(3 + data.length);
      data.copy(expected, 3);
      patch.copy(expected, 100 * PAGE + 1);
      assert.deepEqual(await fs.read(f.ino, 0, expected.length), expected);
    });

    it('write(sync) is durable on return', async () => {
      let v = await freshVolume();
      const f = await v.fs.create('f', true);
      const first = pattern(3 * PAGE, 8);
      await v.fs.write(f.ino, 0, first, true);
      const second = pattern(PAGE, 9);
      await v.fs.write(f.ino, PAGE, second, true); // an overwrite: flushed in place
      v = await powerCycle(v);
      const expected = Buffer.from(first);
      second.copy(expected, PAGE);
      assert.deepEqual(await v.fs.read(f.ino, 0, 3 * PAGE), expected);
    });

    it('truncate down zeroes the tail of the last partial page: extending again reads zeros', async () => {
      let v = await freshVolume();
      const f = await v.fs.create('f', true);
      await v.fs.write(f.ino, 0, Buffer.alloc(3 * PAGE, 0x11), false);
      await v.fs.truncate(f.ino, 5000);
      assert.equal(v.fs.stat(f.ino).sizeBytes, 5000);
      assert.equal(v.fs.stat(f.ino).blocks, 2);
      assert.deepEqual(await v.fs.read(f.ino, 0, 3 * PAGE), Buffer.alloc(5000, 0x11));

      await v.fs.truncate(f.ino, 3 * PAGE);
      let r = await v.fs.read(f.ino, 0, 3 * PAGE);
      assert.ok(r.subarray(0, 5000).every((b) => b === 0x11));
      assert.ok(r.subarray(5000).every((b) => b === 0), 'the old tail must read as zeros');

      // A write past EOF extends over the zeroed tail as well, and it is durable.
      await v.fs.truncate(f.ino, 5000);
      await v.fs.write(f.ino, 9000, Buffer.from([7]), false);
      await v.fs.fsync(f.ino, false);
      v = await powerCycle(v);
      r = await v.fs.read(f.ino, 0, 9001);
      assert.ok(r.subarray(0, 5000).every((b) => b === 0x11));
      assert.ok(r.subarray(5000, 9000).every((b) => b === 0), 'zeroed tail lost across a power cycle');
      assert.equal(r[9000], 7);
    });

    it('EFBIG past FILE_BYTES_MAX; a write ending exactly there works', async () => {
      const { fs } = await freshVolume();
      const f = await fs.create('f', true);
      await assert.rejects(fs.write(f.ino, FILE_BYTES_MAX - 1, Buffer.alloc(2), false), isCode('EFBIG'));
      await assert.rejects(fs.write(f.ino, FILE_BYTES_MAX, Buffer.alloc(1), false), isCode('EFBIG'));
      await assert.rejects(fs.truncate(f.ino, FILE_BYTES_MAX + 1), isCode('EFBIG'));
      await assert.rejects(fs.fallocate(f.ino, 'KEEP_SIZE', FILE_BYTES_MAX - PAGE, 2 * PAGE), isCode('EFBIG'));
      await assert.rejects(fs.read(f.ino, FILE_BYTES_MAX + 1, 1), isCode('EFBIG'));
      assert.equal(fs.stat(f.ino).sizeBytes, 0);
      assert.equal(fs.stat(f.ino).blocks, 0);

      await fs.write(f.ino, FILE_BYTES_MAX - 1, Buffer.from([9]), false);
      assert.equal(fs.stat(f.ino).sizeBytes, FILE_BYTES_MAX);
      assert.deepEqual(await fs.read(f.ino, FILE_BYTES_MAX - 1, 10), Buffer.from([9]));
      await fs.truncate(f.ino, FILE_BYTES_MAX);
    });

    it('ELIMIT past IO_BYTES_MAX for read and write; nothing written', async () => {
      const { fs } = await freshVolume();
      const f = await fs.create('f', true);
      await assert.rejects(fs.read(f.ino, 0, IO_BYTES_MAX + 1), (err: unknown) => isCode('ELIMIT')(err) && /vs\. max/.test((err as Error).message));
      await assert.rejects(fs.write(f.ino, 0, new Uint8Array(IO_BYTES_MAX + 1), false), isCode('ELIMIT'));
      assert.equal(fs.stat(f.ino).sizeBytes, 0);
      assert.equal((await fs.read(f.ino, 0, IO_BYTES_MAX)).length, 0);
    });

    it('offsets and lengths that are not non-negative safe integers are EINVAL', async () => {
      const { fs } = await freshVolume();
      const f = await fs.create('f', true);
      await assert.rejects(fs.read(f.ino, -1, 1), isCode('EINVAL'));
      await assert.rejects(fs.read(f.ino, 0.5, 1), isCode('EINVAL'));
      await assert.rejects(fs.read(f.ino, 0, -1), isCode('EINVAL'));
      await assert.rejects(fs.write(f.ino, -PAGE, Buffer.alloc(1), false), isCode('EINVAL'));
      await assert.rejects(fs.truncate(f.ino, -1), isCode('EINVAL'));
      // Length 0 is the edge's refusal (server/rpc/validate.ts); the engine asserts it.
      await assert.rejects(async () => fs.fallocate(f.ino, ...edgeFallocate('KEEP_SIZE', 0, 0)), isCode('EINVAL'));
      await assert.rejects(fs.fallocate(f.ino, 'BOGUS' as 'KEEP_SIZE', 0, PAGE), isCode('EINVAL'));
    });

    it('a write that hits ENOSPC changes nothing (size, blocks, data, free count, map)', async () => {
      const { fs, hooks, f, left, before } = await nearlyFullVolume();
      hooks.take();

      // Overwrites the two written pages and needs more new blocks than there are.
      await assert.rejects(fs.write(f.ino, 0, Buffer.alloc((left + 5) * PAGE, 0x22), false), isCode('ENOSPC'));
      await assert.rejects(fs.write(f.ino, 100 * PAGE, Buffer.alloc(left * PAGE, 0x22), false), isCode('ENOSPC'));
      assert.deepEqual(await snapshot(fs, f.ino, left + 10), before);
      assert.deepEqual(hooks.take(), [], 'no allocated() for a write that did not happen');
      await fs.sync();
      assert.deepEqual(await snapshot(fs, f.ino, left + 10), before);

      // A write that fits still works afterwards.
      await fs.write(f.ino, 2 * PAGE, Buffer.alloc(PAGE, 0x33), false);
      assert.equal(fs.stat(f.ino).blocks, 3);
    });
    it('a ZERO_RANGE that hits ENOSPC changes nothing (partial page, written pages, holes)', async () => {
      const { fs, f, left, before } = await nearlyFullVolume();

      // Page 0 partial (a replacement block), page 1 whole and written (converted to
      // unwritten), then more holes than free blocks (new unwritten blocks).
      await assert.rejects(fs.fallocate(f.ino, 'ZERO_RANGE', 100, (left + 5) * PAGE), isCode('ENOSPC'));
      assert.deepEqual(await snapshot(fs, f.ino, left + 10), before);
      await fs.sync();
      assert.deepEqual(await snapshot(fs, f.ino, left + 10), before);

      // One that fits still works afterwards.
      await fs.fallocate(f.ino, 'ZERO_RANGE', 100, PAGE);
      assert.ok((await fs.read(f.ino, 0, 2 * PAGE)).subarray(100, PAGE + 100).every((b) => b === 0));
    });
  });

  describe('space freed by uncommitted transactions', () => {
    it('regression: a write right after an unlink on a full volume got ENOSPC while the unlinked blocks waited for a commit', async () => {
      const v = await freshVolume();
      const big = await v.fs.create('big', true);
      // Created first: Create commits, which would release the pending frees by itself.
      const other = await v.fs.create('other', true);
      const freeBefore = v.fs.statVolume().blocksFree;
      const fillBlocks = freeBefore - 64;
      await v.fs.fallocate(big.ino, 'ALLOCATE', 0, fillBlocks * PAGE);
      await v.fs.sync();
      await v.fs.unlink('big');
      const mid = v.fs.statVolume();
      assert.ok(mid.blocksPendingFree >= fillBlocks, `the unlinked blocks are pending (${mid.blocksPendingFree})`);
      assert.ok(mid.blocksFree < 1024, 'little is free before the commit');
      // No fsync or create in between: the write itself must make the pending frees usable.
      const data = Buffer.alloc(4 * MiB, 7);
      await v.fs.write(other.ino, 0, data, false);
      assert.deepEqual(await v.fs.read(other.ino, 0, data.length), data);
      assert.equal(v.fs.statVolume().blocksPendingFree, 0);
    });
  });

  describe('journal bounds', () => {
    it('regression: writes to many files with no fsync between them overflowed the journal (commit asserted)', async () => {
      let v = await freshVolume();
      const files = [];
      for (let i = 0; i < 400; i++) files.push(await v.fs.create(`f${i}`, true));
      // Each first write adds a map block and an inode image: far more than the journal holds.
      for (const f of files) await v.fs.write(f.ino, f.ino * 10, Buffer.from([f.ino & 0xff || 1]), false);
      assert.ok(v.fs.journal.runningImages <= v.fs.journal.softLimitImages + 8);
      await v.fs.sync();
      v = await powerCycle(v);
      for (const f of files) assert.deepEqual(await v.fs.read(f.ino, f.ino * 10, 2), Buffer.from([f.ino & 0xff || 1]));
    });

    it('regression: truncates of many files with no fsync between them overflowed the journal', async () => {
      let v = await freshVolume({}, 64 * MiB);
      const count = 2100; // more inode-table blocks (8 inodes each) than the 256-block journal holds
      const inos: number[] = [];
      for (let i = 0; i < count; i++) inos.push((await v.fs.create(`f${i}`, true)).ino);
      for (const [i, ino] of inos.entries()) await v.fs.truncate(ino, i + 1);
      await v.fs.sync();
      v = await powerCycle(v);
      for (const i of [0, 1, 1000, count - 1]) assert.equal(v.fs.stat(inos[i]).sizeBytes, i + 1);
    });
  });
});

/**
 * A volume filled but for fewer than 60 blocks, holding file `f` with two written pages;
 * `before` is f's snapshot over left + 10 pages.
 */
async function nearlyFullVolume() {
  const hooks = new RecordingHooks();
  const { fs } = await freshVolume({ hooks });
  const f = await fs.create('f', true);
  await fs.write(f.ino, 0, Buffer.alloc(2 * PAGE, 0x11), false);
  const filler = await fs.create('filler', true);
  const free = fs.statVolume().blocksFree;
  await fs.fallocate(filler.ino, 'KEEP_SIZE', 0, (free - 30 - mapBlocksBound(free)) * PAGE);
  await fs.sync();
  const left = fs.statVolume().blocksFree;
  assert.ok(left > 0 && left < 60, `${left} blocks left`);
  const before = await snapshot(fs, f.ino, left + 10);
  return { fs, hooks, f, left, before };
}

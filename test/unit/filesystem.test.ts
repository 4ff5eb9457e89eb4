import assert from 'node:assert/strict';
import { BLOCK_SIZE, FILE_MAX_BYTES, IO_MAX_BYTES } from '../../server/limits';
import { BusyError, DaxError } from '../../server/errors';
import { MemoryStorage } from '../../server/media/memory-storage';
import { mkfs } from '../../server/fs/mkfs';
import { FileSystem } from '../../server/fs/filesystem';
import { mapBlocksBound } from '../../server/fs/file-data';
import type { LayoutHooks, MountOptions, PageMapping } from '../../server/fs/types';

const MiB = 1024 * 1024;
const PAGE = BLOCK_SIZE;
const MAX_PGOFF = Number.MAX_SAFE_INTEGER;

interface Volume {
  storage: MemoryStorage;
  fs: FileSystem;
}

async function freshVolume(opts: MountOptions = {}, sizeBytes = 16 * MiB): Promise<Volume> {
  const storage = new MemoryStorage(sizeBytes);
  await mkfs(storage);
  return { storage, fs: await FileSystem.mount(storage, opts) };
}

/** Clean unmount and mount again (a fresh allocator: its cursor is back at the zone start). */
async function remount(v: Volume, opts: MountOptions = {}): Promise<Volume> {
  await v.fs.unmount();
  const storage = v.storage.reboot();
  return { storage, fs: await FileSystem.mount(storage, opts) };
}

/** Power loss now, nothing unflushed survives; then mount the medium. */
async function powerCycle(v: Volume, opts: MountOptions = {}): Promise<Volume> {
  v.storage.crash(() => 0.5, 0);
  const storage = v.storage.reboot();
  return { storage, fs: await FileSystem.mount(storage, opts) };
}

/**
 * A volume whose first data blocks (where a fresh mount allocates first) hold 0xCC from a
 * deleted file: anything that exposes them would be caught. Returns those blocks.
 */
async function staleVolume(pages: number): Promise<Volume & { stale: Set<number> }> {
  let v = await freshVolume();
  const f = await v.fs.create('stale', true);
  await v.fs.write(f.ino, 0, Buffer.alloc(pages * PAGE, 0xcc), false);
  const stale = new Set<number>();
  for (let pg = 0; pg < pages; pg++) stale.add(pfnOf(v.fs.iomap(f.ino, pg)));
  await v.fs.unlink('stale');
  await v.fs.sync();
  v = await remount(v);
  for (const pfn of stale) assert.ok(blockOf(v.storage, pfn).every((b) => b === 0xcc), 'precondition: stale bytes on media');
  return { ...v, stale };
}

function pfnOf(m: PageMapping): number {
  assert.ok(m.state !== 'HOLE', 'expected a mapped page');
  return m.pfn;
}

function blockOf(storage: MemoryStorage, pfn: number): Uint8Array {
  return storage.view(pfn * BLOCK_SIZE, BLOCK_SIZE);
}

function isCode(code: string): (err: unknown) => boolean {
  return (err) => err instanceof DaxError && err.code === code;
}

function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed * 7 + (i >> 12)) & 0xff || 1;
  return b;
}

/** Everything observable about a file and the volume's free space (not times). */
async function snapshot(fs: FileSystem, ino: number, pages = 16): Promise<object> {
  const st = fs.stat(ino);
  return {
    sizeBytes: st.sizeBytes, blocks: st.blocks, name: st.name, generation: st.generation,
    data: (await fs.read(ino, 0, st.sizeBytes)).toString('hex'),
    map: Array.from({ length: pages }, (_, pg) => fs.iomap(ino, pg)),
    free: fs.statVolume().blocksFree,
  };
}

type HookCall = [kind: 'break' | 'released' | 'allocated', ino: number, first: number, last: number];

/** Layout hooks that record every call, and can refuse a layout break. */
class RecordingHooks implements LayoutHooks {
  readonly calls: HookCall[] = [];
  refuseWith: Error | undefined;
  /** Runs inside breakLayout, before the file layer changes anything. */
  onBreak: (() => Promise<void>) | undefined;

  async breakLayout(ino: number, firstPgoff: number, lastPgoff: number): Promise<() => void> {
    this.calls.push(['break', ino, firstPgoff, lastPgoff]);
    await this.onBreak?.();
    if (this.refuseWith) throw this.refuseWith;
    return () => { this.calls.push(['released', ino, firstPgoff, lastPgoff]); };
  }

  async allocated(ino: number, firstPgoff: number, lastPgoff: number): Promise<void> {
    this.calls.push(['allocated', ino, firstPgoff, lastPgoff]);
  }

  take(): HookCall[] {
    return this.calls.splice(0);
  }
}

describe('file system', () => {
  describe('namespace calls', () => {
    it('create: exclusive makes a new empty file, then EEXIST; non-exclusive returns the existing one', async () => {
      const { fs } = await freshVolume();
      const a = await fs.create('a', true);
      assert.equal(a.name, 'a');
      assert.equal(a.sizeBytes, 0);
      assert.equal(a.blocks, 0);
      assert.ok(a.generation >= 1);
      await assert.rejects(fs.create('a', true), isCode('EEXIST'));
      const again = await fs.create('a', false);
      assert.equal(again.ino, a.ino);
      const b = await fs.create('b', false);
      assert.notEqual(b.ino, a.ino);
      assert.equal(fs.lookup('a').ino, a.ino);
      assert.equal(fs.statVolume().files, 2);
    });

    it('create is durable on return (proto: the journal commits)', async () => {
      let v = await freshVolume();
      const a = await v.fs.create('durable', true);
      v = await powerCycle(v);
      assert.equal(v.fs.lookup('durable').ino, a.ino);
    });

    it('missing names and inodes are ENOENT everywhere', async () => {
      const { fs } = await freshVolume();
      const a = await fs.create('a', true);
      assert.throws(() => fs.lookup('nope'), isCode('ENOENT'));
      await assert.rejects(fs.unlink('nope'), isCode('ENOENT'));
      for (const ino of [a.ino + 1, 999, -1, 1.5, Number.NaN]) {
        assert.throws(() => fs.stat(ino), isCode('ENOENT'), `stat ${ino}`);
        await assert.rejects(fs.read(ino, 0, 1), isCode('ENOENT'));
        await assert.rejects(fs.write(ino, 0, Buffer.alloc(1), false), isCode('ENOENT'));
        await assert.rejects(fs.truncate(ino, 0), isCode('ENOENT'));
        await assert.rejects(fs.fallocate(ino, 'KEEP_SIZE', 0, 1), isCode('ENOENT'));
        await assert.rejects(fs.fsync(ino, false), isCode('ENOENT'));
      }
      await fs.unlink('a');
      await assert.rejects(fs.unlink('a'), isCode('ENOENT'));
      assert.throws(() => fs.stat(a.ino), isCode('ENOENT'));
    });

    it('bad names are refused before anything changes', async () => {
      const { fs } = await freshVolume();
      await assert.rejects(fs.create('', true), isCode('EINVAL'));
      await assert.rejects(fs.create('x'.repeat(256), true), isCode('ENAMETOOLONG'));
      await assert.rejects(fs.create('a\0b', true), isCode('EINVAL'));
      await assert.rejects(fs.create('\uD800', true), isCode('EINVAL'));
      assert.throws(() => fs.lookup(''), isCode('EINVAL'));
      assert.equal(fs.statVolume().files, 0);
    });

    it('list pages by prefix with tokens: each name once, in UTF-8 byte order', async () => {
      const { fs } = await freshVolume();
      const names = ['f\u{1F600}', 'f\uFF21', 'fa', 'fb', 'f', 'g', 'e', 'f\u00E9', 'fz'];
      for (const n of names) await fs.create(n, true);
      const expected = names.filter((n) => n.startsWith('f')).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      for (const pageSize of [1, 2, 4, 100]) {
        const got: string[] = [];
        let token = '';
        do {
          const page = fs.list('f', token, pageSize);
          assert.ok(page.files.length <= pageSize);
          got.push(...page.files.map((f) => f.name));
          token = page.nextPageToken;
        } while (token !== '');
        assert.deepEqual(got, expected, `page size ${pageSize}`);
      }
    });
    it('a reused inode slot gets the next generation: (ino, generation) names one file', async () => {
      let v = await freshVolume();
      const a = await v.fs.create('a', true);
      await v.fs.unlink('a');
      v = await remount(v); // the inode cursor starts over
      const b = await v.fs.create('b', true);
      assert.equal(b.ino, a.ino);
      assert.equal(b.generation, a.generation + 1);
    });

    it('EMAXFILES once the inode table is full; unlink makes room again', async () => {
      const { fs } = await freshVolume();
      const { maxFiles } = fs.statVolume();
      for (let i = 0; i < maxFiles; i++) await fs.create(`f${i}`, true);
      await assert.rejects(fs.create('one-more', true), (err: unknown) => isCode('EMAXFILES')(err) && /vs\. max/.test((err as Error).message));
      assert.equal(fs.statVolume().files, maxFiles);
      await fs.unlink('f7');
      await fs.create('one-more', true);
    });

    it('statVolume accounts every data block as used or free', async () => {
      const { fs } = await freshVolume();
      const f = await fs.create('f', true);
      await fs.write(f.ino, 0, Buffer.alloc(3 * PAGE, 1), false);
      const st = fs.statVolume();
      assert.equal(st.blockSize, BLOCK_SIZE);
      assert.equal(st.sizeBytes, 16 * MiB);
      assert.equal(st.blocksUsed + st.blocksFree, st.blocksTotal);
      assert.equal(st.blocksUsed, 4, 'three data blocks and one map block');
      assert.equal(st.maxFileSizeBytes, FILE_MAX_BYTES);
    });
  });

  describe('unlink and orphans', () => {
    it('unlink of an unused file frees its blocks at the next commit', async () => {
      const { fs } = await freshVolume();
      const baseline = fs.statVolume().blocksFree;
      const f = await fs.create('f', true);
      await fs.write(f.ino, 0, pattern(5 * PAGE, 1), false);
      await fs.sync();
      assert.ok(fs.statVolume().blocksFree < baseline);
      await fs.unlink('f');
      await fs.sync();
      assert.equal(fs.statVolume().blocksFree, baseline);
    });

    it('unlink while acquire()d keeps the inode and its blocks until the last release()', async () => {
      const { fs } = await freshVolume();
      const baseline = fs.statVolume().blocksFree;
      const f = await fs.create('f', true);
      const data = pattern(5 * PAGE + 7, 2);
      await fs.write(f.ino, 0, data, false);
      await fs.sync();
      const inUse = fs.statVolume().blocksFree;

      fs.acquire(f.ino);
      fs.acquire(f.ino);
      await fs.unlink('f');
      assert.throws(() => fs.lookup('f'), isCode('ENOENT'));
      assert.equal(fs.statVolume().files, 0);
      assert.deepEqual(await fs.read(f.ino, 0, data.length), data, 'a user still reads the data');
      assert.equal(fs.stat(f.ino).sizeBytes, data.length);
      const reborn = await fs.create('f', true);
      assert.notEqual(reborn.ino, f.ino, 'the name is free, the inode is not');
      await fs.sync();
      assert.equal(fs.statVolume().blocksFree, inUse, 'blocks not freed while in use');

      await fs.release(f.ino);
      await fs.sync();
      assert.equal(fs.statVolume().blocksFree, inUse, 'one user left');
      assert.equal(fs.stat(f.ino).sizeBytes, data.length);

      await fs.release(f.ino);
      await fs.sync();
      assert.equal(fs.statVolume().blocksFree, baseline, 'freed at the last release');
      assert.throws(() => fs.stat(f.ino), isCode('ENOENT'));
      assert.throws(() => fs.acquire(f.ino), isCode('ENOENT'));
    });

    it('release of a linked file frees nothing; release without acquire is an assertion failure', async () => {
      const { fs } = await freshVolume();
      const f = await fs.create('f', true);
      await fs.write(f.ino, 0, pattern(PAGE, 3), false);
      fs.acquire(f.ino);
      await fs.release(f.ino);
      await fs.sync();
      assert.equal(fs.stat(f.ino).blocks, 1);
      await assert.rejects(fs.release(f.ino), assert.AssertionError);
    });

    it('an orphan left at a clean unmount is freed by the next mount', async () => {
      let v = await freshVolume();
      const baseline = v.fs.statVolume().blocksFree;
      const f = await v.fs.create('f', true);
      await v.fs.write(f.ino, 0, pattern(9 * PAGE, 4), false);
      v.fs.acquire(f.ino);
      await v.fs.unlink('f');
      v = await remount(v);
      assert.equal(v.fs.mountReport.orphansFreed, 1);
      assert.equal(v.fs.mountReport.wasClean, true);
      assert.equal(v.fs.statVolume().blocksFree, baseline);
      assert.throws(() => v.fs.stat(f.ino), isCode('ENOENT'));
      // The frees were committed by mount: a further power cycle keeps them.
      v = await powerCycle(v);
      assert.equal(v.fs.mountReport.orphansFreed, 0);
      assert.equal(v.fs.statVolume().blocksFree, baseline);
    });

    it('an orphan synced before a power loss is freed by the next mount', async () => {
      let v = await freshVolume();
      const baseline = v.fs.statVolume().blocksFree;
      const f = await v.fs.create('f', true);
      await v.fs.write(f.ino, 0, pattern(3 * PAGE, 5), false);
      v.fs.acquire(f.ino);
      await v.fs.unlink('f');
      await v.fs.sync();
      v = await powerCycle(v);
      assert.equal(v.fs.mountReport.orphansFreed, 1);
      assert.equal(v.fs.mountReport.wasClean, false);
      assert.equal(v.fs.statVolume().blocksFree, baseline);
    });
  });

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

    it('EFBIG past FILE_MAX_BYTES; a write ending exactly there works', async () => {
      const { fs } = await freshVolume();
      const f = await fs.create('f', true);
      await assert.rejects(fs.write(f.ino, FILE_MAX_BYTES - 1, Buffer.alloc(2), false), isCode('EFBIG'));
      await assert.rejects(fs.write(f.ino, FILE_MAX_BYTES, Buffer.alloc(1), false), isCode('EFBIG'));
      await assert.rejects(fs.truncate(f.ino, FILE_MAX_BYTES + 1), isCode('EFBIG'));
      await assert.rejects(fs.fallocate(f.ino, 'KEEP_SIZE', FILE_MAX_BYTES - PAGE, 2 * PAGE), isCode('EFBIG'));
      await assert.rejects(fs.read(f.ino, FILE_MAX_BYTES + 1, 1), isCode('EFBIG'));
      assert.equal(fs.stat(f.ino).sizeBytes, 0);
      assert.equal(fs.stat(f.ino).blocks, 0);

      await fs.write(f.ino, FILE_MAX_BYTES - 1, Buffer.from([9]), false);
      assert.equal(fs.stat(f.ino).sizeBytes, FILE_MAX_BYTES);
      assert.deepEqual(await fs.read(f.ino, FILE_MAX_BYTES - 1, 10), Buffer.from([9]));
      await fs.truncate(f.ino, FILE_MAX_BYTES);
    });

    it('ELIMIT past IO_MAX_BYTES for read and write; nothing written', async () => {
      const { fs } = await freshVolume();
      const f = await fs.create('f', true);
      await assert.rejects(fs.read(f.ino, 0, IO_MAX_BYTES + 1), (err: unknown) => isCode('ELIMIT')(err) && /vs\. max/.test((err as Error).message));
      await assert.rejects(fs.write(f.ino, 0, new Uint8Array(IO_MAX_BYTES + 1), false), isCode('ELIMIT'));
      assert.equal(fs.stat(f.ino).sizeBytes, 0);
      assert.equal((await fs.read(f.ino, 0, IO_MAX_BYTES)).length, 0);
    });

    it('offsets and lengths that are not non-negative safe integers are EINVAL', async () => {
      const { fs } = await freshVolume();
      const f = await fs.create('f', true);
      await assert.rejects(fs.read(f.ino, -1, 1), isCode('EINVAL'));
      await assert.rejects(fs.read(f.ino, 0.5, 1), isCode('EINVAL'));
      await assert.rejects(fs.read(f.ino, 0, -1), isCode('EINVAL'));
      await assert.rejects(fs.write(f.ino, -PAGE, Buffer.alloc(1), false), isCode('EINVAL'));
      await assert.rejects(fs.truncate(f.ino, -1), isCode('EINVAL'));
      await assert.rejects(fs.fallocate(f.ino, 'KEEP_SIZE', 0, 0), isCode('EINVAL'));
      await assert.rejects(fs.fallocate(f.ino, 'BOGUS' as 'KEEP_SIZE', 0, PAGE), isCode('EINVAL'));
    });

    it('a write that hits ENOSPC changes nothing (size, blocks, data, free count, map)', async () => {
      const hooks = new RecordingHooks();
      const { fs } = await freshVolume({ hooks });
      const f = await fs.create('f', true);
      await fs.write(f.ino, 0, Buffer.alloc(2 * PAGE, 0x11), false);
      // Fill the volume but a few blocks.
      const filler = await fs.create('filler', true);
      const free = fs.statVolume().blocksFree;
      await fs.fallocate(filler.ino, 'KEEP_SIZE', 0, (free - 30 - mapBlocksBound(free)) * PAGE);
      await fs.sync();
      const left = fs.statVolume().blocksFree;
      assert.ok(left > 0 && left < 60, `${left} blocks left`);
      const before = await snapshot(fs, f.ino, left + 10);
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

  describe('fallocate and truncate', () => {
    it('PUNCH_HOLE frees whole pages and zeroes partial ones; size unchanged', async () => {
      const { fs } = await freshVolume();
      const f = await fs.create('f', true);
      await fs.write(f.ino, 0, Buffer.alloc(4 * PAGE, 0x11), false);
      await fs.fallocate(f.ino, 'PUNCH_HOLE', PAGE + 10, 2 * PAGE);
      assert.equal(fs.stat(f.ino).sizeBytes, 4 * PAGE);
      assert.equal(fs.stat(f.ino).blocks, 3);
      assert.deepEqual(fs.iomap(f.ino, 2), { state: 'HOLE' });
      const r = await fs.read(f.ino, 0, 4 * PAGE);
      assert.ok(r.subarray(0, PAGE + 10).every((b) => b === 0x11));
      assert.ok(r.subarray(PAGE + 10, 3 * PAGE + 10).every((b) => b === 0));
      assert.ok(r.subarray(3 * PAGE + 10).every((b) => b === 0x11));
    });

    it('ZERO_RANGE reads as zeros, keeps the blocks (unwritten) and extends the size (proto)', async () => {
      const { fs } = await freshVolume();
      const f = await fs.create('f', true);
      await fs.write(f.ino, 0, Buffer.alloc(2 * PAGE, 0x11), false);
      const pfn = pfnOf(fs.iomap(f.ino, 1));
      await fs.fallocate(f.ino, 'ZERO_RANGE', PAGE, 3 * PAGE);
      assert.deepEqual(fs.iomap(f.ino, 1), { state: 'UNWRITTEN', pfn });
      assert.equal(fs.stat(f.ino).sizeBytes, 4 * PAGE);
      assert.equal(fs.stat(f.ino).blocks, 4);
      const r = await fs.read(f.ino, 0, 4 * PAGE);
      assert.ok(r.subarray(0, PAGE).every((b) => b === 0x11));
      assert.ok(r.subarray(PAGE).every((b) => b === 0));
      await fs.fallocate(f.ino, 'ZERO_RANGE', 0, 10);
      assert.equal(fs.stat(f.ino).sizeBytes, 4 * PAGE, 'a range inside the file does not shrink it');
    });

    it('COLLAPSE_RANGE: misaligned offset or length, or a range reaching EOF, is EINVAL and changes nothing', async () => {
      const hooks = new RecordingHooks();
      const { fs } = await freshVolume({ hooks });
      const f = await fs.create('f', true);
      await fs.write(f.ino, 0, pattern(4 * PAGE, 1), false);
      const before = await snapshot(fs, f.ino);
      hooks.take();
      for (const [off, len] of [[100, PAGE], [PAGE, 100], [PAGE, PAGE + 512], [0, 4 * PAGE], [PAGE, 3 * PAGE], [3 * PAGE, 2 * PAGE], [8 * PAGE, PAGE]]) {
        await assert.rejects(fs.fallocate(f.ino, 'COLLAPSE_RANGE', off, len), isCode('EINVAL'), `offset ${off}, length ${len}`);
      }
      assert.deepEqual(await snapshot(fs, f.ino), before);
      assert.deepEqual(hooks.take(), [], 'refused before breaking the layout');
    });

    it('COLLAPSE_RANGE removes the range and shifts the rest down', async () => {
      const { fs } = await freshVolume();
      const f = await fs.create('f', true);
      const data = pattern(5 * PAGE + 123, 2);
      await fs.write(f.ino, 0, data, false);
      await fs.fallocate(f.ino, 'COLLAPSE_RANGE', PAGE, 2 * PAGE);
      assert.equal(fs.stat(f.ino).sizeBytes, 3 * PAGE + 123);
      assert.equal(fs.stat(f.ino).blocks, 4);
      assert.deepEqual(await fs.read(f.ino, 0, 10 * PAGE), Buffer.concat([data.subarray(0, PAGE), data.subarray(3 * PAGE)]));
    });
  });

  describe('layout hooks', () => {
    it('allocated() is called for exactly the pages a write allocated or converted, never for overwrites', async () => {
      const hooks = new RecordingHooks();
      const { fs } = await freshVolume();
      fs.setHooks(hooks);
      const f = await fs.create('f', true);
      const w = (pg: number, pages: number, extra = 0) => fs.write(f.ino, pg * PAGE, Buffer.alloc(pages * PAGE + extra, 1), false);

      await w(0, 3);
      assert.deepEqual(hooks.take(), [['allocated', f.ino, 0, 2]]);
      await w(0, 3);
      await fs.write(f.ino, 10, Buffer.alloc(5000, 2), false);
      assert.deepEqual(hooks.take(), [], 'overwrites allocate nothing');

      await fs.fallocate(f.ino, 'KEEP_SIZE', 5 * PAGE, 2 * PAGE);
      hooks.take();
      await w(1, 6); // pages 1-2 written, 3-4 holes, 5-6 unwritten
      assert.deepEqual(hooks.take(), [['allocated', f.ino, 3, 6]]);

      await w(8, 1);
      hooks.take();
      await w(6, 4); // 6 written, 7 hole, 8 written, 9 hole
      assert.deepEqual(hooks.take(), [['allocated', f.ino, 7, 7], ['allocated', f.ino, 9, 9]]);

      await fs.write(f.ino, 20 * PAGE + 4095, Buffer.from([1, 2]), false); // straddles pages 20 and 21
      assert.deepEqual(hooks.take(), [['allocated', f.ino, 20, 21]]);
      await fs.write(f.ino, 0, Buffer.alloc(0), false);
      assert.deepEqual(hooks.take(), []);
    });

    it('breakLayout() comes before truncate down, punch, zero range and collapse, with their page range', async () => {
      const hooks = new RecordingHooks();
      const { fs } = await freshVolume();
      fs.setHooks(hooks);
      const f = await fs.create('f', true);
      const reset = async (): Promise<void> => {
        await fs.truncate(f.ino, 0);
        await fs.write(f.ino, 0, pattern(8 * PAGE, 5), false);
        hooks.take();
      };
      const cases: Array<[string, () => Promise<void>, number, number]> = [
        ['truncate to 4096+100', () => fs.truncate(f.ino, PAGE + 100), 1, MAX_PGOFF],
        ['truncate to 2 pages', () => fs.truncate(f.ino, 2 * PAGE), 2, MAX_PGOFF],
        ['truncate to 0', () => fs.truncate(f.ino, 0), 0, MAX_PGOFF],
        ['punch pages 1..3 partially', () => fs.fallocate(f.ino, 'PUNCH_HOLE', PAGE + 10, 2 * PAGE), 1, 3],
        ['punch page 2 exactly', () => fs.fallocate(f.ino, 'PUNCH_HOLE', 2 * PAGE, PAGE), 2, 2],
        ['zero range in page 0', () => fs.fallocate(f.ino, 'ZERO_RANGE', 0, 10), 0, 0],
        ['zero range pages 3..5', () => fs.fallocate(f.ino, 'ZERO_RANGE', 3 * PAGE, 3 * PAGE), 3, 5],
        ['collapse page 1', () => fs.fallocate(f.ino, 'COLLAPSE_RANGE', PAGE, PAGE), 1, MAX_PGOFF],
      ];
      for (const [what, op, first, last] of cases) {
        await reset();
        const before = await snapshot(fs, f.ino);
        let atBreak: object | undefined;
        hooks.onBreak = async () => { atBreak = await snapshot(fs, f.ino); };
        await op();
        hooks.onBreak = undefined;
        assert.deepEqual(hooks.take(), [['break', f.ino, first, last], ['released', f.ino, first, last]], what);
        assert.deepEqual(atBreak, before, `${what}: the file changed before breakLayout resolved`);
        assert.notDeepEqual(await snapshot(fs, f.ino), before, `${what}: did nothing`);
      }
    });

    it('a rejecting breakLayout() leaves the file unchanged (EBUSY)', async () => {
      const hooks = new RecordingHooks();
      const { fs } = await freshVolume();
      fs.setHooks(hooks);
      const f = await fs.create('f', true);
      await fs.write(f.ino, 0, pattern(6 * PAGE + 100, 6), false);
      await fs.fallocate(f.ino, 'KEEP_SIZE', 6 * PAGE, 4 * PAGE);
      await fs.sync();
      const before = await snapshot(fs, f.ino);
      hooks.take();
      hooks.refuseWith = new BusyError('page 2 is pinned');
      const ops: Array<[string, () => Promise<void>]> = [
        ['truncate down', () => fs.truncate(f.ino, PAGE + 1)],
        ['punch', () => fs.fallocate(f.ino, 'PUNCH_HOLE', PAGE, 2 * PAGE)],
        ['zero range', () => fs.fallocate(f.ino, 'ZERO_RANGE', 10, 3 * PAGE)],
        ['collapse', () => fs.fallocate(f.ino, 'COLLAPSE_RANGE', PAGE, PAGE)],
      ];
      for (const [what, op] of ops) {
        await assert.rejects(op(), isCode('EBUSY'), what);
        assert.deepEqual(hooks.take().map((c) => c[0]), ['break'], `${what}: no release for a refused break`);
        assert.deepEqual(await snapshot(fs, f.ino), before, `${what} changed the file`);
      }
      await fs.sync();
      assert.deepEqual(await snapshot(fs, f.ino), before);
    });
  });
});

import assert from 'node:assert/strict';
import { BusyError } from '../../server/errors';
import { fallocateRequest } from '../../server/rpc/validate';
import { PAGE } from '../support/units';
import { MAX_PGOFF, freshVolume, pfnOf, isCode, pattern, snapshot, RecordingHooks } from './fs-fixture';

describe('file system: fallocate, truncate and layout hooks', () => {
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
      // Through the edge's check (alignment is refused there; the engine asserts it), as
      // every caller does; the range against EOF is the engine's own check.
      const collapse = async (off: number, len: number) => {
        const r = fallocateRequest('COLLAPSE_RANGE', off, len);
        await fs.fallocate(f.ino, r.mode, r.offset, r.length);
      };
      for (const [off, len] of [[100, PAGE], [PAGE, 100], [PAGE, PAGE + 512], [0, 4 * PAGE], [PAGE, 3 * PAGE], [3 * PAGE, 2 * PAGE], [8 * PAGE, PAGE]]) {
        await assert.rejects(collapse(off, len), isCode('EINVAL'), `offset ${off}, length ${len}`);
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

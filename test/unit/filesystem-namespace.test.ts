import assert from 'node:assert/strict';
import { BLOCK_SIZE, FILE_BYTES_MAX } from '../../server/limits';
import { MiB, PAGE } from '../support/units';
import { freshVolume, remount, powerCycle, isCode, pattern } from './fs-fixture';

describe('file system: namespace, unlink and orphans', () => {
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
      assert.equal(st.maxFileSizeBytes, FILE_BYTES_MAX);
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

    it('isUnlinked: false while the name exists, true for the orphan a user keeps, ENOENT once freed', async () => {
      const { fs } = await freshVolume();
      const f = await fs.create('f', true);
      assert.equal(fs.isUnlinked(f.ino), false);
      fs.acquire(f.ino);
      await fs.unlink('f');
      assert.equal(fs.isUnlinked(f.ino), true);
      await fs.release(f.ino);
      assert.throws(() => fs.isUnlinked(f.ino), isCode('ENOENT'));
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
});

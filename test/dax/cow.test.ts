/**
 * COW faults (S1; upstream "dax: Use radix tree entry lock to protect cow faults"): a private copy of the page, made with the entry locked from the
 * block lookup until the copy is complete, so truncate cannot free the block mid-copy. A
 * COW fault keeps no PTE into the file and never allocates (fstests generic/452: COW
 * writes must not touch the journal or allocate).
 */
import assert from 'node:assert/strict';
import { settle, until } from '../support/until';
import { freshDax, sparseFile, writtenFile } from '../support/dax-volume';
import { PAGE } from '../support/units';
import { reached, track } from '../support/track';
import { TestOwner } from '../support/test-owner';

describe('dax COW faults (S1)', function () {
  this.timeout(30_000);

  it('on a written page: returns a copy, keeps no PTE, and the copy is private', async function () {
    const v = await freshDax();
    const ino = await writtenFile(v, 'f', 2, (pg) => 0x30 + pg);
    const a = new TestOwner('a');
    const ptesBefore = v.dax.stats().ptes;
    const { data, pte } = await v.dax.fault(a, ino, 1, 'COW', false);
    assert.equal(pte, undefined, 'a COW fault hands out no PTE');
    assert.deepEqual(data, Buffer.alloc(PAGE, 0x31));
    assert.equal(v.dax.stats().ptes, ptesBefore);
    assert.equal(a.attached, 0, 'nothing attached to the session');
    assert.ok(v.dax.inspect(ino, 0, 1).every((e) => e.mappers === 0 && !e.locked && !e.dirty));
    data!.fill(0xff);
    assert.deepEqual(await v.fs.read(ino, PAGE, PAGE), Buffer.alloc(PAGE, 0x31), 'writing the copy leaves the file alone');
    assert.equal(v.dax.counters().faults.cow, 1);
  });

  it('on a page that is mapped (and dirty) in another session: the copy has the stored bytes', async function () {
    const v = await freshDax();
    const ino = await writtenFile(v, 'f', 1);
    const a = new TestOwner('a');
    const w = await v.dax.fault(a, ino, 0, 'WRITE', false);
    v.dax.store(a, w.pte!.token, 100, Buffer.from('stored'));
    const { data } = await v.dax.fault(new TestOwner('b'), ino, 0, 'COW', false);
    assert.equal(data!.subarray(100, 106).toString(), 'stored');
    const [e] = v.dax.inspect(ino, 0, 0);
    assert.deepEqual([e.state, e.dirty, e.mappers], ['MAPPED', true, 1], "the writer's entry is untouched");
  });

  for (const prep of ['hole', 'unwritten'] as const) {
    it(`on ${prep === 'hole' ? 'a hole' : 'an unwritten block'}: zeros, no allocation, no conversion, no entry left`, async function () {
      const v = await freshDax();
      const ino = await sparseFile(v, 'f', 4 * PAGE);
      if (prep === 'unwritten') await v.fs.fallocate(ino, 'KEEP_SIZE', 0, 4 * PAGE);
      await v.fs.sync();
      const free0 = v.fs.statVolume().blocksFree;
      const blocks0 = v.fs.stat(ino).blocks;
      const state0 = v.fs.iomap(ino, 2).state;
      const { data, pte } = await v.dax.fault(new TestOwner('a'), ino, 2, 'COW', false);
      assert.equal(pte, undefined);
      assert.deepEqual(data, Buffer.alloc(PAGE));
      assert.equal(v.fs.statVolume().blocksFree, free0, 'free blocks unchanged');
      assert.equal(v.fs.stat(ino).blocks, blocks0);
      assert.equal(v.fs.iomap(ino, 2).state, state0, 'block map unchanged');
      assert.equal(v.dax.counters().faults.allocate, 0);
      assert.deepEqual(v.dax.inspect(ino, 0, 3), [], 'the placeholder went with the fault');
    });
  }

  it('on a page read-faulted as the zero page: zeros, the ZERO entry and its PTE stay', async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', PAGE);
    const a = new TestOwner('a');
    const r = await v.dax.fault(a, ino, 0, 'READ', false);
    const { data } = await v.dax.fault(a, ino, 0, 'COW', false);
    assert.deepEqual(data, Buffer.alloc(PAGE));
    assert.deepEqual(v.dax.load(a, r.pte!.token, 0, 4), Buffer.alloc(4));
    const [e] = v.dax.inspect(ino, 0, 0);
    assert.deepEqual([e.state, e.mappers], ['ZERO', 1]);
    assert.equal(v.fs.stat(ino).blocks, 0);
  });

  it("a COW copy taken after read(2) returned an allocating write's bytes shows them, even over a ZERO entry the write has not dropped yet", async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', 2 * PAGE);
    const a = new TestOwner('a');
    await v.dax.fault(a, ino, 1, 'READ', false); // a ZERO entry at page 1
    const data = Buffer.alloc(PAGE, 0x6b);
    const fp = v.dax.failpoints.arm('write:after-allocate', { ino });
    const write = track(v.fs.write(ino, PAGE, data, false));
    await reached(fp, write.promise, 'write:after-allocate');
    // The write copied its data and allocated; its S3 invalidation has not run yet.
    assert.deepEqual(await v.fs.read(ino, PAGE, PAGE), data, 'read(2) already returns the new bytes');
    const { data: copy } = await v.dax.fault(a, ino, 1, 'COW', false);
    fp.release();
    await write.promise;
    // The kernel's COW fault copies from the block map (iomap), never from the entry: a
    // private copy must not go back in time behind a read that returned first.
    assert.deepEqual(copy, data, 'the COW copy shows what read(2) returned before it');
  });

  it('at or beyond EOF: SIGBUS', async function () {
    const v = await freshDax();
    const ino = await writtenFile(v, 'f', 1);
    await assert.rejects(v.dax.fault(new TestOwner('a'), ino, 1, 'COW', false), (err: unknown) => (err as { code?: string }).code === 'SIGBUS');
  });

  it('racing truncate: truncate waits until the copy is made, the copy is the old data, then truncate completes', async function () {
    // Freed blocks are filled with 0xCC when their free commits: a copy made after the
    // truncate freed the block would show it.
    const v = await freshDax(16 * 1024 * 1024, { canaryByte: 0xcc });
    const ino = await writtenFile(v, 'f', 4, (pg) => 0x40 + pg);
    const old = await v.fs.read(ino, 2 * PAGE, PAGE);
    const pfn = (v.fs.iomap(ino, 2) as { pfn: number }).pfn;
    const fp = v.dax.failpoints.arm('fault:before-cow-copy', { ino, pgoff: 2 });
    const cow = track(v.dax.fault(new TestOwner('a'), ino, 2, 'COW', false));
    await reached(fp, cow.promise, 'fault:before-cow-copy');
    const [held] = v.dax.inspect(ino, 2, 2);
    assert.equal(held.locked, true, 'the COW fault holds the entry lock across the copy');

    let truncated = false;
    const truncate = track(v.fs.truncate(ino, 0).then(() => { truncated = true; }));
    // Truncate takes the inode lock and then queues for the mmap lock the fault holds shared.
    await until(() => (v.dax.spaceStats(ino)?.mmapLockWaiters ?? 0) > 0, 'truncate queues behind the fault');
    await settle();
    assert.equal(truncated, false, 'truncate must not complete while the COW copy is in progress');
    assert.equal(v.fs.stat(ino).sizeBytes, 4 * PAGE, 'nothing changed yet');
    assert.equal(v.fs.iomap(ino, 2).state, 'WRITTEN');

    fp.release();
    const { data } = await cow.promise;
    assert.deepEqual(data, old, 'the copy is the page as it was before the truncate');
    await truncate.promise;
    assert.equal(truncated, true);
    assert.equal(v.fs.stat(ino).sizeBytes, 0);
    assert.equal(v.fs.stat(ino).blocks, 0);
    await v.fs.sync(); // commits the free: the canary lands on the old block
    assert.ok(Buffer.from(v.storage.view(pfn * PAGE, PAGE)).every((b) => b === 0xcc), 'precondition: the freed block now holds the canary');
    assert.deepEqual(data, old, 'the copy stays the old data');
    assert.deepEqual(v.dax.inspect(ino, 0, 3), []);
  });
});

/**
 * S5: dirty tracking and writeback without lost flushes (the race-free dirty-tag clearing of upstream "dax: New fault locking").
 *
 * fsync/msync lock each dirty entry, write-protect it (writable PTEs become stale), flush
 * the block, clear DIRTY, unlock. A store racing writeback gets PTE_STALE, its client takes
 * a write fault, and that fault waits for the entry lock, so it re-marks DIRTY after the
 * clear: the next fsync flushes the store. Never dirty data under a clean entry.
 *
 * The durable image is MemoryStorage's medium: what survives power loss (flush copies a
 * range to it). The strongest check reboots over it and mounts: the bytes must be there.
 */
import assert from 'node:assert/strict';
import { FileSystem } from '../../server/fs/filesystem';
import type { FailpointName } from '../../server/dax/failpoints';
import { settle, until } from '../support/until';
import { durableBlock, freshDax, isCode, sparseFile, waitersAt, type DaxVolume } from '../support/dax-volume';
import { PAGE } from '../support/units';
import { reached, track } from '../support/track';
import { TestClient, TestOwner } from '../support/test-owner';

/** Power loss now (nothing unflushed survives), then mount the medium. */
async function powerCycle(v: DaxVolume): Promise<FileSystem> {
  v.storage.crash(() => 0.5, 0);
  return FileSystem.mount(v.storage.reboot());
}

function pfnOf(v: DaxVolume, ino: number, pg: number): number {
  const m = v.fs.iomap(ino, pg);
  assert.ok(m.state === 'WRITTEN', `page ${pg} is ${m.state}`);
  return m.pfn;
}

describe('dax writeback (S5)', function () {
  this.timeout(30_000);

  for (const point of ['writeback:after-downgrade', 'writeback:before-clean'] as FailpointName[]) {
    it(`store racing fsync (paused at ${point}): the old token is stale, the write fault waits, the next fsync flushes the store`, async function () {
      const v = await freshDax();
      const ino = await sparseFile(v, 'f', 2 * PAGE);
      const a = new TestOwner('a');
      const w = await v.dax.fault(a, ino, 0, 'WRITE', false);
      v.dax.store(a, w.pte!.token, 0, Buffer.from('AAAA'));
      const pfn = pfnOf(v, ino, 0);

      const fp = v.dax.failpoints.arm(point, { ino, pgoff: 0 });
      const fsync1 = track(v.dax.fsync(ino, false));
      await reached(fp, fsync1.promise, point);
      const [held] = v.dax.inspect(ino, 0, 0);
      assert.deepEqual([held.locked, held.dirty, held.towrite, held.mappers], [true, true, false, 0], 'locked, still dirty, writable PTE revoked');

      // The store through the old writable token is refused and changes nothing.
      assert.throws(() => v.dax.store(a, w.pte!.token, 0, Buffer.from('XXXX')), (err: unknown) => isCode(err, 'PTE_STALE'));
      assert.deepEqual(await v.fs.read(ino, 0, 4), Buffer.from('AAAA'));

      // The client's write fault waits for the entry lock writeback holds.
      const refault = track(v.dax.fault(a, ino, 0, 'WRITE', false));
      await until(() => waitersAt(v.dax, ino, 0) === 1, 'the write fault waits on the entry');
      await settle();
      assert.equal(refault.done, false, 'the write fault must wait until writeback unlocks the entry');

      fp.release();
      await fsync1.promise;
      // One notice per operation, sent when the writeback is done with its range.
      assert.deepEqual(a.events.map((e) => [e.reason, e.firstPgoff, e.lastPgoff]), [['WRITEBACK', 0, 0]]);
      const { pte } = await refault.promise;
      assert.deepEqual(durableBlock(v.storage, pfn).subarray(0, 4), Buffer.from('AAAA'), 'fsync flushed store A');
      const [after] = v.dax.inspect(ino, 0, 0);
      assert.equal(after.dirty, true, 'the write fault re-dirtied the entry after the clean');

      v.dax.store(a, pte!.token, 0, Buffer.from('BBBB'));
      assert.deepEqual(durableBlock(v.storage, pfn).subarray(0, 4), Buffer.from('AAAA'), 'precondition: B is not durable yet');
      await v.dax.fsync(ino, false);
      assert.deepEqual(durableBlock(v.storage, pfn).subarray(0, 4), Buffer.from('BBBB'), 'the second fsync flushed store B');
      const fs2 = await powerCycle(v);
      assert.deepEqual(await fs2.read(ino, 0, 4), Buffer.from('BBBB'), 'B survives power loss');
    });
  }

  it('after msync the entry is clean, a writable token is stale, a read-only one still loads', async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', 2 * PAGE);
    const a = new TestOwner('a');
    const b = new TestOwner('b');
    const w = await v.dax.fault(a, ino, 1, 'WRITE', false);
    const r = await v.dax.fault(b, ino, 1, 'READ', false);
    v.dax.store(a, w.pte!.token, 8, Buffer.from('msync me'));
    await v.dax.msync(ino, 1, 1);
    const [e] = v.dax.inspect(ino, 1, 1);
    assert.deepEqual([e.dirty, e.towrite, e.locked, e.mappers], [false, false, false, 1]);
    assert.throws(() => v.dax.store(a, w.pte!.token, 0, Buffer.from('x')), (err: unknown) => isCode(err, 'PTE_STALE'));
    assert.equal(v.dax.load(b, r.pte!.token, 8, 8).toString(), 'msync me', 'read-only PTEs survive writeback');
    assert.deepEqual(durableBlock(v.storage, pfnOf(v, ino, 1)).subarray(8, 16), Buffer.from('msync me'));
    assert.deepEqual(b.events, [], 'nothing to tell the read-only mapper');
    assert.equal(v.dax.counters().writebackFlushes, 1);
    // A new store needs a write fault, which dirties the entry again.
    const client = new TestClient(v.dax, a);
    await client.store(ino, PAGE, Buffer.from('again'));
    assert.equal(v.dax.inspect(ino, 1, 1)[0].dirty, true);
  });

  it('msync only cleans its range; fsync cleans every dirty page of the file', async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', 8 * PAGE);
    const c = new TestClient(v.dax, new TestOwner('a'));
    for (let pg = 0; pg < 8; pg++) await c.store(ino, pg * PAGE, Buffer.from(`page ${pg}`));
    await v.dax.msync(ino, 2, 4);
    assert.deepEqual(v.dax.inspect(ino, 0, 7).map((e) => e.dirty), [true, true, false, false, false, true, true, true]);
    for (let pg = 0; pg < 8; pg++) {
      const durable = durableBlock(v.storage, pfnOf(v, ino, pg)).subarray(0, 6).toString();
      // Outside the range a page may be durable too: msync commits, and the commit flushes
      // the new blocks of the running transaction (ordered data, S2) with their stores.
      if (pg >= 2 && pg <= 4) assert.equal(durable, `page ${pg}`, `page ${pg} in the msync range is durable`);
    }
    await v.dax.fsync(ino, false);
    assert.ok(v.dax.inspect(ino, 0, 7).every((e) => !e.dirty && !e.towrite));
    const fs2 = await powerCycle(v);
    for (let pg = 0; pg < 8; pg++) assert.equal((await fs2.read(ino, pg * PAGE, 6)).toString(), `page ${pg}`);
  });

  it('two concurrent fsyncs: the second waits for the entry the first holds, both flush, nothing is lost', async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', PAGE);
    const c = new TestClient(v.dax, new TestOwner('a'));
    await c.store(ino, 0, Buffer.from('one'));
    const fp = v.dax.failpoints.arm('writeback:after-downgrade', { ino, pgoff: 0 });
    const first = track(v.dax.fsync(ino, false));
    await reached(fp, first.promise, 'writeback:after-downgrade');
    const second = track(v.dax.fsync(ino, false));
    await until(() => waitersAt(v.dax, ino, 0) === 1, 'the second writeback waits on the entry');
    fp.release();
    await Promise.all([first.promise, second.promise]);
    assert.equal(v.dax.inspect(ino, 0, 0)[0].dirty, false);
    assert.deepEqual(durableBlock(v.storage, pfnOf(v, ino, 0)).subarray(0, 3), Buffer.from('one'));
  });

  it('a dirty entry removed by a layout change whose block survives (collapse) keeps its stores for the next fsync', async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', 4 * PAGE);
    const c = new TestClient(v.dax, new TestOwner('a'));
    await c.store(ino, 3 * PAGE, Buffer.from('zero'));
    await v.fs.sync(); // the allocation (and its ordered zeroes) commit: nothing else flushes page 3 now
    await c.store(ino, 3 * PAGE, Buffer.from('keep'));
    const pfn = pfnOf(v, ino, 3);
    await v.fs.fallocate(ino, 'COLLAPSE_RANGE', 0, PAGE); // page 3 -> page 2, its entry goes (S4)
    assert.deepEqual(v.dax.inspect(ino, 0, 3), []);
    assert.equal(pfnOf(v, ino, 2), pfn, 'the block moved, it was not copied');
    await v.dax.fsync(ino, false);
    const fs2 = await powerCycle(v);
    assert.equal((await fs2.read(ino, 2 * PAGE, 4)).toString(), 'keep');
  });

  it('MAP_SYNC: a sync write fault commits the allocation before it returns; with msync the store survives power loss', async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', 4 * PAGE);
    await v.fs.sync();
    const a = new TestOwner('a');
    const { pte } = await v.dax.fault(a, ino, 3, 'WRITE', true);
    assert.equal(v.dax.counters().faults.sync, 1);
    v.dax.store(a, pte!.token, 0, Buffer.from('synced'));
    await v.dax.msync(ino, 3, 3);
    const fs2 = await powerCycle(v);
    assert.equal(fs2.iomap(ino, 3).state, 'WRITTEN', 'the allocation is durable');
    assert.equal((await fs2.read(ino, 3 * PAGE, 6)).toString(), 'synced');
  });
});

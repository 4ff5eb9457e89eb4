/**
 * S1: entry locks. FIFO hand-off, wake-all on removal (the kernel's missed wake-up,
 * 237388320dee: with wake-one, the waiter that removes the entry leaves the others asleep
 * forever), and the locked placeholder that keeps two faults on one hole from both
 * allocating (upstream "dax: New fault locking").
 */
import assert from 'node:assert/strict';
import { AddressSpace, type Entry } from '../../server/dax/address-space';
import { lockEntry, lockExistingEntry, removeEntry, tryLockEntry, unlockEntry } from '../../server/dax/entry-lock';
import { freshDax, sparseFile, waitersAt } from '../support/dax-volume';
import { PAGE } from '../support/units';
import { reached, track } from '../support/track';
import { TestClient, TestOwner } from '../support/test-owner';
import { until } from '../support/until';

describe('dax entry locks (S1)', function () {
  this.timeout(30_000);

  describe('lock protocol on one address space', function () {
    it('lockEntry on an absent index inserts a locked EMPTY placeholder; an unfilled one goes at unlock', async function () {
      const as = new AddressSpace(1);
      const e = await lockEntry(as, 7);
      assert.equal(as.entries.get(7), e);
      assert.equal(e.state, 'EMPTY');
      assert.equal(e.locked, true);
      // While it is held, nobody else gets it, not even without waiting.
      assert.equal(tryLockEntry(as, 7), null);
      unlockEntry(as, e);
      assert.equal(as.entries.has(7), false, 'an unfilled placeholder must not stay in the table');
    });

    it('hands the lock off in FIFO order and lets no latecomer barge in', async function () {
      const as = new AddressSpace(1);
      const holder = await lockEntry(as, 3);
      holder.state = 'ZERO'; // filled, as a read fault would: it stays at unlock
      const order: string[] = [];
      const lockers = ['A', 'B', 'C'].map((name) =>
        lockEntry(as, 3).then((e) => {
          order.push(name);
          assert.equal(e, holder, `${name} must be handed the same entry`);
          assert.equal(e.locked, true);
          return e;
        }));
      assert.equal(as.waitQueues.get(3)?.length, 3);
      unlockEntry(as, holder);
      // Hand-off: the entry stays locked for A even before A runs; a newcomer queues behind C.
      assert.equal(holder.locked, true);
      assert.equal(tryLockEntry(as, 3), null, 'tryLockEntry barged past queued waiters');
      const late = lockEntry(as, 3).then((e) => { order.push('D'); return e; });
      for (const p of [...lockers, late]) {
        const e = await p;
        unlockEntry(as, e);
      }
      assert.deepEqual(order, ['A', 'B', 'C', 'D']);
      assert.equal(holder.locked, false);
      assert.equal(as.waitQueues.size, 0);
      assert.equal(as.stats.lockWaits, 4);
    });

    it('removeEntry wakes ALL waiters: three invalidators, the first removes the entry, all three complete (237388320dee)', async function () {
      const as = new AddressSpace(1);
      const holder = await lockEntry(as, 9);
      holder.state = 'ZERO';
      const results: Array<Entry | null | 'pending'> = ['pending', 'pending', 'pending'];
      // Invalidators (S3): each waits for the entry, drops it if it is still there.
      const invalidators = [0, 1, 2].map(async (i) => {
        const e = await lockExistingEntry(as, 9);
        results[i] = e;
        if (e) removeEntry(as, e);
      });
      assert.equal(as.waitQueues.get(9)?.length, 3);
      unlockEntry(as, holder); // WAKE_NEXT: the first invalidator gets it and removes it
      await until(() => results.every((r) => r !== 'pending'), 'all three invalidators complete');
      await Promise.all(invalidators);
      assert.equal(results[0], holder, 'the first waiter (FIFO) gets the entry');
      assert.deepEqual(results.slice(1), [null, null], 'the others find the index empty');
      assert.equal(as.entries.size, 0);
      assert.equal(as.waitQueues.size, 0);
    });

    it('a removal wakes waiters of both kinds; a woken fault re-inserts a placeholder the others then queue on', async function () {
      const as = new AddressSpace(1);
      const holder = await lockEntry(as, 2);
      holder.state = 'ZERO';
      const log: string[] = [];
      const fault = (async () => {
        const e = await lockEntry(as, 2);
        log.push(`fault:${e.state}`);
        assert.notEqual(e, holder, 'the removed entry must not be handed out');
        e.state = 'ZERO';
        unlockEntry(as, e);
      })();
      const inval = (async () => {
        const e = await lockExistingEntry(as, 2);
        log.push(`inval:${e ? e.state : 'gone'}`);
        if (e) unlockEntry(as, e);
      })();
      removeEntry(as, holder);
      await until(() => log.length === 2, 'both waiters complete');
      await Promise.all([fault, inval]);
      // The fault re-looked the index up, inserted a placeholder, and the invalidator found it.
      assert.deepEqual(log, ['fault:EMPTY', 'inval:ZERO']);
      assert.equal(as.entries.get(2)?.locked, false);
    });

    it('removing an unfilled placeholder at unlock wakes every waiter (none sleeps forever)', async function () {
      const as = new AddressSpace(1);
      const holder = await lockEntry(as, 4); // stays EMPTY: unlock removes it
      let completed = 0;
      const waiters = [0, 1, 2].map(async () => {
        const e = await lockEntry(as, 4);
        e.state = 'ZERO';
        unlockEntry(as, e);
        completed++;
      });
      unlockEntry(as, holder);
      await until(() => completed === 3, 'three faults complete after the placeholder went');
      await Promise.all(waiters);
      assert.equal(as.waitQueues.size, 0);
    });
  });

  describe('through the fault path', function () {
    it('wake-all: three requests wait on a fault-held entry, an allocating write removes it, all three complete', async function () {
      const v = await freshDax();
      const ino = await sparseFile(v, 'f', 4 * PAGE);
      const a = new TestClient(v.dax, new TestOwner('a'));
      const b = new TestClient(v.dax, new TestOwner('b'));
      const c = new TestClient(v.dax, new TestOwner('c'));
      await a.fault(ino, 1, 'READ'); // ZERO entry at 1
      const fp = v.dax.failpoints.arm('fault:after-entry-lock', { ino, pgoff: 1 });
      const holder = track(a.fault(ino, 1, 'READ'));
      await reached(fp, holder.promise, 'fault:after-entry-lock');
      // 1: write(2) allocates page 1 and waits in its S3 invalidation for the entry lock.
      const data = Buffer.alloc(PAGE, 0x5a);
      const write = track(v.fs.write(ino, PAGE, data, false));
      await until(() => waitersAt(v.dax, ino, 1) === 1, 'the write waits on the entry');
      // 2 and 3: faults of two other sessions queue behind it.
      const readFault = track(b.fault(ino, 1, 'READ'));
      const writeFault = track(c.fault(ino, 1, 'WRITE'));
      await until(() => waitersAt(v.dax, ino, 1) === 3, 'three waiters on the entry');
      fp.release();
      await until(() => write.done && readFault.done && writeFault.done && holder.done, 'all complete');
      await Promise.all([holder.promise, write.promise, readFault.promise, writeFault.promise]);
      // The write removed the ZERO entry (revoking the holder's zero PTE); the faults saw the block.
      assert.equal(v.dax.counters().faults.allocate, 0, 'the faults found the block write(2) allocated');
      assert.deepEqual(await b.load(ino, PAGE, PAGE), data);
      assert.deepEqual(await a.load(ino, PAGE, PAGE), data);
      assert.ok(a.staleRetries >= 1, "the holder's zero-page PTE must have been revoked");
    });

    it('two concurrent write faults on one hole: the second waits on the placeholder, exactly one block is allocated', async function () {
      const v = await freshDax();
      const ino = await sparseFile(v, 'f', 4 * PAGE);
      const free0 = v.fs.statVolume().blocksFree;
      const a = new TestClient(v.dax, new TestOwner('a'));
      const b = new TestClient(v.dax, new TestOwner('b'));
      const fp = v.dax.failpoints.arm('fault:after-entry-lock', { ino, pgoff: 2 });
      const first = track(a.fault(ino, 2, 'WRITE'));
      await reached(fp, first.promise, 'fault:after-entry-lock');
      const [placeholder] = v.dax.inspect(ino, 2, 2);
      assert.deepEqual([placeholder.state, placeholder.locked], ['EMPTY', true], 'the fault holds a locked placeholder before its lookup');
      const second = track(b.fault(ino, 2, 'WRITE'));
      await until(() => waitersAt(v.dax, ino, 2) === 1, 'the second fault waits on the placeholder');
      assert.equal(v.fs.iomap(ino, 2).state, 'HOLE', 'nothing allocated while the first fault is paused');
      fp.release();
      const [pa, pb] = await Promise.all([first.promise, second.promise]);
      assert.equal(v.dax.counters().faults.allocate, 1, 'exactly one allocating fault');
      assert.equal(v.dax.counters().faults.mapped, 1, 'the second fault found the block mapped');
      assert.equal(pa.pfn, pb.pfn);
      assert.equal(v.fs.stat(ino).blocks, 1, 'one data block');
      const m = v.fs.iomap(ino, 2);
      assert.ok(m.state === 'WRITTEN' && m.pfn === pa.pfn);
      const used = free0 - v.fs.statVolume().blocksFree;
      assert.ok(used >= 1 && used <= 2, `one data block (+ at most the first map block), used ${used}`);
      const [e] = v.dax.inspect(ino, 2, 2);
      assert.deepEqual([e.state, e.dirty, e.mappers, e.locked, e.waiters], ['MAPPED', true, 2, false, 0]);
    });

    it('two concurrent read faults on one hole share one ZERO entry and allocate nothing', async function () {
      const v = await freshDax();
      const ino = await sparseFile(v, 'f', 4 * PAGE);
      const a = new TestClient(v.dax, new TestOwner('a'));
      const b = new TestClient(v.dax, new TestOwner('b'));
      const fp = v.dax.failpoints.arm('fault:after-entry-lock', { ino, pgoff: 0 });
      const first = track(a.fault(ino, 0, 'READ'));
      await reached(fp, first.promise, 'fault:after-entry-lock');
      const second = track(b.fault(ino, 0, 'READ'));
      await until(() => waitersAt(v.dax, ino, 0) === 1, 'the second fault waits');
      fp.release();
      const [pa, pb] = await Promise.all([first.promise, second.promise]);
      assert.deepEqual([pa.pfn, pb.pfn], [0, 0]);
      assert.equal(v.fs.stat(ino).blocks, 0);
      assert.equal(v.fs.iomap(ino, 0).state, 'HOLE');
      const [e] = v.dax.inspect(ino, 0, 0);
      assert.deepEqual([e.state, e.mappers], ['ZERO', 2]);
    });
  });
});

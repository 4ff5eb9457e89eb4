/**
 * "The caller holds lock X" is checked, not only written (issue 11, item 3): the inode and
 * mmap locks (fs/rw-lock.ts) hand out hold tokens, entry locks carry an owner token
 * (dax/entry-lock.ts), and a function called without the lock it documents fails an
 * AssertionError before it changes anything.
 */
import assert from 'node:assert/strict';
import { AddressSpace, Entry } from '../../server/dax/address-space';
import { assertHolds, lockEntry, newOwner, removeEntry, unlockEntry } from '../../server/dax/entry-lock';
import { InvalidationNotices, PteTable } from '../../server/dax/pte';
import { mappingOf } from '../../server/dax/fault';
import { Dax } from '../../server/dax/dax';
import { RwLock } from '../../server/fs/rw-lock';
import { freshDax, writtenFile } from '../support/dax-volume';
import { TestOwner } from '../support/test-owner';

describe('lock contracts are assertions', function () {
  describe('rw-lock hold tokens', function () {
    it('a live hold passes; a released one, a shared one where exclusive is needed, or another lock\'s fails', async function () {
      const lock = new RwLock();
      const other = new RwLock();
      const shared = await lock.lockShared();
      lock.assertHeld(shared);
      assert.throws(() => lock.assertHeldExclusive(shared), assert.AssertionError, 'shared is not exclusive');
      assert.throws(() => other.assertHeld(shared), assert.AssertionError, 'a token proves nothing about another lock');
      shared();
      assert.equal(shared.released, true);
      assert.throws(() => lock.assertHeld(shared), assert.AssertionError, 'a released token');
      const w = await lock.lockExclusive();
      lock.assertHeldExclusive(w);
      w();
      assert.throws(() => lock.assertHeldExclusive(w), assert.AssertionError, 'released while a step still ran');
    });

    it('a double release is an AssertionError and leaves the next holder alone', async function () {
      const lock = new RwLock();
      const w = await lock.lockExclusive();
      w();
      const next = await lock.lockExclusive();
      assert.throws(w, assert.AssertionError);
      lock.assertHeldExclusive(next);
      next();
      assert.equal(lock.held, false);
    });
  });

  describe('entry-lock owner tokens', function () {
    it('unlock or remove by a request that does not hold the lock is an AssertionError; the lock stays with its holder', async function () {
      const as = new AddressSpace(1);
      const a = newOwner('a');
      const b = newOwner('b');
      const e = await lockEntry(as, 5, a);
      e.state = 'ZERO';
      assert.throws(() => unlockEntry(as, e, b), assert.AssertionError);
      assert.throws(() => removeEntry(as, e, b), assert.AssertionError);
      assert.throws(() => assertHolds(e, b), assert.AssertionError);
      assert.deepEqual([e.locked, e.holder], [true, a], 'the failed calls changed nothing');
      unlockEntry(as, e, a);
      assert.equal(e.locked, false);
    });

    it('regression: a holder that unlocks again after handing the lock on fails, instead of releasing the waiter\'s lock', async function () {
      const as = new AddressSpace(1);
      const a = newOwner('a');
      const b = newOwner('b');
      const e = await lockEntry(as, 3, a);
      e.state = 'ZERO';
      const waiter = lockEntry(as, 3, b);
      unlockEntry(as, e, a); // hand-off: b holds it now
      assert.throws(() => unlockEntry(as, e, a), assert.AssertionError);
      assert.equal(await waiter, e);
      assert.deepEqual([e.locked, e.holder], [true, b], 'b still holds the lock');
      unlockEntry(as, e, b);
    });

    it('a PTE install, a downgrade, or a revoke of an entry nobody locked is an AssertionError', async function () {
      const v = await freshDax();
      const ino = await writtenFile(v, 'f', 1);
      const owner = new TestOwner('a');
      await v.dax.fault(owner, ino, 0, 'WRITE', false);
      const ctx = Dax.contextForTests(v.dax);
      const as = ctx.spaces.get(ino)!;
      const e = as.entries.get(0)!;
      assert.equal(e.locked, false);
      const ptes = new PteTable();
      assert.throws(() => ptes.install(mappingOf(ctx, owner, as), e, false), assert.AssertionError);
      assert.throws(() => ctx.ptes.downgradeEntry(as, e, new InvalidationNotices('WRITEBACK')), assert.AssertionError);
      assert.throws(() => ctx.ptes.revokeEntry(as, e, null), assert.AssertionError);
      assert.equal(v.dax.stats().ptes, 1, 'the PTE is still there');
    });

    it('an unpin of an unpinned entry is an AssertionError (was a plain Error)', function () {
      const as = new AddressSpace(1);
      const e = new Entry(0);
      e.state = 'MAPPED';
      e.pfn = 9;
      as.entries.set(0, e);
      assert.throws(() => as.unpinEntry(as.entries.get(0)!), assert.AssertionError);
    });
  });
});

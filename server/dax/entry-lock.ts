/**
 * Entry locks (S1): one lock per (file, pgoff), the kernel's DAX_LOCKED bit with its
 * hashed wait queues, here exact per-key FIFO queues.
 *
 * Lock order (outermost first; never take an earlier lock while holding a later one):
 *
 *   inode lock (fs/rw-lock, per file)      write(2), truncate, fallocate, unlink: exclusive
 *   │                                      (read(2) is synchronous and takes none)
 *   └─ mmap lock (AddressSpace.mmapLock)   faults, pins: shared
 *      │                                   truncate / punch / zero / collapse: exclusive,
 *      │                                   dropped while waiting for pins (S4)
 *      └─ entry locks (this file)          faults, S3 invalidation, writeback, layout break;
 *         │                                several at once only in ascending pgoff
 *         └─ allocator, journal, pin table (synchronous: never held across an await
 *            on the locks above)
 *
 * Faults and pins never take the inode lock: a write(2) whose source is a mapping of the
 * same file cannot deadlock. write(2) takes entry locks (S3 invalidation) under the inode
 * lock without the mmap lock; that is safe because faults never wait for the inode lock.
 *
 * Protocol (fs/dax.c entry locking, with hand-off instead of wake-and-retry; docs/SEMANTICS.md S1):
 * - lockEntry inserts a locked EMPTY placeholder on an absent index, so two faults on one
 *   hole never both decide "not mapped" (upstream "dax: New fault locking").
 * - unlockEntry hands the lock to the first waiter (FIFO). A waiter that did not want the
 *   lock after all (it only waited for the entry to be unlocked) unlocks it at once,
 *   which passes the wake-up on: nobody sleeps forever behind a waiter that left.
 * - removeEntry wakes ALL waiters (the kernel's WAKE_ALL fix, 237388320dee); each looks
 *   the index up again: it may insert a new placeholder or find nothing.
 * - Waiters wait on exactly the key the holder wakes: (address space, the entry's pgoff).
 *   A page covered by a PMD entry waits on the PMD's aligned pgoff, which is the key the
 *   PMD holder wakes. A PMD request never waits on an order-0 entry's key (it would wait
 *   on the aligned pgoff, which a 4 KiB holder elsewhere in the range never wakes: the 5.3
 *   missed-wakeup bug, 23c84eb78375): lockPmdEntry answers PTE_LOCKED at once instead.
 * - Owner tokens: each request locks with its own EntryLockOwner (newOwner), and unlock,
 *   remove and every function documented "the caller holds the entry lock" assert that
 *   the entry's holder is that token (assertHolds). A hand-off makes the waiter's token
 *   the holder, so a request that unlocks twice, or unlocks a lock it handed on, fails
 *   an assertion instead of releasing the next holder's lock. Locks taken without a
 *   token (tests, tools) use UNNAMED_OWNER.
 * - Every change of `locked` also updates `as.held` (the admin API's held locks, oldest
 *   first), and each wait is reported to the observer when it ends (metrics, the warn
 *   line of a long wait): bookkeeping only, no await, so the protocol is unchanged.
 */
import assert from 'node:assert';
import { PMD_ORDER, PMD_PAGES } from '../limits';
import { EntryLockOwner, type AddressSpace, type Entry, type LockWaiter } from './address-space';

/** The owner of locks taken without a token of their own (tests, tools). */
export const UNNAMED_OWNER = new EntryLockOwner('unnamed');

/** A token for one request's entry locks (`what` names it in assertion messages). */
export function newOwner(what: string): EntryLockOwner {
  return new EntryLockOwner(what);
}

/** Asserts that `owner` holds the entry's lock: the check behind "the caller holds the entry lock". */
export function assertHolds(e: Entry, owner: EntryLockOwner): void {
  assert(e.locked && e.holder === owner, `entry at pgoff ${e.pgoff} is not locked by the caller (${owner.what}; holder ${e.holder?.what ?? 'none'})`);
}

/**
 * Locks the entry covering page pgoff, inserting a locked order-0 EMPTY placeholder if
 * there is none. The entry may be a PMD entry over the page (e.pgoff is then its aligned
 * base): the caller uses it, or downgrades it (pmd.ts lockPage).
 */
export async function lockEntry(as: AddressSpace, pgoff: number, owner: EntryLockOwner = UNNAMED_OWNER): Promise<Entry> {
  for (;;) {
    const e = as.lookup(pgoff);
    if (!e) return as.insertPlaceholder(pgoff, owner);
    if (!e.locked) {
      take(as, e, owner);
      return e;
    }
    const granted = await wait(as, e.pgoff, owner);
    if (granted) return granted;
    // The entry was removed while we waited: look again.
  }
}

/**
 * Locks the entry at pgoff if there is one (waiting while it is locked); null when the
 * index is empty. Used by paths that must not create entries (S3 invalidation, layout
 * break, writeback).
 */
export async function lockExistingEntry(as: AddressSpace, pgoff: number, owner: EntryLockOwner = UNNAMED_OWNER): Promise<Entry | null> {
  for (;;) {
    const e = as.lookup(pgoff);
    if (!e) return null;
    if (!e.locked) {
      take(as, e, owner);
      return e;
    }
    const granted = await wait(as, e.pgoff, owner);
    if (granted) return granted;
  }
}

/**
 * Lock without waiting; null if absent or locked. The fault fast path, whose caller
 * unlocks in the same synchronous stretch: no other request (nor the admin API) can see
 * the lock held, so it is not recorded in `as.held` (that Map insert was most of the
 * cost of an uncontended lock). unlockEntry's delete of an absent key is a no-op.
 */
export function tryLockEntry(as: AddressSpace, pgoff: number, owner: EntryLockOwner = UNNAMED_OWNER): Entry | null {
  const e = as.lookup(pgoff);
  if (!e || e.locked || as.waitQueues.has(e.pgoff)) return null;
  e.locked = true;
  e.holder = owner;
  return e;
}

/** Unlocks, handing the lock to the next waiter in FIFO order (WAKE_NEXT). */
export function unlockEntry(as: AddressSpace, e: Entry, owner: EntryLockOwner = UNNAMED_OWNER): void {
  assert(e.locked, `unlock of unlocked entry at pgoff ${e.pgoff}`);
  assertHolds(e, owner);
  assert(as.entries.get(e.pgoff) === e, `unlock of an entry no longer in the table (pgoff ${e.pgoff})`);
  if (e.state === 'EMPTY' && e.pteCount === 0 && e.pins === 0 && !e.dirty) {
    // A placeholder nobody filled (the fault failed or only looked): drop it.
    removeEntry(as, e, owner);
    return;
  }
  const queue = as.waitQueues.get(e.pgoff);
  const next = queue?.shift();
  if (queue && queue.length === 0) as.waitQueues.delete(e.pgoff);
  if (next) {
    as.held.delete(e);
    as.held.set(e, performance.now()); // a new holder: its hold time starts now
    e.holder = next.owner;
    next(e); // stays locked: ownership passes to the waiter
  } else {
    e.locked = false;
    e.holder = null;
    as.held.delete(e);
  }
}

/** Deletes a locked entry and wakes every waiter on its index (WAKE_ALL). */
export function removeEntry(as: AddressSpace, e: Entry, owner: EntryLockOwner = UNNAMED_OWNER): void {
  assert(e.locked, `remove of unlocked entry at pgoff ${e.pgoff}`);
  assertHolds(e, owner);
  assert(e.pteCount === 0, `remove of entry at pgoff ${e.pgoff} that still has ${e.pteCount} PTEs`);
  assert(e.pins === 0, `remove of entry at pgoff ${e.pgoff} whose block is pinned (S4)`);
  as.forget(e);
  e.locked = false;
  e.holder = null;
  as.held.delete(e);
  const queue = as.waitQueues.get(e.pgoff);
  if (queue) {
    as.waitQueues.delete(e.pgoff);
    for (const wake of queue) wake(null);
  }
}

/**
 * Locks the PMD entry at the aligned pgoff `base`, inserting a locked order-9 EMPTY
 * placeholder if the range holds no entry at all. Never waits on an order-0 entry: when
 * the range holds one, answers 'PTE_LOCKED' (it is locked) or 'PTE_ENTRIES' at once, and
 * the caller falls back to 4 KiB pages. Waiting on the PMD entry's own key is safe: its
 * holder unlocks or removes it, waking that key.
 */
export async function lockPmdEntry(as: AddressSpace, base: number, owner: EntryLockOwner): Promise<Entry | 'PTE_LOCKED' | 'PTE_ENTRIES'> {
  assert(base % PMD_PAGES === 0, `PMD lock at unaligned pgoff ${base}`);
  for (;;) {
    const ptes = as.pteEntriesIn(base);
    if (ptes.length > 0) return ptes.some((e) => e.locked) ? 'PTE_LOCKED' : 'PTE_ENTRIES';
    const e = as.entries.get(base);
    if (!e) return as.insertPlaceholder(base, owner, PMD_ORDER);
    assert(e.order === PMD_ORDER, `order-${e.order} entry at ${base} missed by the PTE scan`);
    if (!e.locked) {
      take(as, e, owner);
      return e;
    }
    const granted = await wait(as, base, owner);
    if (granted) return granted;
    // Removed (downgraded, truncated): look again; 4 KiB entries may be there now.
  }
}

function take(as: AddressSpace, e: Entry, owner: EntryLockOwner): void {
  e.locked = true;
  e.holder = owner;
  as.held.set(e, performance.now());
}

function wait(as: AddressSpace, pgoff: number, owner: EntryLockOwner): Promise<Entry | null> {
  let queue = as.waitQueues.get(pgoff);
  if (!queue) as.waitQueues.set(pgoff, (queue = []));
  as.stats.lockWaits++;
  as.observer.entryLockWaitStarted();
  const sinceMs = performance.now();
  return new Promise<Entry | null>((resolve) => {
    const waiter: LockWaiter = Object.assign((granted: Entry | null) => {
      as.observer.entryLockWaited(as.ino, pgoff, performance.now() - sinceMs);
      resolve(granted);
    }, { sinceMs, owner });
    queue.push(waiter);
  });
}

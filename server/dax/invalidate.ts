/**
 * Invalidation: S3 (write(2) filled holes) and S4's first half (a layout change revokes
 * PTEs and deletes entries before the file layer changes the block map).
 */
import assert from 'node:assert';
import { BusyError, CancelledError, DaxError } from '../errors';
import type { RwLockHold } from '../fs/rw-lock';
import type { LayoutBreakOptions, LayoutChange } from '../fs/types';
import type { AddressSpace } from './address-space';
import { recallPin } from './pin';
import type { DaxContext } from './dax-context';
import { lockExistingEntry, newOwner, removeEntry, unlockEntry } from './entry-lock';
import { InvalidationNotices } from './pte';
import { splitPinnedPmd } from './pmd';

/**
 * S3: called by write(2) (inode lock held, no mmap lock) after it allocated blocks for
 * [first, last]. For each entry in the range: wait for its lock, drop it if it is ZERO or
 * EMPTY and neither DIRTY nor TOWRITE, revoking its PTEs, so mappers re-fault and see the
 * data. MAPPED entries are left alone (they already point at the block). Entries created
 * after the allocation see the new blocks through the block map, so a snapshot is enough.
 */
export async function invalidateAllocated(ctx: DaxContext, ino: number, first: number, last: number): Promise<void> {
  const as = ctx.spaces.get(ino);
  if (!as) return;
  await ctx.failpoints.hit('write:after-allocate', { ino, pgoff: first });
  const notices = new InvalidationNotices('HOLE_FILLED');
  const me = newOwner('S3 invalidation');
  let revoked = 0;
  for (const snap of as.entriesInRange(first, last)) {
    const e = await lockExistingEntry(as, snap.pgoff, me);
    if (!e) continue;
    await ctx.failpoints.hit('invalidate:entry-locked', { ino, pgoff: e.pgoff });
    if ((e.state === 'ZERO' || e.state === 'EMPTY') && !e.dirty && !e.towrite && e.pins === 0) {
      revoked += ctx.ptes.revokeEntry(as, e, notices);
      as.stats.invalidations++;
      removeEntry(as, e, me);
    } else {
      unlockEntry(as, e, me);
    }
  }
  ctx.countInvalidations('HOLE_FILLED', revoked);
  notices.send();
  ctx.maybeDrop(as);
}

/**
 * S4: the inode lock is held by the caller (the file layer). Takes the mmap lock
 * exclusive (no new faults or pins), revokes every shared PTE in [first, last], then
 * looks for a pinned block in the range (O(pinned entries)). While one exists: FAIL
 * refuses (EBUSY); WAIT and RECALL (after recalling the pins) release the mmap lock,
 * keep the inode lock, wait until a pin count drops (woken by unpin, session end or
 * revocation; never polled; aborted by the call's deadline or cancellation), retake the
 * mmap lock and scan again from scratch: new faults and pins may have come in while it
 * was released. Only then are the entries deleted (waking all their waiters). Returns
 * the release of the mmap lock, which the file layer calls after changing the block map.
 * Any failure leaves the file unchanged and every lock released.
 */
export async function breakLayout(ctx: DaxContext, ino: number, first: number, last: number, reason: LayoutChange, opts: LayoutBreakOptions): Promise<() => void> {
  assert(Number.isSafeInteger(first) && first >= 0 && last >= first, `layout break range [${first}, ${last}]`);
  const as = ctx.space(ino, false);
  let unlockMmap: RwLockHold | null = await as.mmapLock.lockExclusive();
  const notices = new InvalidationNotices(reason);
  let revoked = 0;
  let waitedFromMs = 0;
  try {
    // The deadline may have passed, or the call been cancelled, while this change queued
    // on the inode or mmap lock behind another one (which may have waited for pins): its
    // caller has been told DEADLINE_EXCEEDED / CANCELLED, so nothing may change now.
    if (opts.signal?.aborted) throw abortReason(opts.signal);
    for (;;) {
      for (const e of as.entriesInRange(first, last)) revoked += ctx.ptes.revokeEntry(as, e, notices);
      notices.send();
      // A pinned PMD entry over the range is split into 4 KiB entries for its pinned pages
      // (pmd.ts): only the pins on pages of the range hold the change up, as for 4 KiB.
      for (const e of as.entriesInRange(first, last)) if (e.order !== 0 && e.pins > 0) await splitPinnedPmd(ctx, as, e.pgoff);
      await ctx.failpoints.hit('layout:after-revoke', { ino, pgoff: first });
      const busy = as.busyEntry(first, last);
      if (!busy) break;
      if (opts.policy === 'FAIL') {
        ctx.counters.layoutBreakWaits.failed++;
        ctx.observer.layoutBreakWaited(ino, reason, opts, 'failed', 0);
        throw new BusyError(`page ${busy.pgoff} of inode ${ino} is pinned for DMA (layout_break FAIL): nothing changed`);
      }
      if (opts.policy === 'RECALL') recallPinsInRange(ctx, as, first, last);
      waitedFromMs ||= performance.now();
      // Registered before the lock is released: an unpin from here on wakes us. The waiter
      // stays registered until the lock is ours again, so the address space never looks
      // idle meanwhile: were it dropped at the unpin, a new pin would land in a new address
      // space that our rescan of this one cannot see, and we would free its block.
      const waiter = waitForUnpin(as, opts.signal);
      unlockMmap();
      unlockMmap = null;
      try {
        await ctx.failpoints.hit('layout:pin-wait', { ino, pgoff: busy.pgoff });
        await waiter.unpinned;
        unlockMmap = await as.mmapLock.lockExclusive();
      } finally {
        waiter.dispose();
      }
      assert(ctx.spaces.get(ino) === as, `address space of inode ${ino} dropped while a layout change waited on it`);
    }
    if (waitedFromMs) {
      ctx.counters.layoutBreakWaits.done++;
      ctx.observer.layoutBreakWaited(ino, reason, opts, 'done', performance.now() - waitedFromMs);
    }
    const me = newOwner('layout break');
    for (const snap of as.entriesInRange(first, last)) {
      const e = await lockExistingEntry(as, snap.pgoff, me);
      if (!e) continue;
      // Writeback or S3 invalidation held it; neither installs PTEs, so none appeared.
      revoked += ctx.ptes.revokeEntry(as, e, notices);
      // S4: the scan above found no pin in the range with the mmap lock held exclusive,
      // which excludes new pins: a pinned entry here is a bug. Fail the change (INTERNAL)
      // with the entry unlocked and kept, rather than free a block under DMA.
      if (e.pins > 0) {
        unlockEntry(as, e, me);
        assert.fail(`S4: entry at pgoff ${e.pgoff} of inode ${ino} got pinned under the exclusive mmap lock`);
      }
      // The block may survive (collapse shifts it, truncate keeps the partial page):
      // its unflushed stores must still reach the medium at the next fsync (S5).
      // A PMD entry goes whole (pages outside the range re-fault): all its blocks.
      if (e.dirty && e.state === 'MAPPED') for (let i = 0; i < e.pages; i++) ctx.fs.markDirty(ino, e.pfn + i);
      removeEntry(as, e, me);
    }
    // Postcondition (S4): with the mmap lock still held exclusive, nothing in the range is
    // mapped or pinned: no fault or pin can come in before the file layer's change.
    assert(unlockMmap !== null, 'layout break returns without the mmap lock');
    as.mmapLock.assertHeldExclusive(unlockMmap);
    assert(as.entriesInRange(first, last).length === 0, `layout break of inode ${ino} left entries in [${first}, ${last}]`);
    ctx.countInvalidations(reason, revoked);
    notices.send();
  } catch (err) {
    // Only a change that waited for pins records how its wait ended: one whose deadline
    // passed (or that was cancelled) before it met a pinned page waited for nothing.
    if (waitedFromMs !== 0 && err instanceof DaxError && (err.code === 'ETIMEDOUT' || err.code === 'ECANCELED')) {
      const outcome = err.code === 'ETIMEDOUT' ? 'timedout' : 'cancelled';
      ctx.counters.layoutBreakWaits[outcome]++;
      ctx.observer.layoutBreakWaited(ino, reason, opts, outcome, performance.now() - waitedFromMs);
    }
    if (unlockMmap) unlockMmap();
    ctx.maybeDrop(as);
    throw err;
  }
  const release = unlockMmap;
  assert(release !== null);
  return () => {
    release();
    ctx.maybeDrop(as);
  };
}

/** Recalls the pins holding a reference on a page of [first, last] (page i of a pin is firstPgoff + i). */
function recallPinsInRange(ctx: DaxContext, as: AddressSpace, first: number, last: number): void {
  for (const p of ctx.pins.byId.values()) {
    if (p.as !== as || p.state !== 'active') continue;
    if (p.entries.some((e, i) => e !== null && p.firstPgoff + i >= first && p.firstPgoff + i <= last)) recallPin(ctx, ctx.pins, p, ctx.recallGraceMs);
  }
}

/**
 * `unpinned` resolves at the next unpin on this file and rejects when the signal aborts
 * (with its reason). The waiter stays in as.pinWaiters (keeping the address space busy)
 * until dispose(), which the caller runs once it holds the mmap lock again or gives up.
 */
function waitForUnpin(as: AddressSpace, signal: AbortSignal | undefined): { unpinned: Promise<void>; dispose(): void } {
  let wake!: () => void;
  let abort!: () => void;
  const unpinned = new Promise<void>((resolve, reject) => {
    wake = resolve;
    abort = () => reject(abortReason(signal));
  });
  // Observed here too: an abort during the 'layout:pin-wait' failpoint, before the caller
  // awaits, must not become an unhandled rejection.
  unpinned.catch(() => undefined);
  as.pinWaiters.add(wake);
  if (signal?.aborted) abort();
  else signal?.addEventListener('abort', abort, { once: true });
  return {
    unpinned,
    dispose: () => {
      as.pinWaiters.delete(wake);
      signal?.removeEventListener('abort', abort);
    },
  };
}

function abortReason(signal: AbortSignal | undefined): Error {
  return signal?.reason instanceof Error ? signal.reason : new CancelledError('the layout change was cancelled while waiting for pins');
}

/**
 * Invalidation: S3 (write(2) filled holes) and S4's first half (a layout change revokes
 * PTEs and deletes entries before the file layer changes the block map).
 */
import type { LayoutChange } from '../fs/types';
import type { DaxContext } from './dax-context';
import { lockExistingEntry, removeEntry, unlockEntry } from './entry-lock';
import { InvalidationNotices } from './pte';

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
  let revoked = 0;
  for (const snap of as.entriesInRange(first, last)) {
    const e = await lockExistingEntry(as, snap.pgoff);
    if (!e) continue;
    await ctx.failpoints.hit('invalidate:entry-locked', { ino, pgoff: e.pgoff });
    if ((e.state === 'ZERO' || e.state === 'EMPTY') && !e.dirty && !e.towrite && e.pins === 0) {
      revoked += ctx.ptes.revokeEntry(e, notices);
      as.stats.invalidations++;
      removeEntry(as, e);
    } else {
      unlockEntry(as, e);
    }
  }
  ctx.countInvalidations('HOLE_FILLED', revoked);
  notices.send();
  ctx.maybeDrop(as);
}

/**
 * S4, first half: inode lock held by the caller (the file layer). Takes the mmap lock
 * exclusive (no new faults or pins), revokes every shared PTE in [first, last], waits for
 * each entry's lock and deletes it (waking all its waiters). Returns the release of the
 * mmap lock, which the file layer calls after changing the block map.
 *
 * Pins (the wait-for-unpin loop) arrive with the Dma service; until then no entry is
 * pinned, and deleting a pinned entry is an assertion failure, counted.
 */
export async function breakLayout(ctx: DaxContext, ino: number, first: number, last: number, reason: LayoutChange): Promise<() => void> {
  const as = ctx.space(ino);
  const unlockMmap = await as.mmapLock.lockExclusive();
  try {
    const notices = new InvalidationNotices(reason);
    let revoked = 0;
    for (const e of as.entriesInRange(first, last)) revoked += ctx.ptes.revokeEntry(e, notices);
    await ctx.failpoints.hit('layout:after-revoke', { ino, pgoff: first });
    for (const snap of as.entriesInRange(first, last)) {
      const e = await lockExistingEntry(as, snap.pgoff);
      if (!e) continue;
      // Writeback or S3 invalidation held it; neither installs PTEs, so none appeared.
      revoked += ctx.ptes.revokeEntry(e, notices);
      if (e.pins > 0) ctx.counters.entriesDeletedWhilePinned++;
      // The block may survive (collapse shifts it, truncate keeps the partial page):
      // its unflushed stores must still reach the medium at the next fsync (S5).
      if (e.dirty && e.state === 'MAPPED') ctx.fs.markDirty(ino, e.pfn);
      removeEntry(as, e);
    }
    ctx.countInvalidations(reason, revoked);
    notices.send();
  } catch (err) {
    unlockMmap();
    ctx.maybeDrop(as);
    throw err;
  }
  return () => {
    unlockMmap();
    ctx.maybeDrop(as);
  };
}

/**
 * Writeback (S5, dax_writeback_mapping_range): snapshot the DIRTY entries as TOWRITE,
 * then for each: lock the entry, clear TOWRITE, write-protect it (writable PTEs become
 * stale: a later store needs a write fault, which waits on this entry lock and re-dirties
 * after the clean), flush the block, clear DIRTY, unlock. Never dirty data under a clean
 * entry.
 */
import assert from 'node:assert';
import { BLOCK_SIZE } from '../limits';
import type { DaxContext } from './dax-context';
import { lockExistingEntry, newOwner, unlockEntry } from './entry-lock';
import { InvalidationNotices } from './pte';
import type { MappingOwner } from './owner';

export async function writeback(ctx: DaxContext, ino: number, first: number, last: number, actor?: MappingOwner): Promise<number> {
  const as = ctx.spaces.get(ino);
  if (!as) return 0;
  const tagged = as.entriesInRange(first, last).filter((e) => e.dirty);
  for (const e of tagged) e.towrite = true;
  const notices = new InvalidationNotices('WRITEBACK');
  const me = newOwner('writeback');
  let flushed = 0;
  try {
    for (const snap of tagged) {
      const e = await lockExistingEntry(as, snap.pgoff, me);
      if (!e) continue;
      try {
        // Replaced by a new entry, or another writeback got here first: nothing to do.
        if (e !== snap || !e.towrite) continue;
        e.towrite = false;
        ctx.countInvalidations('WRITEBACK', ctx.ptes.downgradeEntry(as, e, notices));
        await ctx.failpoints.hit('writeback:after-downgrade', { ino, pgoff: e.pgoff });
        try {
          // A PMD entry's PMD_PAGES blocks are contiguous (and inside one storage chunk).
          await ctx.fs.storage.flush(e.pfn * BLOCK_SIZE, e.pages * BLOCK_SIZE);
        } catch (err) {
          // Still dirty and still to write: a concurrent writeback must not skip it.
          e.towrite = true;
          throw err;
        }
        await ctx.failpoints.hit('writeback:before-clean', { ino, pgoff: e.pgoff });
        e.dirty = false;
        flushed++;
        ctx.counters.writebackFlushes++;
      } finally {
        unlockEntry(as, e, me);
      }
    }
  } finally {
    notices.send(actor);
    ctx.maybeDrop(as);
  }
  assert(flushed <= tagged.length, `writeback flushed ${flushed} of ${tagged.length} tagged entries`);
  return flushed;
}

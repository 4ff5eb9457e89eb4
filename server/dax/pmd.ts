/**
 * PMD (2 MiB) entries: the huge fault, the huge zero page, falling back to 4 KiB pages,
 * downgrading a PMD zero entry under a 4 KiB fault, and splitting a pinned PMD entry for
 * a layout change (fs/dax.c dax_iomap_pmd_fault, grab_mapping_entry's pmd_downgrade).
 *
 * Lock order as for 4 KiB faults (entry-lock.ts): mmap lock shared -> the PMD entry's lock
 * (key: the aligned pgoff) -> allocator and journal. A PMD fault never waits on a 4 KiB
 * entry: one in the range makes it fall back at once (lockPmdEntry), and it falls back
 * only after releasing its own locks, so the 4 KiB fault that follows waits on the key
 * its holder wakes.
 *
 * PMD entry states: EMPTY (a locked placeholder while the fault decides), ZERO (the huge
 * zero page: every page of the range is a hole or unwritten), MAPPED (PMD_PAGES
 * contiguous, PMD_PAGES-aligned blocks from pfn). A 4 KiB fault inside a ZERO or EMPTY
 * PMD entry downgrades it (lockPage); inside a MAPPED one it maps the page of the PMD
 * entry, and a write dirties the whole entry, as the kernel's dirty bit on a PMD does.
 */
import assert from 'node:assert';
import { SigbusError } from '../errors';
import { BLOCK_SIZE, PMD_ORDER, PMD_PAGES } from '../limits';
import { Entry, type AddressSpace, type EntryLockOwner, type Pte, type SessionMapping } from './address-space';
import type { DaxContext } from './dax-context';
import { assertHolds, lockEntry, lockExistingEntry, lockPmdEntry, newOwner, removeEntry, unlockEntry } from './entry-lock';
import type { MappingOwner } from './owner';
import type { PmdFallbackReason } from './pmd-reasons';
import { InvalidationNotices } from './pte';

export type { PmdFallbackReason } from './pmd-reasons';

/** A PMD fault's outcome: its PTE (order 9), or why it must fall back to 4 KiB. */
export type PmdOutcome = { readonly pte: Pte } | { readonly fallback: PmdFallbackReason };

/**
 * The PMD fault proper (READ or WRITE; COW never gets here): the caller (fault.ts) runs
 * the 4 KiB fault when it answers a fallback. `mappingNow` attaches the session's mapping
 * after the last await (S7).
 */
export async function pmdFault(
  ctx: DaxContext, ino: number, pgoff: number, kind: 'READ' | 'WRITE', sync: boolean, mappingNow: (as: AddressSpace) => SessionMapping, actor: MappingOwner,
): Promise<PmdOutcome> {
  const base = pgoff - (pgoff % PMD_PAGES);
  // A PMD write fault may allocate PMD_PAGES blocks: bound the transaction first, lock-free.
  if (kind === 'WRITE') await ctx.fs.makeRoom(PMD_PAGES);
  ctx.fs.stat(ino);
  const as = ctx.space(ino);
  try {
    const unlockMmap = await as.mmapLock.lockShared();
    try {
      // Reliable under the mmap lock: only truncate shrinks the size, and it holds it exclusive.
      const sizeBytes = ctx.fs.sizeOf(ino);
      const pages = Math.ceil(sizeBytes / BLOCK_SIZE);
      if (pgoff >= pages) throw new SigbusError(ino, pgoff, sizeBytes);
      if (base + PMD_PAGES > pages) return { fallback: 'CROSSES_EOF' };
      const me = newOwner('pmd fault');
      const got = await lockPmdEntry(as, base, me);
      if (typeof got === 'string') return { fallback: got };
      const e = got;
      try {
        await ctx.failpoints.hit('pmd:after-entry-lock', { ino, pgoff: base });
        if (kind === 'READ') {
          if (e.state === 'EMPTY') {
            const extent = ctx.fs.pmdExtent(ino, base);
            if (extent.kind === 'MIXED') return { fallback: 'NOT_CONTIGUOUS' };
            await ctx.failpoints.hit('pmd:before-install', { ino, pgoff: base });
            e.state = extent.kind === 'ZERO' ? 'ZERO' : 'MAPPED';
            e.pfn = extent.kind === 'ZERO' ? 0 : extent.pfn;
          }
          ctx.counters.faults[e.state === 'ZERO' ? 'hole' : 'mapped']++;
          ctx.counters.faults.pmd++;
          assertHolds(e, me); // S1: installed under the entry lock
          return { pte: ctx.ptes.installPmd(mappingNow(as), e, false) };
        }
        if (e.state !== 'MAPPED') {
          // S2: the blocks come zeroed from the file layer; the mmap lock (shared) and the
          // PMD entry lock exclude truncate and every fault or pin on these pages.
          as.mmapLock.assertHeld(unlockMmap);
          const got2 = ctx.fs.allocateForPmdFault(ino, base);
          if (typeof got2 === 'string') return { fallback: got2 };
          ctx.counters.faults[got2.allocated ? 'allocate' : 'mapped']++;
          if (e.state === 'ZERO') {
            // S1/S3: the huge zero page's PTEs go before the entry points at blocks.
            const notices = new InvalidationNotices('HOLE_FILLED');
            ctx.countInvalidations('HOLE_FILLED', ctx.ptes.revokeEntry(as, e, notices));
            notices.send(actor);
          }
          await ctx.failpoints.hit('pmd:before-install', { ino, pgoff: base });
          e.state = 'MAPPED';
          e.pfn = got2.pfn;
        } else {
          ctx.counters.faults.mapped++;
        }
        if (sync) {
          // MAP_SYNC: the extent's metadata is durable before the PTE is handed out.
          await ctx.fs.commit();
          ctx.counters.faults.sync++;
        }
        const mapping = mappingNow(as); // may throw SESSION_EXPIRED: no PTE, entry stays clean
        assertHolds(e, me);
        ctx.counters.faults.pmd++;
        e.dirty = true;
        return { pte: ctx.ptes.installPmd(mapping, e, true) };
      } finally {
        unlockEntry(as, e, me);
      }
    } finally {
      unlockMmap();
    }
  } finally {
    ctx.maybeDrop(as);
  }
}

/** Counts and reports a fallback (metrics, debug log) before the 4 KiB fault runs. */
export function noteFallback(ctx: DaxContext, ino: number, pgoff: number, reason: PmdFallbackReason): void {
  ctx.counters.faults.pmd_fallback++;
  ctx.counters.pmdFallbacks[reason]++;
  ctx.observer.pmdFallback(ino, pgoff, reason);
}

/**
 * Locks the entry a 4 KiB request on page `pgoff` works on (faults, pins): the page's own
 * entry (a placeholder when absent), or the MAPPED PMD entry covering it. A ZERO or EMPTY
 * PMD entry over the page is downgraded first, in one synchronous step once its lock is
 * held: its PTEs revoked (HOLE_FILLED: the range is being filled at 4 KiB), the entry
 * deleted with WAKE_ALL (its waiters look again and find 4 KiB entries), and a locked
 * placeholder for the page inserted.
 */
export async function lockPage(ctx: DaxContext, as: AddressSpace, pgoff: number, me: EntryLockOwner): Promise<Entry> {
  const e = await lockEntry(as, pgoff, me);
  if (e.order === 0 || e.state === 'MAPPED') return e;
  assert(e.pins === 0 && !e.dirty, `a ${e.state} PMD entry at ${e.pgoff} is pinned or dirty`);
  const notices = new InvalidationNotices('HOLE_FILLED');
  ctx.countInvalidations('HOLE_FILLED', ctx.ptes.revokeEntry(as, e, notices));
  notices.send();
  as.stats.invalidations++;
  removeEntry(as, e, me);
  // No await since the removal: the page is free, so this inserts our placeholder at once.
  const placeholder = await lockEntry(as, pgoff, me);
  assert(placeholder.order === 0 && placeholder.pgoff === pgoff, 'downgraded PMD range refilled before its placeholder');
  return placeholder;
}

/**
 * S4 for a pinned PMD entry: a layout change over any of its pages splits it into 4 KiB
 * entries for its pinned pages, each keeping its own pins (so a pin outside the changed
 * range no longer holds the change up), and hands its dirty blocks to the file (fsync
 * flushes them, S5); the other pages get no entry and re-fault. The caller holds the mmap lock exclusive (no fault or
 * pin comes in) and has revoked the entry's PTEs; the entry lock is taken here, as
 * writeback or an S3 invalidation may hold it.
 */
export async function splitPinnedPmd(ctx: DaxContext, as: AddressSpace, base: number): Promise<void> {
  const me = newOwner('pmd split');
  const e = await lockPmdEntryForSplit(as, base, me);
  if (e === null) return;
  assert(e.state === 'MAPPED' && e.pteCount === 0, `split of a ${e.state} PMD entry with ${e.pteCount} PTEs`);
  // The pins referencing the entry, per page: each pin's entries[i] names it for page
  // firstPgoff + i. Unpinned ones whose DMA is still in flight hold references too.
  const pinsPerPage = new Map<number, number>();
  const repoint: { entries: Array<Entry | null>; i: number; pgoff: number }[] = [];
  for (const p of [...ctx.pins.byId.values(), ...ctx.pins.draining]) {
    if (p.as !== as) continue;
    p.entries.forEach((pe, i) => {
      if (pe !== e) return;
      const pg = p.firstPgoff + i;
      pinsPerPage.set(pg, (pinsPerPage.get(pg) ?? 0) + 1);
      repoint.push({ entries: p.entries, i, pgoff: pg });
    });
  }
  let counted = 0;
  for (const n of pinsPerPage.values()) counted += n;
  if (counted !== e.pins) {
    // Every reference belongs to a pin in byId or draining (pin.ts releasePin), so this
    // is defensive: a reference of unknown owner cannot be repointed, so the entry is not
    // split; the change waits for the unpin (or FAIL refuses) as for any pinned page.
    unlockEntry(as, e, me);
    return;
  }
  const dirty = e.dirty;
  as.pinned.delete(e);
  e.pins = 0;
  e.dirty = false;
  removeEntry(as, e, me); // WAKE_ALL: waiters look again and find the 4 KiB entries below
  const pages = new Map<number, Entry>();
  for (const [pg, n] of pinsPerPage) {
    const pe = new Entry(pg, 0);
    pe.state = 'MAPPED';
    pe.pfn = e.pfn + (pg - base);
    pe.dirty = dirty;
    pe.pins = n;
    as.insert(pe);
    as.pinned.add(pe);
    pages.set(pg, pe);
  }
  for (const r of repoint) r.entries[r.i] = pages.get(r.pgoff) ?? null;
  // Every block, pinned pages' too: an msync whose writeback snapshot named the PMD entry
  // skips the new entries, and its flush of the file's dirty blocks must still cover them.
  if (dirty) for (let i = 0; i < PMD_PAGES; i++) ctx.fs.markDirty(as.ino, e.pfn + i);
}

async function lockPmdEntryForSplit(as: AddressSpace, base: number, me: EntryLockOwner): Promise<Entry | null> {
  const e = await lockExistingEntry(as, base, me);
  if (e === null) return null;
  if (e.order !== PMD_ORDER || e.pins === 0) {
    unlockEntry(as, e, me);
    return null;
  }
  return e;
}

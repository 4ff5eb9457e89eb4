/**
 * The file layer's side of 2 MiB (PMD) faults: what the block map holds for one
 * 2 MiB-aligned range of pages, and the write fault's allocation of a whole aligned
 * extent. A PMD entry maps PMD_PAGES pages onto PMD_PAGES physically contiguous blocks
 * whose first pfn is a multiple of PMD_PAGES (the data zone starts 512-aligned), so both
 * functions answer "one such extent" or say why not; the dax layer then falls back to
 * 4 KiB pages.
 *
 * Callers (server/dax/pmd.ts) hold the mmap lock shared and the PMD entry's lock, which
 * exclude truncate, layout changes and every fault or pin on these pages; write(2) may
 * allocate in the range concurrently, so both functions are synchronous (atomic with
 * respect to it), as FileSystem.allocateForFault is.
 */
import assert from 'node:assert';
import { PMD_PAGES } from '../limits';
import { entryPfn, entryState, makeEntry, STATE_UNWRITTEN, STATE_WRITTEN } from './block-map';
import { blockView, mapBlocksBound, type DataContext } from './file-data';
import type { Inode } from './inode';

/** What a 2 MiB range of a file reads as, for a READ PMD fault. */
export type PmdExtent =
  /** Every page a hole or unwritten: reads as zeros (the huge zero page). */
  | { readonly kind: 'ZERO' }
  /** Every page WRITTEN at pfn + i, pfn aligned: a real PMD. */
  | { readonly kind: 'WRITTEN'; readonly pfn: number }
  /** Anything else (mixed, scattered, unaligned): 4 KiB pages only. */
  | { readonly kind: 'MIXED' };

const ZERO: PmdExtent = { kind: 'ZERO' };
const MIXED: PmdExtent = { kind: 'MIXED' };

/** The extent of pages [base, base + PMD_PAGES) (base aligned). */
export function pmdExtent(ctx: DataContext, inode: Inode, base: number): PmdExtent {
  assert(base % PMD_PAGES === 0, `PMD extent at unaligned pgoff ${base}`);
  const entries = ctx.map.getRange(inode, base, PMD_PAGES);
  if (entries.every((e) => entryState(e) !== STATE_WRITTEN)) return ZERO;
  const pfn = alignedRun(entries);
  return pfn !== 0 && entries.every((e) => entryState(e) === STATE_WRITTEN) ? { kind: 'WRITTEN', pfn } : MIXED;
}

/** The aligned first pfn when every page has a block at pfn + i (any state); else 0. */
function alignedRun(entries: Uint32Array): number {
  if (entries[0] === 0) return 0;
  const pfn = entryPfn(entries[0]);
  if (pfn % PMD_PAGES !== 0) return 0;
  for (let i = 1; i < entries.length; i++) if (entries[i] === 0 || entryPfn(entries[i]) !== pfn + i) return 0;
  return pfn;
}

export type PmdAllocation =
  | { readonly pfn: number; readonly allocated: boolean }
  /** The range is neither all holes nor one aligned extent. */
  | 'NOT_CONTIGUOUS'
  /** All holes, but no free aligned 2 MiB run: 4 KiB blocks may still fit. */
  | 'NO_ALIGNED_SPACE';

/**
 * A PMD write fault's blocks (S2): an all-hole range gets a fresh aligned extent of zeroed
 * blocks; an aligned extent with unwritten pages has those zeroed and converted; a
 * WRITTEN extent is returned as is. Every new or converted block joins the running
 * transaction's ordered data, so the zeroes are durable before the mapping commits.
 * `persist` writes the inode back (blocks count, mtime).
 */
export function allocatePmd(ctx: DataContext, inode: Inode, base: number, persist: () => void): PmdAllocation {
  assert(base % PMD_PAGES === 0, `PMD allocation at unaligned pgoff ${base}`);
  const entries = ctx.map.getRange(inode, base, PMD_PAGES);
  let pfn = alignedRun(entries);
  let changed = false;
  if (pfn !== 0) {
    for (let i = 0; i < PMD_PAGES; i++) {
      if (entryState(entries[i]) !== STATE_UNWRITTEN) continue;
      blockView(ctx.storage, pfn + i).fill(0);
      ctx.journal.addOrdered(pfn + i, 1);
      ctx.map.set(inode, base + i, makeEntry(STATE_WRITTEN, pfn + i));
      changed = true;
    }
  } else {
    if (!entries.every((e) => e === 0)) return 'NOT_CONTIGUOUS';
    // Short of space for the extent and its map blocks: 4 KiB faults may still fit.
    if (ctx.alloc.freeBlocks < PMD_PAGES + mapBlocksBound(PMD_PAGES)) return 'NO_ALIGNED_SPACE';
    const run = ctx.alloc.allocateAligned(PMD_PAGES, { kind: 'zero' });
    if (run === null) return 'NO_ALIGNED_SPACE';
    pfn = run.pfn;
    for (let i = 0; i < PMD_PAGES; i++) ctx.map.set(inode, base + i, makeEntry(STATE_WRITTEN, pfn + i));
    inode.blocks += PMD_PAGES;
    changed = true;
  }
  if (changed) {
    inode.mtimeMs = Date.now();
    persist();
  }
  // Postcondition (S2): every page WRITTEN at its block of the aligned extent.
  assert(pfn % PMD_PAGES === 0 && ctx.map.getRange(inode, base, PMD_PAGES).every((e, i) => e === makeEntry(STATE_WRITTEN, pfn + i)),
    `PMD write fault of pgoff ${base} left the extent incomplete`);
  return { pfn, allocated: changed };
}

/**
 * Layout changes on the block map: removing blocks (truncate, punch, collapse, unlink),
 * preallocating unwritten blocks (fallocate), zero range, shifting (collapse).
 * Callers hold the inode lock exclusively and have already broken the layout (S4) for
 * every page these functions free or convert. Each step ends with `persist()`, which
 * the caller builds to assert its lock token first (FileSystem.withLayoutLock, destroy):
 * a step that runs after its caller lost the lock fails an assertion before writing.
 *
 * Long changes run in steps of LAYOUT_STEP_PAGES; between steps the running transaction
 * may commit (journal.makeRoom), and every step leaves the metadata consistent (blocks
 * past EOF are a legal state: preallocation). A change whose layoutImagesBound fits one
 * transaction runs inside a journal atomic section (filesystem.ts withinOneTransaction):
 * there makeRoom never commits, so the change is whole or absent across a crash (S6).
 */
import { BLOCK_SIZE, LAYOUT_STEP_PAGES, PMD_PAGES } from '../limits';
import { NoSpaceError } from '../errors';
import { coalesceRuns, type BlockRun } from '../journal/transaction';
import { entryPfn, entryState, FANOUT, makeEntry, STATE_UNWRITTEN, STATE_WRITTEN } from './block-map';
import { blockView, DataContext, mapBlocksBound, reserve } from './file-data';
import type { Inode } from './inode';

/** Last pgoff the file's map can hold now (removal need not look further). */
function mapEnd(inode: Inode): number {
  return inode.mapRoot === 0 ? -1 : FANOUT ** inode.mapDepth - 1;
}

/**
 * Upper bound of the journal images a change over pages [first, last] writes: the map
 * blocks it touches there (leaves and their parents), the map blocks it may add for
 * `newPages` pages (mapBlocksBound), the block bitmap blocks of the blocks it frees or
 * allocates (`newDataBlocks` new data blocks), and the inode block. O(entries in range).
 */
export function layoutImagesBound(ctx: DataContext, inode: Inode, first: number, last: number, newPages: number, newDataBlocks: number): number {
  let leaves = 0;
  const groups = new Set<number>();
  ctx.map.visit(inode, first, Math.min(last, mapEnd(inode)), (_pg, leaf, idx, n) => {
    leaves++;
    for (let i = 0; i < n; i++) if (leaf[idx + i] !== 0) groups.add(ctx.alloc.groupOf(entryPfn(leaf[idx + i])));
  });
  // Parents of the touched leaves, per level above them (the map is at most 3 levels deep
  // below the root: mapBlocksBound's MAP_SPAN_MAX).
  const parents = inode.mapDepth * (Math.ceil(leaves / FANOUT) + 1);
  const newMap = newPages > 0 ? mapBlocksBound(newPages) : 0;
  // Freed map blocks (leaves, parents) and new blocks flip bits in groups we cannot name
  // before allocating: count each as its own group, capped by the bitmap's size.
  const bitmap = Math.min(ctx.alloc.groupCount, groups.size + leaves + parents + newMap + newDataBlocks);
  return 1 + leaves + parents + newMap + bitmap;
}

/** Frees every block of [first, last] (clamped to the map), in bounded steps. */
export async function removeBlocks(ctx: DataContext, inode: Inode, first: number, last: number, persist: () => void): Promise<void> {
  const end = Math.min(last, mapEnd(inode));
  for (let lo = first; lo <= end; lo += LAYOUT_STEP_PAGES) {
    const hi = Math.min(end, lo + LAYOUT_STEP_PAGES - 1);
    const freed: BlockRun[] = [];
    ctx.map.clearRange(inode, lo, hi, (_pg, e) => {
      freed.push({ pfn: entryPfn(e), count: 1 });
      inode.dirtyPfns.delete(entryPfn(e));
      return true;
    });
    for (const run of coalesceRuns(freed)) ctx.alloc.free(run.pfn, run.count);
    inode.blocks -= freed.length;
    persist();
    await ctx.journal.makeRoom();
  }
}

/** Allocates UNWRITTEN blocks for the holes of [first, last]. Returns blocks added. */
export async function allocateUnwritten(ctx: DataContext, inode: Inode, first: number, last: number, persist: () => void): Promise<number> {
  let added = 0;
  for (let lo = first; lo <= last; lo += LAYOUT_STEP_PAGES) {
    const hi = Math.min(last, lo + LAYOUT_STEP_PAGES - 1);
    const entries = ctx.map.getRange(inode, lo, hi - lo + 1);
    const holeCount = entries.reduce((n, e) => n + (e === 0 ? 1 : 0), 0);
    if (holeCount === 0) continue;
    reserve(ctx, holeCount, hi - lo + 1);
    // Whole 2 MiB-aligned ranges of holes get aligned extents when free ones exist, so a
    // later PMD fault there maps one PMD entry instead of falling back (NOT_CONTIGUOUS).
    const aligned = allocateAlignedExtents(ctx, inode, lo, entries);
    added += aligned;
    const holes: number[] = [];
    entries.forEach((e, i) => { if (e === 0) holes.push(lo + i); });
    if (holes.length === 0) {
      // Every hole got an aligned extent: commit between steps all the same (a step's
      // images must fit the journal).
      persist();
      await ctx.journal.makeRoom();
      continue;
    }
    const prev = lo > 0 ? ctx.map.get(inode, lo - 1) : 0;
    const runs = ctx.alloc.allocate(holes.length, prev !== 0 ? entryPfn(prev) + 1 : 0, { kind: 'unwritten' });
    let k = 0;
    for (const run of runs) {
      for (let i = 0; i < run.count; i++) ctx.map.set(inode, holes[k++], makeEntry(STATE_UNWRITTEN, run.pfn + i));
    }
    inode.blocks += holes.length;
    added += holes.length;
    persist();
    await ctx.journal.makeRoom();
  }
  return added;
}

/**
 * Unwritten aligned extents for the whole PMD_PAGES-aligned ranges of holes in
 * `entries` (the map of pages lo..): each range gets one run at a PMD_PAGES-aligned pfn,
 * its entries in `entries` are set too (so the caller's hole scan skips them). Stops at
 * the first range the allocator has no aligned run for. Space was reserved by the caller.
 */
function allocateAlignedExtents(ctx: DataContext, inode: Inode, lo: number, entries: Uint32Array): number {
  let added = 0;
  for (let base = Math.ceil(lo / PMD_PAGES) * PMD_PAGES; base + PMD_PAGES <= lo + entries.length; base += PMD_PAGES) {
    const at = base - lo;
    if (!entries.subarray(at, at + PMD_PAGES).every((e) => e === 0)) continue;
    const run = ctx.alloc.allocateAligned(PMD_PAGES, { kind: 'unwritten' });
    if (run === null) break;
    for (let i = 0; i < PMD_PAGES; i++) {
      entries[at + i] = makeEntry(STATE_UNWRITTEN, run.pfn + i);
      ctx.map.set(inode, base + i, entries[at + i]);
    }
    inode.blocks += PMD_PAGES;
    added += PMD_PAGES;
  }
  return added;
}

/**
 * Zeroes bytes [fromBytes, toBytes) inside one page if it is WRITTEN (holes and unwritten
 * read as zeros already), in place. Only for bytes no reader may see until this returns
 * and whose loss in a crash is harmless: past EOF (zeroPastEof, the tail of a truncate
 * whose size change has committed). Never for bytes inside the file (S6).
 */
export function zeroInPage(ctx: DataContext, inode: Inode, pg: number, fromBytes: number, toBytes: number): void {
  if (fromBytes >= toBytes) return;
  const e = ctx.map.get(inode, pg);
  if (entryState(e) !== STATE_WRITTEN) return;
  blockView(ctx.storage, entryPfn(e)).fill(0, fromBytes - pg * BLOCK_SIZE, toBytes - pg * BLOCK_SIZE);
  inode.dirtyPfns.add(entryPfn(e));
}

/**
 * Called before the size grows from inode.sizeBytes to newSizeBytes: zeroes the old EOF
 * page past the old EOF. Bytes past EOF on the medium may be stale after a crash (a
 * truncated tail whose zeroing never reached the medium, or an extending write whose data
 * did while its size change did not commit); growing the file must not expose them.
 * Ordered data: the zeroes are durable before the transaction that grows the size.
 */
export function zeroPastEof(ctx: DataContext, inode: Inode, newSizeBytes: number): void {
  const old = inode.sizeBytes;
  if (newSizeBytes <= old || old % BLOCK_SIZE === 0) return;
  const pg = Math.floor(old / BLOCK_SIZE);
  const e = ctx.map.get(inode, pg);
  if (entryState(e) !== STATE_WRITTEN) return;
  zeroInPage(ctx, inode, pg, old, Math.min(newSizeBytes, (pg + 1) * BLOCK_SIZE));
  ctx.journal.addOrdered(entryPfn(e), 1);
}

/**
 * Zeroes bytes [fromBytes, toBytes) of one partial page of PUNCH_HOLE or ZERO_RANGE without
 * writing its block in place. S6: the change is whole or absent across a crash, and the
 * page holds acknowledged bytes inside the file, so zeroing them before the transaction
 * commits would show a half-done change under the old map. If the page is WRITTEN, a new
 * block gets its content with the range zeroed (ordered data: durable before the commit)
 * and replaces the old block in the running transaction, which frees the old one (reusable
 * after the commit). The caller broke the layout of the page: no PTE or pin refers to the
 * old block, and its unflushed stores are in inode.dirtyPfns (copied along here).
 */
function replaceZeroedInPage(ctx: DataContext, inode: Inode, pg: number, fromBytes: number, toBytes: number): void {
  if (fromBytes >= toBytes) return;
  const e = ctx.map.get(inode, pg);
  if (entryState(e) !== STATE_WRITTEN) return;
  const oldPfn = entryPfn(e);
  const [run] = ctx.alloc.allocate(1, oldPfn + 1, {
    kind: 'fill',
    fill: (r) => {
      const to = blockView(ctx.storage, r.pfn);
      to.set(blockView(ctx.storage, oldPfn));
      to.fill(0, fromBytes - pg * BLOCK_SIZE, toBytes - pg * BLOCK_SIZE);
    },
  });
  ctx.map.set(inode, pg, makeEntry(STATE_WRITTEN, run.pfn));
  inode.dirtyPfns.delete(oldPfn);
  ctx.alloc.free(oldPfn, 1);
}

/**
 * Zeroes the partial pages at both ends of [offsetBytes, endBytes) by replacing their
 * blocks in the running transaction (replaceZeroedInPage), and returns the whole pages
 * inside it (first > last when there are none). All or nothing: ENOSPC before any change
 * when the replacement blocks are not free.
 */
export function zeroPartialPages(ctx: DataContext, inode: Inode, offsetBytes: number, endBytes: number): { first: number; last: number } {
  const headPg = Math.floor(offsetBytes / BLOCK_SIZE);
  const tailPg = Math.floor((endBytes - 1) / BLOCK_SIZE);
  const headPartial = offsetBytes % BLOCK_SIZE !== 0;
  const tailPartial = endBytes % BLOCK_SIZE !== 0;
  const partial = headPg === tailPg ? (headPartial || tailPartial ? [headPg] : []) : [...(headPartial ? [headPg] : []), ...(tailPartial ? [tailPg] : [])];
  const written = partial.filter((pg) => entryState(ctx.map.get(inode, pg)) === STATE_WRITTEN).length;
  // Replacing a leaf entry needs no map block: only the new data blocks.
  if (written > ctx.alloc.freeBlocks) throw new NoSpaceError(written, ctx.alloc.freeBlocks);
  if (headPg === tailPg && (headPartial || tailPartial)) {
    replaceZeroedInPage(ctx, inode, headPg, offsetBytes, endBytes);
    return { first: 1, last: 0 };
  }
  if (headPartial) replaceZeroedInPage(ctx, inode, headPg, offsetBytes, (headPg + 1) * BLOCK_SIZE);
  if (tailPartial) replaceZeroedInPage(ctx, inode, tailPg, tailPg * BLOCK_SIZE, endBytes);
  return { first: headPartial ? headPg + 1 : headPg, last: tailPartial ? tailPg - 1 : tailPg };
}

/**
 * ZERO_RANGE is all or nothing: before any change, ENOSPC unless the free blocks cover all
 * it may allocate: a replacement block per WRITTEN partial page (zeroPartialPages), an
 * unwritten block per hole among the whole pages (allocateUnwritten) and the map blocks
 * those may need (mapBlocksBound over the whole pages).
 */
export function reserveZeroRange(ctx: DataContext, inode: Inode, offsetBytes: number, endBytes: number): void {
  const headPg = Math.floor(offsetBytes / BLOCK_SIZE);
  const tailPg = Math.floor((endBytes - 1) / BLOCK_SIZE);
  const headPartial = offsetBytes % BLOCK_SIZE !== 0;
  const tailPartial = endBytes % BLOCK_SIZE !== 0;
  const partial = headPg === tailPg ? (headPartial || tailPartial ? [headPg] : []) : [...(headPartial ? [headPg] : []), ...(tailPartial ? [tailPg] : [])];
  const replacements = partial.filter((pg) => entryState(ctx.map.get(inode, pg)) === STATE_WRITTEN).length;
  const first = headPartial ? headPg + 1 : headPg;
  const last = headPg === tailPg && partial.length > 0 ? headPg - 1 : tailPartial ? tailPg - 1 : tailPg;
  let mapped = 0;
  if (first <= last) {
    ctx.map.visit(inode, first, last, (_pg, leaf, idx, n) => {
      for (let i = 0; i < n; i++) if (leaf[idx + i] !== 0) mapped++;
    });
  }
  const holes = Math.max(0, last - first + 1 - mapped);
  // Replacing a leaf entry needs no map block; only new entries for holes may.
  if (holes > 0) reserve(ctx, replacements + holes, last - first + 1);
  else if (replacements > ctx.alloc.freeBlocks) throw new NoSpaceError(replacements, ctx.alloc.freeBlocks);
}

/** ZERO_RANGE on whole pages: WRITTEN -> UNWRITTEN in place (the block stays the file's). */
export async function convertToUnwritten(ctx: DataContext, inode: Inode, first: number, last: number, persist: () => void): Promise<void> {
  const end = Math.min(last, mapEnd(inode));
  for (let lo = first; lo <= end; lo += LAYOUT_STEP_PAGES) {
    const hi = Math.min(end, lo + LAYOUT_STEP_PAGES - 1);
    const written: Array<[number, number]> = [];
    ctx.map.visit(inode, lo, hi, (pg, leaf, idx, n) => {
      for (let i = 0; i < n; i++) if (entryState(leaf[idx + i]) === STATE_WRITTEN) written.push([pg + i, entryPfn(leaf[idx + i])]);
    });
    for (const [pg, pfn] of written) {
      ctx.map.set(inode, pg, makeEntry(STATE_UNWRITTEN, pfn));
      inode.dirtyPfns.delete(pfn);
    }
    persist();
    await ctx.journal.makeRoom();
  }
}

/**
 * COLLAPSE_RANGE is all or nothing: before anything is removed, ENOSPC if the shift of the
 * entries at pgoff >= from might not find the map blocks it needs. (A bound, like
 * reserve(); shiftDown checks again per step.)
 */
export function reserveShift(ctx: DataContext, inode: Inode, from: number): void {
  const pages = occupiedSpan(ctx, inode, from);
  if (pages > 0) reserve(ctx, 0, pages);
}

/** Pages from the first to the last mapped entry at pgoff >= from (0 if none): what a shift moves. */
export function occupiedSpan(ctx: DataContext, inode: Inode, from: number): number {
  let first = -1;
  let last = -1;
  ctx.map.visit(inode, from, mapEnd(inode), (pg, leaf, idx, n) => {
    for (let i = 0; i < n; i++) {
      if (leaf[idx + i] === 0) continue;
      if (first < 0) first = pg + i;
      last = pg + i;
    }
  });
  return first < 0 ? 0 : last - first + 1;
}

/** COLLAPSE_RANGE's shift: every entry at pgoff >= from moves down by `shift` pages. */
export async function shiftDown(ctx: DataContext, inode: Inode, from: number, shift: number, persist: () => void): Promise<void> {
  const end = mapEnd(inode);
  for (let lo = from; lo <= end; lo += LAYOUT_STEP_PAGES) {
    const hi = Math.min(end, lo + LAYOUT_STEP_PAGES - 1);
    const moves: Array<[number, number]> = [];
    ctx.map.visit(inode, lo, hi, (pg, leaf, idx, n) => {
      for (let i = 0; i < n; i++) if (leaf[idx + i] !== 0) moves.push([pg + i, leaf[idx + i]]);
    });
    // Destinations may need map blocks that removeBlocks pruned: check space before moving,
    // bounded by the pages actually moved (not the step's span, which at map depth 2 asks
    // for 265 blocks even to shift one page).
    if (moves.length > 0) reserve(ctx, 0, moves[moves.length - 1][0] - moves[0][0] + 1);
    for (const [pg, e] of moves) {
      ctx.map.set(inode, pg - shift, e);
      ctx.map.set(inode, pg, 0);
    }
    persist();
    await ctx.journal.makeRoom();
  }
  // Prune map blocks the shift emptied (no entry is dropped: all are zero up there).
  ctx.map.clearRange(inode, Math.max(0, from - shift), mapEnd(inode), () => false);
  persist();
}

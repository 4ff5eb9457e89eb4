/**
 * read(2) and write(2) on the block map. Callers hold the inode lock (write: exclusive).
 * Both are synchronous: no other request runs in the middle of one.
 */
import assert from 'node:assert';
import { BLOCK_SIZE } from '../limits';
import { NoSpaceError } from '../errors';
import type { BlockStorage } from '../media/storage';
import type { Allocator } from '../alloc/allocator';
import type { Journal } from '../journal/journal';
import { BlockMap, entryPfn, entryState, FANOUT, makeEntry, STATE_UNWRITTEN, STATE_WRITTEN } from './block-map';
import type { Inode } from './inode';

export interface DataContext {
  storage: BlockStorage;
  journal: Journal;
  alloc: Allocator;
  map: BlockMap;
}

/** Upper bound of map blocks a change over `pages` pages may allocate (tree growth included). */
export function mapBlocksBound(pages: number): number {
  let bound = 3;
  for (let span = FANOUT; span <= FANOUT ** 3; span *= FANOUT) bound += Math.floor(pages / span) + 2;
  return bound;
}

/** All-or-nothing space check before a change starts mutating (ENOSPC changes nothing). */
export function reserve(ctx: DataContext, dataBlocks: number, pages: number): void {
  const need = dataBlocks + mapBlocksBound(pages);
  if (need > ctx.alloc.freeBlocks) throw new NoSpaceError(need, ctx.alloc.freeBlocks);
}

export function blockView(storage: BlockStorage, pfn: number): Uint8Array {
  return storage.view(pfn * BLOCK_SIZE, BLOCK_SIZE);
}

/** Copies [offset, offset + length) of the file (already clamped to EOF) into a Buffer. */
export function readData(ctx: DataContext, inode: Inode, offsetBytes: number, lengthBytes: number): Buffer {
  const out = Buffer.allocUnsafe(lengthBytes);
  if (lengthBytes === 0) return out;
  const first = Math.floor(offsetBytes / BLOCK_SIZE);
  const last = Math.floor((offsetBytes + lengthBytes - 1) / BLOCK_SIZE);
  const entries = ctx.map.getRange(inode, first, last - first + 1);
  for (let pg = first; pg <= last; pg++) {
    const from = Math.max(offsetBytes, pg * BLOCK_SIZE);
    const to = Math.min(offsetBytes + lengthBytes, (pg + 1) * BLOCK_SIZE);
    const dst = from - offsetBytes;
    const e = entries[pg - first];
    if (entryState(e) === STATE_WRITTEN) {
      const block = blockView(ctx.storage, entryPfn(e));
      out.set(block.subarray(from - pg * BLOCK_SIZE, to - pg * BLOCK_SIZE), dst);
    } else {
      // S2: holes and unwritten blocks read as zeros; their media is never exposed.
      out.fill(0, dst, dst + (to - from));
    }
  }
  return out;
}

export interface WriteOutcome {
  /** Page ranges that were HOLE or UNWRITTEN and are now WRITTEN (IOMAP_F_NEW): S3 invalidates these. */
  newRanges: Array<[number, number]>;
  /** WRITTEN blocks overwritten in place (flushed by fsync / sync writes). */
  overwritten: number[];
}

/**
 * Copies `data` to [offsetBytes, ...) allocating holes. New and unwritten blocks get the
 * data and zeroes everywhere else in the block, and join the transaction's ordered data
 * (S2). Does not touch size/mtime (the caller does).
 */
export function writeData(ctx: DataContext, inode: Inode, offsetBytes: number, data: Uint8Array): WriteOutcome {
  const end = offsetBytes + data.length;
  const first = Math.floor(offsetBytes / BLOCK_SIZE);
  const last = Math.floor((end - 1) / BLOCK_SIZE);
  const entries = ctx.map.getRange(inode, first, last - first + 1);
  const holePages: number[] = [];
  entries.forEach((e, i) => { if (e === 0) holePages.push(first + i); });
  reserve(ctx, holePages.length, last - first + 1);

  const fillPage = (block: Uint8Array, pg: number, zeroRest: boolean): void => {
    const from = Math.max(offsetBytes, pg * BLOCK_SIZE) - pg * BLOCK_SIZE;
    const to = Math.min(end, (pg + 1) * BLOCK_SIZE) - pg * BLOCK_SIZE;
    if (zeroRest) {
      block.fill(0, 0, from);
      block.fill(0, to, BLOCK_SIZE);
    }
    block.set(data.subarray(pg * BLOCK_SIZE + from - offsetBytes, pg * BLOCK_SIZE + to - offsetBytes), from);
  };

  if (holePages.length > 0) {
    const prev = first > 0 ? ctx.map.get(inode, first - 1) : 0;
    const goal = prev !== 0 ? entryPfn(prev) + 1 : 0;
    ctx.alloc.allocate(holePages.length, goal, {
      kind: 'fill',
      fill: (run, before) => {
        for (let k = 0; k < run.count; k++) {
          const pg = holePages[before + k];
          fillPage(blockView(ctx.storage, run.pfn + k), pg, true);
          entries[pg - first] = makeEntry(STATE_WRITTEN, run.pfn + k);
        }
      },
    });
  }
  const outcome: WriteOutcome = { newRanges: [], overwritten: [] };
  const holeSet = new Set(holePages);
  for (let pg = first; pg <= last; pg++) {
    const e = entries[pg - first];
    let isNew = holeSet.has(pg);
    if (!isNew && entryState(e) === STATE_UNWRITTEN) {
      // S2: converting an unwritten block zeroes all of it that the write does not cover,
      // and the zeroes are durable before the conversion commits.
      fillPage(blockView(ctx.storage, entryPfn(e)), pg, true);
      ctx.journal.addOrdered(entryPfn(e), 1);
      entries[pg - first] = makeEntry(STATE_WRITTEN, entryPfn(e));
      isNew = true;
    } else if (!isNew) {
      assert(entryState(e) === STATE_WRITTEN);
      fillPage(blockView(ctx.storage, entryPfn(e)), pg, false);
      outcome.overwritten.push(entryPfn(e));
    }
    if (isNew) {
      ctx.map.set(inode, pg, entries[pg - first]);
      const lastRange = outcome.newRanges[outcome.newRanges.length - 1];
      if (lastRange && lastRange[1] === pg - 1) lastRange[1] = pg;
      else outcome.newRanges.push([pg, pg]);
    }
  }
  inode.blocks += holePages.length;
  return outcome;
}

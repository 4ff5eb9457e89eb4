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
  for (let span = FANOUT; span <= MAP_SPAN_MAX; span *= FANOUT) bound += Math.floor(pages / span) + 2;
  return bound;
}

/** Pages a depth-3 map reaches; a constant so reserve() (every write) does not recompute it. */
const MAP_SPAN_MAX = FANOUT ** 3;

/** All-or-nothing space check before a change starts mutating (ENOSPC changes nothing). */
export function reserve(ctx: DataContext, dataBlocks: number, pages: number): void {
  const need = dataBlocks + mapBlocksBound(pages);
  if (need > ctx.alloc.freeBlocks) throw new NoSpaceError(need, ctx.alloc.freeBlocks);
}

export function blockView(storage: BlockStorage, pfn: number): Uint8Array {
  return storage.view(pfn * BLOCK_SIZE, BLOCK_SIZE);
}

/**
 * Pages of `entries` that one copy can serve, as runs [index, index + count): WRITTEN pages
 * whose blocks are consecutive and inside one storage chunk (so one view covers them), or
 * pages that read as zeros (HOLE, UNWRITTEN). pfn is the run's first block, 0 for zeros.
 */
function forEachReadRun(chunkBlocks: number, entries: Uint32Array, fn: (index: number, count: number, pfn: number) => void): void {
  for (let i = 0; i < entries.length;) {
    const written = entryState(entries[i]) === STATE_WRITTEN;
    const pfn = written ? entryPfn(entries[i]) : 0;
    let n = 1;
    if (written) {
      while (i + n < entries.length && entries[i + n] === entries[i] + n && (pfn + n) % chunkBlocks !== 0) n++;
    } else {
      while (i + n < entries.length && entryState(entries[i + n]) !== STATE_WRITTEN) n++;
    }
    fn(i, n, pfn);
    i += n;
  }
}

/**
 * Copies [offset, offset + length) of the file (already clamped to EOF) into a Buffer, one
 * copy per run of consecutive blocks (a 1 MiB read of a contiguous file is one memcpy).
 */
export function readData(ctx: DataContext, inode: Inode, offsetBytes: number, lengthBytes: number): Buffer {
  const out = Buffer.allocUnsafe(lengthBytes);
  readDataInto(ctx, inode, offsetBytes, lengthBytes, out, 0);
  return out;
}

/** readData into out[outOffset, outOffset + length) (the caller's buffer: no allocation). */
export function readDataInto(ctx: DataContext, inode: Inode, offsetBytes: number, lengthBytes: number, out: Uint8Array, outOffset: number): void {
  if (lengthBytes === 0) return;
  const end = offsetBytes + lengthBytes;
  const first = Math.floor(offsetBytes / BLOCK_SIZE);
  const last = Math.floor((end - 1) / BLOCK_SIZE);
  const entries = ctx.map.getRange(inode, first, last - first + 1);
  const base = outOffset - offsetBytes;
  forEachReadRun(ctx.storage.chunkBytes / BLOCK_SIZE, entries, (index, count, pfn) => {
    const runStart = (first + index) * BLOCK_SIZE;
    const from = Math.max(offsetBytes, runStart);
    const to = Math.min(end, runStart + count * BLOCK_SIZE);
    if (pfn !== 0) {
      out.set(ctx.storage.view(pfn * BLOCK_SIZE + (from - runStart), to - from), base + from);
    } else {
      // S2: holes and unwritten blocks read as zeros; their media is never exposed.
      out.fill(0, base + from, base + to);
    }
  });
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
 * (S2). Does not touch size/mtime (the caller does). Pages whose blocks are consecutive
 * (inside one storage chunk) are copied with one view and one memcpy.
 */
export function writeData(ctx: DataContext, inode: Inode, offsetBytes: number, data: Uint8Array): WriteOutcome {
  const end = offsetBytes + data.length;
  const first = Math.floor(offsetBytes / BLOCK_SIZE);
  const last = Math.floor((end - 1) / BLOCK_SIZE);
  const entries = ctx.map.getRange(inode, first, last - first + 1);
  const holePages: number[] = [];
  for (let i = 0; i < entries.length; i++) if (entries[i] === 0) holePages.push(first + i);
  // An overwrite (no hole) allocates nothing, not even a map block: it never fails ENOSPC.
  if (holePages.length > 0) reserve(ctx, holePages.length, last - first + 1);
  const chunkBlocks = ctx.storage.chunkBytes / BLOCK_SIZE;

  /**
   * Pages pg0 .. pg0+count-1 go to blocks pfn0 .. pfn0+count-1 (consecutive, one chunk).
   * Only the write's first and last page can be partial, so zeroRest zeroes at most the
   * head of the run's first block and the tail of its last one, as page by page would.
   */
  const copyRun = (pg0: number, pfn0: number, count: number, zeroRest: boolean): void => {
    const blocks = ctx.storage.view(pfn0 * BLOCK_SIZE, count * BLOCK_SIZE);
    const from = Math.max(offsetBytes, pg0 * BLOCK_SIZE) - pg0 * BLOCK_SIZE;
    const to = Math.min(end, (pg0 + count) * BLOCK_SIZE) - pg0 * BLOCK_SIZE;
    if (zeroRest) {
      blocks.fill(0, 0, from);
      blocks.fill(0, to, count * BLOCK_SIZE);
    }
    blocks.set(new Uint8Array(data.buffer, data.byteOffset + pg0 * BLOCK_SIZE + from - offsetBytes, to - from), from);
  };

  const wasHole = new Uint8Array(entries.length);
  if (holePages.length > 0) {
    const prev = first > 0 ? ctx.map.get(inode, first - 1) : 0;
    const goal = prev !== 0 ? entryPfn(prev) + 1 : 0;
    ctx.alloc.allocate(holePages.length, goal, {
      kind: 'fill',
      fill: (run, before) => {
        // A run never crosses a chunk; split it where its pages stop being consecutive.
        for (let k = 0; k < run.count;) {
          const pg0 = holePages[before + k];
          let n = 1;
          while (k + n < run.count && holePages[before + k + n] === pg0 + n) n++;
          copyRun(pg0, run.pfn + k, n, true);
          for (let j = 0; j < n; j++) {
            entries[pg0 + j - first] = makeEntry(STATE_WRITTEN, run.pfn + k + j);
            wasHole[pg0 + j - first] = 1;
          }
          k += n;
        }
      },
    });
  }
  const outcome: WriteOutcome = { newRanges: [], overwritten: [] };
  const markNew = (pg: number): void => {
    ctx.map.set(inode, pg, entries[pg - first]);
    const lastRange = outcome.newRanges[outcome.newRanges.length - 1];
    if (lastRange && lastRange[1] === pg - 1) lastRange[1] = pg;
    else outcome.newRanges.push([pg, pg]);
  };
  for (let i = 0; i < entries.length;) {
    if (wasHole[i] === 1) {
      markNew(first + i);
      i++;
      continue;
    }
    const e = entries[i];
    const pfn = entryPfn(e);
    let n = 1;
    while (i + n < entries.length && wasHole[i + n] === 0 && entries[i + n] === e + n && (pfn + n) % chunkBlocks !== 0) n++;
    if (entryState(e) === STATE_UNWRITTEN) {
      // S2: converting an unwritten block zeroes all of it that the write does not cover,
      // and the zeroes are durable before the conversion commits.
      copyRun(first + i, pfn, n, true);
      ctx.journal.addOrdered(pfn, n);
      for (let j = 0; j < n; j++) {
        entries[i + j] = makeEntry(STATE_WRITTEN, pfn + j);
        markNew(first + i + j);
      }
    } else {
      assert(entryState(e) === STATE_WRITTEN);
      copyRun(first + i, pfn, n, false);
      for (let j = 0; j < n; j++) outcome.overwritten.push(pfn + j);
    }
    i += n;
  }
  inode.blocks += holePages.length;
  return outcome;
}

/**
 * A file's block map: a radix tree of 4 KiB map blocks of 1024 u32 entries, `depth`
 * levels (1024^depth pages reachable; depth 3 = 4 TiB). Map blocks are metadata: read
 * and written only through the journal, allocated and freed through the allocator.
 *
 * Leaf entry encoding (u32):   0 = HOLE
 *                              (1 << 30) | pfn = UNWRITTEN (allocated, reads as zeros)
 *                              (2 << 30) | pfn = WRITTEN
 * Interior entry: pfn of the child map block, 0 = nothing below.
 * pfn < 2^30 always (volumes up to 4 TiB); pfn 0 is never a real block, so 0 is free.
 */
import assert from 'node:assert';
import type { Allocator } from '../alloc/allocator';
import type { Journal } from '../journal/journal';
import type { Inode } from './inode';
import type { PageMapping } from './types';

export const FANOUT = 1024;
export const MAX_DEPTH = 3;
export const STATE_UNWRITTEN = 1;
export const STATE_WRITTEN = 2;
const PFN_MASK = (1 << 30) - 1;

export function entryState(e: number): 0 | 1 | 2 {
  return (e >>> 30) as 0 | 1 | 2;
}
export function entryPfn(e: number): number {
  return e & PFN_MASK;
}
export function makeEntry(state: 1 | 2, pfn: number): number {
  if (!(pfn > 0 && pfn <= PFN_MASK)) assert.fail(`pfn ${pfn} not encodable`);
  return ((state << 30) | pfn) >>> 0;
}
export function toPageMapping(e: number): PageMapping {
  const s = entryState(e);
  if (s === 0) return { state: 'HOLE' };
  return { state: s === STATE_WRITTEN ? 'WRITTEN' : 'UNWRITTEN', pfn: entryPfn(e) };
}

function span(level: number): number {
  return FANOUT ** level;
}

export class BlockMap {
  /** Told of every leaf that becomes or stops being UNWRITTEN (unwritten-count.ts). */
  onUnwritten: (ino: number, delta: number) => void = () => undefined;

  constructor(private readonly journal: Journal, private readonly alloc: Allocator) {}

  private entries(pfn: number, writable: boolean): Uint32Array {
    const b = writable ? this.journal.write(pfn) : this.journal.read(pfn);
    return new Uint32Array(b.buffer, b.byteOffset, FANOUT);
  }

  get(inode: Inode, pgoff: number): number {
    if (inode.mapRoot === 0 || pgoff >= span(inode.mapDepth)) return 0;
    let node = inode.mapRoot;
    for (let level = inode.mapDepth - 1; ; level--) {
      const e = this.entries(node, false)[Math.floor(pgoff / span(level)) % FANOUT];
      if (level === 0 || e === 0) return e;
      node = e;
    }
  }

  /** Entries of [first, first + count) into a fresh array, one tree walk per leaf. */
  getRange(inode: Inode, first: number, count: number): Uint32Array {
    const out = new Uint32Array(count);
    this.visit(inode, first, first + count - 1, (pgoff, leaf, idx, n) => {
      out.set(leaf.subarray(idx, idx + n), pgoff - first);
    });
    return out;
  }

  /**
   * Calls fn for every present leaf run inside [first, last]: fn(pgoff, leaf, index, n)
   * where leaf[index .. index+n) are the entries of pgoff .. pgoff+n-1. Empty subtrees are
   * skipped, so the cost is O(map blocks present in range), not O(range).
   */
  visit(inode: Inode, first: number, last: number, fn: (pgoff: number, leaf: Uint32Array, index: number, n: number) => void): void {
    if (inode.mapRoot === 0) return;
    const cap = span(inode.mapDepth) - 1;
    if (first > cap) return;
    this.visitNode(inode.mapRoot, inode.mapDepth - 1, 0, first, Math.min(last, cap), fn);
  }

  private visitNode(node: number, level: number, base: number, first: number, last: number, fn: (pgoff: number, leaf: Uint32Array, index: number, n: number) => void): void {
    const entries = this.entries(node, false);
    const s = span(level);
    const lo = Math.floor((Math.max(first, base) - base) / s);
    const hi = Math.floor((Math.min(last, base + s * FANOUT - 1) - base) / s);
    if (level === 0) {
      fn(base + lo, entries, lo, hi - lo + 1);
      return;
    }
    for (let i = lo; i <= hi; i++) {
      if (entries[i] !== 0) this.visitNode(entries[i], level - 1, base + i * s, first, last, fn);
    }
  }

  /** Sets one leaf entry, growing the tree and allocating map blocks as needed. */
  set(inode: Inode, pgoff: number, entry: number): void {
    if (entry === 0 && (inode.mapRoot === 0 || pgoff >= span(inode.mapDepth))) return;
    this.grow(inode, pgoff);
    let node = inode.mapRoot;
    for (let level = inode.mapDepth - 1; ; level--) {
      const idx = Math.floor(pgoff / span(level)) % FANOUT;
      if (level === 0) {
        const leaf = this.entries(node, true);
        const was = entryState(leaf[idx]) === STATE_UNWRITTEN ? 1 : 0;
        const now = entryState(entry) === STATE_UNWRITTEN ? 1 : 0;
        if (was !== now) this.onUnwritten(inode.ino, now - was);
        leaf[idx] = entry;
        return;
      }
      const child = this.entries(node, false)[idx];
      if (child === 0) {
        if (entry === 0) return;
        const fresh = this.allocMapBlock(node);
        this.entries(node, true)[idx] = fresh;
        node = fresh;
      } else {
        node = child;
      }
    }
  }

  private grow(inode: Inode, pgoff: number): void {
    if (!(pgoff < span(MAX_DEPTH))) assert.fail(`pgoff ${pgoff} beyond the largest map`);
    if (inode.mapRoot === 0) {
      inode.mapDepth = 1;
      while (pgoff >= span(inode.mapDepth)) inode.mapDepth++;
      inode.mapRoot = this.allocMapBlock(0);
      return;
    }
    while (pgoff >= span(inode.mapDepth)) {
      const root = this.allocMapBlock(inode.mapRoot);
      this.entries(root, true)[0] = inode.mapRoot;
      inode.mapRoot = root;
      inode.mapDepth++;
    }
  }

  private allocMapBlock(goal: number): number {
    return this.alloc.allocate(1, goal, { kind: 'metadata' })[0].pfn;
  }

  /**
   * Clears every leaf entry in [first, last] for which `drop(pgoff, entry)` returns true
   * (it frees or keeps the data block), then frees map blocks left empty. Returns the
   * number of entries cleared. The caller bounds [first, last] per transaction.
   */
  clearRange(inode: Inode, first: number, last: number, drop: (pgoff: number, entry: number) => boolean): number {
    if (inode.mapRoot === 0) return 0;
    const cap = span(inode.mapDepth) - 1;
    if (first > cap) return 0;
    let cleared = 0;
    const dropCounted = (pgoff: number, entry: number): boolean => {
      const dropped = drop(pgoff, entry);
      if (dropped && entryState(entry) === STATE_UNWRITTEN) this.onUnwritten(inode.ino, -1);
      return dropped;
    };
    const rootEmpty = this.clearNode(inode.mapRoot, inode.mapDepth - 1, 0, first, Math.min(last, cap), dropCounted, (n) => (cleared += n));
    if (rootEmpty) {
      this.alloc.free(inode.mapRoot, 1);
      inode.mapRoot = 0;
      inode.mapDepth = 0;
    }
    return cleared;
  }

  private clearNode(node: number, level: number, base: number, first: number, last: number,
    drop: (pgoff: number, entry: number) => boolean, count: (n: number) => void): boolean {
    const s = span(level);
    const lo = Math.floor((Math.max(first, base) - base) / s);
    const hi = Math.floor((Math.min(last, base + s * FANOUT - 1) - base) / s);
    const ro = this.entries(node, false);
    let rw: Uint32Array | null = null;
    for (let i = lo; i <= hi; i++) {
      const e = (rw ?? ro)[i];
      if (e === 0) continue;
      if (level === 0) {
        if (!drop(base + i, e)) continue;
        rw ??= this.entries(node, true);
        rw[i] = 0;
        count(1);
      } else if (this.clearNode(e, level - 1, base + i * s, first, last, drop, count)) {
        this.alloc.free(e, 1);
        rw ??= this.entries(node, true);
        rw[i] = 0;
      }
    }
    const now = rw ?? ro;
    for (let i = 0; i < FANOUT; i++) if (now[i] !== 0) return false;
    return true;
  }

  /** Number of map blocks of the tree (fsck and tests). */
  mapBlocks(inode: Inode, fn: (pfn: number) => void): void {
    if (inode.mapRoot === 0) return;
    const walk = (node: number, level: number): void => {
      fn(node);
      if (level === 0) return;
      const entries = this.entries(node, false);
      for (let i = 0; i < FANOUT; i++) if (entries[i] !== 0) walk(entries[i], level - 1);
    };
    walk(inode.mapRoot, inode.mapDepth - 1);
  }
}

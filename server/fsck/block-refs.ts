/**
 * Who references which data-zone block. The first pass only marks blocks in a bitmap
 * (BlockSet) and remembers a bounded number of "interesting" blocks: those referenced
 * twice. Naming their owners needs a second walk of every map (OwnerPass), run only when
 * something is wrong, so a clean fsck keeps one bit per block and nothing per reference.
 */
import type { Layout } from '../media/layout';
import { BlockSet } from './block-set';
import { DATA_LEVEL, describeRef, RefSink } from './map-walk';

/** Blocks whose owners are looked up, per kind of problem. */
export const TRACKED_BLOCKS_MAX = 64;

export class FirstPass implements RefSink {
  readonly seen: BlockSet;
  /** Blocks referenced more than once (the first TRACKED_BLOCKS_MAX), and how many in all. */
  readonly twice = new Set<number>();
  twiceCount = 0;
  referenced = 0;
  mapBlocks = 0;
  /** Journal homes in the data zone that the walk met as map blocks. */
  readonly homesAsMap = new Set<number>();

  constructor(private readonly layout: Layout, private readonly homes: ReadonlySet<number>) {
    this.seen = new BlockSet(layout.data.count);
  }

  claim(pfn: number, _ino: number, level: number, _pgoff: number): boolean {
    if (level !== DATA_LEVEL && this.homes.has(pfn)) this.homesAsMap.add(pfn);
    if (this.seen.testAndSet(pfn - this.layout.data.start)) {
      this.twiceCount++;
      if (this.twice.size < TRACKED_BLOCKS_MAX) this.twice.add(pfn);
      return false;
    }
    this.referenced++;
    if (level !== DATA_LEVEL) this.mapBlocks++;
    return true;
  }
}

/**
 * Second walk: collects the owners of the tracked blocks. It descends exactly where the
 * first pass did (a tracked twice-referenced map block only at its first reference), so
 * it meets the same references in the same order.
 */
export class OwnerPass implements RefSink {
  readonly owners = new Map<number, string[]>();
  private readonly met = new Set<number>();

  constructor(private readonly twice: ReadonlySet<number>, tracked: Iterable<number>) {
    for (const pfn of tracked) this.owners.set(pfn, []);
    for (const pfn of twice) this.owners.set(pfn, []);
  }

  claim(pfn: number, ino: number, level: number, pgoff: number): boolean {
    const list = this.owners.get(pfn);
    if (list === undefined) return true;
    list.push(describeRef(ino, level, pgoff));
    if (!this.twice.has(pfn)) return true;
    const first = !this.met.has(pfn);
    this.met.add(pfn);
    return first;
  }
}

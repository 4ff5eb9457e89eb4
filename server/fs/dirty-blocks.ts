/**
 * The set of a file's blocks overwritten since its last fsync (Inode.dirtyPfns), kept as
 * bitmaps of 1024-block groups instead of a Set of numbers.
 *
 * Why: a 1 MiB overwrite marks 256 blocks dirty. With a Set that is 256 hash insertions
 * whose cost grows with the set (measured on Node 20: ~20 ns each at 4k entries, ~55 ns at
 * 64k, ~250 ns at 1M, from cache misses), i.e. a quarter of the write's memcpy at 256 MiB
 * dirty and more than all of it at 4 GiB. Consecutive blocks fall in one group, and the
 * last group used is cached, so marking a run costs a few ns per block whatever the size.
 * Clean inodes (all but a few) hold no map at all: mount builds 100k of these.
 *
 * Memory: 128 bytes of bitmap (plus a map entry) per group holding a dirty block, so at
 * most ~0.2 byte per block of the file, whatever the pattern.
 *
 * Iteration order is by group first use, then by block: callers sort (coalesceRuns).
 */
const GROUP_SHIFT = 10;
const WORDS_PER_GROUP = (1 << GROUP_SHIFT) / 32;

/** What the engine uses of a set of pfns; a Set<number> is one too (tests build inodes with it). */
export interface PfnSet extends Iterable<number> {
  readonly size: number;
  add(pfn: number): unknown;
  delete(pfn: number): boolean;
  clear(): void;
}

export class DirtyBlocks implements PfnSet {
  private groups: Map<number, Uint32Array> | null = null;
  private lastGroup = -1;
  private lastWords: Uint32Array | null = null;
  private count = 0;

  get size(): number {
    return this.count;
  }

  add(pfn: number): this {
    const words = this.wordsOf(pfn >>> GROUP_SHIFT, true)!;
    const w = (pfn >>> 5) & (WORDS_PER_GROUP - 1);
    const bit = 1 << (pfn & 31);
    if ((words[w] & bit) === 0) {
      words[w] |= bit;
      this.count++;
    }
    return this;
  }

  has(pfn: number): boolean {
    const words = this.wordsOf(pfn >>> GROUP_SHIFT, false);
    return words !== null && (words[(pfn >>> 5) & (WORDS_PER_GROUP - 1)] & (1 << (pfn & 31))) !== 0;
  }

  delete(pfn: number): boolean {
    const group = pfn >>> GROUP_SHIFT;
    const words = this.wordsOf(group, false);
    const w = (pfn >>> 5) & (WORDS_PER_GROUP - 1);
    const bit = 1 << (pfn & 31);
    if (words === null || (words[w] & bit) === 0) return false;
    words[w] &= ~bit;
    this.count--;
    if (words.every((x) => x === 0)) {
      this.groups!.delete(group);
      if (this.lastGroup === group) this.lastWords = null;
    }
    return true;
  }

  clear(): void {
    this.groups = null;
    this.lastGroup = -1;
    this.lastWords = null;
    this.count = 0;
  }

  *[Symbol.iterator](): IterableIterator<number> {
    if (this.groups === null) return;
    for (const [group, words] of this.groups) {
      for (let w = 0; w < WORDS_PER_GROUP; w++) {
        for (let x = words[w]; x !== 0; x &= x - 1) {
          yield (group << GROUP_SHIFT) + w * 32 + (31 - Math.clz32(x & -x));
        }
      }
    }
  }

  /** The bitmap of `group` (created if `create`), through a one-group cache. */
  private wordsOf(group: number, create: boolean): Uint32Array | null {
    if (group === this.lastGroup && this.lastWords !== null) return this.lastWords;
    let words = this.groups?.get(group) ?? null;
    if (words === null) {
      if (!create) return null;
      words = new Uint32Array(WORDS_PER_GROUP);
      (this.groups ??= new Map()).set(group, words);
    }
    this.lastGroup = group;
    this.lastWords = words;
    return words;
  }
}

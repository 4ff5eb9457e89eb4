/**
 * Free-space management of the data zone.
 *
 * On media: one bit per data block in the block bitmap (bit i = pfn data.start + i,
 * little-endian bit order), changed only through journal transactions.
 * In memory: a free count per bitmap block ("group" of 32768 blocks), so an allocation
 * scans one 4 KiB bitmap block at a time from a goal, never the whole volume.
 *
 * Rules:
 * - A freed block becomes allocatable only after the transaction freeing it has committed
 *   and been checkpointed (until then a crash would resurrect the file that owned it).
 *   Pending frees are skipped by the scan through a per-group mask.
 * - Blocks are handed out initialised (S2): zeroed, written by the caller's fill, or
 *   explicitly UNWRITTEN (the caller's block map guarantees nobody reads them before a
 *   conversion zeroes them). Zeroed/filled blocks join the transaction's ordered data, so
 *   they are durable before the transaction that maps them commits.
 * - Runs never cross a storage chunk, so each run is one contiguous view.
 */
import assert from 'node:assert';
import { BLOCK_SIZE } from '../limits';
import { NoSpaceError } from '../errors';
import type { BlockStorage } from '../media/storage';
import { BITS_PER_BLOCK, Layout } from '../media/layout';
import { fillRange } from '../media/chunked';
import type { Journal } from '../journal/journal';
import type { BlockRun, Transaction } from '../journal/transaction';

export type BlockInit =
  | { kind: 'zero' }
  | { kind: 'unwritten' }
  /** The caller writes every byte of each run, in allocation order. */
  | { kind: 'fill'; fill: (run: BlockRun, blocksBefore: number) => void }
  /** Block-map blocks: the journal's zeroed shadow is their content. */
  | { kind: 'metadata' };

const WORDS_PER_GROUP = BITS_PER_BLOCK / 32;

export class Allocator {
  private readonly freeInGroup: Int32Array;
  private freeTotal = 0;
  private pendingTotal = 0;
  private cursor = 0;
  /** Bits freed by transactions not yet checkpointed, per group. */
  private readonly pending = new Map<number, Set<BlockRun>>();
  private readonly chunkBlocks: number;
  canaryByte: number | undefined;

  constructor(private readonly storage: BlockStorage, private readonly layout: Layout, private readonly journal: Journal) {
    this.freeInGroup = new Int32Array(Math.ceil(layout.data.count / BITS_PER_BLOCK));
    this.chunkBlocks = storage.chunkBytes / BLOCK_SIZE;
    this.load();
  }

  get freeBlocks(): number {
    return this.freeTotal;
  }

  /** Blocks freed by transactions not yet committed: allocatable after the next commit. */
  get pendingFreeBlocks(): number {
    return this.pendingTotal;
  }

  get dataBlocks(): number {
    return this.layout.data.count;
  }

  /** Popcount of the bitmap: one pass at mount, O(bitmap), never per allocation. */
  private load(): void {
    const groups = this.freeInGroup.length;
    for (let g = 0; g < groups; g++) {
      const words = this.words(g, false);
      const bitsInGroup = Math.min(BITS_PER_BLOCK, this.layout.data.count - g * BITS_PER_BLOCK);
      let used = 0;
      // A 1 TiB bitmap is 8M words, mostly zero: skip empty groups with one native memcmp.
      if (!isZeroGroup(words)) for (let w = 0; w < WORDS_PER_GROUP; w++) used += popcount(words[w]);
      // Bits past the end of the data zone are never set.
      this.freeInGroup[g] = bitsInGroup - used;
      this.freeTotal += bitsInGroup - used;
    }
  }

  isAllocated(pfn: number): boolean {
    const bit = pfn - this.layout.data.start;
    if (!(bit >= 0 && bit < this.layout.data.count)) assert.fail(`pfn ${pfn} outside the data zone`);
    const words = this.words(Math.floor(bit / BITS_PER_BLOCK), false);
    const b = bit % BITS_PER_BLOCK;
    return ((words[b >>> 5] >>> (b & 31)) & 1) === 1;
  }

  /**
   * Allocates `count` blocks, preferring one contiguous run at or after `goalPfn`
   * (next-fit). All or nothing: ENOSPC changes nothing.
   */
  allocate(count: number, goalPfn: number, init: BlockInit): BlockRun[] {
    assert(count > 0 && Number.isSafeInteger(count));
    if (count > this.freeTotal) throw new NoSpaceError(count, this.freeTotal);
    const data = this.layout.data;
    const bit = goalPfn >= data.start && goalPfn < data.start + data.count ? goalPfn - data.start : this.cursor;
    const groups = this.freeInGroup.length;
    const runs: BlockRun[] = [];
    let remaining = count;
    // Visit every group once starting at the goal, then the goal's group again from 0.
    for (let i = 0; i <= groups && remaining > 0; i++) {
      const g = (Math.floor(bit / BITS_PER_BLOCK) + (i === 0 ? 0 : i)) % groups;
      const from = i === 0 ? bit % BITS_PER_BLOCK : 0;
      if (this.freeInGroup[g] === 0) continue;
      remaining -= this.takeFromGroup(g, from, remaining, runs);
    }
    assert(remaining === 0, `free count said ${this.freeTotal + count - remaining} free but the scan came up short`);
    const last = runs[runs.length - 1];
    this.cursor = (last.pfn + last.count - data.start) % data.count;
    this.initialise(runs, init);
    return runs;
  }

  /**
   * One run of `count` free blocks (a power of two, 512 for a PMD) starting at a pfn that is
   * a multiple of `count`, inside one storage chunk: the 2 MiB-aligned contiguous extent a
   * PMD entry maps. Scans the groups from the cursor's, aligned slots only (whole bitmap
   * words: a free slot is count/32 zero words, pending frees included as used). Null when
   * no such run is free (the caller falls back to 4 KiB pages): never ENOSPC, never partial.
   */
  allocateAligned(count: number, init: BlockInit): BlockRun | null {
    assert(count >= 32 && (count & (count - 1)) === 0 && count <= BITS_PER_BLOCK, `aligned run of ${count} blocks`);
    if (count > this.freeTotal || this.chunkBlocks < count) return null;
    const data = this.layout.data;
    const groups = this.freeInGroup.length;
    const firstGroup = Math.floor(this.cursor / BITS_PER_BLOCK);
    const wordsPerRun = count / 32;
    for (let i = 0; i < groups; i++) {
      const g = (firstGroup + i) % groups;
      if (this.freeInGroup[g] < count) continue;
      const groupPfn = data.start + g * BITS_PER_BLOCK;
      const limit = Math.min(BITS_PER_BLOCK, data.count - g * BITS_PER_BLOCK);
      const ro = this.words(g, false);
      const mask = this.pendingMask(g);
      // The first bit whose pfn is aligned (the data zone starts 512-aligned: bit 0).
      for (let b = (count - (groupPfn % count)) % count; b + count <= limit; b += count) {
        if (!zeroWords(ro, b >>> 5, wordsPerRun) || (mask !== null && !zeroWords(mask, b >>> 5, wordsPerRun))) continue;
        const rw = this.words(g, true);
        rw.fill(-1, b >>> 5, (b >>> 5) + wordsPerRun);
        this.freeInGroup[g] -= count;
        this.freeTotal -= count;
        const run = { pfn: groupPfn + b, count };
        this.cursor = (run.pfn + count - data.start) % data.count;
        assert(run.pfn % count === 0, `aligned run at pfn ${run.pfn}`);
        this.initialise([run], init);
        return run;
      }
    }
    return null;
  }

  private takeFromGroup(g: number, fromBit: number, want: number, runs: BlockRun[]): number {
    const ro = this.words(g, false);
    const mask = this.pendingMask(g);
    const limit = Math.min(BITS_PER_BLOCK, this.layout.data.count - g * BITS_PER_BLOCK);
    let rw: Uint32Array | null = null;
    let taken = 0;
    for (let b = fromBit; b < limit && taken < want; ) {
      const w = b >>> 5;
      const used = (rw ?? ro)[w] | (mask ? mask[w] : 0);
      if (used === -1) { b = (w + 1) << 5; continue; }
      if ((used >>> (b & 31)) & 1) { b++; continue; }
      // A free bit: extend the run while free, inside the group and the storage chunk.
      const start = b;
      const pfn0 = this.layout.data.start + g * BITS_PER_BLOCK + start;
      const chunkEnd = (Math.floor(pfn0 / this.chunkBlocks) + 1) * this.chunkBlocks;
      rw ??= this.words(g, true);
      while (b < limit && taken < want && this.layout.data.start + g * BITS_PER_BLOCK + b < chunkEnd) {
        const ww = b >>> 5;
        const u = rw[ww] | (mask ? mask[ww] : 0);
        if ((u >>> (b & 31)) & 1) break;
        rw[ww] |= 1 << (b & 31);
        b++;
        taken++;
      }
      runs.push({ pfn: pfn0, count: b - start });
    }
    this.freeInGroup[g] -= taken;
    this.freeTotal -= taken;
    return taken;
  }

  private initialise(runs: BlockRun[], init: BlockInit): void {
    let before = 0;
    for (const run of runs) {
      switch (init.kind) {
        case 'zero':
          fillRange(this.storage, run.pfn * BLOCK_SIZE, run.count * BLOCK_SIZE, 0);
          this.journal.addOrdered(run.pfn, run.count);
          break;
        case 'fill':
          init.fill(run, before);
          this.journal.addOrdered(run.pfn, run.count);
          break;
        case 'metadata':
          for (let i = 0; i < run.count; i++) this.journal.writeNew(run.pfn + i);
          break;
        case 'unwritten':
          break;
      }
      before += run.count;
    }
  }

  /** Block bitmap blocks ("groups") of the volume. */
  get groupCount(): number {
    return this.freeInGroup.length;
  }

  /** The group (block bitmap block) whose bit covers data block `pfn`. */
  groupOf(pfn: number): number {
    return Math.floor((pfn - this.layout.data.start) / BITS_PER_BLOCK);
  }

  /** Frees a run in the running transaction; reusable once it commits. */
  free(pfn: number, count: number): void {
    const data = this.layout.data;
    assert(pfn >= data.start && pfn + count <= data.start + data.count, `free of [${pfn}, +${count}) outside the data zone`);
    for (let done = 0; done < count; ) {
      const bit = pfn + done - data.start;
      const g = Math.floor(bit / BITS_PER_BLOCK);
      const n = Math.min(count - done, BITS_PER_BLOCK - (bit % BITS_PER_BLOCK));
      const words = this.words(g, true);
      for (let b = bit % BITS_PER_BLOCK, e = b + n; b < e; b++) {
        if (((words[b >>> 5] >>> (b & 31)) & 1) === 0) assert.fail(`double free of pfn ${data.start + g * BITS_PER_BLOCK + b}`);
        words[b >>> 5] &= ~(1 << (b & 31));
      }
      let set = this.pending.get(g);
      if (!set) this.pending.set(g, (set = new Set()));
      // One run object per group, shared with the transaction: onCommitted deletes it by identity.
      const run = { pfn: pfn + done, count: n };
      set.add(run);
      this.pendingTotal += n;
      this.journal.addFreed(run);
      done += n;
    }
    for (let i = 0; i < count; i++) this.journal.forget(pfn + i);
  }

  /** Journal callback: the transaction's frees are durable, so the blocks are reusable. */
  onCommitted(tx: Transaction): void {
    const data = this.layout.data;
    for (const run of tx.freed) {
      const g = Math.floor((run.pfn - data.start) / BITS_PER_BLOCK);
      const set = this.pending.get(g);
      if (!(set && set.delete(run))) assert.fail(`freed run ${run.pfn}+${run.count} was not pending`);
      if (set.size === 0) this.pending.delete(g);
      this.pendingTotal -= run.count;
      this.freeInGroup[g] += run.count;
      this.freeTotal += run.count;
      // Tests: stale data a file must never show again (S2 checks look for this byte).
      if (this.canaryByte !== undefined) fillRange(this.storage, run.pfn * BLOCK_SIZE, run.count * BLOCK_SIZE, this.canaryByte);
    }
  }

  private pendingMask(g: number): Uint32Array | null {
    const list = this.pending.get(g);
    if (!list) return null;
    const mask = new Uint32Array(WORDS_PER_GROUP);
    const base = this.layout.data.start + g * BITS_PER_BLOCK;
    for (const r of list) {
      for (let b = r.pfn - base, e = b + r.count; b < e; b++) mask[b >>> 5] |= 1 << (b & 31);
    }
    return mask;
  }

  private words(g: number, writable: boolean): Uint32Array {
    const pfn = this.layout.blockBitmap.start + g;
    const bytes = writable ? this.journal.write(pfn) : this.journal.read(pfn);
    return new Uint32Array(bytes.buffer, bytes.byteOffset, WORDS_PER_GROUP);
  }
}

const ZERO_GROUP = Buffer.alloc(BLOCK_SIZE);

/** True when words[from, from + n) are all zero (n bitmap words: 32 free blocks each). */
function zeroWords(words: Uint32Array, from: number, n: number): boolean {
  for (let w = from, end = from + n; w < end; w++) if (words[w] !== 0) return false;
  return true;
}

function isZeroGroup(words: Uint32Array): boolean {
  return Buffer.from(words.buffer, words.byteOffset, words.byteLength).equals(ZERO_GROUP);
}

export function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

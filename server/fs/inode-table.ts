/**
 * The inode table and its bitmap. Mount reads only the slots the bitmap marks used, so
 * a table of a million slots costs nothing for unused ones. Every change of an inode is
 * written to its slot through the journal (persist).
 */
import assert from 'node:assert';
import { BLOCK_SIZE } from '../limits';
import { TooManyFilesError } from '../errors';
import { BITS_PER_BLOCK, INODE_SIZE_BYTES, INODES_PER_BLOCK, Layout } from '../media/layout';
import type { Journal } from '../journal/journal';
import { DirtyBlocks } from './dirty-blocks';
import { decodeInode, encodeInode, Inode, INODE_FREE, INODE_LINKED, slotGeneration } from './inode';

export class InodeTable {
  readonly byIno = new Map<number, Inode>();
  /** In memory only: how many times each inode was persisted (changed) since mount; a drain's catch-up test (server/cluster/drain.ts). */
  readonly changes = new WeakMap<Inode, number>();
  private cursor = 1;

  constructor(private readonly journal: Journal, private readonly layout: Layout) {}

  /** Reads every used inode (ECORRUPT on a bad checksum). */
  load(): Inode[] {
    const { inodeBitmap, maxFiles } = this.layout;
    for (let b = 0; b < inodeBitmap.count; b++) {
      const bytes = this.journal.read(inodeBitmap.start + b);
      for (let i = 0; i < BLOCK_SIZE; i++) {
        if (bytes[i] === 0) continue;
        for (let bit = 0; bit < 8; bit++) {
          if (((bytes[i] >>> bit) & 1) === 0) continue;
          const ino = b * BITS_PER_BLOCK + i * 8 + bit;
          if (ino >= maxFiles) assert.fail(`inode bitmap marks ${ino} beyond maxFiles`);
          this.byIno.set(ino, decodeInode(ino, this.slot(ino, false)));
        }
      }
    }
    return [...this.byIno.values()];
  }

  get count(): number {
    return this.byIno.size;
  }

  /** A new LINKED inode named `name`, with a generation above the slot's last one. */
  allocate(name: string, nowMs: number): Inode {
    const ino = this.findFree();
    this.setBit(ino, true);
    const inode: Inode = {
      ino, state: INODE_LINKED, generation: (slotGeneration(this.slot(ino, false)) + 1) >>> 0,
      sizeBytes: 0, blocks: 0, mapRoot: 0, mapDepth: 0, mtimeMs: nowMs, ctimeMs: nowMs, name,
      users: 0, dirtyPfns: new DirtyBlocks(),
    };
    this.byIno.set(ino, inode);
    this.persist(inode);
    return inode;
  }

  persist(inode: Inode): void {
    if (this.byIno.get(inode.ino) !== inode) assert.fail(`persist of inode ${inode.ino} that is not in the table`);
    encodeInode(inode, this.slot(inode.ino, true));
    this.changes.set(inode, (this.changes.get(inode) ?? 0) + 1);
  }

  /** Releases the slot; its generation stays on media so reuse bumps it. */
  free(inode: Inode): void {
    assert(inode.mapRoot === 0 && inode.blocks === 0, `free of inode ${inode.ino} that still maps blocks`);
    const slot = this.slot(inode.ino, true);
    const generation = inode.generation;
    slot.fill(0);
    new DataView(slot.buffer, slot.byteOffset, INODE_SIZE_BYTES).setUint32(4, generation, true);
    assert(slot[0] === INODE_FREE);
    this.setBit(inode.ino, false);
    this.byIno.delete(inode.ino);
  }

  /**
   * Inode numbers start at 1: slot 0 is never used, so a zero (missing) ino on the wire is
   * never a valid file. Capacity is therefore maxFiles - 1.
   */
  private findFree(): number {
    const { maxFiles } = this.layout;
    if (this.byIno.size >= maxFiles - 1) throw new TooManyFilesError(maxFiles - 1);
    for (let n = 0; n < maxFiles; n++) {
      const ino = (this.cursor + n) % maxFiles;
      if (ino !== 0 && !this.byIno.has(ino)) {
        this.cursor = (ino + 1) % maxFiles;
        return ino;
      }
    }
    assert.fail('inode count below max but no free slot');
  }

  private setBit(ino: number, on: boolean): void {
    const block = this.journal.write(this.layout.inodeBitmap.start + Math.floor(ino / BITS_PER_BLOCK));
    const bit = ino % BITS_PER_BLOCK;
    if (on) block[bit >>> 3] |= 1 << (bit & 7);
    else block[bit >>> 3] &= ~(1 << (bit & 7));
  }

  private slot(ino: number, writable: boolean): Uint8Array {
    const pfn = this.layout.inodes.start + Math.floor(ino / INODES_PER_BLOCK);
    const block = writable ? this.journal.write(pfn) : this.journal.read(pfn);
    const off = (ino % INODES_PER_BLOCK) * INODE_SIZE_BYTES;
    return block.subarray(off, off + INODE_SIZE_BYTES);
  }
}

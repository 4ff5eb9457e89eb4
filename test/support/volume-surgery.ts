/**
 * Raw edits of a daxd volume for the corruption and fsck tests: each helper changes the
 * media bytes the way a bug or a bad disk would, through storage views (so both fsck and
 * mount see them), never through the engine.
 *
 * Edits of metadata homes are only meaningful once the journal no longer holds an image
 * of them (replay would overwrite the edit): settleJournal() empties the journal of a
 * cleanly unmounted volume, whose transaction is checkpointed and redundant.
 */
import assert from 'node:assert/strict';
import { BLOCK_SIZE } from '../../server/limits';
import type { BlockStorage } from '../../server/media/storage';
import { BITS_PER_BLOCK, INODES_PER_BLOCK, INODE_SIZE_BYTES, type Layout } from '../../server/media/layout';
import { decodeSuperblock, encodeSuperblock, readSuperblock, type Superblock } from '../../server/media/superblock';
import { crc32 } from '../../server/media/checksum';
import { encodeTransaction } from '../../server/journal/format';
import { decodeInode, encodeInode, type Inode } from '../../server/fs/inode';
import { FANOUT } from '../../server/fs/block-map';

export function layoutOf(storage: BlockStorage): Layout {
  return readSuperblock(storage).sb.layout;
}

export function block(storage: BlockStorage, pfn: number): Uint8Array {
  return storage.view(pfn * BLOCK_SIZE, BLOCK_SIZE);
}

/** Zeroes the journal header: the (checkpointed) transaction is gone, the journal reads empty. */
export function settleJournal(storage: BlockStorage): void {
  block(storage, layoutOf(storage).journal.start).fill(0);
}

export function inodeSlot(storage: BlockStorage, ino: number): Uint8Array {
  const layout = layoutOf(storage);
  const off = (ino % INODES_PER_BLOCK) * INODE_SIZE_BYTES;
  return block(storage, layout.inodes.start + Math.floor(ino / INODES_PER_BLOCK)).subarray(off, off + INODE_SIZE_BYTES);
}

export function readInode(storage: BlockStorage, ino: number): Inode {
  return decodeInode(ino, inodeSlot(storage, ino));
}

/** Changes decoded fields and writes the slot back with a correct checksum. */
export function editInode(storage: BlockStorage, ino: number, edit: (inode: Inode) => void): void {
  const inode = readInode(storage, ino);
  edit(inode);
  encodeInode(inode, inodeSlot(storage, ino));
}

/** XORs one byte of the volume with `mask` (0xff flips every bit: never a plausible value nearby). */
export function flipByte(storage: BlockStorage, offsetBytes: number, mask = 0xff): void {
  const v = storage.view(offsetBytes, 1);
  v[0] ^= mask;
}

export function setBlockBit(storage: BlockStorage, pfn: number, on: boolean): void {
  const layout = layoutOf(storage);
  const bit = pfn - layout.data.start;
  assert(bit >= 0 && bit < layout.blockBitmap.count * BITS_PER_BLOCK, `pfn ${pfn} not covered by the bitmap`);
  const bytes = block(storage, layout.blockBitmap.start + Math.floor(bit / BITS_PER_BLOCK));
  const b = bit % BITS_PER_BLOCK;
  if (on) bytes[b >>> 3] |= 1 << (b & 7);
  else bytes[b >>> 3] &= ~(1 << (b & 7));
}

export function blockBit(storage: BlockStorage, pfn: number): boolean {
  const layout = layoutOf(storage);
  const bit = pfn - layout.data.start;
  const bytes = block(storage, layout.blockBitmap.start + Math.floor(bit / BITS_PER_BLOCK));
  return ((bytes[(bit % BITS_PER_BLOCK) >>> 3] >>> (bit & 7)) & 1) === 1;
}

export function setInodeBit(storage: BlockStorage, ino: number, on: boolean): void {
  const layout = layoutOf(storage);
  const bytes = block(storage, layout.inodeBitmap.start + Math.floor(ino / BITS_PER_BLOCK));
  const b = ino % BITS_PER_BLOCK;
  if (on) bytes[b >>> 3] |= 1 << (b & 7);
  else bytes[b >>> 3] &= ~(1 << (b & 7));
}

/** The leaf map block entries of `pgoff` in a file's map (writable view), walking from the root. */
export function leafEntries(storage: BlockStorage, ino: number, pgoff: number): { leafPfn: number; entries: Uint32Array; index: number } {
  const inode = readInode(storage, ino);
  assert(inode.mapRoot !== 0, `inode ${ino} has no map`);
  let node = inode.mapRoot;
  for (let level = inode.mapDepth - 1; level > 0; level--) {
    const bytes = block(storage, node);
    const words = new Uint32Array(bytes.buffer, bytes.byteOffset, FANOUT);
    node = words[Math.floor(pgoff / FANOUT ** level) % FANOUT];
    assert(node !== 0, `inode ${ino} pgoff ${pgoff} has no leaf`);
  }
  const bytes = block(storage, node);
  return { leafPfn: node, entries: new Uint32Array(bytes.buffer, bytes.byteOffset, FANOUT), index: pgoff % FANOUT };
}

/** Recomputes an inode slot's checksum after a raw edit (so only the edit is wrong). */
export function resealInode(storage: BlockStorage, ino: number): void {
  const slot = inodeSlot(storage, ino);
  new DataView(slot.buffer, slot.byteOffset, INODE_SIZE_BYTES).setUint32(INODE_SIZE_BYTES - 4, crc32(slot.subarray(0, INODE_SIZE_BYTES - 4)), true);
}

/** Recomputes a superblock copy's checksum after a raw edit. */
export function resealSuperblock(storage: BlockStorage, pfn: number): void {
  const b = block(storage, pfn);
  new DataView(b.buffer, b.byteOffset, BLOCK_SIZE).setUint32(BLOCK_SIZE - 4, crc32(b.subarray(0, BLOCK_SIZE - 4)), true);
}

/** Changes decoded fields of one superblock copy and writes it back, checksummed. */
export function editSuperblock(storage: BlockStorage, pfn: number, edit: (sb: Superblock) => void): void {
  const sb = decodeSuperblock(block(storage, pfn), `copy ${pfn}`);
  edit(sb);
  block(storage, pfn).set(encodeSuperblock(sb));
}

/** Writes a checksum-valid journal transaction, as a commit would (without checkpointing it). */
export function writeJournal(storage: BlockStorage, seq: number, homes: number[], images: Uint8Array[]): void {
  const layout = layoutOf(storage);
  const zone = storage.view(layout.journal.start * BLOCK_SIZE, layout.journal.count * BLOCK_SIZE);
  encodeTransaction(zone, seq, homes, images);
}

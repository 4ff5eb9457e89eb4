/**
 * An inode: in memory the authoritative copy; on media a 512-byte slot of the inode
 * table, rewritten through the journal whenever the inode changes.
 *
 *   off  size  field       protects against
 *   0    4     state       0 FREE, 1 LINKED (has a name), 2 ORPHAN (unlinked, still in use;
 *                          freed at the last release, or at the next mount)
 *   4    4     generation  reuse of a slot: (ino, generation) names one file forever
 *   8    8     sizeBytes
 *   16   8     blocks      data blocks (WRITTEN + UNWRITTEN), checked by fsck against the map
 *   24   4     mapRoot     pfn of the block-map root (0: no map, all holes)
 *   28   1     mapDepth    0..3 levels of 1024-entry map blocks
 *   32   8     mtimeMs
 *   40   8     ctimeMs
 *   48   2     nameLength  1..255
 *   50   255   name        UTF-8, no NUL
 *   305  ...   reserved, zero
 *   508  4     crc32 of [0, 508): a flipped byte is corruption, never used
 */
import { CorruptError } from '../errors';
import { crc32 } from '../media/checksum';
import { INODE_SIZE_BYTES } from '../media/layout';
import { dataView, getU64, setU64 } from '../media/u64';
import { NAME_BYTES_MAX } from '../limits';
import { DirtyBlocks, type PfnSet } from './dirty-blocks';

export const INODE_FREE = 0;
export const INODE_LINKED = 1;
export const INODE_ORPHAN = 2;
const NAME_OFF = 50;
const CRC_OFF = INODE_SIZE_BYTES - 4;

export interface Inode {
  readonly ino: number;
  state: number;
  generation: number;
  sizeBytes: number;
  blocks: number;
  mapRoot: number;
  mapDepth: number;
  mtimeMs: number;
  ctimeMs: number;
  name: string;
  /** In memory only: mappings, pins and calls using the inode (unlink defers the free). */
  users: number;
  /** In memory only: WRITTEN blocks overwritten since the last fsync (flushed by fsync). */
/** In memory only: the last fsync flush of this inode (fsyncs chain on it). */
  flushTail?: Promise<void>;
    dirtyPfns: PfnSet;
}

export function encodeInode(inode: Inode, slot: Uint8Array): void {
  slot.fill(0);
  const dv = dataView(slot);
  dv.setUint32(0, inode.state, true);
  dv.setUint32(4, inode.generation, true);
  setU64(dv, 8, inode.sizeBytes);
  setU64(dv, 16, inode.blocks);
  dv.setUint32(24, inode.mapRoot, true);
  dv.setUint8(28, inode.mapDepth);
  setU64(dv, 32, inode.mtimeMs);
  setU64(dv, 40, inode.ctimeMs);
  const name = Buffer.from(inode.name, 'utf8');
  dv.setUint16(48, name.length, true);
  slot.set(name, NAME_OFF);
  dv.setUint32(CRC_OFF, crc32(slot.subarray(0, CRC_OFF)), true);
}

export function decodeInode(ino: number, slot: Uint8Array): Inode {
  const dv = dataView(slot);
  const stored = dv.getUint32(CRC_OFF, true);
  if (stored !== crc32(slot.subarray(0, CRC_OFF))) throw new CorruptError(`inode ${ino}: checksum mismatch`);
  const state = dv.getUint32(0, true);
  const nameLength = dv.getUint16(48, true);
  if (state !== INODE_LINKED && state !== INODE_ORPHAN) throw new CorruptError(`inode ${ino}: allocated in the bitmap but state is ${state}`);
  if (nameLength > NAME_BYTES_MAX || (state === INODE_LINKED && nameLength === 0)) throw new CorruptError(`inode ${ino}: name length ${nameLength}`);
  const inode: Inode = {
    ino, state, generation: dv.getUint32(4, true), sizeBytes: getU64(dv, 8), blocks: getU64(dv, 16),
    mapRoot: dv.getUint32(24, true), mapDepth: dv.getUint8(28), mtimeMs: getU64(dv, 32), ctimeMs: getU64(dv, 40),
    // A Buffer over the slot's bytes, not a copy: mount decodes every used inode.
    name: Buffer.from(slot.buffer, slot.byteOffset + NAME_OFF, nameLength).toString('utf8'),
    users: 0, dirtyPfns: new DirtyBlocks(),
  };
  if (!Number.isSafeInteger(inode.sizeBytes) || !Number.isSafeInteger(inode.blocks) || inode.mapDepth > 3) {
    throw new CorruptError(`inode ${ino}: impossible size ${inode.sizeBytes}, blocks ${inode.blocks} or map depth ${inode.mapDepth}`);
  }
  return inode;
}

/** The generation stored in a slot, even a free one (so reuse bumps it). */
export function slotGeneration(slot: Uint8Array): number {
  return dataView(slot).getUint32(4, true);
}

/**
 * mkfs: writes an empty daxd file system. Only metadata zones are touched, and only
 * where they are not already zero, so a fresh sparse volume file (even 1 TiB) stays sparse.
 */
import crypto from 'node:crypto';
import { BLOCK_SIZE } from '../limits';
import type { BlockStorage } from '../media/storage';
import { computeLayout, FORMAT_VERSION } from '../media/layout';
import { encodeSuperblock, Superblock } from '../media/superblock';
import { SUPERBLOCK_PFNS } from '../media/layout';

export interface MkfsOptions {
  /** Defaults to the storage size. */
  sizeBytes?: number;
}

function zeroIfDirty(storage: BlockStorage, pfn: number, count: number): void {
  for (let i = 0; i < count; i++) {
    const v = storage.view((pfn + i) * BLOCK_SIZE, BLOCK_SIZE);
    if (v.some((b) => b !== 0)) v.fill(0);
  }
}

export async function mkfs(storage: BlockStorage, opts: MkfsOptions = {}): Promise<Superblock> {
  const sizeBytes = opts.sizeBytes ?? storage.sizeBytes;
  const layout = computeLayout(sizeBytes);
  // Zero page, journal, bitmaps. Inode slots are read only where the bitmap says so.
  zeroIfDirty(storage, 0, 1);
  zeroIfDirty(storage, layout.journal.start, layout.journal.count);
  zeroIfDirty(storage, layout.inodeBitmap.start, layout.inodeBitmap.count);
  zeroIfDirty(storage, layout.blockBitmap.start, layout.blockBitmap.count);
  const sb: Superblock = {
    version: FORMAT_VERSION, volumeBlocks: layout.volumeBlocks, uuid: crypto.randomBytes(16),
    generation: 1, clean: true, maxFiles: layout.maxFiles, layout,
  };
  // Both copies, so a torn first write cannot leave garbage behind as "the other copy".
  for (const pfn of SUPERBLOCK_PFNS) {
    storage.view(pfn * BLOCK_SIZE, BLOCK_SIZE).set(encodeSuperblock(sb));
    sb.generation += 1;
  }
  sb.generation -= 1;
  const metaEnd = layout.data.start * BLOCK_SIZE;
  await storage.flush(0, metaEnd);
  return sb;
}

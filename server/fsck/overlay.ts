/**
 * fsck's read-only view of the volume: each block as mount would see it after replaying
 * the journal, without replaying it. A valid journal transaction's images are laid over
 * the blocks they name (in descriptor order, so a repeated home ends as the last image,
 * as replay would leave it); every other block is read from the storage.
 *
 * Nothing here writes: blocks handed out are live views of the storage or of the journal
 * zone, and callers only read them.
 */
import { BLOCK_SIZE } from '../limits';
import type { BlockStorage } from '../media/storage';

export class OverlayReader {
  private readonly overlay = new Map<number, Uint8Array>();

  constructor(private readonly storage: BlockStorage) {}

  /** Lays a journal image over block `pfn`. */
  lay(pfn: number, image: Uint8Array): void {
    this.overlay.set(pfn, image);
  }

  get overlaid(): ReadonlyMap<number, Uint8Array> {
    return this.overlay;
  }

  /** The block as mount would find it after replay. Read only. */
  block(pfn: number): Uint8Array {
    return this.overlay.get(pfn) ?? this.storage.view(pfn * BLOCK_SIZE, BLOCK_SIZE);
  }

  /**
   * Blocks [pfn, pfn + count) were scanned once and are not needed again: their pages may
   * leave this process's RSS (a 1 TiB volume has 512 MiB of inode table). Reading them
   * again later is still correct; nothing is written.
   */
  done(pfn: number, count: number): void {
    this.storage.dropResident?.(pfn * BLOCK_SIZE, count * BLOCK_SIZE);
  }

  /** The block as 1024 little-endian u32 words (bitmaps, block maps). Read only. */
  words(pfn: number): Uint32Array {
    const b = this.block(pfn);
    return new Uint32Array(b.buffer, b.byteOffset, BLOCK_SIZE / 4);
  }
}

/**
 * Truncate's layout change (FileSystem.truncate checked the size and holds the inode lock
 * exclusive; `persist` asserts that hold before each step writes the inode), the sibling of
 * the fallocate modes' handlers (fallocate-modes.ts), with the same view of the file layer.
 */
import { BLOCK_SIZE } from '../limits';
import { entryPfn, entryState, STATE_WRITTEN } from './block-map';
import type { FallocateEnv } from './fallocate-modes';
import { layoutImagesBound, removeBlocks, zeroInPage, zeroPastEof } from './file-layout';
import type { Inode } from './inode';
import type { LayoutBreakOptions } from './types';

export async function truncateFile(env: FallocateEnv, ino: number, inode: Inode, sizeBytes: number, opts: LayoutBreakOptions, persist: () => void): Promise<void> {
  const { ctx, journal, hooks } = env;
  const firstGone = Math.ceil(sizeBytes / BLOCK_SIZE);
  if (sizeBytes > inode.sizeBytes) {
    // Growing: the bytes zeroed lie past the old EOF (never acknowledged), and their
    // zeroes are ordered data of the transaction that grows the size.
    zeroPastEof(ctx, inode, sizeBytes);
    inode.sizeBytes = sizeBytes;
    env.touch(inode);
    return;
  }
  // Truncate down (or to the same size) also drops blocks preallocated past EOF.
  const release = await hooks.breakLayout(ino, Math.floor(sizeBytes / BLOCK_SIZE), Number.MAX_SAFE_INTEGER, 'TRUNCATE', opts);
  try {
    // Free first, shrink last: a crash between the steps of a long truncate leaves
    // holes inside the old size (reading zeros), never old blocks past a new EOF
    // that a later extension would expose.
    // S6: in one transaction when the change fits one (Journal.withinOneTransaction).
    await journal.withinOneTransaction(layoutImagesBound(ctx, inode, firstGone, Number.MAX_SAFE_INTEGER, 0, 0), async () => {
      await removeBlocks(ctx, inode, firstGone, Number.MAX_SAFE_INTEGER, persist);
      inode.sizeBytes = sizeBytes;
      env.touch(inode);
    });
    // Bytes past EOF in the last page are zero (a later extension or a mapping of
    // the page reads zeros). S6: they are acknowledged bytes under the old size, so
    // they are zeroed only once the new size is durable; zeroed before, a crash
    // ahead of the commit would bring the old size back over zeros. Until then the
    // layout break keeps the page unmapped and reads stop at the new size.
    const tail = firstGone - 1;
    if (sizeBytes % BLOCK_SIZE !== 0 && entryState(ctx.map.get(inode, tail)) === STATE_WRITTEN) {
      await journal.commit();
      zeroInPage(ctx, inode, tail, sizeBytes, firstGone * BLOCK_SIZE);
      // Durable now: after a crash, a mapping of the EOF page shows no old tail.
      await ctx.storage.flush(entryPfn(ctx.map.get(inode, tail)) * BLOCK_SIZE, BLOCK_SIZE);
    }
  } finally {
    release();
  }
}

/**
 * The volume-wide count of UNWRITTEN blocks (preallocated by fallocate or zero range,
 * not written since): a metric and a field of the admin API, kept in memory only.
 *
 * The block map reports every leaf change as a delta. What the volume held before anyone
 * asked is counted by a background scan, started on the first read of the count, one
 * inode per step: an inode the scan has not reached yet ignores deltas (its scan sees
 * their result); once scanned, or created after the scan began, its deltas count. A step
 * is synchronous, so no block map changes under it, and the scan stops at unmount.
 */
import { entryState, STATE_UNWRITTEN, type BlockMap } from './block-map';
import type { Inode } from './inode';

/** Map blocks' worth of work one scan step may do before yielding (about 1 ms each). */
const SCAN_STEP_INODES = 64;

export class UnwrittenCount {
  private total = 0;
  /** Inodes the scan has not reached; null before the scan starts. */
  private pending: Set<number> | null = null;
  private done = false;
  private stopped = false;

  /** From the block map: a leaf entry of inode `ino` became (+1) or stopped being (-1) UNWRITTEN. */
  delta(ino: number, d: number): void {
    if (this.pending === null || this.pending.has(ino)) return;
    this.total += d;
  }

  /** Blocks UNWRITTEN now, or null while the first count is still running (it starts here). */
  read(inodes: Map<number, Inode>, map: BlockMap): number | null {
    if (this.pending === null) this.start(inodes, map);
    return this.done ? this.total : null;
  }

  stop(): void {
    this.stopped = true;
  }

  private start(inodes: Map<number, Inode>, map: BlockMap): void {
    const pending = new Set(inodes.keys());
    this.pending = pending;
    const step = (): void => {
      if (this.stopped) return;
      let n = 0;
      for (const ino of pending) {
        pending.delete(ino);
        const inode = inodes.get(ino);
        if (inode) this.total += countInode(inode, map);
        if (++n === SCAN_STEP_INODES) break;
      }
      if (pending.size > 0) setImmediate(step);
      else this.done = true;
    };
    step();
  }
}

function countInode(inode: Inode, map: BlockMap): number {
  let n = 0;
  map.visit(inode, 0, Number.MAX_SAFE_INTEGER, (_pgoff, leaf, index, count) => {
    for (let i = index; i < index + count; i++) if (entryState(leaf[i]) === STATE_UNWRITTEN) n++;
  });
  return n;
}

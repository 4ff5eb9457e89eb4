/**
 * The fallocate modes' handlers (FALLOCATE_MODE_RULES in types.ts names the modes): what each
 * does to the block map, inside one journal transaction where it fits (file-layout.ts). The
 * caller, FileSystem.fallocate, checked the range and holds the inode lock exclusive; `persist`
 * asserts that hold before each step writes the inode.
 */
import assert from 'node:assert';
import { InvalidArgumentError } from '../errors';
import type { Journal } from '../journal/journal';
import type { DataContext } from './file-data';
import {
  allocateUnwritten, convertToUnwritten, layoutImagesBound, occupiedSpan, removeBlocks, reserveShift, reserveZeroRange, shiftDown, zeroPartialPages, zeroPastEof,
} from './file-layout';
import type { Inode } from './inode';
import type { FallocateMode, LayoutBreakOptions, LayoutHooks } from './types';

/** What a handler may use of the file layer. */
export interface FallocateEnv {
  ctx: DataContext;
  journal: Journal;
  hooks: LayoutHooks;
  /** mtime and ctime now, inode persisted. */
  touch(inode: Inode): void;
}

/** One fallocate call as its mode's handler sees it (inode lock held exclusive). */
export interface FallocateRange {
  ino: number;
  inode: Inode;
  mode: FallocateMode;
  offsetBytes: number;
  lengthBytes: number;
  /** offsetBytes + lengthBytes. */
  end: number;
  /** Pages of the range: [first, last]. */
  first: number;
  last: number;
  opts: LayoutBreakOptions;
  persist: () => void;
}

/**
 * Each fallocate mode's handler, run by FileSystem.fallocate with the inode lock held
 * exclusive. A Record over FALLOCATE_MODE_RULES (server/fs/types.ts): a mode without a
 * handler does not compile.
 * A mode with layoutChange breaks the layout (S4) before changing the block map.
 */
export const FALLOCATE_HANDLERS: Readonly<Record<FallocateMode, (env: FallocateEnv, r: FallocateRange) => Promise<void>>> = {
ALLOCATE: allocateRange,
KEEP_SIZE: allocateRange,
PUNCH_HOLE: zeroOrPunchRange,
ZERO_RANGE: zeroOrPunchRange,
COLLAPSE_RANGE: collapseRange,
};

/** ALLOCATE (grows the size to the range's end) and KEEP_SIZE: unwritten blocks over the range. */
async function allocateRange(env: FallocateEnv, { inode, mode, end, first, last, persist }: FallocateRange): Promise<void> {
  await env.journal.withinOneTransaction(layoutImagesBound(env.ctx, inode, first, last, last - first + 1, last - first + 1), async () => {
    await allocateUnwritten(env.ctx, inode, first, last, persist);
    if (mode === 'ALLOCATE') {
      zeroPastEof(env.ctx, inode, end);
      inode.sizeBytes = Math.max(inode.sizeBytes, end);
    }
    env.touch(inode);
  });
}

/** PUNCH_HOLE (frees the blocks) and ZERO_RANGE (unwritten blocks, grows the size). */
async function zeroOrPunchRange(env: FallocateEnv, { ino, inode, mode, offsetBytes, end, first, last, opts, persist }: FallocateRange): Promise<void> {
  assert(mode === 'PUNCH_HOLE' || mode === 'ZERO_RANGE');
  const release = await env.hooks.breakLayout(ino, first, last, mode, opts);
  try {
    // Partial head and tail pages get replacement blocks (2 at most); ZERO_RANGE may
    // allocate unwritten blocks over the whole range.
    const added = mode === 'ZERO_RANGE' ? last - first + 1 : 0;
    await env.journal.withinOneTransaction(layoutImagesBound(env.ctx, inode, first, last, added, added + 2), async () => {
      // All or nothing: every block ZERO_RANGE may allocate, reserved before any change.
      if (mode === 'ZERO_RANGE') reserveZeroRange(env.ctx, inode, offsetBytes, end);
      const whole = zeroPartialPages(env.ctx, inode, offsetBytes, end);
      if (whole.first <= whole.last) {
        if (mode === 'PUNCH_HOLE') await removeBlocks(env.ctx, inode, whole.first, whole.last, persist);
        else {
          await convertToUnwritten(env.ctx, inode, whole.first, whole.last, persist);
          await allocateUnwritten(env.ctx, inode, whole.first, whole.last, persist);
        }
      }
      // ZERO_RANGE extends the size (proto, as Linux without KEEP_SIZE); punch does not.
      if (mode === 'ZERO_RANGE') {
        zeroPastEof(env.ctx, inode, end);
        inode.sizeBytes = Math.max(inode.sizeBytes, end);
      }
      env.touch(inode);
    });
  } finally {
    release();
  }
}

/** COLLAPSE_RANGE: remove the range, shift the rest of the file down; must end before EOF. */
async function collapseRange(env: FallocateEnv, { ino, inode, lengthBytes, end, first, last, opts, persist }: FallocateRange): Promise<void> {
  if (end >= inode.sizeBytes) {
    throw new InvalidArgumentError(`COLLAPSE_RANGE must end before EOF (end ${end} vs. size ${inode.sizeBytes})`);
  }
  const release = await env.hooks.breakLayout(ino, first, Number.MAX_SAFE_INTEGER, 'COLLAPSE_RANGE', opts);
  try {
    reserveShift(env.ctx, inode, last + 1);
    await env.journal.withinOneTransaction(layoutImagesBound(env.ctx, inode, first, Number.MAX_SAFE_INTEGER, occupiedSpan(env.ctx, inode, last + 1), 0), async () => {
      await removeBlocks(env.ctx, inode, first, last, persist);
      await shiftDown(env.ctx, inode, last + 1, last + 1 - first, persist);
      inode.sizeBytes -= lengthBytes;
      env.touch(inode);
    });
  } finally {
    release();
  }
}

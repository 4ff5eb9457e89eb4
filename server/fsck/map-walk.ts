/**
 * Walks one file's block map as stored (block-map.ts gives the encoding), checking each
 * entry and handing every referenced block to a sink: map blocks (level >= 0, 0 = leaf)
 * and data blocks (level DATA_LEVEL). The walk descends into a map block only if the sink
 * says it is the block's first reference, so a shared or looping subtree is walked once.
 *
 * Depth is at most MAX_DEPTH, so the recursion is at most 3 deep and the walk reads each
 * map block of the file once: O(map blocks), whatever the file size.
 */
import { BLOCK_SIZE, FILE_BYTES_MAX } from '../limits';
import type { Layout } from '../media/layout';
import { entryPfn, entryState, FANOUT, STATE_UNWRITTEN, STATE_WRITTEN } from '../fs/block-map';
import type { OverlayReader } from './overlay';
import type { FindingLog } from './report';

export const DATA_LEVEL = -1;
const MAX_PAGES = FILE_BYTES_MAX / BLOCK_SIZE;

export interface RefSink {
  /** Returns true iff this is the first reference to `pfn` (a map block is then walked). */
  claim(pfn: number, ino: number, level: number, pgoff: number): boolean;
}

export interface WalkResult {
  /** WRITTEN + UNWRITTEN leaf entries: what inode.blocks must say. */
  entries: number;
  /** False when a subtree was not walked (out of range, or referenced before). */
  complete: boolean;
}

export function describeRef(ino: number, level: number, pgoff: number): string {
  return level === DATA_LEVEL ? `inode ${ino} pgoff ${pgoff} (data)` : `inode ${ino} map block level ${level} (from pgoff ${pgoff})`;
}

export function walkMap(reader: OverlayReader, layout: Layout, log: FindingLog | null, sink: RefSink,
  ino: number, root: number, depth: number): WalkResult {
  const result: WalkResult = { entries: 0, complete: true };
  const { start, count } = layout.data;
  const inData = (pfn: number): boolean => pfn >= start && pfn < start + count;
  const report = (code: Parameters<FindingLog['add']>[0], message: string): void => log?.add(code, message);

  const leaf = (pgoff: number, e: number): void => {
    const state = entryState(e);
    const pfn = entryPfn(e);
    if ((state !== STATE_UNWRITTEN && state !== STATE_WRITTEN) || pfn === 0) {
      report('MAP_ENTRY_BAD', `inode ${ino} pgoff ${pgoff}: entry 0x${e.toString(16)} is neither HOLE (0), UNWRITTEN(pfn) nor WRITTEN(pfn)`);
      result.complete = false;
      return;
    }
    result.entries++;
    if (pgoff >= MAX_PAGES) report('MAP_BEYOND_MAX_SIZE', `inode ${ino} pgoff ${pgoff} maps pfn ${pfn}, beyond the largest file (${MAX_PAGES} pages)`);
    if (!inData(pfn)) {
      report('MAP_OUT_OF_RANGE', `inode ${ino} pgoff ${pgoff}: ${state === STATE_WRITTEN ? 'WRITTEN' : 'UNWRITTEN'} pfn ${pfn} is outside the data zone [${start}, ${start + count})`);
      return;
    }
    sink.claim(pfn, ino, DATA_LEVEL, pgoff);
  };

  const node = (pfn: number, level: number, base: number): void => {
    if (!inData(pfn)) {
      report('MAP_OUT_OF_RANGE', `inode ${ino}: map block level ${level} (from pgoff ${base}) is pfn ${pfn}, outside the data zone [${start}, ${start + count})`);
      result.complete = false;
      return;
    }
    if (!sink.claim(pfn, ino, level, base)) {
      result.complete = false;
      return;
    }
    const words = reader.words(pfn);
    const span = FANOUT ** level;
    for (let i = 0; i < FANOUT; i++) {
      const e = words[i];
      if (e === 0) continue;
      if (level > 0) node(e, level - 1, base + i * span);
      else leaf(base + i, e);
    }
  };

  if (root !== 0 && depth > 0) node(root, depth - 1, 0);
  return result;
}

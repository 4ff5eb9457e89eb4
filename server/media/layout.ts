/**
 * The on-media layout: one ordered table of zones, in 4 KiB blocks.
 *
 *   zone          start            size                        align   protects against
 *   zero          0                1                           1       pfn 0 is the shared zero page: a zeroed
 *                                                                      block address is never a valid block
 *   superblock    1                2 (copies A, B)             1       torn superblock writes: one copy survives
 *   journal       3                clamp(blocks/256,256,16384) 1       torn metadata updates: redo log
 *   inodes        align 8          maxFiles/8 (512 B inodes)   8       -
 *   inodeBitmap   after inodes     ceil(maxFiles/32768)        1       mount reads only used inodes
 *   blockBitmap   after            ceil(dataBlocks/32768)      1       -
 *   data          align 512        the rest                    512     2 MiB alignment (PMD-sized faults)
 *
 * The layout is a pure function of the volume size, recomputed at mount and compared
 * with the copy the superblock holds (geometry mismatch = corruption).
 */
import assert from 'node:assert';
import { BLOCK_SIZE, VOLUME_BYTES_MAX, VOLUME_BYTES_MIN } from '../limits';
import { InvalidArgumentError, VersionError } from '../errors';

/**
 * On-media format versions, one policy for every versioned structure: the superblock
 * carries FORMAT_VERSION (layout, inodes, maps, bitmaps) and each journal transaction
 * header carries JOURNAL_VERSION (its encoding and commit checksum). Any incompatible
 * change bumps the number. A reader accepts exactly the version it supports; any other
 * value refuses the mount with EVERSION, naming the found and supported versions
 * (checkFormatVersion). An unknown version is never guessed at and never taken for a torn
 * write: a journal transaction of another version may be committed, and discarding it
 * would drop acknowledged changes. There is no in-place upgrade.
 */
export const FORMAT_VERSION = 1;
/** 2: the commit checksum is SHA-256 based (version 1 used CRC-32, blind to torn inode slots). */
export const JOURNAL_VERSION = 2;

/** The version policy above: throws EVERSION unless `found` is the supported version. */
export function checkFormatVersion(what: 'volume' | 'journal', found: number, supported: number): void {
  if (found !== supported) throw new VersionError(found, supported, what);
}
export const INODE_SIZE_BYTES = 512;
export const INODES_PER_BLOCK = BLOCK_SIZE / INODE_SIZE_BYTES;
export const BITS_PER_BLOCK = BLOCK_SIZE * 8;
export const SUPERBLOCK_PFNS = [1, 2] as const;

export interface Zone {
  readonly name: 'zero' | 'superblock' | 'journal' | 'inodes' | 'inodeBitmap' | 'blockBitmap' | 'data';
  readonly start: number;
  readonly count: number;
  readonly alignBlocks: number;
}

export interface Layout {
  readonly volumeBlocks: number;
  readonly maxFiles: number;
  readonly zones: readonly Zone[];
  readonly journal: Zone;
  readonly inodes: Zone;
  readonly inodeBitmap: Zone;
  readonly blockBitmap: Zone;
  readonly data: Zone;
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}

function alignUp(v: number, a: number): number {
  return Math.ceil(v / a) * a;
}

/**
 * EINVAL unless `sizeBytes` is a whole number of blocks within [VOLUME_BYTES_MIN,
 * VOLUME_BYTES_MAX]. Each rule has its own message, naming the nearest sizes or the bound;
 * `what` names the volume (e.g. its path) in the message.
 */
export function validateVolumeSize(sizeBytes: number, what = 'volume'): void {
  if (!Number.isSafeInteger(sizeBytes)) throw new InvalidArgumentError(`${what} size ${sizeBytes} is not a whole number of bytes`);
  if (sizeBytes % BLOCK_SIZE !== 0) {
    const down = sizeBytes - (sizeBytes % BLOCK_SIZE);
    throw new InvalidArgumentError(`${what} size ${sizeBytes} bytes is not a multiple of the ${BLOCK_SIZE}-byte block (${down} or ${down + BLOCK_SIZE} is)`);
  }
  if (sizeBytes < VOLUME_BYTES_MIN) throw new InvalidArgumentError(`${what} size ${sizeBytes} bytes is below VOLUME_BYTES_MIN (${VOLUME_BYTES_MIN} bytes)`);
  if (sizeBytes > VOLUME_BYTES_MAX) throw new InvalidArgumentError(`${what} size ${sizeBytes} bytes is above VOLUME_BYTES_MAX (${VOLUME_BYTES_MAX} bytes)`);
}

export function computeLayout(sizeBytes: number): Layout {
  validateVolumeSize(sizeBytes);
  const volumeBlocks = sizeBytes / BLOCK_SIZE;
  const journalBlocks = clamp(Math.floor(volumeBlocks / 256), 256, 16384);
  const maxFiles = alignUp(clamp(Math.floor(volumeBlocks / 4), 1024, 1 << 20), INODES_PER_BLOCK);
  const zero: Zone = { name: 'zero', start: 0, count: 1, alignBlocks: 1 };
  const superblock: Zone = { name: 'superblock', start: 1, count: 2, alignBlocks: 1 };
  const journal: Zone = { name: 'journal', start: 3, count: journalBlocks, alignBlocks: 1 };
  const inodes: Zone = { name: 'inodes', start: alignUp(journal.start + journal.count, 8), count: maxFiles / INODES_PER_BLOCK, alignBlocks: 8 };
  const inodeBitmap: Zone = { name: 'inodeBitmap', start: inodes.start + inodes.count, count: Math.ceil(maxFiles / BITS_PER_BLOCK), alignBlocks: 1 };
  // The block bitmap is sized for the whole volume (an upper bound on the data zone),
  // so its size does not depend on where the data zone starts.
  const blockBitmap: Zone = { name: 'blockBitmap', start: inodeBitmap.start + inodeBitmap.count, count: Math.ceil(volumeBlocks / BITS_PER_BLOCK), alignBlocks: 1 };
  const dataStart = alignUp(blockBitmap.start + blockBitmap.count, 512);
  const data: Zone = { name: 'data', start: dataStart, count: volumeBlocks - dataStart, alignBlocks: 512 };
  const layout: Layout = {
    volumeBlocks, maxFiles,
    zones: [zero, superblock, journal, inodes, inodeBitmap, blockBitmap, data],
    journal, inodes, inodeBitmap, blockBitmap, data,
  };
  assertLayout(layout);
  return layout;
}

/** The zone table is ordered, contiguous-or-gapped, aligned, and inside the volume. */
export function assertLayout(layout: Layout): void {
  let end = 0;
  for (const z of layout.zones) {
    assert(z.start >= end, `zone ${z.name} overlaps the previous one`);
    assert(z.start % z.alignBlocks === 0, `zone ${z.name} start ${z.start} not aligned to ${z.alignBlocks}`);
    assert(z.count > 0, `zone ${z.name} is empty`);
    end = z.start + z.count;
  }
  assert(end === layout.volumeBlocks, 'data zone must end at the end of the volume');
  assert(layout.data.count <= layout.blockBitmap.count * BITS_PER_BLOCK, 'block bitmap too small');
  assert(layout.maxFiles <= layout.inodeBitmap.count * BITS_PER_BLOCK, 'inode bitmap too small');
}

/**
 * The superblock, kept twice (blocks 1 and 2). Each write goes to the copy NOT holding
 * the newest generation, so a torn superblock write always leaves the other copy valid;
 * mount takes the valid copy with the highest generation.
 *
 *   off  size  field          protects against
 *   0    4     magic          mounting something that is not a daxd volume
 *   4    4     version        misreading a format this code does not know (EVERSION)
 *   8    4     blockSize      a volume made with another block size
 *   12   4     flags          bit 0 CLEAN: set only by unmount after the final sync
 *   16   8     volumeBlocks   a truncated or grown volume file (geometry mismatch)
 *   24   16    uuid           mixing up volumes
 *   40   8     generation     choosing between the two copies
 *   48   4     maxFiles       geometry
 *   52   4     zoneCount      geometry: zone table follows
 *   56   7*8   zones          (start u32, count u32) per zone, compared with computeLayout
 *   112  ...   reserved, zero (checked)
 *   4092 4     crc32 of bytes [0, 4092)
 */
import { BLOCK_SIZE, VOLUME_BYTES_MAX, VOLUME_BYTES_MIN } from '../limits';
import { CorruptError, VersionError } from '../errors';
import { crc32 } from './checksum';
import { checkFormatVersion, computeLayout, FORMAT_VERSION, Layout, SUPERBLOCK_PFNS } from './layout';
import { dataView, getU64, setU64 } from './u64';
import type { BlockStorage } from './storage';

export const SUPERBLOCK_MAGIC = 0x44584144; // "DAXD" little-endian
const FLAG_CLEAN = 1;
const ZONES_OFF = 56;
const RESERVED_OFF = 112;
const CRC_OFF = BLOCK_SIZE - 4;

export interface Superblock {
  version: number;
  volumeBlocks: number;
  uuid: Uint8Array;
  generation: number;
  clean: boolean;
  maxFiles: number;
  layout: Layout;
}

export function encodeSuperblock(sb: Superblock): Uint8Array {
  const buf = new Uint8Array(BLOCK_SIZE);
  const dv = dataView(buf);
  dv.setUint32(0, SUPERBLOCK_MAGIC, true);
  dv.setUint32(4, sb.version, true);
  dv.setUint32(8, BLOCK_SIZE, true);
  dv.setUint32(12, sb.clean ? FLAG_CLEAN : 0, true);
  setU64(dv, 16, sb.volumeBlocks);
  buf.set(sb.uuid, 24);
  setU64(dv, 40, sb.generation);
  dv.setUint32(48, sb.maxFiles, true);
  dv.setUint32(52, sb.layout.zones.length, true);
  sb.layout.zones.forEach((z, i) => {
    dv.setUint32(ZONES_OFF + i * 8, z.start, true);
    dv.setUint32(ZONES_OFF + i * 8 + 4, z.count, true);
  });
  dv.setUint32(CRC_OFF, crc32(buf.subarray(0, CRC_OFF)), true);
  return buf;
}

/** Decodes one copy; throws CorruptError / VersionError saying exactly what is wrong. */
export function decodeSuperblock(buf: Uint8Array, where: string): Superblock {
  const dv = dataView(buf);
  if (dv.getUint32(0, true) !== SUPERBLOCK_MAGIC) throw new CorruptError(`${where}: bad magic 0x${dv.getUint32(0, true).toString(16)}`);
  const stored = dv.getUint32(CRC_OFF, true);
  const actual = crc32(buf.subarray(0, CRC_OFF));
  if (stored !== actual) throw new CorruptError(`${where}: checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${actual.toString(16)})`);
  const version = dv.getUint32(4, true);
  checkFormatVersion('volume', version, FORMAT_VERSION);
  if (dv.getUint32(8, true) !== BLOCK_SIZE) throw new CorruptError(`${where}: block size ${dv.getUint32(8, true)} is not ${BLOCK_SIZE}`);
  const volumeBlocks = getU64(dv, 16);
  // A checksum-valid but impossible size is corruption, not a caller's bad argument.
  if (volumeBlocks * BLOCK_SIZE < VOLUME_BYTES_MIN || volumeBlocks * BLOCK_SIZE > VOLUME_BYTES_MAX) {
    throw new CorruptError(`${where}: volume of ${volumeBlocks} blocks outside [${VOLUME_BYTES_MIN}, ${VOLUME_BYTES_MAX}] bytes`);
  }
  const layout = computeLayout(volumeBlocks * BLOCK_SIZE);
  const maxFiles = dv.getUint32(48, true);
  if (maxFiles !== layout.maxFiles) throw new CorruptError(`${where}: maxFiles ${maxFiles} does not match geometry (${layout.maxFiles})`);
  if (dv.getUint32(52, true) !== layout.zones.length) throw new CorruptError(`${where}: zone count mismatch`);
  layout.zones.forEach((z, i) => {
    const start = dv.getUint32(ZONES_OFF + i * 8, true);
    const count = dv.getUint32(ZONES_OFF + i * 8 + 4, true);
    if (start !== z.start || count !== z.count) throw new CorruptError(`${where}: zone ${z.name} is (${start}, ${count}), geometry says (${z.start}, ${z.count})`);
  });
  for (let i = RESERVED_OFF; i < CRC_OFF; i++) {
    if (buf[i] !== 0) throw new CorruptError(`${where}: reserved byte ${i} is not zero`);
  }
  return {
    version, volumeBlocks, uuid: buf.slice(24, 40), generation: getU64(dv, 40),
    clean: (dv.getUint32(12, true) & FLAG_CLEAN) !== 0, maxFiles, layout,
  };
}

export interface SuperblockRead {
  sb: Superblock;
  /** Copies that failed verification, with the reason: fsck reports these. */
  badCopies: string[];
}

/** Reads both copies, returns the newest valid one. Both bad: the first error is thrown. */
export function readSuperblock(storage: BlockStorage): SuperblockRead {
  let best: Superblock | undefined;
  const errors: Error[] = [];
  for (const pfn of SUPERBLOCK_PFNS) {
    try {
      const sb = decodeSuperblock(storage.view(pfn * BLOCK_SIZE, BLOCK_SIZE), `superblock copy at block ${pfn}`);
      if (!best || sb.generation > best.generation) best = sb;
    } catch (err) {
      if (err instanceof VersionError) throw err;
      errors.push(err as Error);
    }
  }
  if (!best) throw errors[0];
  if (best.volumeBlocks * BLOCK_SIZE > storage.sizeBytes) {
    throw new CorruptError(`volume file is ${storage.sizeBytes} bytes, superblock says ${best.volumeBlocks * BLOCK_SIZE}`);
  }
  return { sb: best, badCopies: errors.map((e) => e.message) };
}

/**
 * Writes the next generation into the copy that does not hold the current one and
 * flushes it. Superblock writes are rare (mount, unmount) and never part of a journal
 * transaction: the two copies make them atomic.
 */
export async function writeSuperblock(storage: BlockStorage, sb: Superblock): Promise<void> {
  sb.generation += 1;
  const pfn = SUPERBLOCK_PFNS[(sb.generation - 1) % 2];
  storage.view(pfn * BLOCK_SIZE, BLOCK_SIZE).set(encodeSuperblock(sb));
  await storage.flush(pfn * BLOCK_SIZE, BLOCK_SIZE);
}

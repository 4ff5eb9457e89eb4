/**
 * Superblock checks: both copies, not only the one mount would use.
 *
 * A copy that fails verification is a finding, with one exception: a torn superblock
 * write. writeSuperblock() rewrites the copy NOT holding the newest generation g with
 * generation g + 1, so after a crash in the middle of it that copy is a sector-by-sector
 * mix of its previous content (generation g - 1) and the new one (g + 1), which differ
 * from the valid copy only in generation and the CLEAN flag. Such a copy is reported as a
 * note: it is the expected leftover of a crash (the next mount rewrites it), whereas a
 * flipped byte matches neither and is a finding.
 */
import { BLOCK_SIZE } from '../limits';
import { DaxError, VersionError } from '../errors';
import { FORMAT_VERSION, SUPERBLOCK_PFNS } from '../media/layout';
import { decodeSuperblock, encodeSuperblock, Superblock } from '../media/superblock';
import type { BlockStorage } from '../media/storage';
import { reasonOf, type FindingLog, type FsckInfo } from './report';

/** storage.ts: unflushed bytes reach the medium in 512-byte sectors, so a torn write mixes sectors. */
const SECTOR_BYTES = 512;

interface CopyState {
  pfn: number;
  raw: Uint8Array;
  sb?: Superblock;
  error?: string;
}

/** Returns the superblock mount would use, or null when checking cannot go on. */
export function checkSuperblocks(storage: BlockStorage, log: FindingLog, info: FsckInfo): Superblock | null {
  if (storage.sizeBytes < (SUPERBLOCK_PFNS[1] + 1) * BLOCK_SIZE) {
    log.add('NO_VALID_SUPERBLOCK', `storage is ${storage.sizeBytes} bytes, too small to hold the superblock copies`);
    return null;
  }
  const copies: CopyState[] = [];
  for (const pfn of SUPERBLOCK_PFNS) {
    const raw = storage.view(pfn * BLOCK_SIZE, BLOCK_SIZE);
    try {
      copies.push({ pfn, raw, sb: decodeSuperblock(raw, `superblock copy at block ${pfn}`) });
    } catch (err) {
      if (err instanceof VersionError) {
        log.add('SUPERBLOCK_VERSION', `superblock copy at block ${pfn}: ${reasonOf(err)} (mount refuses with EVERSION; expected version ${FORMAT_VERSION})`);
        return null;
      }
      if (!(err instanceof DaxError)) throw err;
      copies.push({ pfn, raw, error: reasonOf(err) });
    }
  }
  const valid = copies.filter((c) => c.sb !== undefined);
  if (valid.length === 0) {
    for (const c of copies) log.add('SUPERBLOCK_COPY_BAD', c.error!);
    log.add('NO_VALID_SUPERBLOCK', 'neither superblock copy verifies: mount refuses the volume (ECORRUPT)');
    return null;
  }
  const best = valid.reduce((a, b) => (b.sb!.generation > a.sb!.generation ? b : a)).sb!;
  checkGenerations(valid, log);
  for (const c of copies.filter((x) => x.error !== undefined)) {
    if (isTornWrite(c.raw, best)) info.notes.push(`superblock copy at block ${c.pfn} is a torn superblock write (generation ${best.generation + 1} in progress); mount uses generation ${best.generation} and rewrites it`);
    else log.add('SUPERBLOCK_COPY_BAD', `${c.error}; mount uses the copy of generation ${best.generation}`);
  }
  info.volumeBytes = best.volumeBlocks * BLOCK_SIZE;
  info.uuid = Buffer.from(best.uuid).toString('hex');
  info.formatVersion = best.version;
  info.superblockGeneration = best.generation;
  info.cleanFlag = best.clean;
  info.maxFiles = best.maxFiles;
  info.dataBlocks = best.layout.data.count;
  if (info.volumeBytes > storage.sizeBytes) {
    log.add('VOLUME_TRUNCATED', `the volume file is ${storage.sizeBytes} bytes, the superblock says ${info.volumeBytes}`);
    return null;
  }
  return best;
}

/** Generation g lives in copy (g - 1) % 2; two valid copies are consecutive generations of one volume. */
function checkGenerations(valid: CopyState[], log: FindingLog): void {
  for (const c of valid) {
    const g = c.sb!.generation;
    const home = SUPERBLOCK_PFNS[(g - 1) % 2];
    if (home !== c.pfn) log.add('SUPERBLOCK_GENERATION', `superblock copy at block ${c.pfn} holds generation ${g}, which belongs in block ${home}`);
  }
  if (valid.length !== 2) return;
  const [a, b] = [valid[0].sb!, valid[1].sb!];
  if (!Buffer.from(a.uuid).equals(Buffer.from(b.uuid))) {
    log.add('SUPERBLOCK_COPIES_DIFFER', `superblock copies name different volumes (uuid ${Buffer.from(a.uuid).toString('hex')} vs. ${Buffer.from(b.uuid).toString('hex')})`);
  }
  if (a.volumeBlocks !== b.volumeBlocks) {
    log.add('SUPERBLOCK_COPIES_DIFFER', `superblock copies disagree on the volume size (${a.volumeBlocks} vs. ${b.volumeBlocks} blocks)`);
  }
  if (Math.abs(a.generation - b.generation) !== 1) {
    log.add('SUPERBLOCK_COPIES_DIFFER', `superblock generations ${a.generation} and ${b.generation} are not consecutive`);
  }
}

/** True iff every sector of `raw` is the same sector of an encoding of generation g - 1 or g + 1. */
function isTornWrite(raw: Uint8Array, best: Superblock): boolean {
  const candidates: Uint8Array[] = [];
  for (const generation of [best.generation - 1, best.generation + 1]) {
    if (generation < 1) continue;
    for (const clean of [false, true]) candidates.push(encodeSuperblock({ ...best, generation, clean }));
  }
  for (let off = 0; off < BLOCK_SIZE; off += SECTOR_BYTES) {
    const sector = Buffer.from(raw.subarray(off, off + SECTOR_BYTES));
    if (!candidates.some((c) => sector.equals(c.subarray(off, off + SECTOR_BYTES)))) return false;
  }
  return true;
}

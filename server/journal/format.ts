/**
 * On-media format of one journal transaction, written at the start of the journal zone.
 *
 *   block 0        header: magic u32, version u32, seq u64, count u32, descBlocks u32,
 *                  reserved u32 (0), checksum u32 at 28; rest zero
 *   blocks 1..d    descriptors: `count` home block numbers (u32), 1024 per block
 *   blocks d+1..   `count` block images, in descriptor order
 *
 * The checksum covers the header (with the checksum field as zero), the descriptors and
 * every image: it is the commit record (not a CRC-32: see checksumOf). A transaction is
 * valid only when all of it reached the medium, so a torn commit is discarded, and a
 * flipped byte anywhere is detected.
 * Only one transaction lives in the journal at a time: commit checkpoints it (copies the
 * images home and flushes them) before the next one may overwrite it. Replaying a valid,
 * already-checkpointed transaction again is harmless: its images are the newest content
 * of blocks that no later committed transaction has freed (a block freed later would have
 * been freed by a transaction that overwrote this one).
 */
import crypto from 'node:crypto';
import { BLOCK_SIZE } from '../limits';
import { dataView, getU64, setU64 } from '../media/u64';

import { checkFormatVersion, JOURNAL_VERSION } from '../media/layout';

export { JOURNAL_VERSION };
export const JOURNAL_MAGIC = 0x544a5844; // "DXJT"
export const ENTRIES_PER_DESCRIPTOR = BLOCK_SIZE / 4;
const CRC_OFF = 28;

export function descriptorBlocks(count: number): number {
  return Math.ceil(count / ENTRIES_PER_DESCRIPTOR);
}

export function transactionBlocks(count: number): number {
  return 1 + descriptorBlocks(count) + count;
}

/** Largest image count that fits a journal zone of `journalBlocks`. */
export function maxImages(journalBlocks: number): number {
  let n = Math.floor(((journalBlocks - 1) * ENTRIES_PER_DESCRIPTOR) / (ENTRIES_PER_DESCRIPTOR + 1));
  while (transactionBlocks(n) > journalBlocks) n--;
  return n;
}

/** Serialises a transaction into `zone` (the journal zone's bytes). */
export function encodeTransaction(zone: Uint8Array, seq: number, homes: number[], images: Uint8Array[]): number {
  const count = homes.length;
  const desc = descriptorBlocks(count);
  const total = transactionBlocks(count);
  const header = zone.subarray(0, BLOCK_SIZE);
  header.fill(0);
  const dv = dataView(header);
  // The magic goes in after the rest of the header: a process killed while the header is
  // being written leaves no magic (fill above), so our magic always comes with its version.
  dv.setUint32(4, JOURNAL_VERSION, true);
  setU64(dv, 8, seq);
  dv.setUint32(16, count, true);
  dv.setUint32(20, desc, true);
  dv.setUint32(0, JOURNAL_MAGIC, true);
  const descBytes = zone.subarray(BLOCK_SIZE, (1 + desc) * BLOCK_SIZE);
  descBytes.fill(0);
  const ddv = dataView(descBytes);
  homes.forEach((h, i) => ddv.setUint32(i * 4, h, true));
  images.forEach((img, i) => zone.set(img, (1 + desc + i) * BLOCK_SIZE));
  dv.setUint32(CRC_OFF, checksumOf(zone, total), true);
  return total;
}

/**
 * The commit checksum: the first 4 bytes (LE) of SHA-256 over the transaction.
 *
 * Not CRC-32, because the images embed CRC-32 records: an inode slot is 508 bytes and
 * their CRC-32, and a CRC over data containing such a record does not depend on the
 * record's content (CRC linearity: M || crc(M) always leaves the same residue). Inode
 * slots are 512 bytes, sector-aligned, so a torn commit that missed only inode-slot
 * sectors (old slot still valid) verified, and replay put stale inodes over new maps and
 * bitmaps (found by test/crash/torn-write.test.ts: power loss at a journal flush).
 */
function checksumOf(zone: Uint8Array, totalBlocks: number): number {
  const hash = crypto.createHash('sha256');
  hash.update(zone.subarray(0, CRC_OFF));
  hash.update(new Uint8Array(4));
  hash.update(zone.subarray(CRC_OFF + 4, totalBlocks * BLOCK_SIZE));
  return hash.digest().readUInt32LE(0);
}

export type DecodedJournal =
  | { state: 'empty' }
  | { state: 'discarded'; reason: string; seq: number }
  | { state: 'valid'; seq: number; homes: number[]; images: Uint8Array[] };

/**
 * Reads the transaction at the start of the journal zone; never throws on torn or corrupt
 * content (discarded), only on a version it does not support (EVERSION).
 */
export function decodeTransaction(zone: Uint8Array): DecodedJournal {
  const dv = dataView(zone.subarray(0, BLOCK_SIZE));
  const magic = dv.getUint32(0, true);
  if (magic === 0 && zone.subarray(0, BLOCK_SIZE).every((b) => b === 0)) return { state: 'empty' };
  const seq = getU64(dv, 8);
  if (magic !== JOURNAL_MAGIC) return { state: 'discarded', reason: `bad magic 0x${magic.toString(16)}`, seq };
  // Version policy (media/layout.ts): a header with our magic and another version may hold
  // a committed transaction of another format; discarding it as torn would drop it.
  // Version 0 was never written by any daxd: a header torn on the medium (a power cut
  // inside its sector), not another format.
  const version = dv.getUint32(4, true);
  if (version === 0) return { state: 'discarded', reason: 'torn header (version 0)', seq };
  checkFormatVersion('journal', version, JOURNAL_VERSION);
  const count = dv.getUint32(16, true);
  const desc = dv.getUint32(20, true);
  const journalBlocks = zone.byteLength / BLOCK_SIZE;
  if (count === 0 || desc !== descriptorBlocks(count) || transactionBlocks(count) > journalBlocks) {
    return { state: 'discarded', reason: `impossible size (count ${count}, descriptors ${desc})`, seq };
  }
  const stored = dv.getUint32(CRC_OFF, true);
  const actual = checksumOf(zone, transactionBlocks(count));
  if (stored !== actual) return { state: 'discarded', reason: `checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${actual.toString(16)})`, seq };
  const ddv = dataView(zone.subarray(BLOCK_SIZE, (1 + desc) * BLOCK_SIZE));
  const homes: number[] = [];
  const images: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    homes.push(ddv.getUint32(i * 4, true));
    images.push(zone.subarray((1 + desc + i) * BLOCK_SIZE, (2 + desc + i) * BLOCK_SIZE));
  }
  return { state: 'valid', seq, homes, images };
}

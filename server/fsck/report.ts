/**
 * What fsck reports: findings (broken invariants, each with a stable code) and info (what
 * the volume holds, and legal crash leftovers such as orphans or a discarded journal).
 *
 * A report is clean iff it has no findings. Everything in it is plain JSON (`daxd fsck
 * --json` prints it as is).
 */
import assert from 'node:assert';
import type { DaxError } from '../errors';

/** Every finding code, with the invariant it says is broken. */
export const FINDING_CODES = {
  NO_VALID_SUPERBLOCK: 'Neither superblock copy verifies: the volume cannot be mounted; nothing else was checked.',
  SUPERBLOCK_VERSION: 'A superblock copy has a format version this daxd does not read (mount refuses with EVERSION); nothing else was checked.',
  SUPERBLOCK_COPY_BAD: 'One superblock copy fails verification (and is not explained by a torn superblock write); mount uses the other.',
  SUPERBLOCK_COPIES_DIFFER: 'Both copies verify but disagree on the volume (uuid, geometry) or their generations are not consecutive.',
  SUPERBLOCK_GENERATION: 'A copy holds a generation that is never written to its block (generation g lives in copy (g - 1) % 2).',
  VOLUME_TRUNCATED: 'The volume file is shorter than the superblock says; nothing else was checked.',
  ZERO_PAGE_NOT_ZERO: 'Block 0 (the shared zero page) holds a non-zero byte.',
  JOURNAL_CORRUPT: 'The journal holds a checksum-valid transaction that mount refuses (a home outside the metadata zones) or that repeats a home.',
  JOURNAL_VERSION: 'The journal holds a transaction of a format version this daxd does not read (mount refuses with EVERSION rather than drop it).',
  JOURNAL_HOME_NOT_METADATA: 'A valid journal transaction names a data-zone block that is not a block-map block: replaying it would overwrite data.',
  INODE_CHECKSUM: 'A used inode slot fails its checksum (mount refuses the volume).',
  INODE_STATE: 'An inode slot state is impossible (unknown value, or FREE while the inode bitmap marks it used).',
  INODE_FIELD: 'An inode field is impossible (size, blocks or map depth out of range, name length).',
  INODE_NAME: 'A linked inode name is not 1..255 bytes of valid UTF-8 without NUL, or an orphan still has a name.',
  INODE_RESERVED: 'Reserved or unused bytes of an inode slot are not zero.',
  INODE_BITMAP_MISSING: 'An inode slot is in use but its inode bitmap bit is clear (mount would not see the file).',
  INODE_BITMAP_BEYOND: 'The inode bitmap marks an inode number at or beyond maxFiles.',
  DUPLICATE_NAME: 'Two linked inodes carry the same name.',
  SIZE_BEYOND_MAX: 'A file size is larger than the largest file size.',
  MAP_DEPTH: 'Map root and depth disagree (root 0 iff depth 0), or the depth is above the maximum.',
  MAP_OUT_OF_RANGE: 'A block-map entry (data block or map block) points outside the data zone.',
  MAP_ENTRY_BAD: 'A leaf entry is not HOLE (0), UNWRITTEN(pfn > 0) or WRITTEN(pfn > 0).',
  MAP_BEYOND_MAX_SIZE: 'A leaf entry maps a page beyond the largest file size.',
  BLOCKS_COUNT_MISMATCH: 'inode.blocks differs from the number of WRITTEN + UNWRITTEN entries of its map.',
  BLOCK_MAPPED_TWICE: 'A block is referenced more than once (as data or map block, by one or several files).',
  BITMAP_LEAK: 'The block bitmap marks blocks that no file references (space lost for good).',
  BITMAP_MISSING: 'A referenced block is free in the block bitmap (the allocator could hand it out again).',
  BITMAP_BEYOND_DATA: 'The block bitmap has bits set past the end of the data zone.',
} as const;

export type FindingCode = keyof typeof FINDING_CODES;

export interface Finding {
  code: FindingCode;
  /** Precise: which copy / inode / pgoff / pfn, expected vs. found. */
  message: string;
}

export interface FsckInfo {
  /** Size the superblock gives the volume (0 when no copy verifies). */
  volumeBytes: number;
  /** Size of the storage (volume file) fsck read. */
  storageBytes: number;
  uuid: string;
  formatVersion: number;
  superblockGeneration: number;
  /** The superblock's CLEAN flag (false after a crash, or while mounted). */
  cleanFlag: boolean;
  /** 'empty' | 'valid seq N (N blocks)' | 'discarded: reason' | 'corrupt: reason'. */
  journal: string;
  maxFiles: number;
  inodesUsed: number;
  /** Linked files (with a name). */
  files: number;
  /** Unlinked inodes still holding blocks: legal after a crash, mount frees them. */
  orphans: number;
  /** The first orphan inode numbers (at most ORPHANS_LISTED_MAX). */
  orphanInodes: number[];
  dataBlocks: number;
  /** Set bits of the block bitmap inside the data zone. */
  blocksUsed: number;
  blocksFree: number;
  /** Blocks the files' maps reference: data blocks + map blocks. */
  blocksReferenced: number;
  mapBlocks: number;
  /** Notes that are not findings: torn superblock write seen, checks skipped and why. */
  notes: string[];
}

export interface FsckReport {
  clean: boolean;
  findings: Finding[];
  info: FsckInfo;
}

export const ORPHANS_LISTED_MAX = 100;
/** Findings kept per code; past it one summary line says how many more there were. */
export const FINDINGS_PER_CODE_MAX = 50;

export function emptyInfo(storageBytes: number): FsckInfo {
  return {
    volumeBytes: 0, storageBytes, uuid: '', formatVersion: 0, superblockGeneration: 0, cleanFlag: false,
    journal: 'not read', maxFiles: 0, inodesUsed: 0, files: 0, orphans: 0, orphanInodes: [],
    dataBlocks: 0, blocksUsed: 0, blocksFree: 0, blocksReferenced: 0, mapBlocks: 0, notes: [],
  };
}

/** Collects findings with a bound per code, so a wrecked 1 TiB volume still gives a short report. */
export class FindingLog {
  private readonly kept: Finding[] = [];
  private readonly perCode = new Map<FindingCode, number>();

  add(code: FindingCode, message: string): void {
    assert(code in FINDING_CODES, `unknown finding code ${code}`);
    const n = (this.perCode.get(code) ?? 0) + 1;
    this.perCode.set(code, n);
    if (n <= FINDINGS_PER_CODE_MAX) this.kept.push({ code, message });
  }

  count(code?: FindingCode): number {
    if (code !== undefined) return this.perCode.get(code) ?? 0;
    let total = 0;
    for (const n of this.perCode.values()) total += n;
    return total;
  }

  finish(): Finding[] {
    const out = [...this.kept];
    for (const [code, n] of this.perCode) {
      if (n > FINDINGS_PER_CODE_MAX) out.push({ code, message: `${n - FINDINGS_PER_CODE_MAX} more ${code} findings not listed (${n} in all)` });
    }
    return out;
  }
}

/** Human text: a summary, the info, then one line per finding ("CODE: message"). */
export function formatReport(report: FsckReport): string {
  const i = report.info;
  const lines: string[] = [];
  lines.push(report.clean ? 'fsck: clean' : `fsck: ${report.findings.length} finding(s)`);
  lines.push(`volume: ${i.volumeBytes} bytes (storage ${i.storageBytes}), uuid ${i.uuid || '-'}, format ${i.formatVersion}`);
  lines.push(`superblock: generation ${i.superblockGeneration}, ${i.cleanFlag ? 'clean' : 'not clean (in use or crashed)'}`);
  lines.push(`journal: ${i.journal}`);
  lines.push(`files: ${i.files} linked, ${i.orphans} orphan(s)${i.orphans > 0 ? ` [${i.orphanInodes.join(', ')}${i.orphans > i.orphanInodes.length ? ', ...' : ''}] (mount frees them)` : ''}, ${i.inodesUsed} of ${i.maxFiles} inodes used`);
  lines.push(`blocks: ${i.dataBlocks} in data zone, ${i.blocksUsed} used, ${i.blocksFree} free, ${i.blocksReferenced} referenced (${i.mapBlocks} map blocks)`);
  for (const note of i.notes) lines.push(`note: ${note}`);
  for (const f of report.findings) lines.push(`${f.code}: ${f.message}`);
  return lines.join('\n');
}

/** A DaxError's message without its "CODE: " prefix (findings carry their own code). */
export function reasonOf(err: DaxError): string {
  const prefix = `${err.code}: `;
  return err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
}

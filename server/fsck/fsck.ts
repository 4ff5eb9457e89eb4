/**
 * fsck: checks every invariant of a daxd volume, read-only.
 *
 * It reads the raw media through the storage interface (never mounting a FileSystem, never
 * writing, never flushing): the journal's valid transaction, if any, is laid over the
 * blocks it names as an in-memory overlay, exactly the volume mount would see after replay
 * (S6: "fsck finds no inconsistency after any crash" holds before mount as after it).
 *
 * Order of checks (a later one needs what an earlier one established):
 *   1. superblock copies, geometry       superblock-check.ts  (fatal if no copy is usable)
 *   2. zero page (pfn 0 never written)
 *   3. journal -> overlay                 journal-check.ts
 *   4. inode bitmap and every slot        inode-check.ts
 *      each used inode's block map        map-walk.ts: ranges, entries, blocks count,
 *                                         every reference marked once in a bitmap
 *   5. names unique                       inode-check.ts (NameIndex)
 *   6. block bitmap == references         bitmap-check.ts
 *   7. owners of double / missing blocks  block-refs.ts (second walk, only if needed)
 *   8. journal homes in the data zone are map blocks
 *
 * Legal crash leftovers are info, not findings: orphans (mount frees them), a discarded
 * (torn) journal transaction, a torn superblock copy, blocks past EOF (preallocation).
 *
 * Memory: one bit per data block (32 MiB at 1 TiB) plus 8 bytes per linked file.
 */
import { BLOCK_SIZE } from '../limits';
import type { BlockStorage } from '../media/storage';
import { BITS_PER_BLOCK, INODES_PER_BLOCK, INODE_SIZE_BYTES, Layout } from '../media/layout';
import { decodeInode, INODE_LINKED, INODE_ORPHAN } from '../fs/inode';
import { checkSuperblocks } from './superblock-check';
import { checkJournal } from './journal-check';
import { OverlayReader } from './overlay';
import { checkFreeSlot, checkUsedSlot, NameIndex, type SlotPlace } from './inode-check';
import { walkMap } from './map-walk';
import { FirstPass, OwnerPass } from './block-refs';
import { compareBlockBitmap } from './bitmap-check';
import { emptyInfo, FindingLog, FsckInfo, FsckReport, ORPHANS_LISTED_MAX } from './report';

export { formatReport, FINDING_CODES } from './report';
export type { Finding, FindingCode, FsckInfo, FsckReport } from './report';

export async function fsck(storage: BlockStorage): Promise<FsckReport> {
  const log = new FindingLog();
  const info = emptyInfo(storage.sizeBytes);
  const sb = checkSuperblocks(storage, log, info);
  if (sb) checkVolume(storage, sb.layout, log, info);
  const findings = log.finish();
  return { clean: findings.length === 0, findings, info };
}

/** Metadata scanned once is let go of (dropResident) in steps of this many blocks (8 MiB). */
const SCAN_STEP_BLOCKS = 2048;

/** What the inode pass learnt, for the checks that follow it. */
interface InodePass {
  refs: FirstPass;
  /** Inodes whose maps were walked (for the owner pass). */
  walked: number[];
  unreadable: number;
  incomplete: number;
}

function checkVolume(storage: BlockStorage, layout: Layout, log: FindingLog, info: FsckInfo): void {
  checkZeroPage(storage, log);
  const reader = new OverlayReader(storage);
  const homesInData = new Set(checkJournal(storage, layout, reader, log, info));
  const pass = checkInodes(reader, layout, log, info, homesInData);
  const whole = pass.unreadable === 0 && pass.incomplete === 0;
  if (!whole) info.notes.push(`${pass.unreadable} inode(s) unreadable and ${pass.incomplete} map(s) not walked completely: BITMAP_LEAK and journal-home checks skipped (their blocks would show as leaks)`);
  const bitmap = compareBlockBitmap(reader, layout, pass.refs.seen, log, whole);
  info.blocksUsed = bitmap.used;
  info.blocksFree = layout.data.count - bitmap.used;
  info.blocksReferenced = pass.refs.referenced;
  info.mapBlocks = pass.refs.mapBlocks;
  reportOwners(reader, layout, pass, bitmap.missing, bitmap.missingCount, log);
  if (whole) {
    for (const home of homesInData) {
      if (!pass.refs.homesAsMap.has(home)) log.add('JOURNAL_HOME_NOT_METADATA', `the journal transaction logs block ${home} of the data zone, which is not a block-map block of any file: replay would overwrite it`);
    }
  }
}

/** pfn 0 is never written: a mapping of a hole reads it. */
function checkZeroPage(storage: BlockStorage, log: FindingLog): void {
  const page = storage.view(0, BLOCK_SIZE);
  const at = page.findIndex((b) => b !== 0);
  if (at >= 0) log.add('ZERO_PAGE_NOT_ZERO', `block 0 (the zero page) has byte ${at} = 0x${page[at].toString(16)}, expected all zeros`);
}

/** Every slot of the inode table against the inode bitmap; each used inode's map walked. */
function checkInodes(reader: OverlayReader, layout: Layout, log: FindingLog, info: FsckInfo, homesInData: ReadonlySet<number>): InodePass {
  const pass: InodePass = { refs: new FirstPass(layout, homesInData), walked: [], unreadable: 0, incomplete: 0 };
  const names = new NameIndex();
  checkInodeBitmapTail(reader, layout, log);
  const bits = new InodeBits(reader, layout);
  for (let b = 0; b < layout.inodes.count; b++) {
    const pfn = layout.inodes.start + b;
    if (b > 0 && b % SCAN_STEP_BLOCKS === 0) reader.done(pfn - SCAN_STEP_BLOCKS, SCAN_STEP_BLOCKS);
    const block = reader.block(pfn);
    for (let index = 0; index < INODES_PER_BLOCK; index++) {
      const ino = b * INODES_PER_BLOCK + index;
      const slot = block.subarray(index * INODE_SIZE_BYTES, (index + 1) * INODE_SIZE_BYTES);
      if (!bits.has(ino)) checkFreeSlot(ino, slot, { pfn, index }, log);
      else checkFile(reader, layout, log, info, pass, names, ino, slot, { pfn, index });
    }
  }
  reader.done(layout.inodes.start, layout.inodes.count);
  names.reportDuplicates((ino) => decodeInode(ino, slotOf(reader, layout, ino)).name, log);
  return pass;
}

/** One used inode: its slot, its name, its map (every block claimed once), its blocks count. */
function checkFile(reader: OverlayReader, layout: Layout, log: FindingLog, info: FsckInfo, pass: InodePass,
  names: NameIndex, ino: number, slot: Uint8Array, at: SlotPlace): void {
  info.inodesUsed++;
  const inode = checkUsedSlot(ino, slot, at, log);
  if (!inode) {
    pass.unreadable++;
    return;
  }
  if (inode.state === INODE_LINKED) {
    info.files++;
    names.add(ino, inode.name);
  } else if (inode.state === INODE_ORPHAN) {
    if (info.orphanInodes.length < ORPHANS_LISTED_MAX) info.orphanInodes.push(ino);
    info.orphans++;
  }
  if (inode.mapRoot !== 0 && inode.mapDepth === 0) {
    pass.incomplete++; // MAP_DEPTH already reported: there is no tree shape to walk
    return;
  }
  const walk = walkMap(reader, layout, log, pass.refs, ino, inode.mapRoot, inode.mapDepth);
  pass.walked.push(ino);
  if (!walk.complete) pass.incomplete++;
  else if (walk.entries !== inode.blocks) {
    log.add('BLOCKS_COUNT_MISMATCH', `inode ${ino}: blocks says ${inode.blocks}, its map has ${walk.entries} WRITTEN + UNWRITTEN entries`);
  }
}

/** The inode bitmap (through the overlay), one block fetched per 32768 inodes. */
class InodeBits {
  private index = -1;
  private bytes: Uint8Array = new Uint8Array(0);

  constructor(private readonly reader: OverlayReader, private readonly layout: Layout) {}

  has(ino: number): boolean {
    const index = Math.floor(ino / BITS_PER_BLOCK);
    if (index !== this.index) {
      this.bytes = this.reader.block(this.layout.inodeBitmap.start + index);
      this.index = index;
    }
    const bit = ino % BITS_PER_BLOCK;
    return ((this.bytes[bit >>> 3] >>> (bit & 7)) & 1) === 1;
  }
}

/** Bits at or past maxFiles must be clear (mount asserts it). */
function checkInodeBitmapTail(reader: OverlayReader, layout: Layout, log: FindingLog): void {
  const bits = new InodeBits(reader, layout);
  for (let ino = layout.maxFiles; ino < layout.inodeBitmap.count * BITS_PER_BLOCK; ino++) {
    if (bits.has(ino)) log.add('INODE_BITMAP_BEYOND', `the inode bitmap marks inode ${ino} used, beyond maxFiles (${layout.maxFiles})`);
  }
}

function slotOf(reader: OverlayReader, layout: Layout, ino: number): Uint8Array {
  const block = reader.block(layout.inodes.start + Math.floor(ino / INODES_PER_BLOCK));
  const off = (ino % INODES_PER_BLOCK) * INODE_SIZE_BYTES;
  return block.subarray(off, off + INODE_SIZE_BYTES);
}

/** Names the owners of blocks referenced twice and of referenced blocks the bitmap says are free. */
function reportOwners(reader: OverlayReader, layout: Layout, pass: InodePass, missing: number[], missingCount: number, log: FindingLog): void {
  const { refs } = pass;
  if (refs.twiceCount === 0 && missingCount === 0) return;
  const owners = new OwnerPass(refs.twice, missing);
  for (const ino of pass.walked) {
    const inode = decodeInode(ino, slotOf(reader, layout, ino));
    walkMap(reader, layout, null, owners, ino, inode.mapRoot, inode.mapDepth);
  }
  for (const pfn of refs.twice) {
    const list = owners.owners.get(pfn)!;
    log.add('BLOCK_MAPPED_TWICE', `block ${pfn} is referenced ${list.length} times: ${list.join(', ')}`);
  }
  for (let i = refs.twice.size; i < refs.twiceCount; i++) log.add('BLOCK_MAPPED_TWICE', 'a block is referenced more than once (owners not tracked)');
  for (const pfn of missing) {
    log.add('BITMAP_MISSING', `block ${pfn} is referenced by ${owners.owners.get(pfn)!.join(', ')} but free in the block bitmap`);
  }
  for (let i = missing.length; i < missingCount; i++) log.add('BITMAP_MISSING', 'a referenced block is free in the block bitmap (owner not tracked)');
}

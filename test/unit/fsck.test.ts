/**
 * fsck: clean volumes are clean, and each corruption crafted in the raw bytes yields
 * exactly the finding it should (no more: a finding that drags others along would hide
 * which invariant broke). Every finding code is exercised here (checked at the end).
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { BLOCK_SIZE } from '../../server/limits';
import { MemoryStorage } from '../../server/media/memory-storage';
import { encodeSuperblock, readSuperblock } from '../../server/media/superblock';
import { mkfs } from '../../server/fs/mkfs';
import { FileSystem } from '../../server/fs/filesystem';
import { makeEntry, STATE_WRITTEN } from '../../server/fs/block-map';
import { fsck, formatReport, FINDING_CODES, type FindingCode, type FsckReport } from '../../server/fsck/fsck';
import { FINDINGS_PER_CODE_MAX } from '../../server/fsck/report';
import { block, editInode, editSuperblock, flipByte, inodeSlot, layoutOf, leafEntries, readInode, resealInode, resealSuperblock, setBlockBit, setInodeBit, settleJournal, writeJournal } from '../support/volume-surgery';
import { GiB, MiB } from '../support/units';

const codesSeen = new Set<FindingCode>();

function codes(report: FsckReport): FindingCode[] {
  for (const f of report.findings) codesSeen.add(f.code);
  return report.findings.map((f) => f.code).sort();
}

async function expectFindings(storage: MemoryStorage, expected: FindingCode[]): Promise<FsckReport> {
  const report = await fsck(storage);
  assert.deepEqual(codes(report), [...expected].sort(), formatReport(report));
  assert.equal(report.clean, expected.length === 0);
  return report;
}

interface Files {
  /** 3 written blocks at pgoff 0..2. */
  a: number;
  /** One written block at pgoff 0 (pgoff 1 is a hole of the same leaf). */
  b: number;
  /** Empty: no map. */
  c: number;
  /** Depth-3 map: 2 unwritten blocks preallocated at 4 GiB, past EOF (legal). */
  deep: number;
}

let baseImage: Uint8Array;
let files: Files;

/** A copy of the populated, cleanly unmounted volume, its journal settled (see volume-surgery.ts). */
function fresh(): MemoryStorage {
  const storage = MemoryStorage.fromImage(baseImage);
  settleJournal(storage);
  return storage;
}

function pfnOf(storage: MemoryStorage, ino: number, pgoff: number): number {
  const { entries, index } = leafEntries(storage, ino, pgoff);
  return entries[index] & ((1 << 30) - 1);
}

describe('fsck', () => {
  before(async () => {
    const storage = new MemoryStorage(16 * MiB);
    await mkfs(storage);
    const fs = await FileSystem.mount(storage);
    const a = await fs.create('a', true);
    await fs.write(a.ino, 0, Buffer.alloc(3 * BLOCK_SIZE, 0x11), false);
    const b = await fs.create('b', true);
    await fs.write(b.ino, 0, Buffer.alloc(100, 0x22), false);
    const c = await fs.create('c', true);
    const deep = await fs.create('deep', true);
    await fs.write(deep.ino, 0, Buffer.alloc(10, 0x33), false);
    await fs.fallocate(deep.ino, 'KEEP_SIZE', 4 * GiB, 2 * BLOCK_SIZE);
    await fs.unmount();
    baseImage = storage.durableImage();
    files = { a: a.ino, b: b.ino, c: c.ino, deep: deep.ino };
  });

  after(function () {
    // Only when every test here ran and passed (not under --grep, not after a failure).
    const all = (suite: Mocha.Suite): Mocha.Test[] => [...suite.tests, ...suite.suites.flatMap(all)];
    if (!this.test?.parent || !all(this.test.parent).every((t) => t.state === 'passed')) return;
    const untested = Object.keys(FINDING_CODES).filter((c) => !codesSeen.has(c as FindingCode));
    assert.deepEqual(untested, [], 'every finding code has a test that produces it');
  });

  describe('clean volumes', () => {
    it('a fresh volume is clean and described', async () => {
      const storage = new MemoryStorage(16 * MiB);
      await mkfs(storage);
      const report = await expectFindings(storage, []);
      const layout = layoutOf(storage);
      assert.equal(report.info.journal, 'empty');
      assert.equal(report.info.files, 0);
      assert.equal(report.info.blocksUsed, 0);
      assert.equal(report.info.blocksFree, layout.data.count);
      assert.equal(report.info.volumeBytes, 16 * MiB);
      assert.equal(report.info.cleanFlag, true);
      assert.equal(report.info.superblockGeneration, 2);
      assert.deepEqual(report.info.notes, []);
    });

    it('a volume with files (multi-level maps, blocks past EOF) is clean, before and after settling the journal', async () => {
      const unsettled = MemoryStorage.fromImage(baseImage);
      const before = await expectFindings(unsettled, []);
      assert.match(before.info.journal, /^valid seq \d+ \(\d+ blocks\)$/);
      const report = await expectFindings(fresh(), []);
      assert.equal(report.info.journal, 'empty');
      assert.equal(report.info.files, 4);
      assert.equal(report.info.orphans, 0);
      // a: 3 data + 1 leaf; b: 1 + 1; deep: 1 + leaf and 3 map blocks for pgoff 0, 2 + 2 more map blocks at 4 GiB.
      assert.equal(report.info.mapBlocks, 1 + 1 + 5);
      assert.equal(report.info.blocksReferenced, 3 + 1 + 3 + report.info.mapBlocks);
      assert.equal(report.info.blocksUsed, report.info.blocksReferenced);
      assert.equal(report.info.cleanFlag, true);
    });

    it('is clean on a mounted volume in use, with uncommitted changes pending', async () => {
      const storage = fresh();
      const fs = await FileSystem.mount(storage, { canaryByte: 0xcc });
      const f = await fs.create('live', true);
      await fs.write(f.ino, 5000, Buffer.alloc(20000, 0x44), false);
      await fs.fsync(f.ino, false);
      await fs.fallocate(files.a, 'PUNCH_HOLE', 0, BLOCK_SIZE);
      await fs.write(f.ino, 3 * MiB, Buffer.alloc(10, 0x45), false); // not committed yet
      const report = await expectFindings(storage, []);
      assert.equal(report.info.cleanFlag, false);
    });

    it('reports an orphan as info, not as a finding', async () => {
      const storage = fresh();
      const fs = await FileSystem.mount(storage);
      const f = await fs.create('held', true);
      await fs.write(f.ino, 0, Buffer.alloc(3 * BLOCK_SIZE, 0x55), false);
      fs.acquire(f.ino);
      await fs.unlink('held');
      await fs.sync();
      const crashed = MemoryStorage.fromImage(storage.durableImage());
      const report = await expectFindings(crashed, []);
      assert.equal(report.info.orphans, 1);
      assert.deepEqual(report.info.orphanInodes, [f.ino]);
      assert.match(formatReport(report), /1 orphan\(s\) \[\d+\] \(mount frees them\)/);
      const remounted = await FileSystem.mount(crashed);
      assert.equal(remounted.mountReport.orphansFreed, 1);
      assert.equal((await expectFindings(crashed, [])).info.orphans, 0);
    });

    it('never writes: the medium, the page cache and the flush count are unchanged', async () => {
      const storage = MemoryStorage.fromImage(baseImage);
      flipByte(storage, block(storage, 0).byteOffset + 7); // give it something to report, too
      const hash = (): string => crypto.createHash('sha256').update(storage.view(0, storage.sizeBytes)).digest('hex');
      const before = hash();
      const durable = crypto.createHash('sha256').update(storage.durableImage()).digest('hex');
      const flushes = storage.flushCount;
      await fsck(storage);
      assert.equal(hash(), before);
      assert.equal(crypto.createHash('sha256').update(storage.durableImage()).digest('hex'), durable);
      assert.equal(storage.flushCount, flushes);
    });

    it('formats one line per finding, after the summary and info', async () => {
      const storage = fresh();
      block(storage, 0)[5] = 1;
      editInode(storage, files.a, (i) => { i.blocks += 2; });
      const report = await fsck(storage);
      codes(report);
      const lines = formatReport(report).split('\n');
      assert.equal(lines[0], 'fsck: 2 finding(s)');
      const findingLines = lines.filter((l) => /^[A-Z_]+: /.test(l) && !l.startsWith('fsck'));
      assert.deepEqual(findingLines.map((l) => l.split(':')[0]).sort(), ['BLOCKS_COUNT_MISMATCH', 'ZERO_PAGE_NOT_ZERO']);
      assert(findingLines.includes(`BLOCKS_COUNT_MISMATCH: inode ${files.a}: blocks says 5, its map has 3 WRITTEN + UNWRITTEN entries`));
      assert.equal(JSON.parse(JSON.stringify(report)).findings.length, 2, 'the report is plain JSON');
    });
  });

  describe('block maps and bitmaps', () => {
    it('a block mapped by two files: BLOCK_MAPPED_TWICE naming both owners', async () => {
      const storage = fresh();
      const shared = pfnOf(storage, files.a, 1);
      const { entries } = leafEntries(storage, files.b, 1);
      entries[1] = makeEntry(STATE_WRITTEN, shared);
      editInode(storage, files.b, (i) => { i.blocks += 1; });
      const report = await expectFindings(storage, ['BLOCK_MAPPED_TWICE']);
      assert.equal(report.findings[0].message, `block ${shared} is referenced 2 times: inode ${files.a} pgoff 1 (data), inode ${files.b} pgoff 1 (data)`);
    });

    it('a map block also mapped as data: BLOCK_MAPPED_TWICE', async () => {
      const storage = fresh();
      const leaf = leafEntries(storage, files.a, 0).leafPfn;
      const { entries } = leafEntries(storage, files.b, 1);
      entries[1] = makeEntry(STATE_WRITTEN, leaf);
      editInode(storage, files.b, (i) => { i.blocks += 1; });
      const report = await expectFindings(storage, ['BLOCK_MAPPED_TWICE']);
      assert.match(report.findings[0].message, new RegExp(`inode ${files.a} map block level 0 \\(from pgoff 0\\), inode ${files.b} pgoff 1 \\(data\\)`));
    });

    it('two files sharing one map: BLOCK_MAPPED_TWICE once, the shared subtree walked once', async () => {
      const storage = fresh();
      const { mapRoot, mapDepth, blocks } = readInode(storage, files.a);
      editInode(storage, files.c, (i) => { i.mapRoot = mapRoot; i.mapDepth = mapDepth; i.blocks = blocks; });
      const report = await expectFindings(storage, ['BLOCK_MAPPED_TWICE']);
      assert.equal(report.findings[0].message, `block ${mapRoot} is referenced 2 times: inode ${files.a} map block level 0 (from pgoff 0), inode ${files.c} map block level 0 (from pgoff 0)`);
    });

    it('a map that points back at its own root: BLOCK_MAPPED_TWICE, and the walk ends', async () => {
      const storage = fresh();
      const { mapRoot } = readInode(storage, files.deep);
      const rootBytes = block(storage, mapRoot);
      const level1 = new Uint32Array(rootBytes.buffer, rootBytes.byteOffset, 1024)[0];
      const l1 = block(storage, level1);
      new Uint32Array(l1.buffer, l1.byteOffset, 1024)[5] = mapRoot;
      const report = await expectFindings(storage, ['BLOCK_MAPPED_TWICE']);
      assert.match(report.findings[0].message, new RegExp(`^block ${mapRoot} is referenced 2 times: inode ${files.deep} map block level 2 \\(from pgoff 0\\), inode ${files.deep} map block level 0 \\(from pgoff 5120\\)$`));
    });

    it('a bitmap bit set for a block nobody references: BITMAP_LEAK', async () => {
      const storage = fresh();
      const pfn = layoutOf(storage).data.start + 3000;
      setBlockBit(storage, pfn, true);
      const report = await expectFindings(storage, ['BITMAP_LEAK']);
      assert.equal(report.findings[0].message, `blocks ${pfn}..${pfn} (1) are allocated in the block bitmap but no file references them`);
    });

    it('a referenced block free in the bitmap: BITMAP_MISSING naming its owner', async () => {
      const storage = fresh();
      const pfn = pfnOf(storage, files.a, 2);
      setBlockBit(storage, pfn, false);
      const report = await expectFindings(storage, ['BITMAP_MISSING']);
      assert.equal(report.findings[0].message, `block ${pfn} is referenced by inode ${files.a} pgoff 2 (data) but free in the block bitmap`);
    });

    it('bitmap bits past the data zone: BITMAP_BEYOND_DATA', async () => {
      const storage = fresh();
      const layout = layoutOf(storage);
      setBlockBit(storage, layout.data.start + layout.data.count + 10, true);
      await expectFindings(storage, ['BITMAP_BEYOND_DATA']);
    });

    it('inode.blocks disagreeing with the map: BLOCKS_COUNT_MISMATCH', async () => {
      const storage = fresh();
      editInode(storage, files.a, (i) => { i.blocks -= 1; });
      const report = await expectFindings(storage, ['BLOCKS_COUNT_MISMATCH']);
      assert.equal(report.findings[0].message, `inode ${files.a}: blocks says 2, its map has 3 WRITTEN + UNWRITTEN entries`);
    });

    it('a map entry pointing outside the data zone: MAP_OUT_OF_RANGE', async () => {
      const storage = fresh();
      const layout = layoutOf(storage);
      const { entries } = leafEntries(storage, files.b, 1);
      entries[1] = makeEntry(STATE_WRITTEN, layout.journal.start + 2);
      editInode(storage, files.b, (i) => { i.blocks += 1; });
      const report = await expectFindings(storage, ['MAP_OUT_OF_RANGE']);
      assert.match(report.findings[0].message, new RegExp(`^inode ${files.b} pgoff 1: WRITTEN pfn ${layout.journal.start + 2} is outside the data zone`));
    });

    it('a map root outside the data zone: MAP_OUT_OF_RANGE (and the leak check is skipped, not wrong)', async () => {
      const storage = fresh();
      editInode(storage, files.b, (i) => { i.mapRoot = 2; });
      const report = await expectFindings(storage, ['MAP_OUT_OF_RANGE']);
      assert(report.info.notes.some((n) => n.includes('BITMAP_LEAK')), report.info.notes.join('\n'));
    });

    it('an entry that is neither HOLE, UNWRITTEN nor WRITTEN: MAP_ENTRY_BAD', async () => {
      const storage = fresh();
      const { entries } = leafEntries(storage, files.a, 1);
      entries[1] = ((3 << 30) | (entries[1] & 0xffff)) >>> 0;
      await expectFindings(storage, ['MAP_ENTRY_BAD']);
    });

    it('root and depth disagreeing: MAP_DEPTH', async () => {
      const storage = fresh();
      editInode(storage, files.c, (i) => { i.mapDepth = 2; });
      await expectFindings(storage, ['MAP_DEPTH']);
    });

    it('a page beyond the largest file: MAP_BEYOND_MAX_SIZE (blocks past EOF below it are legal)', async () => {
      const storage = fresh();
      const inode = readInode(storage, files.deep);
      assert.equal(inode.mapDepth, 3);
      const rootBytes = block(storage, inode.mapRoot);
      const root = new Uint32Array(rootBytes.buffer, rootBytes.byteOffset, 1024);
      assert.notEqual(root[1], 0, 'the 4 GiB preallocation (pgoff 1 << 20) hangs under root entry 1');
      root[300] = root[1]; // pgoff 300 << 20: 1.2 TiB
      root[1] = 0;
      const report = await expectFindings(storage, ['MAP_BEYOND_MAX_SIZE', 'MAP_BEYOND_MAX_SIZE']);
      assert.match(report.findings[0].message, new RegExp(`^inode ${files.deep} pgoff ${300 * 1024 * 1024} maps pfn`));
    });
  });

  describe('inodes and names', () => {
    it('a flipped byte in an inode slot: INODE_CHECKSUM only (its blocks are not called leaks)', async () => {
      const storage = fresh();
      inodeSlot(storage, files.a)[60] ^= 0xff;
      const report = await expectFindings(storage, ['INODE_CHECKSUM']);
      assert.match(report.findings[0].message, new RegExp(`^inode ${files.a} \\(inode table block \\d+ slot ${files.a % 8}\\): checksum mismatch`));
    });

    it('a used slot whose state is FREE or unknown: INODE_STATE', async () => {
      const storage = fresh();
      setInodeBit(storage, 500, true);
      await expectFindings(storage, ['INODE_STATE']);
      const other = fresh();
      inodeSlot(other, 600)[0] = 9; // free in the bitmap, but not FREE
      await expectFindings(other, ['INODE_STATE']);
    });

    it('an impossible field: INODE_FIELD', async () => {
      const storage = fresh();
      inodeSlot(storage, files.c)[28] = 9; // map depth 9
      resealInode(storage, files.c);
      await expectFindings(storage, ['INODE_FIELD']);
    });

    it('a size beyond the largest file: SIZE_BEYOND_MAX', async () => {
      const storage = fresh();
      editInode(storage, files.c, (i) => { i.sizeBytes = 2 ** 45; });
      await expectFindings(storage, ['SIZE_BEYOND_MAX']);
    });

    it('non-zero reserved bytes: INODE_RESERVED', async () => {
      const storage = fresh();
      inodeSlot(storage, files.c)[400] = 1;
      resealInode(storage, files.c);
      await expectFindings(storage, ['INODE_RESERVED']);
    });

    it('an invalid name, or an orphan with a name: INODE_NAME', async () => {
      const storage = fresh();
      editInode(storage, files.c, (i) => { i.name = 'x\0y'; });
      await expectFindings(storage, ['INODE_NAME']);
      const other = fresh();
      editInode(other, files.c, (i) => { i.state = 2; });
      const report = await expectFindings(other, ['INODE_NAME']);
      assert.equal(report.info.orphans, 1);
    });

    it('two linked inodes with one name: DUPLICATE_NAME', async () => {
      const storage = fresh();
      editInode(storage, files.c, (i) => { i.name = 'a'; });
      const report = await expectFindings(storage, ['DUPLICATE_NAME']);
      assert.equal(report.findings[0].message, `name "a" is used by inodes ${[files.a, files.c].sort((x, y) => x - y).join(', ')}`);
    });

    it('an inode in use missing from the inode bitmap: INODE_BITMAP_MISSING', async () => {
      const storage = fresh();
      setInodeBit(storage, files.c, false);
      await expectFindings(storage, ['INODE_BITMAP_MISSING']);
    });

    it('inode bitmap bits at or past maxFiles: INODE_BITMAP_BEYOND', async () => {
      const storage = fresh();
      setInodeBit(storage, layoutOf(storage).maxFiles + 3, true);
      await expectFindings(storage, ['INODE_BITMAP_BEYOND']);
    });
  });

  describe('superblock, zero page, geometry', () => {
    it('a flipped byte in one superblock copy: SUPERBLOCK_COPY_BAD', async () => {
      const storage = fresh();
      flipByte(storage, 2 * BLOCK_SIZE + 200);
      const report = await expectFindings(storage, ['SUPERBLOCK_COPY_BAD']);
      assert.match(report.findings[0].message, /^superblock copy at block 2: checksum mismatch/);
    });

    it('both copies bad: NO_VALID_SUPERBLOCK (and nothing else is checked)', async () => {
      const storage = fresh();
      flipByte(storage, BLOCK_SIZE + 60);
      flipByte(storage, 2 * BLOCK_SIZE + 60);
      const report = await expectFindings(storage, ['SUPERBLOCK_COPY_BAD', 'SUPERBLOCK_COPY_BAD', 'NO_VALID_SUPERBLOCK']);
      assert.equal(report.info.volumeBytes, 0);
    });

    it('an unknown format version: SUPERBLOCK_VERSION', async () => {
      const storage = fresh();
      new DataView(block(storage, 1).buffer, block(storage, 1).byteOffset).setUint32(4, 2, true);
      resealSuperblock(storage, 1);
      const report = await expectFindings(storage, ['SUPERBLOCK_VERSION']);
      assert.match(report.findings[0].message, /version 2 is not supported/);
    });

    it('copies of different volumes: SUPERBLOCK_COPIES_DIFFER', async () => {
      const storage = fresh();
      editSuperblock(storage, 1, (sb) => { sb.uuid = new Uint8Array(16).fill(7); });
      await expectFindings(storage, ['SUPERBLOCK_COPIES_DIFFER']);
    });

    it('generations in the wrong copies: SUPERBLOCK_GENERATION', async () => {
      const storage = fresh();
      const g = readSuperblock(storage).sb.generation;
      const newest = g % 2 === 1 ? 1 : 2;
      // Swap: each copy now holds the generation that belongs in the other.
      editSuperblock(storage, newest, (sb) => { sb.generation = g - 1; });
      editSuperblock(storage, 3 - newest, (sb) => { sb.generation = g; });
      await expectFindings(storage, ['SUPERBLOCK_GENERATION', 'SUPERBLOCK_GENERATION']);
    });

    it('a torn superblock write is a note, a flipped byte in the same copy a finding', async () => {
      const storage = fresh();
      const { sb } = readSuperblock(storage);
      const target = sb.generation % 2 === 1 ? 2 : 1; // the copy the next write goes to
      const next = encodeSuperblock({ ...sb, generation: sb.generation + 1, clean: false });
      block(storage, target).set(next.subarray(0, 512), 0); // only the first sector reached the medium
      const report = await expectFindings(storage, []);
      assert(report.info.notes.some((n) => n.startsWith(`superblock copy at block ${target} is a torn superblock write`)), report.info.notes.join('\n'));
      flipByte(storage, target * BLOCK_SIZE + 1000);
      await expectFindings(storage, ['SUPERBLOCK_COPY_BAD']);
    });

    it('a volume file shorter than the superblock says: VOLUME_TRUNCATED', async () => {
      const big = new MemoryStorage(32 * MiB);
      await mkfs(big);
      const cut = MemoryStorage.fromImage(big.durableImage().subarray(0, 16 * MiB));
      await expectFindings(cut, ['VOLUME_TRUNCATED']);
    });

    it('a non-zero byte in the zero page: ZERO_PAGE_NOT_ZERO', async () => {
      const storage = fresh();
      block(storage, 0)[4000] = 0x80;
      const report = await expectFindings(storage, ['ZERO_PAGE_NOT_ZERO']);
      assert.equal(report.findings[0].message, 'block 0 (the zero page) has byte 4000 = 0x80, expected all zeros');
    });
  });

  describe('journal', () => {
    it('checks the volume as replay will leave it: a valid transaction is overlaid, not ignored', async () => {
      const storage = fresh();
      const layout = layoutOf(storage);
      const inodeBlock = layout.inodes.start + Math.floor(files.a / 8);
      const good = block(storage, inodeBlock).slice();
      editInode(storage, files.a, (i) => { i.blocks = 7; }); // wrong at home...
      writeJournal(storage, 9, [inodeBlock], [good]); // ...but replay rewrites it
      const report = await expectFindings(storage, []);
      assert.equal(report.info.journal, 'valid seq 9 (1 blocks)');
      // And the other way round: a committed image that is wrong is found, though home is fine.
      const other = fresh();
      const bad = block(other, inodeBlock).slice();
      editInode(other, files.a, (i) => { i.blocks = 7; });
      const wrongImage = block(other, inodeBlock).slice();
      block(other, inodeBlock).set(bad);
      writeJournal(other, 9, [inodeBlock], [wrongImage]);
      await expectFindings(other, ['BLOCKS_COUNT_MISMATCH']);
      assert.equal(readInode(other, files.a).blocks, 3, 'fsck did not replay into the home block');
    });

    it('a torn transaction is discarded: info, not a finding', async () => {
      const storage = fresh();
      const layout = layoutOf(storage);
      writeJournal(storage, 4, [layout.inodes.start], [block(storage, layout.inodes.start).slice()]);
      flipByte(storage, (layout.journal.start + 2) * BLOCK_SIZE + 77);
      const report = await expectFindings(storage, []);
      assert.match(report.info.journal, /^discarded: checksum mismatch/);
    });

    it('a valid transaction naming a block outside the metadata zones: JOURNAL_CORRUPT', async () => {
      const storage = fresh();
      writeJournal(storage, 4, [1], [new Uint8Array(BLOCK_SIZE)]);
      const report = await expectFindings(storage, ['JOURNAL_CORRUPT']);
      assert.match(report.info.journal, /^corrupt: /);
    });

    it('a transaction of an unknown journal version: JOURNAL_VERSION (mount refuses it, never discards it)', async () => {
      const storage = fresh();
      const layout = layoutOf(storage);
      writeJournal(storage, 4, [layout.inodes.start], [block(storage, layout.inodes.start).slice()]);
      block(storage, layout.journal.start)[4] += 1; // the version field (u32 LE at 4)
      const report = await expectFindings(storage, ['JOURNAL_VERSION']);
      assert.match(report.findings[0].message, /journal format version \d+ is not supported/);
    });

    it('a valid transaction logging one block twice: JOURNAL_CORRUPT', async () => {
      const storage = fresh();
      const pfn = layoutOf(storage).inodes.start;
      writeJournal(storage, 4, [pfn, pfn], [block(storage, pfn).slice(), block(storage, pfn).slice()]);
      await expectFindings(storage, ['JOURNAL_CORRUPT']);
    });

    it('a valid transaction logging a data block, or a block between zones: JOURNAL_HOME_NOT_METADATA', async () => {
      const storage = fresh();
      const data = pfnOf(storage, files.a, 0);
      writeJournal(storage, 4, [data], [new Uint8Array(BLOCK_SIZE).fill(0x11)]);
      const report = await expectFindings(storage, ['JOURNAL_HOME_NOT_METADATA']);
      assert.match(report.findings[0].message, new RegExp(`logs block ${data} of the data zone, which is not a block-map block`));
      const gap = fresh();
      const layout = layoutOf(gap);
      assert(layout.blockBitmap.start + layout.blockBitmap.count < layout.data.start, 'a gap before the data zone');
      writeJournal(gap, 4, [layout.data.start - 1], [new Uint8Array(BLOCK_SIZE)]);
      await expectFindings(gap, ['JOURNAL_HOME_NOT_METADATA']);
    });
  });

  it('bounds the findings listed per code and says how many more there were', async () => {
    const storage = fresh();
    const layout = layoutOf(storage);
    for (let i = 1000; i < 1000 + 2 * (FINDINGS_PER_CODE_MAX + 20); i += 2) setBlockBit(storage, layout.data.start + i, true);
    const report = await fsck(storage);
    codes(report);
    assert.equal(report.findings.length, FINDINGS_PER_CODE_MAX + 1);
    assert.equal(report.findings[FINDINGS_PER_CODE_MAX].message, `20 more BITMAP_LEAK findings not listed (${FINDINGS_PER_CODE_MAX + 20} in all)`);
  });
});

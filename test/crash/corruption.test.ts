/**
 * Flipped bytes on the medium are detected and never silently used (S6): in a superblock
 * copy (mount falls back to the other copy and fsck reports the bad one), in both copies
 * (mount refuses, ECORRUPT), in the journal's committed transaction (discarded, not
 * replayed: the flipped image never reaches its home block), in an inode slot (mount
 * refuses naming the inode, fsck reports INODE_CHECKSUM); an unknown format version is
 * refused with EVERSION.
 */
import assert from 'node:assert/strict';
import { BLOCK_SIZE } from '../../server/limits';
import { MemoryStorage } from '../../server/media/memory-storage';
import { SimulatedCrash } from '../../server/media/storage';
import { readSuperblock } from '../../server/media/superblock';
import { ENTRIES_PER_DESCRIPTOR, descriptorBlocks } from '../../server/journal/format';
import { readJournal } from '../../server/journal/replay';
import { mkfs } from '../../server/fs/mkfs';
import { FileSystem } from '../../server/fs/filesystem';
import { fsck, formatReport, type FsckReport } from '../../server/fsck/fsck';
import { block, flipByte, inodeSlot, layoutOf, resealSuperblock, settleJournal } from '../support/volume-surgery';
import { MiB } from '../support/units';

const DATA = Buffer.alloc(5 * BLOCK_SIZE + 123, 0x3c);

/** A cleanly unmounted volume with two files; returns its medium. */
async function volumeImage(): Promise<{ image: Uint8Array; inos: number[] }> {
  const storage = new MemoryStorage(16 * MiB);
  await mkfs(storage);
  const fs = await FileSystem.mount(storage);
  const inos: number[] = [];
  for (const name of ['one', 'two']) {
    const f = await fs.create(name, true);
    await fs.write(f.ino, 0, DATA, false);
    inos.push(f.ino);
  }
  await fs.unmount();
  return { image: storage.durableImage(), inos };
}

function codes(report: FsckReport): string[] {
  return report.findings.map((f) => f.code).sort();
}

async function assertFilesIntact(fs: FileSystem): Promise<void> {
  for (const name of ['one', 'two']) {
    const f = fs.lookup(name);
    assert(Buffer.from(await fs.read(f.ino, 0, DATA.length)).equals(DATA), `${name} reads back`);
  }
}

/**
 * Medium after a commit whose journal write is durable and whose checkpoint never began:
 * the machine dies at the first flush after the journal flush, persisting nothing else.
 */
async function committedNotCheckpointed(image: Uint8Array): Promise<Uint8Array> {
  const storage = MemoryStorage.fromImage(image);
  const journalOffset = layoutOf(storage).journal.start * BLOCK_SIZE;
  const flushSync = storage.flushSync.bind(storage);
  let watching = false;
  let journalDurable = false;
  storage.flushSync = (offsetBytes: number, lengthBytes: number): void => {
    if (journalDurable) {
      storage.crash(() => 1, 0);
      throw new SimulatedCrash('after the journal write');
    }
    flushSync(offsetBytes, lengthBytes);
    if (watching && offsetBytes === journalOffset) journalDurable = true;
  };
  const fs = await FileSystem.mount(storage);
  const f = await fs.create('three', true);
  await fs.write(f.ino, 0, DATA, false);
  await fs.fallocate(fs.lookup('one').ino, 'PUNCH_HOLE', 0, BLOCK_SIZE);
  watching = true;
  await assert.rejects(fs.fsync(f.ino, false), SimulatedCrash);
  return storage.durableImage();
}

describe('corruption is detected, never silently used', function () {
  this.timeout(60_000);
  let image: Uint8Array;
  let inos: number[];

  before(async () => {
    ({ image, inos } = await volumeImage());
  });

  describe('superblock', () => {
    const fields: Array<[string, number]> = [
      ['magic', 1], ['version', 5], ['flags', 12], ['volumeBlocks', 17], ['uuid', 30], ['generation', 40],
      ['zone table', 70], ['reserved', 2000], ['checksum', BLOCK_SIZE - 2],
    ];
    for (const newest of [true, false]) {
      for (const [field, offset] of fields) {
        it(`a flipped ${field} byte in the ${newest ? 'newest' : 'older'} copy: mount uses the other, fsck reports the bad one`, async () => {
          const storage = MemoryStorage.fromImage(image);
          const good = readSuperblock(storage).sb;
          const newestPfn = good.generation % 2 === 1 ? 1 : 2;
          const badPfn = newest ? newestPfn : 3 - newestPfn;
          flipByte(storage, badPfn * BLOCK_SIZE + offset);
          const report = await fsck(storage);
          assert.deepEqual(codes(report), ['SUPERBLOCK_COPY_BAD'], formatReport(report));
          assert.match(report.findings[0].message, new RegExp(`^superblock copy at block ${badPfn}: `));
          const usedGeneration = newest ? good.generation - 1 : good.generation;
          assert.equal(report.info.superblockGeneration, usedGeneration, 'fsck describes the copy mount will use');
          const fs = await FileSystem.mount(storage);
          assert.equal(fs.mountReport.badSuperblockCopies.length, 1);
          assert.match(fs.mountReport.badSuperblockCopies[0], new RegExp(`superblock copy at block ${badPfn}`));
          await assertFilesIntact(fs);
          // Mount's superblock write went to the bad copy (the one not holding the generation in use).
          assert.equal(readSuperblock(storage).sb.generation, usedGeneration + 1);
          assert.deepEqual(codes(await fsck(storage)), [], 'mount rewrote the bad copy');
        });
      }
    }

    it('both copies flipped: mount refuses with ECORRUPT, fsck finds no valid superblock', async () => {
      const storage = MemoryStorage.fromImage(image);
      flipByte(storage, BLOCK_SIZE + 44);
      flipByte(storage, 2 * BLOCK_SIZE + 3000);
      const before = Buffer.from(storage.view(0, 3 * BLOCK_SIZE)).toString('hex');
      await assert.rejects(FileSystem.mount(storage), (err: Error & { code?: string }) => err.code === 'ECORRUPT' && /superblock copy at block 1: checksum mismatch/.test(err.message));
      assert.equal(Buffer.from(storage.view(0, 3 * BLOCK_SIZE)).toString('hex'), before, 'a refused mount writes nothing');
      assert.deepEqual(codes(await fsck(storage)), ['NO_VALID_SUPERBLOCK', 'SUPERBLOCK_COPY_BAD', 'SUPERBLOCK_COPY_BAD']);
    });

    for (const copies of [[1, 2], [1], [2]]) {
      it(`an unknown format version in ${copies.length === 2 ? 'both copies' : `copy ${copies[0]}`}: mount refuses with EVERSION`, async () => {
        const storage = MemoryStorage.fromImage(image);
        for (const pfn of copies) {
          new DataView(block(storage, pfn).buffer, block(storage, pfn).byteOffset).setUint32(4, 7, true);
          resealSuperblock(storage, pfn);
        }
        await assert.rejects(FileSystem.mount(storage), (err: Error & { code?: string }) => err.code === 'EVERSION' && /version 7 is not supported/.test(err.message));
        const report = await fsck(storage);
        assert.deepEqual(codes(report), ['SUPERBLOCK_VERSION']);
      });
    }
  });

  describe('journal', () => {
    let crashed: Uint8Array;
    before(async () => {
      crashed = await committedNotCheckpointed(image);
    });

    it('control: the committed transaction is valid and replay writes its images home', async () => {
      const storage = MemoryStorage.fromImage(crashed);
      const tx = readJournal(storage, layoutOf(storage));
      assert.equal(tx.state, 'valid');
      assert(tx.homes.some((h) => !Buffer.from(block(storage, h)).equals(Buffer.from(tx.images[tx.homes.indexOf(h)]))), 'some home is behind the journal');
      assert.deepEqual(codes(await fsck(storage)), []);
      const fs = await FileSystem.mount(storage);
      assert.equal(fs.mountReport.replay.state, 'replayed');
      for (let i = 0; i < tx.homes.length; i++) assert(Buffer.from(block(storage, tx.homes[i])).equals(Buffer.from(tx.images[i])));
      assert.equal(fs.lookup('three').sizeBytes, DATA.length);
      assert((await fs.read(fs.lookup('one').ino, 0, BLOCK_SIZE)).every((b) => b === 0), 'the punch was replayed');
    });

    /** Where in the transaction to flip, as a byte offset in the journal zone. */
    const places: Array<[string, (homes: number) => number]> = [
      ['an image', (n) => (1 + descriptorBlocks(n)) * BLOCK_SIZE + 100],
      ['the last image', (n) => (1 + descriptorBlocks(n) + n - 1) * BLOCK_SIZE + BLOCK_SIZE - 1],
      ['the descriptors (a home block number)', () => BLOCK_SIZE + 4],
      ['the header (sequence number)', () => 8],
    ];
    for (const [where, offsetOf] of places) {
      it(`a flipped byte in ${where} of the committed transaction: discarded, never replayed`, async () => {
        const storage = MemoryStorage.fromImage(crashed);
        const layout = layoutOf(storage);
        const tx = readJournal(storage, layout);
        assert(tx.state === 'valid');
        assert(tx.homes.length < ENTRIES_PER_DESCRIPTOR);
        const homesBefore = tx.homes.map((h) => Buffer.from(block(storage, h)));
        const imagesBefore = tx.images.map((img) => Buffer.from(img));
        const zoneOffset = offsetOf(tx.homes.length);
        flipByte(storage, layout.journal.start * BLOCK_SIZE + zoneOffset, 0x01);
        const flippedHome = zoneOffset >= BLOCK_SIZE && zoneOffset < 2 * BLOCK_SIZE ? tx.homes[(zoneOffset - BLOCK_SIZE) >> 2] ^ 0x01 : undefined;
        const flippedHomeBefore = flippedHome === undefined ? undefined : Buffer.from(block(storage, flippedHome));

        const report = await fsck(storage);
        assert.deepEqual(codes(report), [], formatReport(report));
        assert.match(report.info.journal, /^discarded: checksum mismatch/);
        const fs = await FileSystem.mount(storage);
        assert.equal(fs.mountReport.replay.state, 'discarded');
        // Nothing of the transaction reached home: each home block is as it was before.
        tx.homes.forEach((h, i) => {
          assert(Buffer.from(block(storage, h)).equals(homesBefore[i]), `home block ${h} unchanged`);
          if (!homesBefore[i].equals(imagesBefore[i])) assert(!Buffer.from(block(storage, h)).equals(imagesBefore[i]), `the image of ${h} was not applied`);
        });
        if (flippedHome !== undefined) assert(Buffer.from(block(storage, flippedHome)).equals(flippedHomeBefore!), `the flipped home ${flippedHome} was not written`);
        assert.equal(fs.lookup('three').sizeBytes, 0, 'the discarded transaction did not write the file');
        assert(Buffer.from(await fs.read(fs.lookup('one').ino, 0, BLOCK_SIZE)).equals(DATA.subarray(0, BLOCK_SIZE)), 'nor punch the hole');
        assert.deepEqual(codes(await fsck(storage)), []);
      });
    }
  });

  describe('inode slot', () => {
    it('a flipped byte in a used inode slot: mount refuses with ECORRUPT naming the inode, fsck says INODE_CHECKSUM', async () => {
      const storage = MemoryStorage.fromImage(image);
      settleJournal(storage);
      const ino = inos[1];
      inodeSlot(storage, ino)[20] ^= 0x10;
      const report = await fsck(storage);
      assert.deepEqual(codes(report), ['INODE_CHECKSUM'], formatReport(report));
      assert.match(report.findings[0].message, new RegExp(`^inode ${ino} \\(`));
      await assert.rejects(FileSystem.mount(storage), (err: Error & { code?: string }) => err.code === 'ECORRUPT' && err.message.includes(`inode ${ino}: checksum mismatch`));
    });

    it('a flipped inode slot whose block a valid journal transaction rewrites is healed by replay (and fsck agrees)', async () => {
      const storage = MemoryStorage.fromImage(image);
      const layout = layoutOf(storage);
      const tx = readJournal(storage, layout);
      assert(tx.state === 'valid');
      const inodeBlock = layout.inodes.start + Math.floor(inos[0] / 8);
      assert(tx.homes.includes(inodeBlock), 'the last commit logged the inode block');
      inodeSlot(storage, inos[0])[20] ^= 0x10;
      assert.deepEqual(codes(await fsck(storage)), []);
      const fs = await FileSystem.mount(storage);
      await assertFilesIntact(fs);
    });
  });
});

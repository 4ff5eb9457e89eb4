import assert from 'node:assert/strict';
import { BLOCK_SIZE } from '../../server/limits';
import { DaxError } from '../../server/errors';
import { computeLayout, Layout } from '../../server/media/layout';
import { MemoryStorage } from '../../server/media/memory-storage';
import { SimulatedCrash } from '../../server/media/storage';
import { decodeTransaction, encodeTransaction, JOURNAL_VERSION, maxImages, transactionBlocks } from '../../server/journal/format';
import { Journal } from '../../server/journal/journal';
import { readJournal, replayJournal } from '../../server/journal/replay';
import { mkfs } from '../../server/fs/mkfs';
import { FileSystem } from '../../server/fs/filesystem';
import { until } from '../support/until';
import { MiB } from '../support/units';

const SIZE_BYTES = 16 * MiB;

interface FlushRange {
  offsetBytes: number;
  lengthBytes: number;
}

/**
 * MemoryStorage that records its flushes and lets a test hold, fail or crash chosen ones
 * (by range), so the order of a commit's steps can be observed from outside.
 */
class InstrumentedStorage extends MemoryStorage {
  readonly flushLog: FlushRange[] = [];
  /** Runs when a flush is issued, before anything of it reaches the medium. */
  beforeFlush: ((r: FlushRange) => void) | undefined;
  /** Flushes it matches wait for releaseHeld(). */
  hold: ((r: FlushRange) => boolean) | undefined;
  /** Flushes it matches fail with its error, as a failing msync would (asynchronously). */
  fail: ((r: FlushRange) => Error | undefined) | undefined;
  /** The first flush it matches is torn (nothing of it persists) and kills the storage. */
  crashOn: ((r: FlushRange) => boolean) | undefined;
  crashRng: () => number = () => 0.99;
  private readonly held: Array<() => void> = [];

  override flush(offsetBytes: number, lengthBytes: number): Promise<void> {
    const r = { offsetBytes, lengthBytes };
    this.flushLog.push(r);
    this.beforeFlush?.(r);
    const err = this.fail?.(r);
    if (err) return new Promise((_resolve, reject) => setImmediate(() => reject(err)));
    if (this.crashOn?.(r)) {
      this.crashOn = undefined;
      this.crashAtFlush(1, this.crashRng, 0.5);
    }
    if (this.hold?.(r)) {
      return new Promise<void>((resolve) => this.held.push(resolve)).then(() => super.flush(offsetBytes, lengthBytes));
    }
    return super.flush(offsetBytes, lengthBytes);
  }

  get heldCount(): number {
    return this.held.length;
  }

  releaseHeld(): void {
    this.hold = undefined;
    for (const wake of this.held.splice(0)) wake();
  }
}

interface Fixture {
  storage: InstrumentedStorage;
  layout: Layout;
  journal: Journal;
  /** Two metadata blocks (inode table) and one data block. */
  metaA: number;
  metaB: number;
  dataPfn: number;
}

async function setup(): Promise<Fixture> {
  const storage = new InstrumentedStorage(SIZE_BYTES);
  await mkfs(storage);
  storage.flushLog.length = 0;
  const layout = computeLayout(SIZE_BYTES);
  const journal = new Journal(storage, layout, 1);
  return { storage, layout, journal, metaA: layout.inodes.start, metaB: layout.inodes.start + 3, dataPfn: layout.data.start + 7 };
}

function isCode(code: string): (err: unknown) => boolean {
  return (err) => err instanceof DaxError && err.code === code;
}

function overlaps(r: FlushRange, pfn: number, count = 1): boolean {
  return r.offsetBytes < (pfn + count) * BLOCK_SIZE && pfn * BLOCK_SIZE < r.offsetBytes + r.lengthBytes;
}

function isJournalFlush(layout: Layout): (r: FlushRange) => boolean {
  return (r) => overlaps(r, layout.journal.start, layout.journal.count);
}

function homeByte(storage: MemoryStorage, pfn: number): number {
  return storage.view(pfn * BLOCK_SIZE, 1)[0];
}

function durableByte(storage: MemoryStorage, pfn: number): number {
  return storage.durableImage()[pfn * BLOCK_SIZE];
}

function durableJournal(storage: MemoryStorage, layout: Layout): ReturnType<typeof decodeTransaction> {
  const image = storage.durableImage();
  return decodeTransaction(image.subarray(layout.journal.start * BLOCK_SIZE, (layout.journal.start + layout.journal.count) * BLOCK_SIZE));
}

/** Settles `p` and says whether it had settled after a few turns of the event loop. */
async function isPending(p: Promise<unknown>): Promise<boolean> {
  let settled = false;
  p.then(() => { settled = true; }, () => { settled = true; });
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  return !settled;
}

/** Persists the first differing sector of a torn flush, drops the rest. */
function firstSectorOnly(): () => number {
  let calls = 0;
  return () => (calls++ === 0 ? 0 : 0.99);
}

describe('journal', () => {
  describe('format', () => {
    it('encode/decode round trip; transaction size and capacity', () => {
      const layout = computeLayout(SIZE_BYTES);
      const zone = new Uint8Array(layout.journal.count * BLOCK_SIZE);
      assert.deepEqual(decodeTransaction(zone), { state: 'empty' });
      const homes = [layout.inodes.start, layout.data.start + 9, layout.blockBitmap.start];
      const images = homes.map((h) => new Uint8Array(BLOCK_SIZE).fill(h & 0xff));
      assert.equal(encodeTransaction(zone, 42, homes, images), transactionBlocks(3));
      assert.equal(transactionBlocks(3), 5);
      const tx = decodeTransaction(zone);
      assert.equal(tx.state, 'valid');
      if (tx.state !== 'valid') return;
      assert.equal(tx.seq, 42);
      assert.deepEqual(tx.homes, homes);
      tx.images.forEach((img, i) => assert.deepEqual(img, images[i]));
      const max = maxImages(layout.journal.count);
      assert.ok(transactionBlocks(max) <= layout.journal.count && transactionBlocks(max + 1) > layout.journal.count);
    });

    it('a flipped byte in header, descriptor or image is discarded, never decoded', () => {
      const layout = computeLayout(SIZE_BYTES);
      for (const off of [9, 17 + 0, BLOCK_SIZE + 1, 2 * BLOCK_SIZE + 100, 3 * BLOCK_SIZE - 1]) {
        const zone = new Uint8Array(layout.journal.count * BLOCK_SIZE);
        encodeTransaction(zone, 5, [layout.inodes.start], [new Uint8Array(BLOCK_SIZE).fill(3)]);
        zone[off] ^= 0x40;
        const tx = decodeTransaction(zone);
        assert.equal(tx.state, 'discarded', `offset ${off}`);
      }
    });
  });

  it('read sees the running shadow, then the committing image, then home', async () => {
    const { storage, journal, metaA, metaB } = await setup();
    assert.equal(journal.read(metaA).byteOffset, metaA * BLOCK_SIZE, 'home before any write');
    const shadowA = journal.write(metaA);
    shadowA.fill(1);
    journal.write(metaB).fill(4);
    assert.equal(journal.read(metaA), shadowA, 'running shadow');
    assert.equal(homeByte(storage, metaA), 0);

    storage.hold = () => true;
    const committed = journal.commit();
    await until(() => storage.heldCount > 0, 'the journal write');
    assert.equal(journal.read(metaA)[0], 1, 'committing image');
    assert.equal(journal.read(metaB)[0], 4, 'committing image');
    assert.equal(homeByte(storage, metaA), 0, 'not home while committing');

    const newer = journal.write(metaA);
    assert.notEqual(newer, shadowA);
    assert.equal(newer[0], 1, 'a new shadow starts from the committing image');
    newer.fill(2);
    assert.equal(journal.read(metaA)[0], 2, 'running shadow wins over committing');
    assert.equal(journal.read(metaB)[0], 4, 'still the committing image');

    storage.releaseHeld();
    await committed;
    assert.equal(homeByte(storage, metaA), 1, 'the committed image reached home, not the newer shadow');
    assert.equal(durableByte(storage, metaA), 1);
    assert.equal(homeByte(storage, metaB), 4);
    assert.equal(journal.read(metaA)[0], 2);
    assert.equal(journal.read(metaB).byteOffset, metaB * BLOCK_SIZE, 'home once nothing newer exists');
    await journal.commit();
    assert.equal(homeByte(storage, metaA), 2);
  });

  it('metadata is not written home before its transaction is durable in the journal', async () => {
    const { storage, layout, journal, metaA } = await setup();
    journal.write(metaA).fill(7);
    for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
    assert.equal(homeByte(storage, metaA), 0, 'a write() alone never touches home');
    assert.equal(durableByte(storage, metaA), 0);

    const seen: Array<{ journal: boolean; home: boolean; homeVolatile: number; homeDurable: number; journalDurable: string }> = [];
    storage.beforeFlush = (r) => {
      seen.push({
        journal: isJournalFlush(layout)(r), home: overlaps(r, metaA),
        homeVolatile: homeByte(storage, metaA), homeDurable: durableByte(storage, metaA),
        journalDurable: durableJournal(storage, layout).state,
      });
    };
    const committed = journal.commit();
    assert.equal(homeByte(storage, metaA), 0, 'commit() returned: home still old');
    await committed;
    const journalAt = seen.findIndex((s) => s.journal);
    const homeAt = seen.findIndex((s) => s.home);
    assert.ok(journalAt >= 0 && homeAt > journalAt, `journal flush #${journalAt}, home flush #${homeAt}`);
    for (const s of seen.slice(0, journalAt + 1)) {
      assert.equal(s.homeVolatile, 0, 'home changed before the journal was durable');
      assert.equal(s.homeDurable, 0);
    }
    assert.equal(seen[homeAt].journalDurable, 'valid', 'checkpoint only after the journal holds the transaction');
    assert.equal(durableByte(storage, metaA), 7, 'home is durable once commit resolves');
  });

  it('group commit: concurrent commit() callers share one transaction', async () => {
    const { storage, journal, metaA, metaB, layout } = await setup();
    await journal.commit();
    assert.equal(journal.stats.commits, 0, 'an empty commit writes nothing');

    journal.write(metaA).fill(1);
    journal.write(metaB).fill(2);
    await Promise.all([journal.commit(), journal.commit()]);
    assert.equal(journal.stats.commits, 1);
    assert.equal(journal.stats.blocksLogged, 2);

    // While one transaction commits, two callers change metadata and ask to commit:
    // both ride the next transaction, and neither returns before its change is home.
    journal.write(metaA).fill(3);
    storage.hold = () => true;
    const first = journal.commit();
    await until(() => storage.heldCount > 0, 'the first commit');
    journal.write(layout.inodes.start + 1).fill(5);
    const second = journal.commit();
    journal.write(layout.inodes.start + 2).fill(6);
    const third = journal.commit();
    assert.ok(await isPending(second));
    assert.ok(await isPending(third));
    storage.releaseHeld();
    await Promise.all([first, second, third]);
    assert.equal(journal.stats.commits, 3, 'two callers behind a running commit share one transaction');
    assert.equal(journal.stats.blocksLogged, 2 + 1 + 2);
    assert.equal(homeByte(storage, layout.inodes.start + 1), 5);
    assert.equal(homeByte(storage, layout.inodes.start + 2), 6);
  });

  it('atomic section (S6 layout changes): makeRoom does not commit, a commit asked meanwhile starts at its end with the whole change', async () => {
    const { storage, layout, journal } = await setup();
    journal.beginAtomic();
    // Past the soft limit inside the section: still one transaction.
    for (let i = 0; i <= journal.softLimitImages; i++) journal.write(layout.inodes.start + i)[0] = 0x5a;
    await journal.makeRoom();
    const asked = journal.commit(); // another request's fsync in the middle of the change
    assert.ok(await isPending(asked), 'the commit waits for the end of the section');
    assert.equal(journal.stats.commits, 0);
    assert.equal(storage.flushLog.filter(isJournalFlush(layout)).length, 0, 'nothing of the change reached the journal');
    journal.write(layout.inodes.start + journal.softLimitImages + 1)[0] = 0x5a; // the change's last step
    journal.endAtomic();
    await asked;
    assert.equal(journal.stats.commits, 1);
    assert.equal(journal.stats.blocksLogged, journal.softLimitImages + 2, 'one transaction holds every step');
    const logged = durableJournal(storage, layout);
    assert.equal(logged.state, 'valid');
    assert.equal(logged.state === 'valid' ? logged.homes.length : 0, journal.softLimitImages + 2);
  });

  it('ordered data is durable before the journal blocks are written', async () => {
    const { storage, layout, journal, metaA, dataPfn } = await setup();
    storage.view(dataPfn * BLOCK_SIZE, BLOCK_SIZE).fill(0x5a);
    journal.addOrdered(dataPfn, 1);
    journal.write(metaA).fill(9);
    let dataDurableAtJournalFlush: number | undefined;
    storage.beforeFlush = (r) => {
      if (isJournalFlush(layout)(r)) dataDurableAtJournalFlush = durableByte(storage, dataPfn);
    };
    storage.crashOn = isJournalFlush(layout);
    await assert.rejects(journal.commit(), SimulatedCrash);
    assert.equal(dataDurableAtJournalFlush, 0x5a);

    const rebooted = storage.reboot();
    assert.ok(rebooted.view(dataPfn * BLOCK_SIZE, BLOCK_SIZE).every((b) => b === 0x5a), 'ordered data survived the crash');
    assert.equal(homeByte(rebooted, metaA), 0, 'the uncommitted metadata did not');
    assert.deepEqual(await replayJournal(rebooted, layout), { state: 'empty', nextSeq: 1 });
    assert.equal(homeByte(rebooted, metaA), 0);
  });

  it('replay applies a committed transaction that was not checkpointed (idempotently)', async () => {
    const { storage, layout, journal, metaA, metaB } = await setup();
    journal.write(metaA).fill(0x33);
    journal.write(metaB).fill(0x44);
    // Crash at the checkpoint: the journal is durable, the homes are not.
    storage.crashOn = (r) => overlaps(r, metaA) || overlaps(r, metaB);
    await assert.rejects(journal.commit(), SimulatedCrash);
    const rebooted = storage.reboot();
    assert.equal(homeByte(rebooted, metaA), 0);
    assert.equal(homeByte(rebooted, metaB), 0);

    for (let i = 0; i < 2; i++) {
      assert.deepEqual(await replayJournal(rebooted, layout), { state: 'replayed', seq: 1, blocks: 2, nextSeq: 2 });
      assert.ok(rebooted.view(metaA * BLOCK_SIZE, BLOCK_SIZE).every((b) => b === 0x33));
      assert.ok(rebooted.view(metaB * BLOCK_SIZE, BLOCK_SIZE).every((b) => b === 0x44));
      assert.equal(durableByte(rebooted, metaA), 0x33, 'replay flushes what it applied');
    }
  });

  it('replay discards a transaction with a flipped byte (checksum mismatch) and applies nothing', async () => {
    const { storage, layout, journal, metaA } = await setup();
    journal.write(metaA).fill(0x33);
    storage.crashOn = (r) => overlaps(r, metaA);
    await assert.rejects(journal.commit(), SimulatedCrash);
    const image = storage.durableImage();
    image[(layout.journal.start + 2) * BLOCK_SIZE + 100] ^= 1; // inside the first image
    const rebooted = MemoryStorage.fromImage(image);
    const result = await replayJournal(rebooted, layout);
    assert.equal(result.state, 'discarded');
    assert.ok(result.state === 'discarded' && /checksum mismatch/.test(result.reason), JSON.stringify(result));
    assert.equal(result.nextSeq, 2);
    assert.equal(homeByte(rebooted, metaA), 0);
  });

  it('replay discards a torn journal write (only its first sector reached the medium)', async () => {
    const { storage, layout, journal, metaA } = await setup();
    journal.write(metaA).fill(0x33);
    storage.crashRng = firstSectorOnly();
    storage.crashOn = isJournalFlush(layout);
    await assert.rejects(journal.commit(), SimulatedCrash);
    const rebooted = storage.reboot();
    const result = await replayJournal(rebooted, layout);
    assert.ok(result.state === 'discarded' && /checksum mismatch/.test(result.reason), JSON.stringify(result));
    assert.equal(homeByte(rebooted, metaA), 0);
  });

  it('a checksum-valid transaction naming a non-metadata block is ECORRUPT, not replayed', async () => {
    const { storage, layout } = await setup();
    const zone = storage.view(layout.journal.start * BLOCK_SIZE, layout.journal.count * BLOCK_SIZE);
    encodeTransaction(zone, 3, [1], [new Uint8Array(BLOCK_SIZE).fill(0xee)]);
    assert.throws(() => readJournal(storage, layout), isCode('ECORRUPT'));
    await assert.rejects(replayJournal(storage, layout), isCode('ECORRUPT'));
    assert.notEqual(homeByte(storage, 1), 0xee, 'the superblock was not overwritten');
  });

  it('a committed transaction of an unknown journal version refuses mount with EVERSION, never discarded as torn', async () => {
    const { storage, layout, metaA } = await setup();
    const zone = storage.view(layout.journal.start * BLOCK_SIZE, layout.journal.count * BLOCK_SIZE);
    encodeTransaction(zone, 5, [metaA], [new Uint8Array(BLOCK_SIZE).fill(0x5a)]);
    new DataView(zone.buffer, zone.byteOffset).setUint32(4, JOURNAL_VERSION + 1, true);
    await storage.flush(layout.journal.start * BLOCK_SIZE, layout.journal.count * BLOCK_SIZE);
    const found = new RegExp(`journal format version ${JOURNAL_VERSION + 1} .*supports version ${JOURNAL_VERSION}\\b`);
    assert.throws(() => decodeTransaction(zone), (err) => isCode('EVERSION')(err) && found.test((err as Error).message));
    await assert.rejects(replayJournal(storage, layout), isCode('EVERSION'));
    await assert.rejects(FileSystem.mount(storage.reboot()), (err) => isCode('EVERSION')(err) && found.test((err as Error).message));
    assert.equal(homeByte(storage, metaA), 0, 'nothing applied');
  });

  it('a header with our magic and version 0 (killed while the header was written) is torn: discarded, never EVERSION', async () => {
    const { storage, layout, metaA } = await setup();
    const zone = storage.view(layout.journal.start * BLOCK_SIZE, layout.journal.count * BLOCK_SIZE);
    encodeTransaction(zone, 5, [metaA], [new Uint8Array(BLOCK_SIZE).fill(0x5a)]);
    new DataView(zone.buffer, zone.byteOffset).setUint32(4, 0, true);
    await storage.flush(layout.journal.start * BLOCK_SIZE, layout.journal.count * BLOCK_SIZE);
    const tx = decodeTransaction(zone);
    assert.equal(tx.state, 'discarded');
    await FileSystem.mount(storage.reboot());
    assert.equal(homeByte(storage, metaA), 0, 'nothing applied');
  });

  it('a freed (forgotten) block is not logged', async () => {
    const { storage, layout, journal, metaA, metaB } = await setup();
    journal.write(metaA).fill(1);
    journal.write(metaB).fill(2);
    journal.forget(metaB);
    await journal.commit();
    const tx = durableJournal(storage, layout);
    assert.ok(tx.state === 'valid');
    assert.deepEqual(tx.state === 'valid' && tx.homes, [metaA]);
    assert.equal(homeByte(storage, metaB), 0);
  });

  it('makeRoom commits only once the running transaction reaches the soft limit', async () => {
    const { journal, layout } = await setup();
    for (let i = 0; i < journal.softLimitImages - 1; i++) journal.write(layout.inodes.start + i);
    await journal.makeRoom();
    assert.equal(journal.stats.commits, 0);
    journal.write(layout.inodes.start + journal.softLimitImages - 1);
    await journal.makeRoom();
    assert.equal(journal.stats.commits, 1);
    assert.equal(journal.runningImages, 0);
  });

  it('a failed commit aborts the journal: waiters get the error, later changes EIO', async () => {
    const { storage, layout, journal, metaA, metaB } = await setup();
    journal.write(metaA).fill(1);
    storage.fail = (r) => (isJournalFlush(layout)(r) ? new Error('msync: EIO') : undefined);
    const first = journal.commit();
    journal.write(metaB).fill(2);
    const queued = journal.commit();
    await assert.rejects(first, /msync: EIO/);
    await assert.rejects(queued, isCode('EIO'));
    assert.throws(() => journal.write(metaB), isCode('EIO'));
    assert.throws(() => journal.writeNew(metaB), isCode('EIO'));
    await assert.rejects(journal.commit(), isCode('EIO'));
    assert.equal(durableByte(storage, metaA), 0, 'nothing reached home');
    assert.equal(homeByte(storage, metaA), 0);
    assert.equal(journal.stats.commits, 0);
  });
});

/**
 * Torn writes and power loss at every flush of a workload, on MemoryStorage (S2, S5, S6).
 *
 * Each crash point k reruns the workload (torn-workload.ts) from a fresh volume with the
 * k-th flush torn (a random subset of its differing sectors persists, nothing else:
 * crashAtFlush) or replaced by a power cut (every unflushed sector anywhere persists with
 * probability 1/2: crash()). Then, on the rebooted medium: fsck is clean BEFORE mount (it
 * overlays the journal as replay would), mount succeeds, fsck is clean after, every
 * acknowledged byte is intact, no file reads the canary or another file's bytes, growing a
 * file reads zeros, and the volume takes new writes. Crash points are replayable: the
 * workload, the medium and the clock are deterministic, the crash rng is seeded by k.
 */
import assert from 'node:assert/strict';
import { MemoryStorage } from '../../server/media/memory-storage';
import { SimulatedCrash } from '../../server/media/storage';
import { BLOCK_SIZE } from '../../server/limits';
import { computeLayout, SUPERBLOCK_PFNS } from '../../server/media/layout';
import { FileSystem } from '../../server/fs/filesystem';
import { mkfs } from '../../server/fs/mkfs';
import { encodeInode, INODE_LINKED, type Inode } from '../../server/fs/inode';
import { decodeTransaction, encodeTransaction } from '../../server/journal/format';
import { crc32 } from '../../server/media/checksum';
import { fsck, formatReport, type FsckInfo } from '../../server/fsck/fsck';
import { seededRng } from '../support/rng';
import {
  armPowerLoss, CANARY_BYTE, type Model, runWorkload, traceFlushes, verifyAgainstModel, verifyExtensionReadsZeros, VOLUME_BYTES,
  type WorkloadRun,
} from './torn-workload';

const layout = computeLayout(VOLUME_BYTES);
const JOURNAL_OFFSET = layout.journal.start * BLOCK_SIZE;
const isJournalFlush = ([off]: [number, number]): boolean => off === JOURNAL_OFFSET;
const isSuperblockFlush = ([off, len]: [number, number]): boolean => len === BLOCK_SIZE && SUPERBLOCK_PFNS.some((p) => p * BLOCK_SIZE === off);

async function assertClean(storage: MemoryStorage, context: string): Promise<FsckInfo> {
  const report = await fsck(storage);
  assert(report.clean, `${context}: fsck is not clean\n${formatReport(report)}`);
  return report.info;
}

/** Crashed media checked by this file (the suite promises at least 100). */
let recoveries = 0;

/** Everything a crashed medium must pass; returns what fsck said before mount. */
async function checkRecovery(crashed: MemoryStorage, model: Model, context: string): Promise<FsckInfo> {
  recoveries++;
  const storage = crashed.reboot();
  const before = await assertClean(storage, `${context}, before mount`);
  const fs = await FileSystem.mount(storage, { canaryByte: CANARY_BYTE });
  await assertClean(storage, `${context}, after mount`);
  await verifyAgainstModel(fs, model, context);
  await verifyExtensionReadsZeros(fs, context);
  const f = await fs.create('after-crash', false);
  await fs.write(f.ino, 100, Buffer.alloc(3 * BLOCK_SIZE, 0x5a), false);
  await fs.sync();
  await assertClean(storage, `${context}, after writing on the recovered volume`);
  return before;
}

function tornAt(k: number, seed: number, p = 0.5): (s: MemoryStorage) => void {
  return (s) => s.crashAtFlush(k, seededRng(seed), p);
}

function powerLossAt(k: number, seed: number): (s: MemoryStorage) => void {
  return (s) => armPowerLoss(s, k, seededRng(seed));
}

describe('torn writes and power loss (MemoryStorage)', function () {
  this.timeout(120_000);
  const trace: Array<[number, number]> = [];
  let total = 0;

  before(async () => {
    const run = await runWorkload((s) => traceFlushes(s, trace));
    assert(!run.crashed);
    total = run.flushes;
    assert.equal(trace.length, total);
    // The workload must reach the interesting places, or the sweep proves little.
    assert(trace.filter(isJournalFlush).length >= 10, `only ${trace.filter(isJournalFlush).length} journal commits`);
    assert(isSuperblockFlush(trace[0]), 'the first flush after mkfs is mount writing the superblock');
  });

  after(function () {
    // Only meaningful when every test of the suite ran (not under --grep) and passed.
    const tests = this.test?.parent?.tests ?? [];
    if (tests.length > 0 && tests.every((t) => t.state === 'passed')) {
      assert(recoveries >= 100, `${recoveries} crash points checked: the suite promises at least 100`);
    }
  });

  for (const mode of ['torn flush', 'power loss'] as const) {
    it(`recovers from a crash at every flush of the workload (${mode})`, async () => {
      const journalStates = new Map<string, number>();
      for (let k = 1; k <= total; k++) {
        const seed = mode === 'torn flush' ? k : 1000 + k;
        const run: WorkloadRun = await runWorkload(mode === 'torn flush' ? tornAt(k, seed) : powerLossAt(k, seed));
        assert(run.crashed, `crash point ${k} of ${total} was not reached`);
        const info = await checkRecovery(run.storage, run.model, `${mode} at flush ${k}/${total}`);
        const state = info.journal.split(/[ :]/)[0];
        journalStates.set(state, (journalStates.get(state) ?? 0) + 1);
      }
      // Both recovery paths ran: a transaction to replay, and a torn one to discard.
      assert((journalStates.get('valid') ?? 0) > 0, `journal states seen: ${JSON.stringify([...journalStates])}`);
      assert((journalStates.get('discarded') ?? 0) > 0, `journal states seen: ${JSON.stringify([...journalStates])}`);
    });
  }

  it('discards a commit torn in the middle of its journal write, and the volume stays fsck-clean', async () => {
    const journalFlushes = trace.map((t, i) => [t, i + 1] as const).filter(([t]) => isJournalFlush(t)).map(([, k]) => k);
    let discarded = 0;
    for (const k of journalFlushes) {
      for (const seed of [101]) {
        const run = await runWorkload(tornAt(k, seed * k));
        const info = await checkRecovery(run.storage, run.model, `torn journal write at flush ${k} (seed ${seed})`);
        if (info.journal.startsWith('discarded')) discarded++;
      }
    }
    assert(discarded > 0, 'no torn journal write was ever discarded: the test did not tear a commit');
  });

  it('replays a commit that reached the journal but not its home blocks', async () => {
    // The flush after a journal write is its first checkpoint flush: tear it with nothing persisted.
    const ks = trace.map((t, i) => (isJournalFlush(t) ? i + 2 : 0)).filter((k) => k > 0 && k <= total);
    let replayed = 0;
    for (const k of ks) {
      const run = await runWorkload(tornAt(k, k, 0));
      const info = await checkRecovery(run.storage, run.model, `crash before checkpoint, flush ${k}`);
      if (info.journal.startsWith('valid')) replayed++;
    }
    assert.equal(replayed, ks.length, 'every crash between commit and checkpoint leaves a valid transaction');
  });

  it('recovers from a crash at every flush of mount itself (replay, superblock write, orphan free)', async () => {
    // A medium whose journal holds a committed, un-checkpointed transaction and an orphan.
    const lastCommit = trace.map(isJournalFlush).lastIndexOf(true) + 1;
    const base = await runWorkload(tornAt(lastCommit + 1, 5, 0));
    const image = base.storage.durableImage();
    const mountTrace: Array<[number, number]> = [];
    const dry = MemoryStorage.fromImage(image);
    traceFlushes(dry, mountTrace);
    const mounted = await FileSystem.mount(dry, {});
    assert.equal(mounted.mountReport.replay.state, 'replayed');
    assert.equal(mounted.mountReport.orphansFreed, 1, 'the held file is an orphan on the crashed medium');
    const sbFlush = mountTrace.findIndex(isSuperblockFlush) + 1;
    assert(sbFlush > 1, 'mount replays (flushes homes) before it writes the superblock');
    let tornSuperblocks = 0;
    for (let m = 1; m <= mountTrace.length; m++) {
      const seeds = m === sbFlush ? [1, 2, 3, 4, 5, 6, 7, 8] : [m];
      for (const seed of seeds) {
        const storage = MemoryStorage.fromImage(image);
        if (seed % 2 === 1 || m === sbFlush) storage.crashAtFlush(m, seededRng(seed * 31 + m), 0.5);
        else armPowerLoss(storage, m, seededRng(seed * 31 + m));
        await assert.rejects(FileSystem.mount(storage, { canaryByte: CANARY_BYTE }), SimulatedCrash);
        const info = await checkRecovery(storage, base.model, `crash at mount flush ${m}/${mountTrace.length} (seed ${seed})`);
        if (info.notes.some((n) => n.includes('torn superblock write'))) tornSuperblocks++;
      }
    }
    assert(tornSuperblocks > 0, 'no crash tore the superblock write');
  });

  it('regression: a torn commit that kept an old inode slot is discarded (CRC-32 residue)', () => {
    // Inode slots end with their own CRC-32, so a CRC-32 over a transaction could not tell a
    // slot's old valid content from its new one: this torn commit used to verify and replay.
    const inode = (blocks: number): Inode => ({
      ino: 0, state: INODE_LINKED, generation: 1, sizeBytes: 4 * BLOCK_SIZE, blocks, mapRoot: 600, mapDepth: 1,
      mtimeMs: 1, ctimeMs: 1, name: 'alpha', users: 0, dirtyPfns: new Set(),
    });
    const image = (blocks: number): Uint8Array => {
      const img = new Uint8Array(BLOCK_SIZE);
      encodeInode(inode(blocks), img.subarray(0, 512));
      return img;
    };
    const zone = new Uint8Array(layout.journal.count * BLOCK_SIZE);
    const home = layout.inodes.start;
    encodeTransaction(zone, 4, [home], [image(6)]);
    const old = zone.slice();
    const total = encodeTransaction(zone, 5, [home], [image(5)]);
    const slotSector = 2 * BLOCK_SIZE; // header, one descriptor block, then the image: slot 0 is its first sector
    const torn = zone.slice();
    torn.set(old.subarray(slotSector, slotSector + 512), slotSector);
    assert(!Buffer.from(torn).equals(Buffer.from(zone)));
    assert.equal(crc32(torn.subarray(0, total * BLOCK_SIZE)), crc32(zone.subarray(0, total * BLOCK_SIZE)), 'CRC-32 is blind to it');
    const decoded = decodeTransaction(torn);
    assert.equal(decoded.state, 'discarded');
    assert.equal(decodeTransaction(zone).state, 'valid');
  });

  describe('regression: growing a file after a crash never exposes stale bytes past the old EOF', () => {
    /** A medium where `stale` (0x22 bytes) lies past the durable EOF of 'f' (5000 bytes) in its EOF page. */
    const scenarios: Array<[string, (fs: FileSystem, storage: MemoryStorage, ino: number) => Promise<void>]> = [
      ['an extending write whose data reached the medium but whose size never committed', async (fs, storage, ino) => {
        await fs.write(ino, 5000, Buffer.alloc(1000, 0x22), false);
        const page = fs.iomap(ino, 1);
        assert(page.state === 'WRITTEN');
        storage.flushSync(page.pfn * BLOCK_SIZE, BLOCK_SIZE); // the kernel wrote the page back; then power was lost
      }],
      ['a truncated tail whose zeroing never reached the medium', async (fs, _storage, ino) => {
        await fs.truncate(ino, 8000);
        await fs.write(ino, 5000, Buffer.alloc(3000, 0x22), false);
        await fs.fsync(ino, false);
        await fs.truncate(ino, 5000);
        await fs.create('other', true); // commits the new size; the file's own data is not flushed
      }],
    ];
    const grow: Array<[string, (fs: FileSystem, ino: number) => Promise<void>]> = [
      ['truncate up', (fs, ino) => fs.truncate(ino, 3 * BLOCK_SIZE)],
      ['a write past EOF', async (fs, ino) => { await fs.write(ino, 3 * BLOCK_SIZE - 10, Buffer.alloc(10, 0x33), false); }],
      ['fallocate ALLOCATE', (fs, ino) => fs.fallocate(ino, 'ALLOCATE', 0, 3 * BLOCK_SIZE)],
      ['fallocate ZERO_RANGE past EOF', (fs, ino) => fs.fallocate(ino, 'ZERO_RANGE', 6000, 3 * BLOCK_SIZE - 6000)],
    ];
    for (const [how, stale] of scenarios) {
      for (const [op, grown] of grow) {
        it(`${how}, then ${op}`, async () => {
          const storage = new MemoryStorage(VOLUME_BYTES);
          await mkfs(storage);
          const fs = await FileSystem.mount(storage);
          const f = await fs.create('f', true);
          await fs.write(f.ino, 0, Buffer.alloc(5000, 0x11), false);
          await fs.fsync(f.ino, false);
          await stale(fs, storage, f.ino);
          const crashed = MemoryStorage.fromImage(storage.durableImage());
          const again = await FileSystem.mount(crashed);
          assert.equal(again.stat(f.ino).sizeBytes, 5000);
          await grown(again, f.ino);
          const bytes = await again.read(f.ino, 5000, 2 * BLOCK_SIZE);
          assert.equal(bytes.indexOf(0x22), -1, `stale bytes at offset ${5000 + bytes.indexOf(0x22)}`);
          await again.sync();
          const after = await FileSystem.mount(MemoryStorage.fromImage(crashed.durableImage()));
          assert.equal((await after.read(f.ino, 5000, 2 * BLOCK_SIZE)).indexOf(0x22), -1, 'and the zeroes are durable with the new size');
        });
      }
    }
  });
});

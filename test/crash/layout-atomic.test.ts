/**
 * S6: a layout change (truncate down or up, PUNCH_HOLE, ZERO_RANGE, COLLAPSE_RANGE, with
 * partial pages) happens wholly or not at all across a crash, on MemoryStorage.
 *
 * The file holds acknowledged (synced) bytes; the change runs, then one of:
 * - "power cut after return": every unflushed sector persists (the kernel may write back
 *   any dirty page at any time), and nothing of the running transaction does: this is the
 *   moment between zeroing a page in place and committing the size or map change;
 * - "power loss at flush k" of the change plus an Fsync, for every k, with sectors
 *   persisting at random (seeded).
 * After a reboot: fsck is clean, mount succeeds, and the file reads exactly as before the
 * change or exactly as after it, never a mix (acknowledged bytes zeroed under the old size).
 */
import assert from 'node:assert/strict';
import { MemoryStorage } from '../../server/media/memory-storage';
import { SimulatedCrash } from '../../server/media/storage';
import { FileSystem } from '../../server/fs/filesystem';
import { mkfs } from '../../server/fs/mkfs';
import { fsck, formatReport } from '../../server/fsck/fsck';
import { seededRng } from '../support/rng';
import { armPowerLoss, muteDeadFlushes } from './torn-workload';
import { MiB, PAGE } from '../support/units';

/** 3 whole pages and a partial one: the EOF page is partial. */
const INITIAL_BYTES = 3 * PAGE + 1000;
/** Flush points tried per change (a change and its fsync take far fewer). */
const FLUSH_POINTS_MAX = 64;

interface Change {
  name: string;
  run(fs: FileSystem, ino: number): Promise<void>;
  /** The file's content once the change is complete. */
  after(before: Buffer): Buffer;
}

function zeroed(b: Buffer, from: number, to: number): Buffer {
  const out = Buffer.from(b);
  out.fill(0, from, Math.min(to, b.length));
  return out;
}

function grown(b: Buffer, size: number): Buffer {
  return size <= b.length ? b.subarray(0, size) : Buffer.concat([b, Buffer.alloc(size - b.length)]);
}

const CHANGES: Change[] = [
  { name: 'truncate down to 100 (partial EOF page)', run: (fs, ino) => fs.truncate(ino, 100), after: (b) => b.subarray(0, 100) },
  { name: 'truncate down to 5000 (EOF mid-page 1)', run: (fs, ino) => fs.truncate(ino, 5000), after: (b) => b.subarray(0, 5000) },
  { name: 'truncate up from a partial EOF page', run: (fs, ino) => fs.truncate(ino, 6 * PAGE + 17), after: (b) => grown(b, 6 * PAGE + 17) },
  {
    name: 'PUNCH_HOLE over partial head and tail pages', run: (fs, ino) => fs.fallocate(ino, 'PUNCH_HOLE', 1000, 2 * PAGE),
    after: (b) => zeroed(b, 1000, 1000 + 2 * PAGE),
  },
  { name: 'PUNCH_HOLE inside one page', run: (fs, ino) => fs.fallocate(ino, 'PUNCH_HOLE', PAGE + 10, 300), after: (b) => zeroed(b, PAGE + 10, PAGE + 310) },
  {
    name: 'ZERO_RANGE over partial head and tail pages', run: (fs, ino) => fs.fallocate(ino, 'ZERO_RANGE', 1000, 2 * PAGE),
    after: (b) => zeroed(b, 1000, 1000 + 2 * PAGE),
  },
  {
    name: 'ZERO_RANGE across EOF (extends the size)', run: (fs, ino) => fs.fallocate(ino, 'ZERO_RANGE', 2 * PAGE + 5, 2 * PAGE),
    after: (b) => grown(zeroed(b, 2 * PAGE + 5, 4 * PAGE + 5), 4 * PAGE + 5),
  },
  {
    name: 'COLLAPSE_RANGE of page 1', run: (fs, ino) => fs.fallocate(ino, 'COLLAPSE_RANGE', PAGE, PAGE),
    after: (b) => Buffer.concat([b.subarray(0, PAGE), b.subarray(2 * PAGE)]),
  },
];

function pattern(length: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = ((i * 131) >>> 3) % 251 + 1;
  return b;
}

async function setup(): Promise<{ storage: MemoryStorage; fs: FileSystem; ino: number; before: Buffer }> {
  const storage = new MemoryStorage(16 * MiB);
  await mkfs(storage);
  const fs = await FileSystem.mount(storage);
  const { ino } = await fs.create('f', true);
  const before = pattern(INITIAL_BYTES);
  await fs.write(ino, 0, before, true); // acknowledged: durable on return
  muteDeadFlushes(storage);
  return { storage, fs, ino, before };
}

/** Reboots the crashed medium; the file must read as `before` or as `after`, wholly. */
async function checkAllOrNothing(crashed: MemoryStorage, before: Buffer, after: Buffer, context: string): Promise<'before' | 'after'> {
  const storage = crashed.reboot();
  const report = await fsck(storage);
  assert.ok(report.clean, `${context}: fsck before mount\n${formatReport(report)}`);
  const fs = await FileSystem.mount(storage);
  const st = fs.lookup('f');
  const got = await fs.read(st.ino, 0, st.sizeBytes);
  const report2 = await fsck(storage);
  assert.ok(report2.clean, `${context}: fsck after mount\n${formatReport(report2)}`);
  if (got.equals(before)) return 'before';
  if (got.equals(after)) return 'after';
  const ref = got.length === before.length ? before : after;
  let at = 0;
  while (at < got.length && got[at] === ref[at]) at++;
  assert.fail(`${context}: the file is neither before (${before.length} B) nor after (${after.length} B) the change: ` +
    `size ${got.length}, first difference from the ${ref === before ? 'old' : 'new'} content at byte ${at} ` +
    `(read 0x${(got[at] ?? 0).toString(16)}, expected 0x${(ref[at] ?? 0).toString(16)})`);
}

describe('crash during a layout change: wholly or not at all (S6)', () => {
  for (const change of CHANGES) {
    describe(change.name, () => {
      it('power cut right after it returns (every dirty sector persists, the running transaction does not)', async () => {
        const { storage, fs, ino, before } = await setup();
        await change.run(fs, ino);
        storage.crash(() => 0, 1);
        await checkAllOrNothing(storage, before, change.after(before), `${change.name}: power cut after return`);
      });

      it('power loss at every flush of the change and its fsync (seeded torn sectors)', async () => {
        await powerLossAtEveryFlush(change, setup, { label: change.name, flushPointsMax: FLUSH_POINTS_MAX, seedFactor: 7919 });
      });
    });
  }
});

/**
 * The same changes with the running transaction filled to just under its soft limit by
 * unsynced writes to other files first: a change that adds images must not commit in its
 * middle (a step's makeRoom), or a crash leaves its first half (freed pages read as zeros
 * under the old size, a collapse not shifted).
 */
const BIG_BYTES = 12 * PAGE + 1000;
const FILLER_FILES_MAX = 120;
/** The change now first commits the fillers' transaction (one flush per block written): more flush points. */
const BIG_FLUSH_POINTS_MAX = 256;

const BIG_CHANGES: Change[] = [
  {
    name: 'COLLAPSE_RANGE of pages 1-2', run: (fs, ino) => fs.fallocate(ino, 'COLLAPSE_RANGE', PAGE, 2 * PAGE),
    after: (b) => Buffer.concat([b.subarray(0, PAGE), b.subarray(3 * PAGE)]),
  },
  { name: 'truncate down across 12 pages to 100', run: (fs, ino) => fs.truncate(ino, 100), after: (b) => b.subarray(0, 100) },
  { name: 'truncate down across 10 pages to 2 pages', run: (fs, ino) => fs.truncate(ino, 2 * PAGE), after: (b) => b.subarray(0, 2 * PAGE) },
  {
    name: 'PUNCH_HOLE over 8 pages with partial ends', run: (fs, ino) => fs.fallocate(ino, 'PUNCH_HOLE', 1000, 8 * PAGE),
    after: (b) => zeroed(b, 1000, 1000 + 8 * PAGE),
  },
  {
    name: 'ZERO_RANGE over 8 pages with partial ends', run: (fs, ino) => fs.fallocate(ino, 'ZERO_RANGE', 1000, 8 * PAGE),
    after: (b) => zeroed(b, 1000, 1000 + 8 * PAGE),
  },
];

/** A volume holding a synced file `f` of BIG_BYTES and FILLER_FILES_MAX empty files (built once). */
let baseImage: Uint8Array | undefined;

async function nearSoftLimitBase(): Promise<Uint8Array> {
  if (baseImage) return baseImage;
  const storage = new MemoryStorage(16 * MiB);
  await mkfs(storage);
  const fs = await FileSystem.mount(storage);
  const { ino } = await fs.create('f', true);
  await fs.write(ino, 0, pattern(BIG_BYTES), true);
  for (let i = 0; i < FILLER_FILES_MAX; i++) await fs.create(`filler-${i}`, true);
  await fs.unmount();
  baseImage = storage.durableImage();
  return baseImage;
}

/** The base volume, then unsynced writes to filler files until the running transaction is one image short of its soft limit. */
async function setupNearSoftLimit(): Promise<{ storage: MemoryStorage; fs: FileSystem; ino: number; before: Buffer }> {
  const storage = MemoryStorage.fromImage(await nearSoftLimitBase());
  const fs = await FileSystem.mount(storage, { scheduleFreeCommit: () => () => undefined });
  const { ino } = fs.lookup('f');
  const before = pattern(BIG_BYTES);
  const target = fs.journal.softLimitImages - 1;
  let i = 0;
  for (; i < FILLER_FILES_MAX && fs.journal.runningImages < target; i++) await fs.write(fs.lookup(`filler-${i}`).ino, 0, pattern(PAGE), false);
  assert.equal(fs.journal.runningImages, target, `filled the running transaction to ${fs.journal.runningImages} images (wanted ${target}) with ${i} files`);
  muteDeadFlushes(storage);
  return { storage, fs, ino, before };
}

describe('crash during a layout change with a nearly full running transaction: wholly or not at all (S6)', () => {
  for (const change of BIG_CHANGES) {
    describe(change.name, () => {
      it('power cut right after it returns', async () => {
        const { storage, fs, ino, before } = await setupNearSoftLimit();
        await change.run(fs, ino);
        storage.crash(() => 0, 1);
        await checkAllOrNothing(storage, before, change.after(before), `${change.name} (full transaction): power cut after return`);
      });

      it('power loss at every flush of the change and its fsync', async () => {
        await powerLossAtEveryFlush(change, setupNearSoftLimit, { label: `${change.name} (full transaction)`, flushPointsMax: BIG_FLUSH_POINTS_MAX, seedFactor: 104729 });
      });
    });
  }
});

/**
 * Power loss at flush k of `change` plus its fsync, for k = 1, 2, ... until a run completes
 * (every flush point tried): after each crash the file is wholly before or wholly after.
 */
async function powerLossAtEveryFlush(
  change: Change,
  setup: () => Promise<{ storage: MemoryStorage; fs: FileSystem; ino: number; before: Buffer }>,
  opts: { label: string; flushPointsMax: number; seedFactor: number },
): Promise<void> {
  let k = 1;
  for (; k <= opts.flushPointsMax; k++) {
    const { storage, fs, ino, before } = await setup();
    armPowerLoss(storage, k, seededRng(k * opts.seedFactor + change.name.length), 0.5);
    let crashed = true;
    try {
      await change.run(fs, ino);
      await fs.fsync(ino, false);
      crashed = false;
    } catch (err) {
      if (!(err instanceof SimulatedCrash)) throw err;
    }
    if (!crashed) {
      // Every flush point was tried: this run completed, and the change is durable.
      storage.crash(() => 0, 0);
      assert.equal(await checkAllOrNothing(storage, before, change.after(before), `${opts.label}: after fsync`), 'after');
      break;
    }
    await checkAllOrNothing(storage, before, change.after(before), `${opts.label}: power loss at flush ${k}`);
  }
  assert.ok(k <= opts.flushPointsMax, `the change and its fsync took more than ${opts.flushPointsMax} flushes`);
  assert.ok(k > 1, 'at least one flush point was tried');
}

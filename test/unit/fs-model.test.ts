/**
 * Property tests of the volume engine (server/fs) against an in-memory model: random
 * sequences of file operations on a few files, each checked against what Linux would do
 * with a byte array per file.
 *
 * The model (ModelFile) keeps, per file, its size, its bytes (sparse: a map of 4 KiB pages,
 * so a file may reach 1 TiB) and the set of allocated pages (what stat.blocks counts).
 * Semantics modelled, Linux's unless noted:
 * - holes and preallocated (UNWRITTEN) pages read as zeros; reads are short at EOF;
 * - write extends the size and allocates every page it touches;
 * - truncate sets the size; down (or to the same size) it zeroes the tail of the last page
 *   and frees every page at or past ceil(size / 4096), preallocated ones included; up it
 *   keeps every block (preallocated pages past the old EOF now read as zeros inside the file);
 * - fallocate ALLOCATE allocates and extends the size; KEEP_SIZE allocates and keeps it;
 *   PUNCH_HOLE zeroes the range, frees the pages wholly inside it, keeps the size;
 *   ZERO_RANGE zeroes the range, preallocates the pages wholly inside it, and extends the
 *   size to the range's end (as Linux without FALLOC_FL_KEEP_SIZE; daxd has no KEEP_SIZE
 *   variant of it); partial pages keep their allocation state (a hole stays a hole);
 *   COLLAPSE_RANGE needs offset and length multiples of 4096 and offset + length < size
 *   (EINVAL otherwise), removes the range, shifts the rest down and shrinks the size;
 *   a zero length is EINVAL for every mode;
 * - error codes: EINVAL (bad arguments or names), ENAMETOOLONG, EFBIG (past the maximum
 *   file size), ELIMIT (I/O per call), EEXIST, ENOENT (missing name or stale inode),
 *   ENOSPC only when the volume cannot hold the change (checked against the engine's own
 *   reservation bound, and required when even the data blocks do not fit; an overwrite of
 *   allocated pages never fails ENOSPC). When an error names both a bad argument and a
 *   missing file, either code is accepted.
 * - ENOSPC from write/ALLOCATE/KEEP_SIZE/COLLAPSE_RANGE changes nothing; from ZERO_RANGE it
 *   may leave the range partly zeroed, size unchanged (each byte old or zero; the model then
 *   adopts what the engine shows).
 *
 * After every operation: stat size and blocks of the files it touched equal the model's.
 * In the middle: remounts, either sync + unmount (clean) or sync and a reboot of the
 * MemoryStorage without unmount (journal replay). At the end of each run: every file is
 * compared in full, the volume is remounted and compared again, fsck (when built) is clean,
 * and after unlinking everything and syncing, blocksFree is back to its initial value.
 *
 * Reproduce a failure: DAXD_FC_SEED=<seed> DAXD_FC_PATH=<path> (printed by fast-check).
 * More runs: DAXD_FC_RUNS_FACTOR=10. Report the first failure without shrinking it
 * (shrinking long sequences takes minutes): DAXD_FC_NO_SHRINK=1.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { mapBlocksBound } from '../../server/fs/file-data';
import { FileSystem } from '../../server/fs/filesystem';
import { mkfs } from '../../server/fs/mkfs';
import { BLOCK_SIZE } from '../../server/limits';
import { MemoryStorage } from '../../server/media/memory-storage';
import { GiB, MiB } from '../support/units';
import { CANARY } from './fs-model/model-file';
import { arbOp, type Op, patternBytes, type Pos } from './fs-model/ops';
import { assertBytes, coverage, runSequence } from './fs-model/run';

const RUNS_FACTOR = Number(process.env.DAXD_FC_RUNS_FACTOR ?? '1');

function fcParams(numRuns: number): fc.Parameters<[Op[]]> {
  const params: fc.Parameters<[Op[]]> = { numRuns: Math.max(1, Math.round(numRuns * RUNS_FACTOR)) };
  if (process.env.DAXD_FC_SEED !== undefined) params.seed = Number(process.env.DAXD_FC_SEED);
  if (process.env.DAXD_FC_PATH !== undefined) params.path = process.env.DAXD_FC_PATH;
  if (process.env.DAXD_FC_NO_SHRINK !== undefined) params.endOnFailure = true;
  return params;
}

describe('file system against a model (fast-check)', function () {
  this.timeout(300_000);

  after(() => {
    const lines = [...coverage].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${k} x${n}`);
    process.stdout.write(`      outcomes: ${lines.join(', ')}\n`);
  });

  it('random operation sequences on a 32 MiB volume match the model (remounts, pairs, tree edges, errors)', async () => {
    const weights = { large: 1, largeMaxBytes: 4 * MiB, far: 1 };
    await fc.assert(
      fc.asyncProperty(fc.array(arbOp(weights, true), { minLength: 1, maxLength: 80, size: 'medium' }), async (ops) => {
        await runSequence(32 * MiB, ops);
      }),
      fcParams(70),
    );
  });

  it('a full 16 MiB volume: ENOSPC is clean, required when space is short, and leaks nothing', async () => {
    const weights = { large: 6, largeMaxBytes: 16 * MiB, far: 0 };
    const before = coverage.get('write: ENOSPC') ?? 0;
    await fc.assert(
      fc.asyncProperty(fc.array(arbOp(weights, false), { minLength: 20, maxLength: 80, size: 'medium' }), async (ops) => {
        await runSequence(16 * MiB, ops);
      }),
      fcParams(30),
    );
    const enospc = (coverage.get('write: ENOSPC') ?? 0) - before;
    assert.ok(enospc > 0, 'no write hit ENOSPC: the property no longer fills the volume');
  });

  it('regression: COLLAPSE_RANGE near a full volume punched the range, then failed ENOSPC without shifting', async () => {
    const storage = new MemoryStorage(16 * MiB);
    await mkfs(storage);
    const fs = await FileSystem.mount(storage, { canaryByte: CANARY });
    const data = patternBytes(3, 5 * BLOCK_SIZE);
    // a: pages 0..4, map depth 2 (a byte once written at 5 MiB); c: pages 0..4 and 100000.
    const a = await fs.create('a', true);
    await fs.write(a.ino, 0, data, false);
    await fs.write(a.ino, 5 * MiB, Buffer.from('x'), false);
    await fs.truncate(a.ino, 5 * BLOCK_SIZE);
    const c = await fs.create('c', true);
    await fs.write(c.ino, 0, data, false);
    await fs.write(c.ino, 100_000 * BLOCK_SIZE, Buffer.from('y'), false);
    const b = await fs.create('b', true);
    await fs.fallocate(b.ino, 'KEEP_SIZE', 0, (fs.statVolume().blocksFree - 100) * BLOCK_SIZE);
    await fs.sync();
    const free = fs.statVolume().blocksFree;
    assert.ok(free > mapBlocksBound(4) && free < mapBlocksBound(100_000), `${free} blocks free`);
    // The shift of a's 4 pages needs few map blocks: it used to reserve for a whole
    // 2^18-page step (265 blocks at depth 2), after the range was already removed.
    await fs.fallocate(a.ino, 'COLLAPSE_RANGE', 0, BLOCK_SIZE);
    assert.equal(fs.stat(a.ino).sizeBytes, 4 * BLOCK_SIZE);
    assertBytes(await fs.read(a.ino, 0, 4 * BLOCK_SIZE), data.subarray(BLOCK_SIZE), 'a after collapse');
    // Shifting c's far page may really need more than is free: ENOSPC, and nothing changed.
    const sizeBytes = fs.stat(c.ino).sizeBytes;
    await assert.rejects(fs.fallocate(c.ino, 'COLLAPSE_RANGE', 0, BLOCK_SIZE), { code: 'ENOSPC' });
    assert.equal(fs.stat(c.ino).sizeBytes, sizeBytes);
    assert.equal(fs.stat(c.ino).blocks, 6);
    assertBytes(await fs.read(c.ino, 0, 5 * BLOCK_SIZE), data, 'c after a failed collapse');
    assertBytes(await fs.read(c.ino, 100_000 * BLOCK_SIZE, 1), Buffer.from('y'), 'c far page');
    await fs.unmount();
  });

  it('regression: overwriting allocated pages of a nearly full volume failed ENOSPC (reserved map blocks it never needs)', async () => {
    const storage = new MemoryStorage(16 * MiB);
    await mkfs(storage);
    const fs = await FileSystem.mount(storage, { canaryByte: CANARY });
    const a = await fs.create('a', true);
    await fs.write(a.ino, 0, patternBytes(5, 2 * BLOCK_SIZE), false);
    await fs.fallocate(a.ino, 'KEEP_SIZE', 2 * BLOCK_SIZE, BLOCK_SIZE);
    const b = await fs.create('b', true);
    const free = (): number => fs.statVolume().blocksFree;
    await fs.fallocate(b.ino, 'KEEP_SIZE', 0, (free() - mapBlocksBound(free()) - 40) * BLOCK_SIZE);
    // Down to 8 free blocks (fewer than the 9 of one page's map bound): a page in a new
    // leaf takes 2 blocks (the page and its map block), so first make the count even.
    const c = await fs.create('c', true);
    if (free() % 2 === 1) await fs.write(c.ino, 0, Buffer.from('c'), false);
    for (let leaf = 1; free() >= 1 + mapBlocksBound(1); leaf++) await fs.write(c.ino, leaf * 1024 * BLOCK_SIZE, Buffer.from('c'), false);
    await fs.sync();
    assert.equal(free(), mapBlocksBound(1) - 1);
    await fs.write(a.ino, 100, Buffer.from('overwrite'), true); // WRITTEN page
    await fs.write(a.ino, 2 * BLOCK_SIZE + 1, Buffer.from('convert'), true); // UNWRITTEN page
    await assert.rejects(fs.write(a.ino, 3 * BLOCK_SIZE, Buffer.from('hole'), false), { code: 'ENOSPC' });
    assert.equal((await fs.read(a.ino, 100, 9)).toString(), 'overwrite');
    assert.equal((await fs.read(a.ino, 2 * BLOCK_SIZE + 1, 7)).toString(), 'convert');
    assert.equal(fs.stat(a.ino).blocks, 3);
    await fs.unmount();
  });

  it('every fallocate mode on one file, remounts in between', async () => {
    const f = 0;
    const abs = (at: number): Pos => ({ kind: 'abs', at });
    const ops: Op[] = [
      { t: 'write', f, pos: abs(100), len: 5 * BLOCK_SIZE, sync: false, seed: 7 },
      { t: 'fallocate', f, mode: 'KEEP_SIZE', pos: abs(0), len: 64 * BLOCK_SIZE },
      { t: 'fallocate', f, mode: 'PUNCH_HOLE', pos: abs(BLOCK_SIZE - 1), len: BLOCK_SIZE + 2 },
      { t: 'fallocate', f, mode: 'ZERO_RANGE', pos: abs(3 * BLOCK_SIZE + 5), len: 2 * BLOCK_SIZE },
      { t: 'remount', kind: 'reboot' },
      { t: 'fallocate', f, mode: 'COLLAPSE_RANGE', pos: abs(BLOCK_SIZE), len: BLOCK_SIZE },
      { t: 'fallocate', f, mode: 'COLLAPSE_RANGE', pos: abs(0), len: 10 * BLOCK_SIZE },
      { t: 'fallocate', f, mode: 'COLLAPSE_RANGE', pos: abs(1), len: BLOCK_SIZE },
      { t: 'fallocate', f, mode: 'ALLOCATE', pos: abs(4 * GiB), len: 3 },
      { t: 'remount', kind: 'unmount' },
      { t: 'fallocate', f, mode: 'COLLAPSE_RANGE', pos: abs(BLOCK_SIZE), len: BLOCK_SIZE },
      { t: 'truncate', f, pos: abs(BLOCK_SIZE + 1) },
      { t: 'read', f, pos: abs(0), len: 3 * BLOCK_SIZE },
    ];
    await runSequence(32 * MiB, ops);
  });
});

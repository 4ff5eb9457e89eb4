import assert from 'node:assert/strict';
import { BLOCK_SIZE } from '../../server/limits';
import { DaxError } from '../../server/errors';
import { computeLayout, Layout } from '../../server/media/layout';
import { MemoryStorage } from '../../server/media/memory-storage';
import { Journal } from '../../server/journal/journal';
import { BlockRun, coalesceRuns } from '../../server/journal/transaction';
import { Allocator, popcount } from '../../server/alloc/allocator';
import { mkfs } from '../../server/fs/mkfs';
import { MiB } from '../support/units';

interface Fixture {
  storage: MemoryStorage;
  layout: Layout;
  journal: Journal;
  alloc: Allocator;
  /** First and one-past-last pfn of the data zone. */
  start: number;
  end: number;
}

async function setup(sizeBytes = 16 * MiB, chunkBytes?: number): Promise<Fixture> {
  const storage = new MemoryStorage(sizeBytes, chunkBytes === undefined ? {} : { chunkBytes });
  await mkfs(storage);
  const layout = computeLayout(sizeBytes);
  const journal = new Journal(storage, layout, 1);
  const alloc = new Allocator(storage, layout, journal);
  journal.onCommitted = (tx) => alloc.onCommitted(tx);
  return { storage, layout, journal, alloc, start: layout.data.start, end: layout.data.start + layout.data.count };
}

/** The same volume seen by a fresh allocator (as after a remount): the bitmap on media. */
function reload(f: Fixture): Allocator {
  const journal = new Journal(f.storage, f.layout, 100);
  return new Allocator(f.storage, f.layout, journal);
}

function pfnsOf(runs: readonly BlockRun[]): number[] {
  return runs.flatMap((r) => Array.from({ length: r.count }, (_, i) => r.pfn + i));
}

function isCode(code: string): (err: unknown) => boolean {
  return (err) => err instanceof DaxError && err.code === code;
}

function block(storage: MemoryStorage, pfn: number): Uint8Array {
  return storage.view(pfn * BLOCK_SIZE, BLOCK_SIZE);
}

function durableBlock(storage: MemoryStorage, pfn: number): Uint8Array {
  return storage.durableImage().subarray(pfn * BLOCK_SIZE, (pfn + 1) * BLOCK_SIZE);
}

const UNWRITTEN = { kind: 'unwritten' } as const;
const ZERO = { kind: 'zero' } as const;

describe('allocator', () => {
  it('popcount', () => {
    assert.deepEqual([0, 1, 0xff, 0x80000000, 0xffffffff, -1, 0x55555555].map(popcount), [0, 1, 8, 1, 32, 32, 16]);
  });

  it('hands out every data block exactly once, never pfn 0 or a block outside the data zone', async () => {
    const f = await setup();
    const seen = new Set<number>();
    const goals = [0, 1, f.layout.journal.start, f.layout.inodes.start, f.start - 1, f.end, f.end + 1000, f.start + 17];
    for (let i = 0; f.alloc.freeBlocks > 0; i++) {
      const count = Math.min(f.alloc.freeBlocks, 1 + ((i * 37) % 200));
      const before = f.alloc.freeBlocks;
      const runs = f.alloc.allocate(count, goals[i % goals.length], UNWRITTEN);
      assert.equal(f.alloc.freeBlocks, before - count);
      const pfns = pfnsOf(runs);
      assert.equal(pfns.length, count);
      for (const pfn of pfns) {
        assert.ok(pfn >= f.start && pfn < f.end, `pfn ${pfn} outside the data zone [${f.start}, ${f.end})`);
        assert.ok(!seen.has(pfn), `pfn ${pfn} handed out twice`);
        assert.ok(f.alloc.isAllocated(pfn));
        seen.add(pfn);
      }
    }
    assert.equal(seen.size, f.layout.data.count);
    assert.ok(!seen.has(0));
    assert.throws(() => f.alloc.allocate(1, 0, UNWRITTEN), isCode('ENOSPC'));
    await f.journal.commit();
    assert.equal(reload(f).freeBlocks, 0, 'the bitmap on media says full');
  });

  it('freed blocks are not reused before the freeing transaction commits, and are after', async () => {
    const f = await setup();
    f.alloc.allocate(10, f.start, UNWRITTEN);
    await f.journal.commit();
    const freed = [f.start + 3, f.start + 4, f.start + 5];
    f.alloc.free(f.start + 3, 3);
    assert.equal(f.alloc.freeBlocks, f.layout.data.count - 10, 'pending frees are not free yet');
    assert.ok(!f.alloc.isAllocated(f.start + 3), 'the bitmap bit is clear in the running transaction');

    const early = pfnsOf(f.alloc.allocate(3, f.start + 3, UNWRITTEN));
    assert.ok(early.every((pfn) => !freed.includes(pfn)), `reused a pending free: ${early}`);
    // Even with nothing else free, the pending blocks are not handed out.
    f.alloc.allocate(f.alloc.freeBlocks, f.start, UNWRITTEN);
    assert.throws(() => f.alloc.allocate(1, f.start + 3, UNWRITTEN), isCode('ENOSPC'));

    await f.journal.commit();
    assert.equal(f.alloc.freeBlocks, 3);
    assert.deepEqual(pfnsOf(f.alloc.allocate(3, 0, UNWRITTEN)), freed);
  });

  it('a large allocation on a fresh volume is one contiguous run from the start of the data zone', async () => {
    const f = await setup();
    const runs = f.alloc.allocate(f.layout.data.count - 1, 0, UNWRITTEN);
    assert.deepEqual(runs, [{ pfn: f.start, count: f.layout.data.count - 1 }]);
  });

  it('a run that spans bitmap groups and storage chunks is still contiguous', async () => {
    const f = await setup(144 * MiB);
    assert.ok(f.layout.data.count > 32768, 'two bitmap groups');
    const runs = f.alloc.allocate(f.layout.data.count, 0, UNWRITTEN);
    assert.deepEqual(coalesceRuns(runs), [{ pfn: f.start, count: f.layout.data.count }]);
    for (const r of runs) {
      const chunkOf = (pfn: number) => Math.floor((pfn * BLOCK_SIZE) / f.storage.chunkBytes);
      assert.equal(chunkOf(r.pfn), chunkOf(r.pfn + r.count - 1), `run ${r.pfn}+${r.count} crosses a storage chunk`);
    }
  });

  it('runs never cross a storage chunk (2 MiB chunks), and zeroing covers every run', async () => {
    const f = await setup(16 * MiB, 2 * MiB);
    const chunkBlocks = (2 * MiB) / BLOCK_SIZE;
    const pfns = Array.from({ length: 1000 }, (_, i) => f.start + i);
    for (const pfn of pfns) block(f.storage, pfn).fill(0xcc);
    const runs = f.alloc.allocate(1000, 0, ZERO);
    assert.ok(runs.length > 1);
    for (const r of runs) assert.equal(Math.floor(r.pfn / chunkBlocks), Math.floor((r.pfn + r.count - 1) / chunkBlocks));
    assert.deepEqual(pfnsOf(runs), pfns);
    for (const pfn of pfns) assert.ok(block(f.storage, pfn).every((b) => b === 0), `pfn ${pfn} not zeroed`);
  });

  it('is goal directed, next-fit from the last allocation otherwise, and wraps around', async () => {
    const f = await setup();
    assert.deepEqual(f.alloc.allocate(1, f.start + 100, UNWRITTEN), [{ pfn: f.start + 100, count: 1 }]);
    assert.deepEqual(f.alloc.allocate(1, 0, UNWRITTEN), [{ pfn: f.start + 101, count: 1 }], 'no goal: right after the last');
    assert.deepEqual(f.alloc.allocate(2, f.start + 100, UNWRITTEN), [{ pfn: f.start + 102, count: 2 }], 'goal taken: the next free');
    assert.deepEqual(f.alloc.allocate(1, f.layout.inodes.start, UNWRITTEN), [{ pfn: f.start + 104, count: 1 }], 'goal outside the data zone is ignored');
    assert.deepEqual(f.alloc.allocate(1, f.start + 50, UNWRITTEN), [{ pfn: f.start + 50, count: 1 }]);
    assert.deepEqual(f.alloc.allocate(5, f.end - 2, UNWRITTEN), [{ pfn: f.end - 2, count: 2 }, { pfn: f.start, count: 3 }], 'wraps to the start');
    assert.deepEqual(f.alloc.allocate(1, 0, UNWRITTEN), [{ pfn: f.start + 3, count: 1 }]);
  });

  it('ENOSPC is all or nothing: free count and bitmap unchanged', async () => {
    const f = await setup();
    f.alloc.allocate(f.layout.data.count - 5, 0, UNWRITTEN);
    await f.journal.commit();
    f.alloc.free(f.start, 4); // pending: does not count as free
    const bitmapBefore = f.journal.read(f.layout.blockBitmap.start).slice();
    assert.throws(() => f.alloc.allocate(6, 0, UNWRITTEN), isCode('ENOSPC'));
    assert.throws(() => f.alloc.allocate(6, 0, ZERO), isCode('ENOSPC'));
    assert.equal(f.alloc.freeBlocks, 5);
    assert.deepEqual(f.journal.read(f.layout.blockBitmap.start), bitmapBefore);
    const last = pfnsOf(f.alloc.allocate(5, 0, UNWRITTEN));
    assert.deepEqual(last, Array.from({ length: 5 }, (_, i) => f.end - 5 + i));
  });

  it("'zero' init zeroes stale data and makes the zeroes durable by the commit", async () => {
    const f = await setup();
    const [{ pfn }] = f.alloc.allocate(1, f.start + 20, UNWRITTEN);
    block(f.storage, pfn).fill(0xcc);
    await f.storage.flush(pfn * BLOCK_SIZE, BLOCK_SIZE);
    await f.journal.commit();
    f.alloc.free(pfn, 1);
    await f.journal.commit();

    assert.deepEqual(f.alloc.allocate(1, pfn, ZERO), [{ pfn, count: 1 }]);
    assert.ok(block(f.storage, pfn).every((b) => b === 0));
    assert.equal(durableBlock(f.storage, pfn)[0], 0xcc, 'not flushed before the commit');
    await f.journal.commit();
    assert.ok(durableBlock(f.storage, pfn).every((b) => b === 0), 'ordered data flushed by the commit');
  });

  it("'unwritten' init leaves the media alone; 'metadata' init gives a zeroed journal shadow", async () => {
    const f = await setup();
    const pfns = [f.start + 30, f.start + 31];
    for (const pfn of pfns) block(f.storage, pfn).fill(0xcc);
    const [u] = pfnsOf(f.alloc.allocate(1, pfns[0], UNWRITTEN));
    assert.equal(u, pfns[0]);
    assert.ok(block(f.storage, u).every((b) => b === 0xcc));
    const [m] = pfnsOf(f.alloc.allocate(1, pfns[1], { kind: 'metadata' }));
    assert.equal(m, pfns[1]);
    assert.ok(f.journal.read(m).every((b) => b === 0), 'metadata reads as its zeroed shadow');
    assert.ok(block(f.storage, m).every((b) => b === 0xcc), 'home untouched until the commit');
    await f.journal.commit();
    assert.ok(durableBlock(f.storage, m).every((b) => b === 0), 'checkpointed');
  });

  it("'fill' init calls fill for each run with the blocks before it, and the data is ordered", async () => {
    const f = await setup(16 * MiB, 2 * MiB);
    const chunkBlocks = (2 * MiB) / BLOCK_SIZE;
    // Start 3 blocks before a chunk boundary so the allocation is split.
    const goal = Math.ceil((f.start + 1) / chunkBlocks) * chunkBlocks - 3;
    const calls: Array<[number, number, number]> = [];
    const runs = f.alloc.allocate(8, goal, {
      kind: 'fill',
      fill: (run, before) => {
        calls.push([run.pfn, run.count, before]);
        for (let i = 0; i < run.count; i++) block(f.storage, run.pfn + i).fill(before + i + 1);
      },
    });
    assert.deepEqual(runs, [{ pfn: goal, count: 3 }, { pfn: goal + 3, count: 5 }]);
    assert.deepEqual(calls, [[goal, 3, 0], [goal + 3, 5, 3]]);
    await f.journal.commit();
    for (let i = 0; i < 8; i++) assert.equal(durableBlock(f.storage, goal + i)[4095], i + 1);
  });

  it('canaryByte fills freed blocks once the free commits, not before', async () => {
    const f = await setup();
    f.alloc.canaryByte = 0xab;
    const pfns = pfnsOf(f.alloc.allocate(4, f.start + 40, UNWRITTEN));
    for (const pfn of pfns) block(f.storage, pfn).fill(0x11);
    await f.journal.commit();
    f.alloc.free(pfns[1], 2);
    assert.ok(block(f.storage, pfns[1]).every((b) => b === 0x11), 'not before the commit');
    await f.journal.commit();
    for (const [i, pfn] of pfns.entries()) {
      const expected = i === 1 || i === 2 ? 0xab : 0x11;
      assert.ok(block(f.storage, pfn).every((b) => b === expected), `pfn ${pfn}`);
    }
  });

  it('double free and frees outside the data zone are assertion failures', async () => {
    const f = await setup();
    const [{ pfn }] = f.alloc.allocate(1, 0, UNWRITTEN);
    f.alloc.free(pfn, 1);
    assert.throws(() => f.alloc.free(pfn, 1), assert.AssertionError);
    assert.throws(() => f.alloc.free(f.start - 1, 1), assert.AssertionError);
    assert.throws(() => f.alloc.free(f.end - 1, 2), assert.AssertionError);
    assert.throws(() => f.alloc.isAllocated(0), assert.AssertionError);
  });

  it('the free count survives a remount (bitmap popcount at load)', async () => {
    const f = await setup(144 * MiB);
    f.alloc.allocate(34000, 0, UNWRITTEN);
    await f.journal.commit();
    f.alloc.free(f.start + 100, 50);
    f.alloc.free(f.start + 33000, 10);
    await f.journal.commit();
    assert.equal(f.alloc.freeBlocks, f.layout.data.count - 34000 + 60);
    assert.equal(reload(f).freeBlocks, f.alloc.freeBlocks);
  });
});

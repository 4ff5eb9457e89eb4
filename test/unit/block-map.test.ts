import assert from 'node:assert/strict';
import { computeLayout, Layout } from '../../server/media/layout';
import { MemoryStorage } from '../../server/media/memory-storage';
import { Journal } from '../../server/journal/journal';
import { Allocator } from '../../server/alloc/allocator';
import { BlockMap, entryPfn, entryState, FANOUT, makeEntry, STATE_UNWRITTEN, STATE_WRITTEN, toPageMapping } from '../../server/fs/block-map';
import { Inode, INODE_LINKED } from '../../server/fs/inode';
import { mkfs } from '../../server/fs/mkfs';
import { MiB } from '../support/units';

const SIZE_BYTES = 16 * MiB;
const MAX_PAGES = FANOUT ** 3;

/** Counts view() calls: every map block read that is not in the journal's memory is one. */
class CountingStorage extends MemoryStorage {
  views = 0;
  override view(offsetBytes: number, lengthBytes: number): Uint8Array {
    this.views++;
    return super.view(offsetBytes, lengthBytes);
  }
}

interface Fixture {
  storage: CountingStorage;
  layout: Layout;
  journal: Journal;
  alloc: Allocator;
  map: BlockMap;
  inode: Inode;
}

function makeInode(): Inode {
  return {
    ino: 1, state: INODE_LINKED, generation: 1, sizeBytes: 0, blocks: 0, mapRoot: 0, mapDepth: 0,
    mtimeMs: 0, ctimeMs: 0, name: 'f', users: 0, dirtyPfns: new Set(),
  };
}

async function setup(): Promise<Fixture> {
  const storage = new CountingStorage(SIZE_BYTES);
  await mkfs(storage);
  const layout = computeLayout(SIZE_BYTES);
  const journal = new Journal(storage, layout, 1);
  const alloc = new Allocator(storage, layout, journal);
  journal.onCommitted = (tx) => alloc.onCommitted(tx);
  return { storage, layout, journal, alloc, map: new BlockMap(journal, alloc), inode: makeInode() };
}

function dataBlock(f: Fixture): number {
  return f.alloc.allocate(1, 0, { kind: 'unwritten' })[0].pfn;
}

function countMapBlocks(f: Fixture, inode = f.inode): number[] {
  const pfns: number[] = [];
  f.map.mapBlocks(inode, (pfn) => pfns.push(pfn));
  return pfns;
}

describe('block map', () => {
  it('entry encoding: HOLE is 0, state in the top bits, pfn below; pfn 0 is not encodable', () => {
    const w = makeEntry(STATE_WRITTEN, (1 << 30) - 1);
    assert.equal(entryState(w), STATE_WRITTEN);
    assert.equal(entryPfn(w), (1 << 30) - 1);
    const u = makeEntry(STATE_UNWRITTEN, 12345);
    assert.deepEqual(toPageMapping(u), { state: 'UNWRITTEN', pfn: 12345 });
    assert.deepEqual(toPageMapping(w), { state: 'WRITTEN', pfn: (1 << 30) - 1 });
    assert.deepEqual(toPageMapping(0), { state: 'HOLE' });
    assert.ok(w > 0 && u > 0, 'entries are unsigned');
    assert.throws(() => makeEntry(STATE_WRITTEN, 0), assert.AssertionError);
    assert.throws(() => makeEntry(STATE_WRITTEN, 1 << 30), assert.AssertionError);
  });

  it('set/get across depth growth: pgoff 0, 1023, 1024, 1024*1024', async () => {
    const f = await setup();
    const { map, inode } = f;
    assert.equal(map.get(inode, 0), 0);
    assert.equal(map.get(inode, 5_000_000), 0);
    const e = [0, 1, 2, 3].map((i) => makeEntry(i === 2 ? STATE_UNWRITTEN : STATE_WRITTEN, dataBlock(f)));

    map.set(inode, 0, e[0]);
    assert.equal(inode.mapDepth, 1);
    assert.equal(countMapBlocks(f).length, 1);
    map.set(inode, 1023, e[1]);
    assert.equal(inode.mapDepth, 1);
    assert.equal(countMapBlocks(f).length, 1);
    map.set(inode, 1024, e[2]);
    assert.equal(inode.mapDepth, 2);
    assert.equal(countMapBlocks(f).length, 3, 'new root + two leaves');
    map.set(inode, 1024 * 1024, e[3]);
    assert.equal(inode.mapDepth, 3);
    assert.equal(countMapBlocks(f).length, 6, 'root, two interior, three leaves');

    const check = (m: BlockMap, ino: Inode): void => {
      assert.equal(m.get(ino, 0), e[0]);
      assert.equal(m.get(ino, 1023), e[1]);
      assert.equal(m.get(ino, 1024), e[2]);
      assert.equal(m.get(ino, 1024 * 1024), e[3]);
      for (const pg of [1, 1022, 1025, 2048, 1024 * 1024 - 1, 1024 * 1024 + 1, 2 * 1024 * 1024, MAX_PAGES - 1, MAX_PAGES]) {
        assert.equal(m.get(ino, pg), 0, `pgoff ${pg}`);
      }
    };
    check(map, inode);
    // Every map block is allocated, none is a data block, and the tree is on media after commit.
    const blocks = countMapBlocks(f);
    for (const pfn of blocks) {
      assert.ok(f.alloc.isAllocated(pfn));
      assert.ok(!e.map(entryPfn).includes(pfn));
    }
    await f.journal.commit();
    const journal = new Journal(f.storage, f.layout, 10);
    check(new BlockMap(journal, new Allocator(f.storage, f.layout, journal)), { ...inode });
  });

  it('a first entry far out builds the tree at full depth at once; HOLE on an empty map allocates nothing', async () => {
    const f = await setup();
    const free0 = f.alloc.freeBlocks;
    f.map.set(f.inode, 1024 * 1024 + 5, 0);
    assert.equal(f.inode.mapRoot, 0);
    assert.equal(f.alloc.freeBlocks, free0);
    const entry = makeEntry(STATE_WRITTEN, dataBlock(f));
    f.map.set(f.inode, 1024 * 1024 + 5, entry);
    assert.equal(f.inode.mapDepth, 3);
    assert.equal(countMapBlocks(f).length, 3);
    assert.equal(f.map.get(f.inode, 1024 * 1024 + 5), entry);
    assert.throws(() => f.map.set(f.inode, MAX_PAGES, entry), assert.AssertionError);
  });

  it('getRange returns the entries of a range across leaves and holes', async () => {
    const f = await setup();
    const entries = new Map<number, number>();
    for (const pg of [3, 1020, 1023, 1024, 1030, 5000, 1024 * 1024 + 1]) {
      const e = makeEntry(STATE_WRITTEN, dataBlock(f));
      entries.set(pg, e);
      f.map.set(f.inode, pg, e);
    }
    const range = f.map.getRange(f.inode, 1000, 4500);
    assert.equal(range.length, 4500);
    for (let i = 0; i < range.length; i++) assert.equal(range[i], entries.get(1000 + i) ?? 0, `pgoff ${1000 + i}`);
    const tail = f.map.getRange(f.inode, 1024 * 1024 - 2, 4);
    assert.deepEqual([...tail], [0, 0, 0, entries.get(1024 * 1024 + 1)]);
    assert.deepEqual([...f.map.getRange(makeInode(), 0, 3)], [0, 0, 0], 'no map: all holes');
  });

  it('visit calls back once per present leaf run, clipped to the range', async () => {
    const f = await setup();
    for (const pg of [0, 1030, 1024 * 1024 + 7]) f.map.set(f.inode, pg, makeEntry(STATE_WRITTEN, dataBlock(f)));
    const calls: Array<[number, number, number]> = [];
    f.map.visit(f.inode, 0, MAX_PAGES - 1, (pg, _leaf, idx, n) => calls.push([pg, idx, n]));
    assert.deepEqual(calls, [[0, 0, FANOUT], [1024, 0, FANOUT], [1024 * 1024, 0, FANOUT]]);
    calls.length = 0;
    f.map.visit(f.inode, 1000, 1030, (pg, leaf, idx, n) => {
      calls.push([pg, idx, n]);
      assert.equal(leaf.length, FANOUT);
    });
    assert.deepEqual(calls, [[1000, 1000, 24], [1024, 0, 7]]);
    calls.length = 0;
    f.map.visit(f.inode, 3000, 1024 * 1024 - 1, (pg, _leaf, idx, n) => calls.push([pg, idx, n]));
    assert.deepEqual(calls, [], 'nothing present in range');
    f.map.visit(f.inode, MAX_PAGES, MAX_PAGES + 10, () => assert.fail('beyond the map'));
  });

  it('getRange and visit skip empty subtrees: cost is the map blocks present, not the range', async () => {
    const f = await setup();
    for (const pg of [0, 1030, 1024 * 1024 + 7]) f.map.set(f.inode, pg, makeEntry(STATE_WRITTEN, dataBlock(f)));
    await f.journal.commit(); // map blocks are home: each read of one is a storage view
    const present = countMapBlocks(f).length;

    f.storage.views = 0;
    let calls = 0;
    f.map.visit(f.inode, 0, MAX_PAGES - 1, () => calls++);
    assert.equal(calls, 3);
    assert.ok(f.storage.views <= present, `visit of the whole map read ${f.storage.views} blocks (${present} present)`);

    f.storage.views = 0;
    const range = f.map.getRange(f.inode, 0, 2 * 1024 * 1024);
    assert.equal(range.filter((e) => e !== 0).length, 3);
    assert.ok(f.storage.views <= present, `getRange of 2M pages read ${f.storage.views} blocks (${present} present)`);
  });

  it('clearRange drops chosen entries and frees the map blocks it empties', async () => {
    const f = await setup();
    await f.journal.commit();
    const baseline = f.alloc.freeBlocks;
    const pages = [0, 1, 1024, 1024 * 1024];
    const pfns = new Map<number, number>();
    for (const pg of pages) {
      const pfn = dataBlock(f);
      pfns.set(pg, pfn);
      f.map.set(f.inode, pg, makeEntry(STATE_WRITTEN, pfn));
    }
    await f.journal.commit();
    const blocks0 = countMapBlocks(f);
    assert.equal(blocks0.length, 6);
    assert.equal(f.alloc.freeBlocks, baseline - pages.length - 6);

    const freeData = (_pg: number, e: number): boolean => {
      f.alloc.free(entryPfn(e), 1);
      return true;
    };
    // A drop callback that keeps everything changes nothing.
    assert.equal(f.map.clearRange(f.inode, 0, MAX_PAGES - 1, () => false), 0);
    assert.deepEqual(countMapBlocks(f), blocks0);

    // Emptying the leaf of pgoff 1024 frees that leaf only.
    assert.equal(f.map.clearRange(f.inode, 1024, 2047, freeData), 1);
    assert.equal(f.map.get(f.inode, 1024), 0);
    assert.equal(countMapBlocks(f).length, 5);
    // Emptying pgoff 1024*1024 frees its leaf and the interior block above it.
    assert.equal(f.map.clearRange(f.inode, 1024 * 1024, 1024 * 1024, freeData), 1);
    assert.equal(countMapBlocks(f).length, 3);
    // A partial clear of a leaf keeps it.
    assert.equal(f.map.clearRange(f.inode, 1, 1, freeData), 1);
    assert.equal(countMapBlocks(f).length, 3);
    assert.equal(f.map.get(f.inode, 0), makeEntry(STATE_WRITTEN, pfns.get(0)!));
    const gone = blocks0.filter((pfn) => !countMapBlocks(f).includes(pfn));
    for (const pfn of gone) assert.ok(!f.alloc.isAllocated(pfn), `map block ${pfn} still allocated`);
    await f.journal.commit();
    assert.equal(f.alloc.freeBlocks, baseline - 1 - 3);

    // Clearing everything frees the whole tree.
    assert.equal(f.map.clearRange(f.inode, 0, Number.MAX_SAFE_INTEGER, freeData), 1);
    assert.equal(f.inode.mapRoot, 0);
    assert.equal(f.inode.mapDepth, 0);
    assert.equal(f.map.get(f.inode, 0), 0);
    await f.journal.commit();
    assert.equal(f.alloc.freeBlocks, baseline, 'every data and map block is free again');
    assert.equal(f.map.clearRange(f.inode, 0, 10, freeData), 0, 'an empty map clears nothing');
  });
});

/**
 * holetest (fstests src/holetest.c: generic/340, 344, 346), ported in-process. S1, S2, S3.
 *
 * Two sessions each store their own 8-byte marker into every page of one shared file
 * concurrently: owner 0 at offset 1024, owner 1 at offset 3072. The file is prepared four
 * ways on a fresh volume: zero-filled (truncate + write zeros: WRITTEN blocks), fallocated
 * (ALLOCATE, and truncate + KEEP_SIZE: UNWRITTEN blocks, the fault must convert and zero
 * them), sparse (truncate only: holes). Sizes 1 and 16 MiB (the 256 MiB size is left to
 * the gRPC acceptance suite: it does not fit the 16-64 MiB volumes of these tests).
 * - 340: the stores only.
 * - 344: first a READ fault of every page by both sessions (zero pages on holes), then the
 *   stores. Afterwards every prefault PTE either is stale or shows the final bytes.
 * - 346 (and 344 -w): owner 0 uses write(2) (fs.write) instead of stores.
 * 345 (two processes) is the same as 340 here: sessions are independent already.
 *
 * The stores are issued all at once (Promise.all over pages and owners), so faults, S3
 * invalidations and allocations interleave at every await. A store that gets PTE_STALE
 * re-faults and retries, as a client does. The volume first held a deleted file full of
 * 0xCC (and is mounted with that canary on freed blocks): any block reaching the file
 * un-zeroed would show it (S2).
 *
 * Pass: every page holds both markers and zeros elsewhere, through read(2) and through
 * fresh loads of a third session; no block allocated twice (distinct pfns in the block map
 * and in Inspect, stat.blocks = pages, fsck clean when built).
 */
import assert from 'node:assert/strict';
import { BLOCK_SIZE } from '../../server/limits';
import { assertFsckClean, freshDax, remountDax, isCode, type DaxVolume } from '../support/dax-volume';
import { MiB, PAGE } from '../support/units';
import { TestClient, TestOwner, type CachedPte } from '../support/test-owner';

const CANARY = 0xcc;
const OFFSETS = [1024, 3072] as const;
type Prep = 'zero-filled' | 'fallocated' | 'fallocated-keep-size' | 'sparse';
type Variant = '340' | '344' | '346' | '344-w';

function marker(owner: 0 | 1, pg: number): Buffer {
  const m = Buffer.alloc(8);
  m.write(owner === 0 ? 'H0' : 'H1', 0, 'latin1');
  m[2] = 0xa5;
  m[3] = 0x5a;
  m.writeUInt32LE(pg, 4);
  return m;
}

function expectedPage(pg: number): Buffer {
  const p = Buffer.alloc(PAGE);
  marker(0, pg).copy(p, OFFSETS[0]);
  marker(1, pg).copy(p, OFFSETS[1]);
  return p;
}

async function prepare(v0: DaxVolume, prep: Prep, sizeBytes: number): Promise<{ v: DaxVolume; ino: number; junkPfns: Set<number> }> {
  // Stale bytes a new block must never show: a deleted file's 0xCC blocks, freed, committed,
  // and a remount so the allocator starts over at the zone start, where they are.
  const junk = await v0.fs.create('junk', true);
  await v0.fs.write(junk.ino, 0, Buffer.alloc(sizeBytes, CANARY), false);
  const junkPfns = new Set<number>();
  for (let pg = 0; pg < sizeBytes / PAGE; pg++) junkPfns.add((v0.fs.iomap(junk.ino, pg) as { pfn: number }).pfn);
  await v0.fs.unlink('junk');
  await v0.fs.sync();
  const v = await remountDax(v0, { canaryByte: CANARY });

  const { ino } = await v.fs.create('holetest', true);
  switch (prep) {
    case 'zero-filled':
      await v.fs.truncate(ino, sizeBytes);
      await v.fs.write(ino, 0, Buffer.alloc(sizeBytes), false);
      break;
    case 'fallocated':
      await v.fs.fallocate(ino, 'ALLOCATE', 0, sizeBytes);
      break;
    case 'fallocated-keep-size':
      await v.fs.truncate(ino, sizeBytes);
      await v.fs.fallocate(ino, 'KEEP_SIZE', 0, sizeBytes);
      break;
    case 'sparse':
      await v.fs.truncate(ino, sizeBytes);
      break;
  }
  assert.equal(v.fs.stat(ino).sizeBytes, sizeBytes);
  const want = prep === 'zero-filled' ? 'WRITTEN' : prep === 'sparse' ? 'HOLE' : 'UNWRITTEN';
  assert.equal(v.fs.iomap(ino, 0).state, want, 'preparation');
  return { v, ino, junkPfns };
}

async function holetest(prep: Prep, sizeBytes: number, variant: Variant): Promise<void> {
  const v0 = await freshDax(sizeBytes <= MiB ? 16 * MiB : 64 * MiB, { canaryByte: CANARY });
  const { v, ino, junkPfns } = await prepare(v0, prep, sizeBytes);
  const pages = sizeBytes / PAGE;
  const owners = [new TestOwner('client-0'), new TestOwner('client-1')];
  const clients = owners.map((o) => new TestClient(v.dax, o));
  const useWrite = variant === '346' || variant === '344-w';
  const prefault = variant === '344' || variant === '344-w';

  // 344: read one byte of every page through the mapping first.
  const prefaultPtes: Array<Array<CachedPte | undefined>> = [[], []];
  if (prefault) {
    await Promise.all(clients.flatMap((c, i) => Array.from({ length: pages }, async (_, pg) => {
      const b = await c.load(ino, pg * PAGE + OFFSETS[i], 1);
      assert.equal(b[0], 0, `prefault of page ${pg} reads zero`);
      prefaultPtes[i][pg] = c.cached(ino, pg);
    })));
    const entries = v.dax.inspect(ino, 0, pages - 1);
    assert.equal(entries.length, pages);
    const state = prep === 'zero-filled' ? 'MAPPED' : 'ZERO';
    assert.ok(entries.every((e) => e.state === state && e.mappers === 2), `every page ${state} with two read PTEs`);
    if (prep === 'sparse') assert.equal(v.fs.stat(ino).blocks, 0, 'read faults allocate nothing');
  }

  // The concurrent part: every page, both owners, all in flight at once.
  await Promise.all([0, 1].flatMap((i) => Array.from({ length: pages }, (_, pg) => {
    const m = marker(i as 0 | 1, pg);
    const at = pg * PAGE + OFFSETS[i];
    if (i === 0 && useWrite) return v.fs.write(ino, at, m, false);
    return clients[i].store(ino, at, m);
  })));

  // Every marker, through read(2), zeros elsewhere (S2: nothing stale from the junk file).
  const all = await v.fs.read(ino, 0, sizeBytes);
  for (let pg = 0; pg < pages; pg++) {
    const got = all.subarray(pg * PAGE, (pg + 1) * PAGE);
    if (!got.equals(expectedPage(pg))) {
      const at = got.findIndex((b, k) => b !== expectedPage(pg)[k]);
      assert.fail(`read(2): page ${pg} byte ${at} is 0x${got[at].toString(16)}, expected 0x${expectedPage(pg)[at].toString(16)}`);
    }
  }

  // 344: every prefault PTE is stale, or (still valid) shows the final bytes.
  if (prefault) {
    let stale = 0;
    for (const i of [0, 1]) {
      for (let pg = 0; pg < pages; pg++) {
        const pte = prefaultPtes[i][pg]!;
        try {
          const got = v.dax.load(owners[i], pte.token, 0, PAGE);
          assert.ok(got.equals(expectedPage(pg)), `client-${i}'s prefault PTE on page ${pg} (pfn ${pte.pfn}) shows stale bytes`);
        } catch (err) {
          if (!isCode(err, 'PTE_STALE')) throw err;
          stale++;
        }
      }
    }
    if (prep !== 'zero-filled') assert.equal(stale, 2 * pages, 'every zero-page PTE was revoked');
  }

  // Through a fresh session's mapping.
  const verifier = new TestClient(v.dax, new TestOwner('verifier'));
  for (let pg = 0; pg < pages; pg++) {
    const got = await verifier.load(ino, pg * PAGE, PAGE);
    if (!got.equals(expectedPage(pg))) assert.fail(`fresh load: page ${pg} differs from the expected markers`);
  }

  // No block allocated twice: block map, Inspect, stat, fsck.
  const pfns = new Set<number>();
  for (let pg = 0; pg < pages; pg++) {
    const m = v.fs.iomap(ino, pg);
    assert.equal(m.state, 'WRITTEN', `page ${pg}`);
    if (m.state === 'WRITTEN') pfns.add(m.pfn);
  }
  assert.equal(pfns.size, pages, 'distinct blocks in the block map');
  assert.ok([...pfns].filter((pfn) => junkPfns.has(pfn)).length >= pages / 2, 'precondition of the S2 check: the file reuses blocks that held 0xCC');
  if (!useWrite) {
    const waits = v.dax.spaceStats(ino)?.lockWaits ?? 0;
    assert.ok(waits > 0, 'precondition: the two sessions contended for entry locks');
  }
  const entries = v.dax.inspect(ino, 0, pages - 1);
  assert.equal(entries.length, pages);
  const entryPfns = new Set(entries.map((e) => e.pfn));
  assert.equal(entryPfns.size, pages, 'Inspect: distinct pfns');
  for (const e of entries) {
    const m = v.fs.iomap(ino, e.pgoff);
    assert.ok(e.state === 'MAPPED' && m.state === 'WRITTEN' && m.pfn === e.pfn, `Inspect page ${e.pgoff} agrees with the block map`);
    assert.equal(e.locked, false);
    assert.equal(e.waiters, 0);
  }
  assert.equal(v.fs.stat(ino).blocks, pages);
  if (prep === 'sparse' && !useWrite) {
    assert.equal(v.dax.counters().faults.allocate, pages, 'one allocating fault per page, never two');
  }
  await v.dax.fsync(ino, false);
  await assertFsckClean(v, `after holetest ${prep} ${sizeBytes / MiB} MiB ${variant}`);
  await v.fs.unmount();
}

describe('dax holetest (fstests generic/340, 344, 346): S1, S2, S3', function () {
  this.timeout(120_000);
  const preps: Prep[] = ['zero-filled', 'fallocated', 'fallocated-keep-size', 'sparse'];
  for (const sizeBytes of [1 * MiB, 16 * MiB]) {
    for (const variant of ['340', '344', '346', '344-w'] as Variant[]) {
      for (const prep of preps) {
        const what = { '340': 'stores', '344': 'read prefault, then stores', '346': 'owner 0 by write(2)', '344-w': 'read prefault, owner 0 by write(2)' }[variant];
        it(`${variant}: ${prep}, ${sizeBytes / MiB} MiB (${what})`, async function () {
          await holetest(prep, sizeBytes, variant);
        });
      }
    }
  }

  it('the markers sit where the test thinks they do (page size)', function () {
    assert.equal(PAGE, BLOCK_SIZE);
    assert.ok(OFFSETS[1] + 8 <= PAGE);
  });
});

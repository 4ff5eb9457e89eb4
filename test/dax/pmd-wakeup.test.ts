/**
 * Failpoint races between PMD (2 MiB) and 4 KiB faults on one range: the 5.3 missed-wakeup
 * case (23c84eb78375: a PMD fault waited on the aligned key, which a 4 KiB holder elsewhere
 * in the range never wakes) and its converse, S1.
 *
 * - A 4 KiB fault paused holding page base+5: a PMD fault on the range answers PTE_LOCKED
 *   at once (it never waits under the PMD key), then its own 4 KiB fault runs; one on the
 *   held page itself waits on that page's key, which the holder wakes.
 * - A PMD fault paused holding the PMD placeholder: 4 KiB faults on two pages of the range
 *   wait on the PMD key; on release they downgrade a ZERO PMD, or map pages of a MAPPED one.
 * - A PMD fault waiting on a locked PMD entry whose holder downgrades it (a 4 KiB fault) or
 *   removes it (write(2)'s S3 invalidation) is woken (WAKE_ALL) and falls back.
 *
 * After each: every request settled, no entry lock held or waited for (Inspect, spaceStats,
 * occupancy), and the Inspect rows never overlap.
 */
import assert from 'node:assert/strict';
import type { FaultResult } from '../../server/dax/fault';
import { PMD_PAGES } from '../../server/limits';
import { freshDax, sparseFile, waitersAt, type DaxVolume } from '../support/dax-volume';
import { MiB, PAGE } from '../support/units';
import { reached, track } from '../support/track';
import { TestOwner } from '../support/test-owner';
import { settle } from '../support/until';

const BASE = PMD_PAGES; // the second 2 MiB of a 4 MiB file

/** Nothing holds or waits for an entry lock, and the file's entries do not overlap. */
function assertQuiet(v: DaxVolume, ino: number, what: string): void {
  const occ = v.dax.occupancy();
  assert.equal(occ.entryLockWaiters, 0, `${what}: entry-lock waiters left`);
  assert.equal(occ.entryLocksHeld, 0, `${what}: entry locks left held`);
  const ss = v.dax.spaceStats(ino);
  if (ss) {
    assert.equal(ss.lockWaiters, 0, `${what}: spaceStats lockWaiters`);
    assert.equal(ss.locksHeld, 0, `${what}: spaceStats locksHeld`);
    assert.equal(ss.mmapLockHeld, false, `${what}: mmap lock still held`);
  }
  const rows = v.dax.inspect(ino, 0, Number.MAX_SAFE_INTEGER);
  for (const r of rows) assert.equal(r.waiters, 0, `${what}: waiters on pgoff ${r.pgoff}`);
  assertNoOverlap(rows);
}

function assertNoOverlap(rows: { pgoff: number; order: 0 | 9 }[]): void {
  for (let i = 1; i < rows.length; i++) {
    const prevLast = rows[i - 1].pgoff + (rows[i - 1].order === 9 ? PMD_PAGES : 1) - 1;
    assert.ok(rows[i].pgoff > prevLast, `Inspect: entry at ${rows[i].pgoff} overlaps the one at ${rows[i - 1].pgoff} (order ${rows[i - 1].order})`);
  }
}

describe('dax PMD entries: wake-ups between PMD and 4 KiB faults (S1, 23c84eb78375)', function () {
  this.timeout(30_000);

  for (const kind of ['READ', 'WRITE'] as const) {
    it(`a ${kind} PMD fault meeting a 4 KiB entry held by a paused fault falls back at once (PTE_LOCKED); nothing is stranded`, async function () {
      const v = await freshDax();
      const ino = await sparseFile(v, 'f', 4 * MiB);
      const a = new TestOwner('a');
      const b = new TestOwner('b');
      const fp = v.dax.failpoints.arm('fault:after-entry-lock', { ino, pgoff: BASE + 5 });
      const held = track(v.dax.fault(a, ino, BASE + 5, 'WRITE', false));
      await reached(fp, held.promise, 'fault:after-entry-lock');

      // Another page of the range: the PMD fault must not wait on the aligned key.
      const pmd = track(v.dax.fault(b, ino, BASE + 100, kind, false, 'PMD'));
      await settle();
      assert.ok(pmd.done, 'the PMD fault waited behind the 4 KiB holder instead of falling back');
      const r = await pmd.promise;
      assert.equal(r.fallback, 'PTE_LOCKED');
      assert.deepEqual([r.pte!.order, r.pte!.pgoff, r.pte!.writable], [0, BASE + 100, kind === 'WRITE']);
      assert.equal(waitersAt(v.dax, ino, BASE), 0, 'nobody queued on the PMD key');

      // The held page itself: the fallback's 4 KiB fault waits on page BASE+5's key, which
      // the holder wakes.
      const same = track(v.dax.fault(b, ino, BASE + 5, kind, false, 'PMD'));
      await settle();
      assert.equal(same.done, false, 'the 4 KiB fallback on the held page ran past its lock');
      assert.equal(waitersAt(v.dax, ino, BASE + 5), 1, 'the fallback waits on the page key');
      assert.equal(held.done, false);
      fp.release();
      const [h, s] = await Promise.all([held.promise, same.promise]);
      assert.equal(s.fallback, 'PTE_LOCKED');
      assert.equal(s.pte!.order, 0);
      assert.equal(s.pte!.pfn, h.pte!.pfn, 'both map the block the paused write fault allocated');
      v.dax.store(a, h.pte!.token, 0, Buffer.from('held'));
      assert.deepEqual(v.dax.load(b, s.pte!.token, 0, 4), Buffer.from('held'));
      assert.deepEqual(v.dax.inspect(ino, BASE, BASE + PMD_PAGES - 1).map((e) => [e.pgoff, e.order]), [[BASE + 5, 0], [BASE + 100, 0]]);
      assert.equal(v.dax.counters().pmdFallbacks.PTE_LOCKED, 2);
      assertQuiet(v, ino, 'after release');
    });
  }

  it('4 KiB faults on two pages wait on a paused PMD fault\'s placeholder; a ZERO PMD is downgraded under them', async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', 4 * MiB);
    const a = new TestOwner('a');
    const b = new TestOwner('b');
    const fp = v.dax.failpoints.arm('pmd:after-entry-lock', { ino, pgoff: BASE });
    const pmd = track(v.dax.fault(a, ino, BASE + 9, 'READ', false, 'PMD'));
    await reached(fp, pmd.promise, 'pmd:after-entry-lock');
    assert.deepEqual(v.dax.inspect(ino, BASE, BASE + PMD_PAGES - 1).map((e) => [e.pgoff, e.order, e.state, e.locked]), [[BASE, 9, 'EMPTY', true]]);
    const r1 = track(v.dax.fault(b, ino, BASE + 3, 'READ', false));
    const w2 = track(v.dax.fault(b, ino, BASE + 400, 'WRITE', false));
    await settle();
    assert.equal(waitersAt(v.dax, ino, BASE), 2, 'both 4 KiB faults wait on the PMD key');
    assert.ok(!r1.done && !w2.done);
    fp.release();
    const [p, r, w] = await Promise.all([pmd.promise, r1.promise, w2.promise]);
    assert.equal(p.fallback, undefined);
    assert.deepEqual([p.pte!.order, p.pte!.pfn], [9, 0], 'the huge zero page');
    assert.deepEqual([r.pte!.order, r.pte!.pfn], [0, 0]);
    assert.equal(w.pte!.order, 0);
    assert.notEqual(w.pte!.pfn, 0);
    // Downgraded: the PMD PTE is stale, two 4 KiB entries remain.
    assert.throws(() => v.dax.load(a, p.pte!.token, 0, 1), /stale/i);
    assert.deepEqual(v.dax.inspect(ino, BASE, BASE + PMD_PAGES - 1).map((e) => [e.pgoff, e.order, e.state]), [[BASE + 3, 0, 'ZERO'], [BASE + 400, 0, 'MAPPED']]);
    v.dax.store(b, w.pte!.token, 7, Buffer.from('x'));
    assert.deepEqual(await v.fs.read(ino, (BASE + 400) * PAGE + 7, 1), Buffer.from('x'));
    assertQuiet(v, ino, 'after release');
  });

  it('4 KiB faults on two pages wait on a paused PMD re-fault of a MAPPED PMD; they map its pages', async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', 4 * MiB);
    const a = new TestOwner('a');
    const b = new TestOwner('b');
    const first = await v.dax.fault(a, ino, BASE, 'WRITE', false, 'PMD');
    assert.equal(first.fallback, undefined);
    const pfn = first.pte!.pfn;
    v.dax.store(a, first.pte!.token, 300 * PAGE, Buffer.from('page 300'));
    const fp = v.dax.failpoints.arm('pmd:after-entry-lock', { ino, pgoff: BASE });
    const pmd = track(v.dax.fault(b, ino, BASE + 1, 'READ', false, 'PMD'));
    await reached(fp, pmd.promise, 'pmd:after-entry-lock');
    const r1 = track(v.dax.fault(b, ino, BASE + 300, 'READ', false));
    const w2 = track(v.dax.fault(b, ino, BASE + 511, 'WRITE', false));
    await settle();
    assert.equal(waitersAt(v.dax, ino, BASE), 2);
    fp.release();
    const [p, r, w] = await Promise.all([pmd.promise, r1.promise, w2.promise]);
    assert.deepEqual([p.fallback, p.pte!.order, p.pte!.pfn], [undefined, 9, pfn]);
    assert.deepEqual([r.pte!.order, r.pte!.pfn], [0, pfn + 300]);
    assert.deepEqual([w.pte!.order, w.pte!.pfn, w.pte!.writable], [0, pfn + 511, true]);
    assert.deepEqual(v.dax.load(b, r.pte!.token, 0, 8), Buffer.from('page 300'));
    assert.deepEqual(v.dax.load(b, p.pte!.token, 300 * PAGE, 8), Buffer.from('page 300'));
    assert.deepEqual(v.dax.inspect(ino, BASE, BASE + PMD_PAGES - 1).map((e) => [e.pgoff, e.order, e.state, e.mappers]), [[BASE, 9, 'MAPPED', 4]]);
    assertQuiet(v, ino, 'after release');
  });

  it('a PMD fault waiting on a PMD entry that a 4 KiB fault downgrades is woken (WAKE_ALL) and falls back', async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', 4 * MiB);
    const a = new TestOwner('a');
    const b = new TestOwner('b');
    const c = new TestOwner('c');
    const zero = await v.dax.fault(a, ino, BASE, 'READ', false, 'PMD');
    assert.equal(zero.pte!.order, 9);
    // a re-faults the ZERO PMD and pauses holding its lock; c's 4 KiB fault queues first,
    // b's PMD fault second.
    const fpPmd = v.dax.failpoints.arm('pmd:after-entry-lock', { ino, pgoff: BASE });
    const fpPage = v.dax.failpoints.arm('fault:after-entry-lock', { ino, pgoff: BASE + 3 });
    const again = track(v.dax.fault(a, ino, BASE, 'READ', false, 'PMD'));
    await reached(fpPmd, again.promise, 'pmd:after-entry-lock');
    const page = track(v.dax.fault(c, ino, BASE + 3, 'READ', false));
    await settle();
    const pmd = track(v.dax.fault(b, ino, BASE + 7, 'READ', false, 'PMD'));
    await settle();
    assert.equal(waitersAt(v.dax, ino, BASE), 2);
    fpPmd.release();
    // a gets its PTE; c is handed the lock and downgrades (WAKE_ALL), then pauses holding
    // page BASE+3; b wakes, finds c's locked 4 KiB entry and falls back without waiting.
    await reached(fpPage, page.promise, 'fault:after-entry-lock');
    const r = await pmd.promise;
    assert.equal(r.fallback, 'PTE_LOCKED');
    assert.deepEqual([r.pte!.order, r.pte!.pgoff], [0, BASE + 7]);
    assert.equal((await again.promise).pte!.order, 9);
    assert.equal(page.done, false);
    fpPage.release();
    assert.equal((await page.promise).pte!.order, 0);
    assert.deepEqual(v.dax.inspect(ino, BASE, BASE + PMD_PAGES - 1).map((e) => [e.pgoff, e.order, e.state]), [[BASE + 3, 0, 'ZERO'], [BASE + 7, 0, 'ZERO']]);
    assert.throws(() => v.dax.load(a, zero.pte!.token, 0, 1), /stale/i);
    assertQuiet(v, ino, 'after release');
  });

  it('a PMD fault waiting on a ZERO PMD entry that write(2)\'s S3 invalidation removes is woken and falls back (generic/428)', async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', 4 * MiB);
    const a = new TestOwner('a');
    const b = new TestOwner('b');
    const zero = await v.dax.fault(a, ino, BASE, 'READ', false, 'PMD');
    assert.equal(zero.pte!.order, 9);
    const fp = v.dax.failpoints.arm('invalidate:entry-locked', { ino, pgoff: BASE });
    const write = track(v.fs.write(ino, (BASE + 10) * PAGE, Buffer.from('hello, world'), false));
    await reached(fp, write.promise, 'invalidate:entry-locked');
    const pmd = track(v.dax.fault(b, ino, BASE + 10, 'READ', false, 'PMD'));
    await settle();
    assert.equal(waitersAt(v.dax, ino, BASE), 1, 'the PMD fault waits on the PMD key');
    fp.release();
    const [, r] = await Promise.all([write.promise, pmd.promise]);
    assert.equal(r.fallback, 'NOT_CONTIGUOUS', 'one written block among holes');
    assert.deepEqual(v.dax.load(b, r.pte!.token, 0, 12), Buffer.from('hello, world'));
    assert.throws(() => v.dax.load(a, zero.pte!.token, 0, 1), /stale/i);
    assertQuiet(v, ino, 'after release');
  });

  it('a 4 KiB fault and a PMD fault racing on an empty range, every interleaving of the PMD fault\'s two points', async function () {
    for (const point of ['pmd:after-entry-lock', 'pmd:before-install'] as const) {
      for (const kind of ['READ', 'WRITE'] as const) {
        const v = await freshDax();
        const ino = await sparseFile(v, 'f', 4 * MiB);
        const a = new TestOwner('a');
        const b = new TestOwner('b');
        const fp = v.dax.failpoints.arm(point, { ino, pgoff: BASE });
        const pmd = track(v.dax.fault(a, ino, BASE + 1, kind, false, 'PMD'));
        await reached(fp, pmd.promise, point);
        const pg = track(v.dax.fault(b, ino, BASE + 2, kind, false));
        await settle();
        assert.equal(pg.done, false, `${point} ${kind}: the 4 KiB fault did not wait for the PMD holder`);
        fp.release();
        const [p, q]: FaultResult[] = await Promise.all([pmd.promise, pg.promise]);
        assert.equal(p.pte!.order, 9, `${point} ${kind}`);
        assert.equal(q.pte!.order, 0);
        if (kind === 'WRITE') {
          // A MAPPED PMD: the 4 KiB fault maps its page of the extent; both see one store.
          assert.equal(q.pte!.pfn, p.pte!.pfn + 2);
          v.dax.store(b, q.pte!.token, 0, Buffer.from('q'));
          assert.deepEqual(v.dax.load(a, p.pte!.token, 2 * PAGE, 1), Buffer.from('q'));
        } else {
          assert.throws(() => v.dax.load(a, p.pte!.token, 0, 1), /stale/i, 'downgraded');
        }
        assertQuiet(v, ino, `${point} ${kind}`);
      }
    }
  });
});

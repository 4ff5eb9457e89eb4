/**
 * The dax layer's read-only API (issue 11, item 3): metrics and the admin API read the
 * layer through copies. A snapshot is frozen and stays what it was when taken; the live
 * tables are not reachable through it.
 */
import assert from 'node:assert/strict';
import { freshDax, sparseFile, writtenFile } from '../support/dax-volume';
import { reached, track } from '../support/track';
import { TestOwner } from '../support/test-owner';

describe('dax read-only API: stats, counters and snapshots are frozen copies', function () {
  this.timeout(30_000);

  it('stats(), counters(), occupancy(), pinStats() are frozen to the bottom and does not follow later faults', async function () {
    const v = await freshDax();
    const ino = await writtenFile(v, 'f', 2);
    const before = { stats: v.dax.stats(), counters: v.dax.counters(), occupancy: v.dax.occupancy() };
    await v.dax.fault(new TestOwner('a'), ino, 0, 'READ', false);
    const after = { stats: v.dax.stats(), counters: v.dax.counters(), occupancy: v.dax.occupancy(), pins: v.dax.pinStats() };
    assert.deepEqual([before.stats.ptes, before.counters.faults.mapped, before.occupancy.mappingEntries], [0, 0, 0], 'the earlier copies did not change');
    assert.deepEqual([after.stats.ptes, after.counters.faults.mapped, after.occupancy.mappingEntries, after.stats.addressSpaces], [1, 1, 1, 1]);
    for (const o of [after.stats, after.counters, after.counters.faults, after.counters.invalidations, after.occupancy, after.pins]) assert.ok(Object.isFrozen(o));
    assert.throws(() => { (after.counters.faults as { mapped: number }).mapped = 99; }, TypeError);
    assert.equal(v.dax.counters().faults.mapped, 1, 'writing to a copy cannot reach the layer');
  });

  it('spaceStats() of a file with no address space is null; of a mapped one, its counts', async function () {
    const v = await freshDax();
    const ino = await writtenFile(v, 'f', 2);
    assert.equal(v.dax.spaceStats(ino), null);
    const a = new TestOwner('a');
    await v.dax.fault(a, ino, 1, 'WRITE', false);
    const s = v.dax.spaceStats(ino)!;
    assert.deepEqual({ entries: s.entries, mappers: s.mappers, locksHeld: s.locksHeld, mmapLockHeld: s.mmapLockHeld }, { entries: 1, mappers: 1, locksHeld: 0, mmapLockHeld: false });
    assert.ok(Object.isFrozen(s));
  });

  it('pinsSnapshot() rows are copies, oldest first, cut at the limit; the counts cover every pin', async function () {
    const v = await freshDax();
    const ino = await writtenFile(v, 'f', 4);
    const a = new TestOwner('a');
    const p1 = await v.dax.pin(a, { ino, firstPgoff: 0, npages: 2, writable: false, leaseMs: 0 });
    const p2 = await v.dax.pin(a, { ino, firstPgoff: 2, npages: 1, writable: false, leaseMs: 0 });
    const snap = v.dax.pinsSnapshot(1);
    assert.equal(snap.total, 2);
    assert.equal(snap.pinnedBlocks, 3);
    assert.deepEqual(snap.pins.map((p) => [p.id, p.ownerId, p.npages, p.pinnedBlocks]), [[p1.id, 'a', 2, 2]]);
    assert.ok(Object.isFrozen(snap) && Object.isFrozen(snap.pins) && Object.isFrozen(snap.pins[0]));
    assert.equal(v.dax.pinCountOf('a'), 2);
    assert.equal(v.dax.hasPin(p2.id), true);
    v.dax.unpin(a, p2.id);
    assert.equal(v.dax.hasPin(p2.id), false);
    assert.equal(snap.total, 2, 'the snapshot did not follow the unpin');
  });

  it('heldLocks() shows a lock held across an await, with its queue', async function () {
    const v = await freshDax();
    const ino = await sparseFile(v, 'f', 4096 * 4);
    const fp = v.dax.failpoints.arm('fault:after-entry-lock', { ino, pgoff: 3 });
    const first = track(v.dax.fault(new TestOwner('a'), ino, 3, 'READ', false));
    await reached(fp, first.promise, 'fault:after-entry-lock');
    const locks = v.dax.heldLocks();
    assert.deepEqual(locks.map((l) => [l.ino, l.pgoff, l.state, l.waiters]), [[ino, 3, 'EMPTY', 0]]);
    assert.ok(Object.isFrozen(locks) && locks[0].heldMs >= 0);
    fp.release();
    await first.promise;
    assert.deepEqual(v.dax.heldLocks(), []);
  });
});

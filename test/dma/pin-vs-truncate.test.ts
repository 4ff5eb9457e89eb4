/**
 * S4 races between a pin and a layout change, opened deterministically with failpoints
 * (in-process Dax on MemoryStorage). A pin racing a truncate either completes before it
 * (the truncate then waits for the unpin) or after it (and sees the new layout: SIGBUS
 * past EOF, the file's current blocks otherwise) — it never holds a freed block.
 * Every test runs with the free guard: freeing a block that a pin holds is recorded.
 *
 * Regression tests, named for the bug:
 * - unpin (or session end) while a DMA on the pin is in flight freed the block under it;
 * - a read-only pin of a ZERO entry over a block write(2) had just allocated left the
 *   zero-page PTEs valid (S3: mappers read zeros forever);
 * - concurrent Pin calls all passed the pins-per-session check before any registered.
 */
import assert from 'node:assert/strict';
import { Dax } from '../../server/dax/dax';
import { PINS_PER_SESSION_MAX } from '../../server/limits';
import { expectCode, freshDax, sparseFile, writtenFile, type DaxVolume } from '../support/dax-volume';
import { PAGE } from '../support/units';
import { reached, track } from '../support/track';
import { TestOwner } from '../support/test-owner';
import { until } from '../support/until';
import { guardPinnedFrees, pinnedPfns, type PinGuard } from './fixture';

/** The truncate sleeps on a pin: registered as a waiter, mmap lock released (or it already finished). */
const waitingOrDone = (dax: Dax, ino: number, t: { done: boolean }): boolean => {
  const as = dax.spaceStats(ino);
  return t.done || (as !== null && as.layoutBreaksWaiting === 1 && !as.mmapLockHeld);
};

/** White-box: the live address space (its identity, an entry's pin count). */
const spaceOf = (dax: Dax, ino: number) => {
  const as = Dax.contextForTests(dax).spaces.get(ino);
  assert.ok(as, `no address space for inode ${ino}`);
  return as;
};

/** The pin's blocks are the file's blocks right now (it pinned the current layout). */
function assertCurrentLayout(v: DaxVolume, ino: number, firstPgoff: number, pfns: number[]): void {
  pfns.forEach((pfn, i) => {
    const m = v.fs.iomap(ino, firstPgoff + i);
    assert.equal(m.state, 'WRITTEN', `page ${firstPgoff + i} is ${m.state}`);
    assert.equal(m.pfn, pfn, `pin page ${i}: pfn ${pfn}, file's block ${m.pfn}`);
  });
}

describe('dma: pin racing truncate (failpoints, in-process)', function () {
  this.timeout(30_000);
  let v: DaxVolume;
  let guard: PinGuard;

  beforeEach(async function () {
    v = await freshDax();
    guard = guardPinnedFrees(v.dax);
  });

  afterEach(function () {
    v.dax.failpoints.releaseAll();
    guard.restore();
    assert.deepEqual(guard.violations, [], 'a pinned block was freed');
  });

  it('pin first (paused after taking its references): truncate waits for the mmap lock, then for the unpin', async function () {
    const ino = await writtenFile(v, 'f', 4, (pg) => 0x10 + pg);
    const owner = new TestOwner('a');
    const fp = v.dax.failpoints.arm('pin:after-fault', { ino });
    const pinning = track(v.dax.pin(owner, { ino, firstPgoff: 0, npages: 4, writable: true, leaseMs: 0 }));
    await reached(fp, pinning.promise, 'pin:after-fault');
    const freedBefore = guard.freed;
    const truncating = track(v.fs.truncate(ino, 0));
    await until(() => spaceOf(v.dax, ino).mmapLock.waiters === 1, 'truncate queued on the mmap lock');
    fp.release();
    const p = await pinning.promise;
    assertCurrentLayout(v, ino, 0, p.pfns);
    await until(() => spaceOf(v.dax, ino).pinWaiters.size === 1, 'truncate waiting for the unpin');
    assert.equal(truncating.done, false);
    assert.equal(v.fs.sizeOf(ino), 4 * PAGE, 'size unchanged while pinned');
    assert.equal(guard.freed, freedBefore, 'nothing freed while pinned');
    // DMA keeps going to the pinned blocks meanwhile.
    await v.dax.dmaWrite(owner, p.id, 2, 0, Buffer.alloc(PAGE, 0xd2));
    assert.deepEqual(await v.dax.dmaRead(owner, p.id, 2, 0, 4), Buffer.alloc(4, 0xd2));
    v.dax.unpin(owner, p.id);
    await truncating.promise;
    assert.equal(v.fs.sizeOf(ino), 0);
    assert.ok(guard.freed >= freedBefore + 4, 'the blocks were freed after the unpin');
    assert.equal(v.dax.counters().layoutBreakWaits.done, 1);
  });

  it('truncate first (paused after revoking, mmap lock held): the pin waits and sees the new size (SIGBUS)', async function () {
    const ino = await writtenFile(v, 'f', 4, () => 0x33);
    const owner = new TestOwner('a');
    const fp = v.dax.failpoints.arm('layout:after-revoke', { ino });
    const truncating = track(v.fs.truncate(ino, 0));
    await reached(fp, truncating.promise, 'layout:after-revoke');
    const pinning = track(v.dax.pin(owner, { ino, firstPgoff: 0, npages: 4, writable: true, leaseMs: 0 }));
    await until(() => spaceOf(v.dax, ino).mmapLock.waiters === 1, 'pin queued on the mmap lock');
    fp.release();
    await truncating.promise;
    await expectCode(() => pinning.promise, 'SIGBUS', 'pin after truncate to 0');
    assert.equal(pinnedPfns(v.dax).size, 0);
    assert.equal(v.dax.pinStats().active, 0);
  });

  it('truncate first, to one page: a pin of page 0 gets the surviving block, a pin of pages 0..1 is SIGBUS', async function () {
    const ino = await writtenFile(v, 'f', 4, (pg) => 0x40 + pg);
    const owner = new TestOwner('a');
    const fp = v.dax.failpoints.arm('layout:after-revoke', { ino });
    const truncating = track(v.fs.truncate(ino, PAGE));
    await reached(fp, truncating.promise, 'layout:after-revoke');
    const survivor = track(v.dax.pin(owner, { ino, firstPgoff: 0, npages: 1, writable: false, leaseMs: 0 }));
    const beyond = track(v.dax.pin(owner, { ino, firstPgoff: 0, npages: 2, writable: false, leaseMs: 0 }));
    await until(() => spaceOf(v.dax, ino).mmapLock.waiters === 2, 'both pins queued on the mmap lock');
    fp.release();
    await truncating.promise;
    const p = await survivor.promise;
    assertCurrentLayout(v, ino, 0, p.pfns);
    assert.deepEqual(await v.dax.dmaRead(owner, p.id, 0, 0, 2), Buffer.from([0x40, 0x40]));
    await expectCode(() => beyond.promise, 'SIGBUS', 'pin of a truncated page');
    v.dax.unpin(owner, p.id);
  });

  it('unpin and a new pin while the truncate is between releasing the mmap lock and waiting: it rescans and waits again', async function () {
    const ino = await writtenFile(v, 'f', 4, () => 0x51);
    const owner = new TestOwner('a');
    const first = await v.dax.pin(owner, { ino, firstPgoff: 1, npages: 1, writable: true, leaseMs: 0 });
    const fp = v.dax.failpoints.arm('layout:pin-wait', { ino });
    const truncating = track(v.fs.truncate(ino, 0));
    await reached(fp, truncating.promise, 'layout:pin-wait');
    // The waiter was registered before the mmap lock was released: this unpin is not lost.
    v.dax.unpin(owner, first.id);
    const second = await v.dax.pin(owner, { ino, firstPgoff: 3, npages: 1, writable: true, leaseMs: 0 });
    fp.release();
    await until(() => waitingOrDone(v.dax, ino, truncating), 'truncate waiting again, for the second pin');
    assert.equal(truncating.done, false, 'truncate completed while page 3 was pinned');
    assert.equal(v.fs.sizeOf(ino), 4 * PAGE);
    assertCurrentLayout(v, ino, 3, second.pfns);
    v.dax.unpin(owner, second.id);
    await truncating.promise;
    assert.equal(v.fs.sizeOf(ino), 0);
  });

  it('regression: the unpin that wakes a waiting truncate must not drop the address space (a new pin there would be invisible to its rescan)', async function () {
    const ino = await writtenFile(v, 'f', 4, () => 0x52);
    const owner = new TestOwner('a');
    // Read-only pins leave no DIRTY entry: nothing else keeps the address space alive.
    const first = await v.dax.pin(owner, { ino, firstPgoff: 0, npages: 1, writable: false, leaseMs: 0 });
    const fp = v.dax.failpoints.arm('layout:pin-wait', { ino });
    const truncating = track(v.fs.truncate(ino, 0));
    await reached(fp, truncating.promise, 'layout:pin-wait');
    const as = spaceOf(v.dax, ino);
    v.dax.unpin(owner, first.id);
    assert.equal(Dax.contextForTests(v.dax).spaces.get(ino), as, 'the address space was dropped while a truncate waited on it');
    const second = await v.dax.pin(owner, { ino, firstPgoff: 2, npages: 1, writable: false, leaseMs: 0 });
    fp.release();
    await until(() => waitingOrDone(v.dax, ino, truncating), 'truncate waiting for the second pin');
    assert.equal(truncating.done, false, 'truncate completed while page 2 was pinned');
    assertCurrentLayout(v, ino, 2, second.pfns);
    v.dax.unpin(owner, second.id);
    await truncating.promise;
  });

  it('regression: unpin while a DMA on the pin is in flight does not free the block before the DMA ends', async function () {
    const ino = await writtenFile(v, 'f', 2, () => 0x61);
    const victim = await v.fs.create('victim', true);
    const owner = new TestOwner('a');
    const p = await v.dax.pin(owner, { ino, firstPgoff: 0, npages: 2, writable: true, leaseMs: 0 });
    const fp = v.dax.failpoints.arm('dma:in-flight', { ino, pgoff: 1 });
    const dma = track(v.dax.dmaWrite(owner, p.id, 1, 0, Buffer.alloc(PAGE, 0xee)));
    await reached(fp, dma.promise, 'dma:in-flight');
    const truncating = track(v.fs.truncate(ino, 0));
    await until(() => spaceOf(v.dax, ino).pinWaiters.size === 1, 'truncate waiting for the pin');
    v.dax.unpin(owner, p.id);
    // Page 0's reference may go, page 1's block is under DMA: the truncate must still wait.
    await until(() => waitingOrDone(v.dax, ino, truncating), 'truncate still waiting');
    assert.equal(truncating.done, false, 'truncate completed while a DMA was in flight on its block');
    // Whatever gets allocated now must not be the block under DMA.
    await v.fs.write(victim.ino, 0, Buffer.alloc(4 * PAGE, 0x11), false);
    fp.release();
    await dma.promise.catch(() => undefined);
    await truncating.promise;
    assert.deepEqual(await v.fs.read(victim.ino, 0, 4 * PAGE), Buffer.alloc(4 * PAGE, 0x11), 'the DMA landed in another file');
  });

  it('regression: the session ending while a DMA is in flight does not free the block before the DMA ends', async function () {
    const ino = await writtenFile(v, 'f', 1, () => 0x62);
    const owner = new TestOwner('a');
    const p = await v.dax.pin(owner, { ino, firstPgoff: 0, npages: 1, writable: true, leaseMs: 0 });
    const fp = v.dax.failpoints.arm('dma:in-flight', { ino });
    const dma = track(v.dax.dmaWrite(owner, p.id, 0, 0, Buffer.alloc(16, 0xef)));
    await reached(fp, dma.promise, 'dma:in-flight');
    const truncating = track(v.fs.truncate(ino, 0));
    await until(() => spaceOf(v.dax, ino).pinWaiters.size === 1, 'truncate waiting for the pin');
    await owner.end();
    await until(() => waitingOrDone(v.dax, ino, truncating), 'truncate still waiting');
    assert.equal(truncating.done, false, 'truncate completed while a DMA was in flight on its block');
    fp.release();
    await dma.promise.catch(() => undefined);
    await truncating.promise;
    assert.equal(v.dax.pinStats().active, 0);
    assert.equal(v.dax.pinStats().pinnedBlocks, 0);
  });

  it('regression: a read-only pin of a ZERO entry over a just-allocated block revokes the zero-page PTEs (S3)', async function () {
    const ino = await sparseFile(v, 'f', PAGE);
    const mapper = new TestOwner('mapper');
    const pinner = new TestOwner('pinner');
    const zero = await v.dax.fault(mapper, ino, 0, 'READ', false);
    assert.equal(zero.pte!.pfn, 0);
    const fp = v.dax.failpoints.arm('write:after-allocate', { ino });
    const writing = track(v.fs.write(ino, 0, Buffer.alloc(PAGE, 0x7a), false));
    await reached(fp, writing.promise, 'write:after-allocate');
    // The block is WRITTEN in the block map; the ZERO entry still stands (S3 invalidation is next).
    const p = await v.dax.pin(pinner, { ino, firstPgoff: 0, npages: 1, writable: false, leaseMs: 0 });
    fp.release();
    await writing.promise;
    assert.deepEqual(await v.dax.dmaRead(pinner, p.id, 0, 0, 4), Buffer.alloc(4, 0x7a));
    let seen: Buffer | null = null;
    try {
      seen = v.dax.load(mapper, zero.pte!.token, 0, 4);
    } catch (err) {
      assert.match(String(err), /PTE_STALE/);
    }
    if (seen) assert.deepEqual(seen, Buffer.alloc(4, 0x7a), 'the zero-page PTE still reads zeros after the write');
    v.dax.unpin(pinner, p.id);
  });

  it(`regression: concurrent pins never exceed PINS_PER_SESSION_MAX (${PINS_PER_SESSION_MAX})`, async function () {
    const ino = await writtenFile(v, 'f', 1, () => 1);
    const owner = new TestOwner('a');
    const n = PINS_PER_SESSION_MAX + 8;
    const results = await Promise.allSettled(
      Array.from({ length: n }, () => v.dax.pin(owner, { ino, firstPgoff: 0, npages: 1, writable: false, leaseMs: 0 })),
    );
    const ok = results.filter((r) => r.status === 'fulfilled');
    const refused = results.filter((r) => r.status === 'rejected');
    assert.equal(ok.length, PINS_PER_SESSION_MAX);
    for (const r of refused) assert.match(String(r.reason), /ELIMIT/);
    assert.equal(v.dax.pinCountOf(owner.id), PINS_PER_SESSION_MAX);
    assert.equal(spaceOf(v.dax, ino).entries.get(0)!.pins, PINS_PER_SESSION_MAX, 'refused pins dropped their references');
    await owner.end();
    assert.equal(v.dax.pinStats().pinnedBlocks, 0);
  });
});

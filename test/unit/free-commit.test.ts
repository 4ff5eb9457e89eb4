/**
 * Freed blocks come back within FREE_COMMIT_DELAY_MS (StatVolume shows them free), and a
 * write fault or a writable pin commits pending frees first when short of space, as writes
 * and fallocate do. The commit timer is injected: no sleeps.
 */
import assert from 'node:assert/strict';
import { FREE_COMMIT_DELAY_MS } from '../../server/limits';
import { MemoryStorage } from '../../server/media/memory-storage';
import { mkfs } from '../../server/fs/mkfs';
import { FileSystem } from '../../server/fs/filesystem';
import { Dax } from '../../server/dax/dax';
import { TestOwner } from '../support/test-owner';
import { MiB, PAGE } from '../support/units';

/** A scheduler that only records: the test decides when the timer fires. */
class ManualTimer {
  readonly pending: Array<{ fn: () => void; delayMs: number; cancelled: boolean }> = [];
  schedule = (fn: () => void, delayMs: number): (() => void) => {
    const t = { fn, delayMs, cancelled: false };
    this.pending.push(t);
    return () => { t.cancelled = true; };
  };

  get armed(): number {
    return this.pending.filter((t) => !t.cancelled).length;
  }

  fire(): void {
    for (const t of this.pending.splice(0)) if (!t.cancelled) t.fn();
  }
}

async function mountWith(timer: ManualTimer): Promise<FileSystem> {
  const storage = new MemoryStorage(16 * MiB);
  await mkfs(storage);
  return FileSystem.mount(storage, { scheduleFreeCommit: timer.schedule });
}

/**
 * Fills the volume with a file, durably, then pads it until a one-page write gets ENOSPC,
 * and unlinks the big file: its blocks are pending, almost nothing is free.
 */
async function fillAndUnlink(fs: FileSystem): Promise<number> {
  const big = await fs.create('big', true);
  const pad = await fs.create('pad', true);
  const fillBlocks = fs.statVolume().blocksFree - 64;
  await fs.fallocate(big.ino, 'ALLOCATE', 0, fillBlocks * PAGE);
  let pg = 0;
  for (; pg < 64; pg++) {
    try {
      await fs.write(pad.ino, pg * PAGE, Buffer.alloc(PAGE, 9), false);
    } catch (err) {
      if ((err as { code?: string }).code !== 'ENOSPC') throw err;
      break;
    }
  }
  assert.ok(pg < 64, 'the volume is full');
  await fs.sync();
  await fs.unlink('big');
  return fillBlocks;
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

describe('pending frees (FREE_COMMIT_DELAY_MS)', () => {
  it('an unlink\'s blocks are free in StatVolume once the delayed commit runs, with nothing else happening', async () => {
    const timer = new ManualTimer();
    const fs = await mountWith(timer);
    const freeAtStart = fs.statVolume().blocksFree;
    const filled = await fillAndUnlink(fs);
    const mid = fs.statVolume();
    assert.ok(mid.blocksPendingFree >= filled, `the unlinked blocks are pending (${mid.blocksPendingFree})`);
    assert.equal(timer.armed, 1, 'one commit is scheduled for the pending frees');
    assert.equal(timer.pending[0].delayMs, FREE_COMMIT_DELAY_MS);
    timer.fire();
    await settle();
    const after = fs.statVolume();
    assert.equal(after.blocksPendingFree, 0, 'the frees committed');
    assert.equal(after.blocksFree, mid.blocksFree + mid.blocksPendingFree, 'every freed block is free again');
    assert.ok(after.blocksFree > freeAtStart - 100);
    await fs.unmount();
  });

  it('truncate and punch schedule the commit too; an earlier commit leaves the timer harmless', async () => {
    const timer = new ManualTimer();
    const fs = await mountWith(timer);
    const f = await fs.create('f', true);
    await fs.write(f.ino, 0, Buffer.alloc(8 * PAGE, 1), true);
    await fs.truncate(f.ino, 2 * PAGE);
    assert.ok(fs.statVolume().blocksPendingFree > 0);
    assert.equal(timer.armed, 1);
    await fs.fsync(f.ino, false); // commits first
    assert.equal(fs.statVolume().blocksPendingFree, 0);
    timer.fire(); // nothing left to commit
    await settle();
    await fs.fallocate(f.ino, 'PUNCH_HOLE', 0, PAGE);
    assert.equal(timer.armed, 1, 're-armed for the next pending free');
    timer.fire();
    await settle();
    assert.equal(fs.statVolume().blocksPendingFree, 0);
    await fs.unmount();
  });

  it('a write fault on a nearly full volume commits pending frees first (no ENOSPC)', async () => {
    const timer = new ManualTimer();
    const fs = await mountWith(timer);
    const f = await fs.create('mapped', true);
    await fs.truncate(f.ino, 4 * PAGE);
    await fillAndUnlink(fs);
    const dax = new Dax(fs);
    const { pte } = await dax.fault(new TestOwner('a'), f.ino, 2, 'WRITE', false);
    assert.ok(pte?.writable);
    assert.equal(fs.statVolume().blocksPendingFree, 0);
  });

  it('a writable pin on a nearly full volume commits pending frees first (no ENOSPC)', async () => {
    const timer = new ManualTimer();
    const fs = await mountWith(timer);
    const f = await fs.create('pinned', true);
    await fs.truncate(f.ino, 64 * PAGE);
    await fillAndUnlink(fs);
    const dax = new Dax(fs);
    const owner = new TestOwner('a');
    const p = await dax.pin(owner, { ino: f.ino, firstPgoff: 0, npages: 32, writable: true, leaseMs: 0 });
    await dax.dmaWrite(owner, p.id, 31, 0, Buffer.from('dma'));
    dax.unpin(owner, p.id);
    assert.equal(fs.statVolume().blocksPendingFree, 0);
  });
});

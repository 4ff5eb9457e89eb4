/**
 * Read fault vs allocating write (the race behind upstream "dax: New fault locking" and Jan Kara's
 * 2017 "dax: Fix data corruption when fault races with write"), S1 + S3.
 *
 * A READ fault on a hole takes the entry lock (inserting a locked placeholder) BEFORE it
 * looks the block up. A write(2) that allocates the page meanwhile must then, after its
 * allocation, wait for that entry lock in its S3 invalidation. Released, the fault either
 * saw the new block (lookup after the allocation) or installed the zero page, which the
 * write's invalidation then drops and revokes: either way the mapping shows the data.
 */
import assert from 'node:assert/strict';
import { freshDax, isCode, sparseFile, waitersAt, type DaxVolume } from '../support/dax-volume';
import { PAGE } from '../support/units';
import { reached, track } from '../support/track';
import { TestOwner } from '../support/test-owner';
import { until } from '../support/until';

const PG = 2;

async function setup(): Promise<{ v: DaxVolume; ino: number; owner: TestOwner; data: Buffer }> {
  const v = await freshDax();
  const ino = await sparseFile(v, 'f', 4 * PAGE);
  const data = Buffer.alloc(PAGE);
  for (let i = 0; i < PAGE; i++) data[i] = (i * 7 + 1) & 0xff;
  return { v, ino, owner: new TestOwner('reader'), data };
}

/** Runs the race with the fault paused at `point`; returns what the fault's PTE shows. */
async function race(point: 'fault:after-entry-lock' | 'fault:before-install'): Promise<{ sawStale: boolean }> {
  const { v, ino, owner, data } = await setup();
  const fp = v.dax.failpoints.arm(point, { ino, pgoff: PG });
  const fault = track(v.dax.fault(owner, ino, PG, 'READ', false));
  await reached(fp, fault.promise, point);
  const [held] = v.dax.inspect(ino, PG, PG);
  assert.equal(held.locked, true, 'the paused fault holds the entry lock');

  const write = track(v.fs.write(ino, PG * PAGE, data, false));
  // The write allocates (synchronously, under the inode lock), then blocks in its S3
  // invalidation on the entry the fault holds.
  await until(() => waitersAt(v.dax, ino, PG) === 1, 'the write waits for the entry lock');
  assert.equal(v.fs.iomap(ino, PG).state, 'WRITTEN', 'the write allocated before invalidating');
  assert.equal(write.done, false, 'the write must not complete while the fault holds the entry');
  assert.deepEqual(await v.fs.read(ino, PG * PAGE, PAGE), data, 'read(2) sees the data already');

  fp.release();
  const { pte } = await fault.promise;
  await write.promise;
  assert.ok(pte);

  let sawStale = false;
  let shown: Buffer;
  try {
    shown = v.dax.load(owner, pte.token, 0, PAGE);
  } catch (err) {
    assert.ok(isCode(err, 'PTE_STALE'), `load: ${String(err)}`);
    sawStale = true;
    const again = await v.dax.fault(owner, ino, PG, 'READ', false);
    assert.ok(again.pte);
    shown = v.dax.load(owner, again.pte.token, 0, PAGE);
  }
  assert.deepEqual(shown, data, 'the mapping must show the written data, never the zero page');
  const [e] = v.dax.inspect(ino, PG, PG);
  assert.equal(e.state, 'MAPPED');
  assert.equal(e.pfn, (v.fs.iomap(ino, PG) as { pfn: number }).pfn);
  if (sawStale) {
    const ev = owner.events.find((x) => x.reason === 'HOLE_FILLED');
    assert.deepEqual(ev && [ev.ino, ev.firstPgoff, ev.lastPgoff], [ino, PG, PG], 'the revoked zero page is announced');
  }
  return { sawStale };
}

describe('dax: read fault vs allocating write (S1, S3)', function () {
  this.timeout(30_000);

  it('fault paused after taking the entry lock, before the lookup: it sees the block the write allocated', async function () {
    const { sawStale } = await race('fault:after-entry-lock');
    assert.equal(sawStale, false, 'the lookup ran after the allocation: the fault maps the block directly');
  });

  it('fault paused after deciding "zero page", before installing: the write revokes it, a re-fault shows the data', async function () {
    const { sawStale } = await race('fault:before-install');
    assert.equal(sawStale, true, 'the zero-page PTE must be revoked by the write\'s invalidation');
  });

  it('a write paused between allocation and invalidation: zero-page PTEs taken meanwhile are revoked before it returns', async function () {
    const { v, ino, owner, data } = await setup();
    const other = new TestOwner('other');
    // A ZERO entry exists before the write (the case the invalidation is for).
    const before = await v.dax.fault(owner, ino, PG, 'READ', false);
    const fp = v.dax.failpoints.arm('write:after-allocate', { ino });
    const write = track(v.fs.write(ino, PG * PAGE, data, false));
    await reached(fp, write.promise, 'write:after-allocate');
    // A fault now finds the ZERO entry and maps the zero page again (as the kernel does)...
    const during = await v.dax.fault(other, ino, PG, 'READ', false);
    assert.equal(during.pte!.pfn, 0);
    assert.deepEqual(v.dax.load(owner, before.pte!.token, 0, 16), Buffer.alloc(16));
    fp.release();
    await write.promise;
    // ...and every zero-page PTE is stale once the write returns.
    for (const [o, r] of [[owner, before], [other, during]] as const) {
      assert.throws(() => v.dax.load(o, r.pte!.token, 0, 16), (err: unknown) => isCode(err, 'PTE_STALE'), `${o.id}'s zero PTE`);
      const after = await v.dax.fault(o, ino, PG, 'READ', false);
      assert.deepEqual(v.dax.load(o, after.pte!.token, 0, PAGE), data);
      assert.deepEqual(o.events.map((e) => [e.reason, e.firstPgoff, e.lastPgoff]), [['HOLE_FILLED', PG, PG]]);
    }
  });
});

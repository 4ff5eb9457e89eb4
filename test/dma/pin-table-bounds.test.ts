/**
 * The pin table forgets a session once it holds no pin (issue 10, defect 11): its
 * per-session count map had an entry per session that ever pinned, for the server's
 * lifetime. Checked through the read-only Dax.stats(), after unpins, session ends and a
 * refused pin, for many sessions.
 */
import assert from 'node:assert/strict';
import { freshDax, writtenFile, type DaxVolume } from '../support/dax-volume';
import { TestOwner } from '../support/test-owner';

describe('dma: the pin table keeps no per-session state for sessions without pins', function () {
  let v: DaxVolume;
  let ino: number;

  beforeEach(async function () {
    v = await freshDax();
    ino = await writtenFile(v, 'f', 4, () => 0x33);
  });

  it('unpin, session end and a refused pin leave no per-session entry behind (200 sessions)', async function () {
    for (let i = 0; i < 200; i++) {
      const owner = new TestOwner(`s-${i}`);
      const a = await v.dax.pin(owner, { ino, firstPgoff: 0, npages: 2, writable: i % 2 === 0, leaseMs: 0 });
      const b = await v.dax.pin(owner, { ino, firstPgoff: 2, npages: 2, writable: false, leaseMs: 0 });
      assert.equal(v.dax.stats().pinOwners, 1);
      await assert.rejects(v.dax.pin(owner, { ino, firstPgoff: 4, npages: 1, writable: false, leaseMs: 0 }), /SIGBUS|beyond EOF/);
      v.dax.unpin(owner, a.id);
      if (i % 3 === 0) v.dax.unpin(owner, b.id);
      else await owner.end();
      const { pins, pinOwners } = v.dax.stats();
      assert.deepEqual({ pins, pinOwners }, { pins: 0, pinOwners: 0 }, `after session ${i}`);
    }
    // The writable pins left DIRTY entries (a linked file): writeback lets the address space go.
    await v.dax.fsync(ino, false);
    assert.deepEqual(v.dax.stats(), { addressSpaces: 0, ptes: 0, pins: 0, pinOwners: 0 });
  });
});

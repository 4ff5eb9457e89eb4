/**
 * Unlink of a pinned file (S4, S7): the name goes at once, the inode and its blocks live
 * on while pinned (DMA keeps working), and the blocks are freed at the last unpin —
 * not before, and not only at the next fsync or shutdown.
 */
import assert from 'node:assert/strict';
import { freshDax, writtenFile, type DaxVolume } from '../support/dax-volume';
import { MiB, PAGE } from '../support/units';
import { TestOwner } from '../support/test-owner';
import { until } from '../support/until';
import { guardPinnedFrees, startDmaServer, type DmaServer, type PinGuard } from './fixture';

describe('dma: unlink of a pinned file defers freeing to the last unpin', function () {
  this.timeout(30_000);

  describe('in-process', function () {
    let v: DaxVolume;
    let guard: PinGuard;

    beforeEach(async function () {
      v = await freshDax();
      guard = guardPinnedFrees(v.dax);
    });

    afterEach(function () {
      guard.restore();
      assert.deepEqual(guard.violations, []);
    });

    for (const writable of [false, true]) {
      it(`${writable ? 'writable' : 'read-only'} pins from two sessions: blocks freed only after the second unpin`, async function () {
        const ino = await writtenFile(v, 'f', 4, (pg) => 0x20 + pg);
        const a = new TestOwner('a');
        const b = new TestOwner('b');
        const pa = await v.dax.pin(a, { ino, firstPgoff: 0, npages: 4, writable, leaseMs: 0 });
        const pb = await v.dax.pin(b, { ino, firstPgoff: 2, npages: 2, writable, leaseMs: 0 });
        if (writable) await v.dax.dmaWrite(a, pa.id, 0, 0, Buffer.alloc(PAGE, 0x99));
        await v.fs.unlink('f');
        assert.throws(() => v.fs.lookup('f'), /ENOENT/);
        v.dax.unpin(a, pa.id);
        // b still pins pages 2..3: nothing of the file may be freed, its DMA still works.
        assert.deepEqual(await v.dax.dmaRead(b, pb.id, 1, 0, 3), Buffer.from([0x23, 0x23, 0x23]));
        for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
        assert.equal(guard.freed, 0, 'blocks freed while a pin stood');
        v.dax.unpin(b, pb.id);
        await until(() => guard.freed >= 4, 'the orphan freed after the last unpin');
        assert.equal(v.dax.spaceStats(ino) !== null, false, 'the address space was dropped');
        assert.throws(() => v.fs.stat(ino), /ENOENT/);
      });
    }
  });

  describe('over gRPC (SDK pins, StatVolume)', function () {
    let server: DmaServer;

    before(async function () {
      server = await startDmaServer('unlink', { sizeBytes: 64 * MiB });
    });

    after(async function () {
      if (server) assert.deepEqual(await server.stopAndFsck(), []);
    });

    it('a writable pin over an unlinked file: free blocks unchanged until unpin, then the file is freed', async function () {
      const client = server.client();
      const guard = guardPinnedFrees(server.dax);
      try {
        const f = await client.create('pinned-unlinked', { exclusive: true });
        await client.write(f.ino, 0, Buffer.alloc(8 * PAGE, 0x31));
        await client.fsync(f.ino);
        const pin = await client.pin(f.ino, 0, 8, { writable: true });
        await pin.dmaWrite(7, 0, Buffer.alloc(PAGE, 0x32));
        const before = (await client.statVolume()).blocksFree;
        await client.unlink('pinned-unlinked');
        await pin.dmaWrite(3, 100, Buffer.from('still mine'));
        assert.deepEqual(await pin.dmaRead(3, 100, 10), Buffer.from('still mine'));
        assert.equal((await client.statVolume()).blocksFree, before, 'blocks freed while pinned');
        assert.equal(guard.freed, 0);
        await pin.unpin();
        await until(() => guard.freed >= 8, 'the unlinked file freed after the unpin');
        await server.daxd.fs.commit();
        assert.ok((await client.statVolume()).blocksFree >= before + 8);
        assert.deepEqual(guard.violations, []);
      } finally {
        guard.restore();
      }
    });
  });
});

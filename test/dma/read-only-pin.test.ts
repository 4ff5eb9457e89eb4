/**
 * fstests generic/462 (src/t_mmap_write_ro.c), ported (S4): a 4 KiB file of
 * 0xFF, read-faulted through a read-only mapping, pinned read-only (GUP without
 * FOLL_WRITE). A DMA write through that pin is refused (PERMISSION_DENIED / EFAULT) and the
 * file is unchanged. A writable pin of a page the session maps only read-only is refused
 * the same way. Both in-process and over gRPC (SDK pins, Mapping.Fault through the stub).
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import type { AccessResponse__Output } from '../../wire/generated/daxd/v1/AccessResponse';
import type { FaultResponse__Output } from '../../wire/generated/daxd/v1/FaultResponse';
import { expectCode, freshDax, writtenFile } from '../support/dax-volume';
import { PAGE } from '../support/units';
import { TestOwner } from '../support/test-owner';
import { call, failure } from '../support/raw-rpc';
import { startDmaServer, type DmaServer } from './fixture';

const FF = Buffer.alloc(PAGE, 0xff);

describe('dma: generic/462 read-only pin, DMA write refused', function () {
  this.timeout(30_000);

  it('in-process: EFAULT for a DMA write through a read-only pin and for a writable pin over a read-only mapping', async function () {
    const v = await freshDax();
    const ino = await writtenFile(v, 'ro', 1, () => 0xff);
    const s = new TestOwner('s');
    const pte = (await v.dax.fault(s, ino, 0, 'READ', false)).pte!;
    assert.equal(pte.writable, false);
    const ro = await v.dax.pin(s, { ino, firstPgoff: 0, npages: 1, writable: false, leaseMs: 0 });
    await expectCode(() => v.dax.dmaWrite(s, ro.id, 0, 0, Buffer.from([0])), 'EFAULT', 'DMA write through a read-only pin');
    await expectCode(() => v.dax.dmaWrite(s, ro.id, 0, 100, Buffer.alloc(PAGE - 100)), 'EFAULT', 'DMA write through a read-only pin');
    await expectCode(() => v.dax.pin(s, { ino, firstPgoff: 0, npages: 1, writable: true, leaseMs: 0 }), 'EFAULT', 'writable pin over a read-only mapping');
    assert.deepEqual(await v.dax.dmaRead(s, ro.id, 0, 0, PAGE), FF);
    assert.deepEqual(await v.fs.read(ino, 0, PAGE), FF);
    assert.deepEqual(v.dax.load(s, pte.token, 0, PAGE), FF);
    assert.equal(v.dax.pinCountOf(s.id), 1, 'the refused pin left nothing behind');
    assert.equal(v.dax.inspect(ino, 0, 0)[0].pinCount, 1);
    // Another session does not map it: its writable pin is the ordinary case.
    const other = new TestOwner('other');
    const rw = await v.dax.pin(other, { ino, firstPgoff: 0, npages: 1, writable: true, leaseMs: 0 });
    v.dax.unpin(other, rw.id);
    // Once the session maps it writable (a write fault), its writable pin is allowed too.
    await v.dax.fault(s, ino, 0, 'WRITE', false);
    const rw2 = await v.dax.pin(s, { ino, firstPgoff: 0, npages: 1, writable: true, leaseMs: 0 });
    v.dax.unpin(s, rw2.id);
    v.dax.unpin(s, ro.id);
    assert.deepEqual(await v.fs.read(ino, 0, PAGE), FF);
  });

  describe('over gRPC', function () {
    let server: DmaServer;

    before(async function () {
      server = await startDmaServer('read-only-pin');
    });

    after(async function () {
      if (server) assert.deepEqual(await server.stopAndFsck(), []);
    });

    it('PERMISSION_DENIED / EFAULT, content unchanged through Read, the mapping and the pin', async function () {
      const client = server.client();
      const f = await client.create('ff', { exclusive: true });
      await client.write(f.ino, 0, FF);
      const session = await client.openSession({ clientName: 'generic-462' });
      await session.attached;
      const fault = await call<FaultResponse__Output>((cb) => server.raw.mapping.Fault({ session_id: session.id, ino: f.ino, pgoff: 0, kind: 'READ' }, cb));
      assert.equal(fault.pte?.writable, false);
      const pin = await client.pin(f.ino, 0, 1, { writable: false, session });
      for (const [offset, data] of [[0, Buffer.from([0])], [0, Buffer.alloc(PAGE)], [4095, Buffer.from([1])]] as const) {
        const err = await failure(pin.dmaWrite(0, offset, data));
        assert.equal(err.code, grpc.status.PERMISSION_DENIED, err.message);
        assert.equal(err.reason, 'EFAULT');
      }
      const writable = await failure(client.pin(f.ino, 0, 1, { writable: true, session }));
      assert.equal(writable.code, grpc.status.PERMISSION_DENIED, writable.message);
      assert.equal(writable.reason, 'EFAULT');
      assert.deepEqual(await client.read(f.ino, 0, PAGE), FF);
      assert.deepEqual(await pin.dmaRead(0, 0, PAGE), FF);
      const loaded = await call<AccessResponse__Output>((cb) => server.raw.mapping.Load({ session_id: session.id, token: fault.pte!.token, offset: 0, length: PAGE }, cb));
      assert.deepEqual(loaded.data, FF);
      assert.equal(server.dax.pinCountOf(session.id), 1);
      await pin.unpin();
      await session.close();
    });
  });
});

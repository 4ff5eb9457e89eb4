/**
 * Dma.Stream under `daxd serve --auth FILE` (principals of test/support/auth-server.ts):
 * the stream is admitted for readers, and each op is held to the rules of its unary twin:
 *   - an ro principal runs read-only pin + READ cycles, but a writable pin or a WRITE op is
 *     PERMISSION_DENIED / EACCES (that op only: the stream goes on), the file unchanged;
 *   - a principal confined to its prefix cannot pin another's file by inode (EACCES), nor
 *     use another principal's session (SESSION_UNKNOWN);
 *   - quotas: pins, pinned blocks, allocated bytes (a writable pin over holes) are EDQUOT
 *     at their edge, and a pin + DMA + unpin op gives its pin back to the quota.
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { DaxQuotaError, type DaxClient, type DaxSession, type FileInfo } from '../../client';
import { BLOCK_BYTES, QUOTA, startAuthServer, type AuthServer } from '../support/auth-server';
import { failure } from '../support/raw-rpc';

const PAGE = BLOCK_BYTES;

async function denied(promise: Promise<unknown>, what: string): Promise<void> {
  const err = await failure(promise);
  assert.deepEqual([err.code, err.reason], [grpc.status.PERMISSION_DENIED, 'EACCES'], `${what}: ${err.message}`);
}

async function overQuota(promise: Promise<unknown>, quota: string): Promise<void> {
  const err = await failure(promise);
  assert.ok(err instanceof DaxQuotaError, `expected DaxQuotaError, got ${err.name}: ${err.message}`);
  assert.ok(err.message.includes(quota), `${err.message} should name the ${quota} quota`);
}

describe('auth: Dma.Stream ops under roles, prefixes and quotas', function () {
  this.timeout(60_000);
  let auth: AuthServer;
  let admin: DaxClient;
  const content = Buffer.alloc(4 * PAGE);
  for (let i = 0; i < content.length; i++) content[i] = (i * 13) & 0xff;

  before(async function () {
    auth = await startAuthServer();
    admin = auth.as('admin');
  });

  after(async function () {
    await auth?.stop();
  });

  describe('an ro principal', function () {
    let file: FileInfo;
    let reader: DaxClient;
    let session: DaxSession;

    before(async function () {
      file = await admin.create('common/dma-stream-ro');
      await admin.write(file.ino, 0, content, { sync: true });
      reader = auth.as('reader');
      session = await reader.openSession({ clientName: 'ro-stream' });
    });

    after(async function () {
      await session?.close();
    });

    it('reads through read-only pins; writable pins and WRITEs are EACCES per op, the file unchanged', async function () {
      assert.deepEqual(await reader.dma.readCycle(session, file.ino, 1, 2, { page: 0, offset: 3, length: PAGE }), content.subarray(PAGE + 3, 2 * PAGE + 3));
      await denied(reader.dma.writeCycle(session, file.ino, 0, 1, { page: 0, offset: 0, data: Buffer.alloc(10, 0xee) }), 'pin writable + WRITE + unpin');
      await denied(reader.dma.op(session, { pin: { ino: file.ino, firstPgoff: 0, npages: 1, writable: true } }), 'writable pin alone');
      // A read-only pin kept, then a WRITE through it by id: refused for the role (not EFAULT).
      const kept = await reader.dma.op(session, { pin: { ino: file.ino, firstPgoff: 0, npages: 1 } });
      assert.ok(kept.pinId !== null);
      await denied(reader.dma.op(session, { pinId: kept.pinId, write: { page: 0, offset: 0, data: Buffer.from([1]) } }), 'WRITE by pin id');
      assert.deepEqual((await reader.dma.op(session, { pinId: kept.pinId, read: { page: 0, offset: 0, length: 8 }, unpin: true })).data, content.subarray(0, 8),
        'the stream went on after the refusals');
      assert.deepEqual(await admin.read(file.ino, 0, content.length), content);
    });
  });

  describe('a principal confined to its prefix', function () {
    it('cannot pin bob\'s file by inode nor use bob\'s session: EACCES / SESSION_UNKNOWN', async function () {
      const bob = auth.as('bob');
      const bobs = await bob.create('bob/dma-secret');
      await bob.write(bobs.ino, 0, content);
      const bobSession = await bob.openSession();
      const alice = auth.as('alice');
      const session = await alice.openSession();
      try {
        await denied(alice.dma.readCycle(session, bobs.ino, 0, 1, { page: 0, offset: 0, length: 10 }), 'pin bob\'s file by ino');
        const err = await failure(alice.dma.op(bobSession, { pin: { ino: bobs.ino, firstPgoff: 0, npages: 1 }, read: { page: 0, offset: 0, length: 1 }, unpin: true }));
        assert.equal(err.reason, 'SESSION_UNKNOWN', err.message);
        const own = await alice.create('alice/dma-own');
        await alice.write(own.ino, 0, content.subarray(0, PAGE));
        assert.deepEqual(await alice.dma.readCycle(session, own.ino, 0, 1, { page: 0, offset: 0, length: 4 }), content.subarray(0, 4));
      } finally {
        await session.close();
        await bobSession.close();
      }
    });
  });

  describe('quotas', function () {
    it(`pins: ${QUOTA.pins} kept pins, one more EDQUOT; pin + DMA + unpin ops give theirs back`, async function () {
      const q = auth.as('q-pins');
      const file = await q.create('q-pins/stream');
      await q.write(file.ino, 0, content);
      const session = await q.openSession();
      const kept: string[] = [];
      for (let i = 0; i < QUOTA.pins; i++) kept.push((await q.dma.op(session, { pin: { ino: file.ino, firstPgoff: i, npages: 1 } })).pinId as string);
      await overQuota(q.dma.readCycle(session, file.ino, 3, 1, { page: 0, offset: 0, length: 1 }), 'pins');
      await q.dma.op(session, { pinId: kept.pop() as string, unpin: true });
      for (let i = 0; i < 8; i++) assert.deepEqual(await q.dma.readCycle(session, file.ino, 3, 1, { page: 0, offset: 0, length: 2 }), content.subarray(3 * PAGE, 3 * PAGE + 2));
      kept.push((await q.dma.op(session, { pin: { ino: file.ino, firstPgoff: 3, npages: 1 } })).pinId as string);
      for (const id of kept) await q.dma.op(session, { pinId: id, unpin: true });
      await session.close();
    });

    it(`pinned blocks: a pin op over ${QUOTA.pinnedBlocks + 1} pages is EDQUOT`, async function () {
      const q = auth.as('q-blocks');
      const file = await q.create('q-blocks/stream');
      await q.write(file.ino, 0, Buffer.alloc(2 * QUOTA.pinnedBlocks * PAGE, 2));
      const session = await q.openSession();
      await overQuota(q.dma.readCycle(session, file.ino, 0, QUOTA.pinnedBlocks + 1, { page: 0, offset: 0, length: 1 }), 'pinned blocks');
      const whole = await q.dma.readCycle(session, file.ino, 0, QUOTA.pinnedBlocks, { page: 0, offset: 0, length: QUOTA.pinnedBlocks * PAGE });
      assert.deepEqual(whole, Buffer.alloc(QUOTA.pinnedBlocks * PAGE, 2));
      await session.close();
    });

    it('allocated bytes: a writable pin op over holes past the quota is EDQUOT and writes nothing', async function () {
      const q = auth.as('q-bytes');
      const file = await q.create('q-bytes/stream');
      await q.truncate(file.ino, (QUOTA.allocatedBlocks + 2) * PAGE);
      const session = await q.openSession();
      await overQuota(q.dma.writeCycle(session, file.ino, 0, QUOTA.allocatedBlocks + 1, { page: 0, offset: 0, data: Buffer.alloc(PAGE, 9) }), 'allocated bytes');
      assert.equal((await q.stat(file.ino)).blocks, 0);
      await q.dma.writeCycle(session, file.ino, 0, 2, { page: 0, offset: 100, data: Buffer.alloc(PAGE, 9) });
      assert.equal((await q.stat(file.ino)).blocks, 2);
      await session.close();
    });
  });
});

/**
 * Every path that can allocate a block is held to the allocated-bytes quota, and creating
 * files to the files quota, against `daxd serve --auth FILE`: with the quota full, a new
 * block through Files.Write, WriteStream (the SDK's write), Fallocate KEEP_SIZE and
 * ZERO_RANGE, a WRITE fault, a FaultBatch WRITE op, a fault_if_stale Store and a writable
 * Pin is RESOURCE_EXHAUSTED / EDQUOT and allocates nothing; reads, READ faults and
 * read-only pins over holes still work. Concurrent writes racing for the last block: one
 * wins. Files: the quota's count of names, then EDQUOT; opening an existing name is free.
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import type { DaxClient } from '../../client';
import { BLOCK_BYTES, startAuthServer, type AuthServer } from '../support/auth-server';
import { call, failure } from '../support/raw-rpc';

const QUOTA_BLOCKS = 4;
const FILES_MAX = 3;

describe('auth: every allocating path within the quota', function () {
  this.timeout(60_000);
  let auth: AuthServer;
  let q: DaxClient;

  before(async function () {
    auth = await startAuthServer({
      principals: [
        { name: 'admin', role: 'admin' },
        { name: 'q', role: 'rw', prefix: 'q/', quotas: { allocated_bytes: QUOTA_BLOCKS * BLOCK_BYTES } },
        { name: 'race', role: 'rw', prefix: 'race/', quotas: { allocated_bytes: 2 * BLOCK_BYTES } },
        { name: 'f', role: 'rw', prefix: 'f/', quotas: { files: FILES_MAX } },
      ],
    });
    q = auth.as('q');
  });

  after(async function () {
    await auth?.stop();
  });

  const edquot = async (what: string, promise: Promise<unknown>) => {
    const err = await failure(promise);
    assert.deepEqual([err.code, err.reason], [grpc.status.RESOURCE_EXHAUSTED, 'EDQUOT'], `${what}: ${err.message}`);
  };

  it('with the quota full, each allocating call is EDQUOT and allocates nothing; reads and READ faults of holes still work', async function () {
    const file = await q.create('q/file');
    await q.truncate(file.ino, 64 * BLOCK_BYTES);
    await call((cb) => q.raw.files.Write({ ino: file.ino, offset: 0, data: Buffer.alloc(QUOTA_BLOCKS * BLOCK_BYTES, 1) }, cb));
    assert.equal((await q.stat(file.ino)).blocks, QUOTA_BLOCKS);
    const hole = (i: number) => (QUOTA_BLOCKS + 1 + i) * BLOCK_BYTES; // a page past the written ones
    const session = await q.openSession();
    const sid = session.id;
    await edquot('Files.Write', call((cb) => q.raw.files.Write({ ino: file.ino, offset: hole(0), data: Buffer.alloc(1, 2) }, cb)));
    await edquot('WriteStream (SDK write)', q.write(file.ino, hole(1), Buffer.alloc(1, 2)));
    await edquot('Fallocate KEEP_SIZE', q.fallocate(file.ino, 'KEEP_SIZE', hole(2), BLOCK_BYTES));
    await edquot('Fallocate ZERO_RANGE', q.fallocate(file.ino, 'ZERO_RANGE', hole(3), BLOCK_BYTES));
    await edquot('Mapping.Fault WRITE', call((cb) => q.raw.mapping.Fault({ session_id: sid, ino: file.ino, pgoff: hole(4) / BLOCK_BYTES, kind: 'WRITE' }, cb)));
    const batch = await call<{ results: Array<{ error?: { reason: string } | null }> }>((cb) => q.raw.mapping.FaultBatch({ session_id: sid, ino: file.ino, ops: [{ pgoff: hole(5) / BLOCK_BYTES, kind: 'WRITE' }] }, cb));
    assert.equal(batch.results[0].error?.reason, 'EDQUOT', 'FaultBatch WRITE op');
    await edquot('Mapping.Store fault_if_stale', call((cb) => q.raw.mapping.Store({ session_id: sid, token: '', ino: file.ino, pgoff: hole(6) / BLOCK_BYTES, offset: 0, data: Buffer.alloc(1, 3), fault_if_stale: true }, cb)));
    await edquot('Dma.Pin writable', call((cb) => q.raw.dma.Pin({ session_id: sid, ino: file.ino, first_pgoff: hole(7) / BLOCK_BYTES, npages: 1, writable: true }, cb)));
    assert.equal((await q.stat(file.ino)).blocks, QUOTA_BLOCKS, 'nothing was allocated');
    // Holes can still be read, READ-faulted (the zero page) and pinned read-only.
    assert.deepEqual(await q.read(file.ino, hole(0), 8), Buffer.alloc(8));
    await call((cb) => q.raw.mapping.Fault({ session_id: sid, ino: file.ino, pgoff: hole(8) / BLOCK_BYTES, kind: 'READ' }, cb));
    const ro = await call<{ pin_id: string }>((cb) => q.raw.dma.Pin({ session_id: sid, ino: file.ino, first_pgoff: hole(9) / BLOCK_BYTES, npages: 1, writable: false }, cb));
    await call((cb) => q.raw.dma.Unpin({ session_id: sid, pin_id: ro.pin_id }, cb));
    assert.equal((await q.stat(file.ino)).blocks, QUOTA_BLOCKS);
    await session.close();
  });

  it('concurrent writes racing for the last free blocks: exactly as many win as there are blocks', async function () {
    const race = auth.as('race');
    const file = await race.create('race/file');
    const outcomes = await Promise.allSettled(Array.from({ length: 8 }, (_, i) =>
      call((cb) => race.raw.files.Write({ ino: file.ino, offset: i * 2 * BLOCK_BYTES, data: Buffer.alloc(BLOCK_BYTES, i + 1) }, cb))));
    assert.equal(outcomes.filter((o) => o.status === 'fulfilled').length, 2);
    assert.equal((await race.stat(file.ino)).blocks, 2);
  });

  it(`files: ${FILES_MAX} names, one more EDQUOT; opening an existing name is free, exclusive create of one is EEXIST`, async function () {
    const f = auth.as('f');
    for (let i = 0; i < FILES_MAX; i++) await f.create(`f/${i}`);
    await edquot('Create', f.create('f/one-more'));
    assert.equal((await f.create('f/0')).name, 'f/0');
    const exists = await failure(f.create('f/0', { exclusive: true }));
    assert.equal(exists.reason, 'EEXIST');
    await f.unlink('f/2');
    assert.equal((await f.create('f/one-more')).name, 'f/one-more');
  });
});

/**
 * The SDK's MappedFile against a real daxd (in this process, over gRPC on 127.0.0.1):
 * batching (a mapped sequential read is one FaultBatch + one AccessBatch per 1024 pages;
 * small accesses issued together share round trips), shared and private semantics (COW
 * once per page, private pages never reach the file and survive every invalidation),
 * read-only mappings, SIGBUS at EOF, re-faulting after PTE_STALE with no Invalidate
 * events at all (the server's fence alone), msync dropping writable PTEs, MAP_SYNC faults,
 * unmap, and client.mmap's default session.
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { MappedFile, SigbusError } from '../../client';
import { MappingRpc } from '../../client/mapping-rpc';
import { inspect, openRawSession, pattern, useSdkServer } from './mapping-fixture';
import { MiB, PAGE } from '../support/units';
import { failure } from '../support/raw-rpc';

describe('MappedFile (SDK) against a real server', function () {
  const f = useSdkServer('sdk');
  let files = 0;

  async function written(sizeBytes: number, seed: number): Promise<number> {
    const { ino } = await f.client.create(`sdk-${files++}`);
    await f.client.write(ino, 0, pattern(seed, sizeBytes));
    return ino;
  }

  it('a 4 MiB sequential read: one FaultBatch whose READ faults load the pages, no AccessBatch, not one call per page', async function () {
    const ino = await written(4 * MiB, 1);
    const map = f.session.mmap(ino, { shared: true });
    assert.deepEqual(await map.read(0, 4 * MiB), pattern(1, 4 * MiB));
    assert.deepEqual([map.stats.faultBatchCalls, map.stats.faultOps, map.stats.accessBatchCalls], [1, 1024, 0]);
    // Mapped now: the next read needs no fault at all, only loads through the PTEs.
    assert.deepEqual(await map.read(100, 3 * PAGE), pattern(1, 4 * MiB).subarray(100, 100 + 3 * PAGE));
    assert.deepEqual([map.stats.faultBatchCalls, map.stats.accessBatchCalls], [1, 1]);
    await map.unmap();
  });

  it('small writes issued in one turn share their round trips', async function () {
    const { ino } = await f.client.create(`sdk-${files++}`);
    await f.client.truncate(ino, 256 * PAGE);
    const map = f.session.mmap(ino, { shared: true, writable: true });
    await Promise.all(Array.from({ length: 256 }, (_, pg) => map.write(pg * PAGE + 8, Buffer.from([pg & 0xff, 0xee]))));
    assert.deepEqual([map.stats.faultBatchCalls, map.stats.accessBatchCalls], [1, 1]);
    const all = await f.client.read(ino, 0, 256 * PAGE);
    for (let pg = 0; pg < 256; pg++) assert.deepEqual(all.subarray(pg * PAGE + 8, pg * PAGE + 10), Buffer.from([pg & 0xff, 0xee]));
    await map.unmap();
  });

  it('byte ranges that straddle pages land exactly (odd offsets and lengths)', async function () {
    const { ino } = await f.client.create(`sdk-${files++}`);
    await f.client.truncate(ino, 10 * PAGE);
    const map = f.session.mmap(ino, { shared: true, writable: true });
    const data = pattern(2, 3 * PAGE + 123);
    await map.write(PAGE - 7, data);
    assert.deepEqual(await map.read(PAGE - 7, data.length), data);
    assert.deepEqual(await f.client.read(ino, PAGE - 8, data.length + 2), Buffer.concat([Buffer.alloc(1), data, Buffer.alloc(1)]));
    assert.deepEqual(await map.read(0, 0), Buffer.alloc(0));
    await map.unmap();
  });

  it('private: the first write to a page takes one COW fault; the copy never reaches the file', async function () {
    const ino = await written(4 * PAGE, 3);
    const map = f.session.mmap(ino, { private: true, writable: true });
    await map.write(PAGE + 10, Buffer.from('mine'));
    await map.write(PAGE + 20, Buffer.from('again'));
    assert.equal(map.stats.faultOps, 1, 'one COW fault for two writes to one page');
    assert.equal(map.stats.privatePages, 1);
    assert.deepEqual(await f.client.read(ino, PAGE, PAGE), pattern(3, 4 * PAGE).subarray(PAGE, 2 * PAGE), 'the file is unchanged');
    const mine = Buffer.from(pattern(3, 4 * PAGE).subarray(PAGE, 2 * PAGE));
    mine.write('mine', 10);
    mine.write('again', 20);
    assert.deepEqual(await map.read(PAGE, PAGE), mine);
    // Pages never written still show the file, changes included.
    await f.client.write(ino, 2 * PAGE, Buffer.from('shared'));
    assert.deepEqual(await map.read(2 * PAGE, 6), Buffer.from('shared'));
    await map.msync(); // nothing to write back
    assert.deepEqual(await f.client.read(ino, PAGE + 10, 4), pattern(3, 4 * PAGE).subarray(PAGE + 10, PAGE + 14));
    await map.unmap();
  });

  it('private pages survive punch, an allocating write and truncate of the file', async function () {
    const { ino } = await f.client.create(`sdk-${files++}`);
    await f.client.truncate(ino, 4 * PAGE);
    const map = f.session.mmap(ino, { private: true, writable: true });
    await map.write(0, pattern(4, 4 * PAGE));
    await map.read(0, 1); // served from the copy
    await f.client.write(ino, 0, Buffer.alloc(4 * PAGE, 0x55)); // allocates under the copies
    await f.client.fallocate(ino, 'PUNCH_HOLE', PAGE, PAGE);
    await f.client.truncate(ino, PAGE);
    assert.deepEqual(await map.read(0, 4 * PAGE), pattern(4, 4 * PAGE), 'every private page kept');
    assert.equal(map.stats.privatePages, 4);
    await map.unmap();
  });

  it('read-only mapping: write fails with EFAULT before anything is sent', async function () {
    const ino = await written(PAGE, 5);
    const map = f.session.mmap(ino, { shared: true });
    const err = await failure(map.write(0, Buffer.from('x')));
    assert.deepEqual([err.code, err.reason], [grpc.status.PERMISSION_DENIED, 'EFAULT']);
    assert.equal(map.stats.faultBatchCalls + map.stats.accessBatchCalls, 0);
    const priv = f.session.mmap(ino, { private: true });
    assert.equal((await failure(priv.write(0, Buffer.from('x')))).reason, 'EFAULT');
    assert.throws(() => f.session.mmap(ino, { shared: true, private: true }), TypeError);
    assert.throws(() => f.session.mmap(ino, {}), TypeError);
  });

  it('at or past EOF: SigbusError (OUT_OF_RANGE / SIGBUS); the pages before EOF are done', async function () {
    const { ino } = await f.client.create(`sdk-${files++}`);
    await f.client.truncate(ino, 2 * PAGE + 100); // the last page is partial: mappable
    const map = f.session.mmap(ino, { shared: true, writable: true });
    assert.deepEqual(await map.read(2 * PAGE, PAGE), Buffer.alloc(PAGE), 'the partial last page maps');
    const err = await failure(map.read(2 * PAGE, PAGE + 1));
    assert.ok(err instanceof SigbusError);
    assert.deepEqual([err.code, err.reason], [grpc.status.OUT_OF_RANGE, 'SIGBUS']);
    const werr = await failure(map.write(PAGE, Buffer.alloc(3 * PAGE, 9)));
    assert.ok(werr instanceof SigbusError);
    assert.deepEqual(await f.client.read(ino, PAGE, 2 * PAGE), Buffer.alloc(PAGE + 100, 9), 'the pages before EOF were stored (Read stops at EOF)');
    // The store also reached page 2 past EOF (as a store to a mapping's last page does);
    // extending the file must zero that tail, not expose it.
    await f.client.truncate(ino, 3 * PAGE);
    assert.deepEqual(await f.client.read(ino, 2 * PAGE + 100, PAGE - 100), Buffer.alloc(PAGE - 100));
    await map.unmap();
  });

  it('with no Invalidate events at all, a stale PTE costs a PTE_STALE answer and a re-fault', async function () {
    const ino = await written(4 * PAGE, 6);
    const bare = await openRawSession(f.raw, 0, 'no-events'); // no Events stream: nothing tells it
    const map = new MappedFile(new MappingRpc(f.raw.mapping, bare.sessionId, { deadlineMs: 10_000, retries: 0 }), ino, { shared: true, writable: true });
    await map.read(0, 4 * PAGE);
    await f.client.fallocate(ino, 'PUNCH_HOLE', PAGE, 2 * PAGE);
    assert.equal(map.stats.ptesCached, 4, 'the cache still holds the revoked PTEs');
    const expected = Buffer.concat([pattern(6, PAGE), Buffer.alloc(2 * PAGE), pattern(6, 4 * PAGE).subarray(3 * PAGE)]);
    assert.deepEqual(await map.read(0, 4 * PAGE), expected);
    assert.equal(map.stats.staleRetries, 2, 'pages 1 and 2 re-faulted after PTE_STALE');
    await map.msync(); // nothing dirty; writeback revokes nothing
    await map.write(PAGE, Buffer.from('refill')); // a WRITE fault over the hole
    assert.deepEqual(await f.client.read(ino, PAGE, 6), Buffer.from('refill'));
    await map.unmap();
  });

  it('msync drops writable PTEs; the next write faults again and re-dirties (S5)', async function () {
    const { ino } = await f.client.create(`sdk-${files++}`);
    await f.client.truncate(ino, 2 * PAGE);
    const map = f.session.mmap(ino, { shared: true, writable: true });
    await map.write(0, Buffer.from('one'));
    assert.equal((await inspect(f.raw, ino, 0, 0))[0].dirty, true);
    await map.msync(0, PAGE);
    assert.equal((await inspect(f.raw, ino, 0, 0))[0].dirty, false);
    assert.equal(map.stats.ptesCached, 0, 'the writable PTE went with the writeback');
    const faults = map.stats.faultOps;
    await map.write(0, Buffer.from('two'));
    assert.equal(map.stats.faultOps, faults + 1, 'one WRITE fault');
    assert.equal(map.stats.staleRetries, 0, 'no store went through the downgraded PTE');
    assert.equal((await inspect(f.raw, ino, 0, 0))[0].dirty, true);
    await map.unmap();
  });

  it('sync (MAP_SYNC): each WRITE fault commits before it returns', async function () {
    const { ino } = await f.client.create(`sdk-${files++}`);
    await f.client.truncate(ino, 8 * PAGE);
    const map = f.session.mmap(ino, { shared: true, writable: true, sync: true });
    const before = f.server.daxd.dax.counters().faults.sync;
    await map.write(0, pattern(7, 8 * PAGE));
    assert.equal(f.server.daxd.dax.counters().faults.sync - before, 8);
    await map.unmap();
  });

  it('unmap drops the session PTEs on the f.server; the mapping is then unusable', async function () {
    const ino = await written(4 * PAGE, 8);
    const map = f.session.mmap(ino, { shared: true, writable: true });
    await map.write(0, pattern(9, 4 * PAGE));
    assert.ok((await inspect(f.raw, ino, 0, 3)).every((e) => e.mappers === 1));
    await map.unmap();
    assert.ok((await inspect(f.raw, ino, 0, 3)).every((e) => e.mappers === 0));
    await assert.rejects(map.read(0, 1), /unmapped/);
    await map.unmap(); // idempotent
  });

  it('f.client.mmap maps into one default f.session; two mappings of a file are coherent', async function () {
    const ino = await written(2 * PAGE, 10);
    const a = await f.client.mmap(ino, { shared: true, writable: true });
    const b = await f.client.mmap(ino, { shared: true });
    assert.equal(a.sessionId, b.sessionId);
    assert.notEqual(a.sessionId, f.session.id);
    await a.write(PAGE + 1, Buffer.from('seen'));
    assert.deepEqual(await b.read(PAGE + 1, 4), Buffer.from('seen'));
    // Unmapping one leaves the other's PTEs alone (one page table per session and file).
    await a.unmap();
    assert.deepEqual(await b.read(PAGE + 1, 4), Buffer.from('seen'));
    assert.equal(b.stats.staleRetries, 0, 'b kept its PTEs');
    await b.unmap();
    assert.ok((await inspect(f.raw, ino, 0, 1)).every((e) => e.mappers === 0), 'the last unmap dropped them all');
  });
});

/**
 * Fault-then-store under a concurrent fsync loop (issue 10, defect 9). Writeback revokes
 * writable PTEs (S5): a client that takes a WRITE fault and then sends its Store lost
 * the race to an fsync in between, again and again (up to 62 re-faults for one byte).
 * Store and AccessBatch stores may carry fault_if_stale: when the PTE is stale or
 * read-only, the server takes the WRITE fault under the entry lock and stores before it
 * unlocks, so no writeback can come between, and returns the new PTE. MappedFile uses it.
 *
 * The writeback between fault and store is forced deterministically: the test runs an
 * Fsync after every FaultBatch reply and before the SDK sends its accesses.
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import type { StoreResponse__Output } from '../../wire/generated/daxd/v1/StoreResponse';
import { openRawSession, pattern, useSdkServer, type RawMapping } from './mapping-fixture';
import { PAGE } from '../support/units';
import { until } from '../support/until';
import { call, failure } from '../support/raw-rpc';

/** Store with fault_if_stale for page pgoff of ino. */
function storeFis(m: RawMapping, token: string, ino: number, pgoff: number, offset: number, data: Buffer): Promise<StoreResponse__Output> {
  return call((cb) => m.raw.mapping.Store({ session_id: m.sessionId, token, offset, data, fault_if_stale: true, ino, pgoff }, cb));
}

describe('fault_if_stale: a store makes progress in one step under writeback', function () {
  this.timeout(60_000);
  const f = useSdkServer('fis');
  let files = 0;

  async function sparse(pages: number): Promise<number> {
    const { ino } = await f.client.create(`fis-${files++}`, { exclusive: true });
    await f.client.truncate(ino, pages * PAGE);
    return ino;
  }

  it('MappedFile: an fsync after every fault reply costs no re-fault (one AccessBatch, 0 stale retries)', async function () {
    const ino = await sparse(4);
    const map = f.session.mmap(ino, { shared: true, writable: true });
    const rpc = map.rpc;
    const faultBatch = rpc.faultBatch.bind(rpc);
    let fsyncs = 0;
    rpc.faultBatch = async (...args) => {
      const out = await faultBatch(...args);
      await f.client.fsync(ino); // writeback downgrades the fresh writable PTEs
      fsyncs++;
      return out;
    };
    const data = pattern(5, 3 * PAGE);
    await map.write(PAGE / 2, data);
    assert.equal(map.stats.staleRetries, 0, 'stores were sent back to fault again');
    assert.deepEqual([map.stats.faultBatchCalls, map.stats.accessBatchCalls, fsyncs], [1, 1, 1]);
    assert.deepEqual(await f.client.read(ino, PAGE / 2, data.length), data);
    // The PTEs the stores faulted in are cached: the next write needs no fault.
    await map.write(PAGE, Buffer.from('again'));
    assert.deepEqual([map.stats.faultBatchCalls, map.stats.accessBatchCalls, map.stats.staleRetries], [1, 2, 0]);
    await map.unmap();
  });

  it('raw Store: after fault + fsync the old path answers PTE_STALE; fault_if_stale stores and returns the new PTE', async function () {
    const ino = await sparse(2);
    const m = await openRawSession(f.raw);
    const stale = await m.token(ino, 1, 'WRITE');
    await f.client.fsync(ino);
    const err = await failure(m.store(stale, 0, Buffer.from('old path')));
    assert.equal(err.reason, 'PTE_STALE');
    const r = await storeFis(m, stale, ino, 1, 10, Buffer.from('one step'));
    assert.ok(r.pte?.writable, 'a writable PTE comes back');
    assert.notEqual(r.pte.token, stale);
    assert.equal(Number(r.pte.pgoff), 1);
    assert.deepEqual(await f.client.read(ino, PAGE + 10, 8), Buffer.from('one step'));
    // The new token is live: a plain store through it works; fault_if_stale then uses it as is.
    await m.store(r.pte.token, 0, Buffer.from('plain'));
    assert.equal((await storeFis(m, r.pte.token, ino, 1, 20, Buffer.from('as is'))).pte, null);
    // An empty token (nothing faulted yet): one call.
    const first = await storeFis(m, '', ino, 0, 0, Buffer.from('first'));
    assert.ok(first.pte?.writable);
    assert.deepEqual(await f.client.read(ino, 0, 5), Buffer.from('first'));
    assert.deepEqual(await f.client.read(ino, PAGE, 25), Buffer.concat([Buffer.from('plain'), Buffer.alloc(5), Buffer.from('one step'), Buffer.alloc(2), Buffer.from('as is')]));
  });

  it('raw Store / AccessBatch fault_if_stale refusals: token of another page (EINVAL), past EOF (SIGBUS), on a load (EINVAL)', async function () {
    const ino = await sparse(2);
    const m = await openRawSession(f.raw);
    const tok0 = await m.token(ino, 0, 'WRITE');
    const wrong = await failure(storeFis(m, tok0, ino, 1, 0, Buffer.from('x')));
    assert.deepEqual([wrong.code, wrong.reason], [grpc.status.INVALID_ARGUMENT, 'EINVAL']);
    const eof = await failure(storeFis(m, '', ino, 2, 0, Buffer.from('x')));
    assert.deepEqual([eof.code, eof.reason], [grpc.status.OUT_OF_RANGE, 'SIGBUS']);
    const out = await failure(storeFis(m, '', ino, 0, PAGE - 1, Buffer.from('xy')));
    assert.deepEqual([out.code, out.reason], [grpc.status.INVALID_ARGUMENT, 'EINVAL']);
    const r = await m.accessBatch([{ token: tok0, offset: 0, length: 1, store: false, fault_if_stale: true, ino, pgoff: 0 }]);
    assert.equal(r.results[0].error?.reason, 'EINVAL');
    assert.deepEqual(await f.client.read(ino, 0, 2 * PAGE), Buffer.alloc(2 * PAGE), 'a refused store changed the file');
  });

  it('under a concurrent fsync loop (bounded): every fault_if_stale store succeeds in one call; the old path hits PTE_STALE', async function () {
    const PAGES = 8;
    const ROUNDS = 100;
    const ino = await sparse(PAGES);
    const m = await openRawSession(f.raw);
    let stop = false;
    let fsyncs = 0;
    const loop = (async () => {
      for (let i = 0; i < 20 * ROUNDS && !stop; i++) {
        await f.client.fsync(ino);
        fsyncs++;
      }
    })();
    let oldPathStale = 0;
    let refaults = 0;
    const tokens = new Map<number, string>();
    try {
      for (let i = 0; i < ROUNDS; i++) {
        const pg = i % PAGES;
        // Old path, once per round: fault, then a plain store (an fsync in between makes it fail).
        const t = await m.token(ino, pg, 'WRITE');
        try {
          await m.store(t, 0, Buffer.from([i & 0xff]));
        } catch (err) {
          assert.equal((err as { reason?: string }).reason, 'PTE_STALE');
          oldPathStale++;
        }
        const batch = await m.accessBatch([{ token: tokens.get(pg) ?? t, offset: 1, data: Buffer.from([i & 0xff, 0xa5]), store: true, fault_if_stale: true, ino, pgoff: pg }]);
        assert.equal(batch.results[0].error, null, `round ${i}: ${batch.results[0].error?.message}`);
        if (batch.results[0].pte) {
          refaults++;
          tokens.set(pg, batch.results[0].pte.token);
        }
        const unary = await storeFis(m, tokens.get(pg) ?? t, ino, pg, 3, Buffer.from([i & 0xff]));
        if (unary.pte) tokens.set(pg, unary.pte.token);
        assert.deepEqual(await f.client.read(ino, pg * PAGE + 1, 3), Buffer.from([i & 0xff, 0xa5, i & 0xff]));
      }
    } finally {
      stop = true;
      await loop;
    }
    process.stdout.write(`      ${ROUNDS} rounds, ${fsyncs} fsyncs: old path PTE_STALE ${oldPathStale}, fault_if_stale faults taken ${refaults}, 0 failures\n`);
    assert.ok(fsyncs > 0);
  });

  it('the store runs under the fault\'s entry lock: a writeback queued on that lock comes after it (failpoint)', async function () {
    const ino = await sparse(1);
    const m = await openRawSession(f.raw);
    await m.store(await m.token(ino, 0, 'WRITE'), 0, Buffer.from('dirty')); // DIRTY: writeback will want the lock
    const fp = f.server.daxd.dax.failpoints.arm('fault:after-entry-lock', { ino, pgoff: 0 });
    const storing = storeFis(m, '', ino, 0, 0, Buffer.from('atomic'));
    await fp.reached; // the fault holds the entry lock
    const syncing = f.client.fsync(ino);
    await until(() => (f.server.daxd.dax.inspect(ino, 0, 0)[0]?.waiters ?? 0) > 0, 'writeback queued on the entry lock');
    fp.release();
    const r = await storing;
    // One call. The reply's PTE may already say writable: false: the writeback took the
    // lock as the store released it and downgraded the PTE before the reply was built.
    assert.ok(r.pte, 'stored in one call, with the PTE its fault installed');
    await syncing;
    assert.deepEqual(await f.client.read(ino, 0, 6), Buffer.from('atomic'));
    // The writeback ran after the store and downgraded its PTE: the token is stale now.
    assert.equal((await failure(m.store(r.pte.token, 0, Buffer.from('x')))).reason, 'PTE_STALE');
  });
});

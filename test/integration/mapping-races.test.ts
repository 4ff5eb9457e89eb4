/**
 * Races and revocations over gRPC against an in-process daxd with failpoints:
 * - read fault vs allocating write (upstream "dax: New fault locking" and the 2017 fix), S1 + S3: a
 *   READ fault paused after taking the entry lock, a Files.Write allocating the page runs
 *   (and waits for that entry lock in its S3 invalidation), release: the mapping shows the
 *   written data, through the raw token path and through MappedFile;
 * - session expiry drops the session's PTEs (S7): Inspect mappers -> 0, its tokens refused;
 * - stale tokens after truncate, punch and writeback downgrade, each with the Invalidate
 *   event (reason and range) on the session's Events stream, and the SDK dropping the
 *   cached PTEs of that range.
 * The server runs in this process only so the test can pause it; every request still goes
 * over gRPC on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { DaxClient, DaxClientError, DaxSession } from '../../client';
import type { RawClients } from '../../client/raw-clients';
import type { FailpointName } from '../../server/dax/failpoints';
import { inspect, openRawSession, pattern, RawMapping, startInProcess, type InProcessServer } from './mapping-fixture';
import { nextInvalidate } from '../support/session-events';
import { PAGE } from '../support/units';
import { until } from '../support/until';
import { failure, rawClients } from '../support/raw-rpc';
import { clientFor } from '../support/start-server';


describe('mapping races and revocations (in-process server with failpoints, over gRPC)', function () {
  let server: InProcessServer;
  let client: DaxClient;
  let raw: RawClients;
  let files = 0;

  before(async function () {
    server = await startInProcess('races');
    client = clientFor(server);
    raw = rawClients(server.address);
  });

  after(async function () {
    client?.close();
    raw?.close();
    if (server) assert.deepEqual(await server.stopAndFsck(), [], 'fsck after the race tests');
  });

  async function sparse(pages: number): Promise<number> {
    const { ino } = await client.create(`race-${files++}`);
    await client.truncate(ino, pages * PAGE);
    return ino;
  }

  for (const point of ['fault:after-entry-lock', 'fault:before-install'] as FailpointName[]) {
    it(`read fault paused at ${point} vs an allocating Write: the mapping shows the data`, async function () {
      const ino = await sparse(4);
      const s = await openRawSession(raw);
      const fp = server.daxd.dax.failpoints.arm(point, { ino, pgoff: 2 });
      const faulting = s.fault(ino, 2, 'READ');
      await fp.reached;
      const [held] = await inspect(raw, ino, 2, 2);
      assert.equal(held.locked, true, 'Inspect: the paused fault holds the entry lock');

      const data = pattern(11);
      const writing = client.write(ino, 2 * PAGE, data);
      // The write allocates, then waits for the entry lock in its S3 invalidation.
      await until(async () => (await inspect(raw, ino, 2, 2))[0]?.waiters === 1, 'the Write waits on the entry lock');
      assert.deepEqual(await client.read(ino, 2 * PAGE, PAGE), data, 'Read sees the data while the fault is paused');
      fp.release();
      const { pte } = await faulting;
      await writing;
      assert.ok(pte);

      let shown: Buffer;
      try {
        shown = await s.load(pte.token, 0, PAGE);
      } catch (err) {
        // The fault installed the zero page; the write's invalidation revoked it.
        assert.equal((err as DaxClientError).reason, 'PTE_STALE');
        shown = await s.load(await s.token(ino, 2, 'READ'), 0, PAGE);
      }
      assert.deepEqual(shown, data, 'the mapping shows the written data, never the zero page');
      const [e] = await inspect(raw, ino, 2, 2);
      assert.deepEqual({ state: e.state, locked: e.locked, waiters: e.waiters }, { state: 'MAPPED', locked: false, waiters: 0 });
    });
  }

  it('the same race through MappedFile: its read returns the written data', async function () {
    const ino = await sparse(4);
    const session = await client.openSession();
    const map = session.mmap(ino, { shared: true });
    const fp = server.daxd.dax.failpoints.arm('fault:after-entry-lock', { ino, pgoff: 1 });
    const reading = map.read(PAGE, PAGE);
    await fp.reached;
    const data = pattern(12);
    const writing = client.write(ino, PAGE, data);
    await until(async () => (await inspect(raw, ino, 1, 1))[0]?.waiters === 1, 'the Write waits on the entry lock');
    fp.release();
    await writing;
    const first = await reading;
    // A read that raced may legitimately return what was there before the write completed
    // (zeros); once the write returned, every read of the mapping shows the data.
    assert.ok(first.equals(data) || first.equals(Buffer.alloc(PAGE)), 'the racing read returns old or new bytes, nothing else');
    assert.deepEqual(await map.read(PAGE, PAGE), data);
    await session.close();
  });

  it('session expiry drops its PTEs: mappers -> 0, its tokens refused', async function () {
    const ino = await sparse(8);
    const session = await client.openSession({ clientName: 'lapsing', leaseMs: 300, keepAlive: false });
    const map = session.mmap(ino, { shared: true, writable: true });
    await map.write(0, pattern(13, 8 * PAGE));
    const tokens = [0, 1, 2].map((pg) => map.table.pte(pg)?.token ?? '');
    assert.ok((await inspect(raw, ino, 0, 7)).every((e) => e.mappers === 1), 'one PTE per page before expiry');
    const expired = once(session, 'expired');
    await expired;
    await until(async () => (await inspect(raw, ino, 0, 7)).every((e) => e.mappers === 0), 'every PTE of the session dropped');
    const own = new RawMapping(raw, session.id);
    const err = await failure(own.load(tokens[0], 0, 1));
    assert.deepEqual([err.code, err.reason], [16, 'SESSION_EXPIRED'], 'its own session id is expired');
    const other = await openRawSession(raw);
    for (const t of tokens) assert.equal((await failure(other.load(t, 0, 1))).reason, 'PTE_STALE', 'the token itself is revoked');
    assert.equal(map.stats.ptesCached, 0, 'the SDK dropped its cached PTEs at expiry');
    const sdkErr = await failure(map.read(0, 1));
    assert.equal(sdkErr.reason, 'SESSION_EXPIRED', 'MappedFile surfaces the expiry');
    assert.deepEqual(await client.read(ino, 0, 8 * PAGE), pattern(13, 8 * PAGE), 'the stores stay in the file');
  });

  describe('stale tokens and Invalidate events', function () {
    let session: DaxSession;
    let s: RawMapping;

    before(async function () {
      session = await client.openSession({ clientName: 'invalidated' });
      await session.attached;
      s = new RawMapping(raw, session.id);
    });
    after(async () => session?.close());

    it('truncate: PTEs past the new EOF refused; Invalidate TRUNCATE [4, 7]', async function () {
      const ino = await sparse(8);
      const tokens = await Promise.all([2, 4, 5, 7].map((pg) => s.token(ino, pg, 'WRITE')));
      const event = nextInvalidate(session, ino);
      await client.truncate(ino, 3 * PAGE);
      assert.deepEqual(await event, { ino, firstPgoff: 4, lastPgoff: 7, reason: 'TRUNCATE' });
      for (const t of tokens.slice(1)) assert.equal((await failure(s.store(t, 0, Buffer.from('x')))).reason, 'PTE_STALE');
      await s.store(tokens[0], 0, Buffer.from('kept')); // page 2 is inside the new size
      assert.deepEqual(await client.read(ino, 2 * PAGE, 4), Buffer.from('kept'));
    });

    it('punch hole: the punched page\'s PTE refused, its neighbours kept; Invalidate PUNCH_HOLE [1, 1]', async function () {
      const ino = (await client.create(`race-${files++}`)).ino;
      await client.write(ino, 0, pattern(14, 3 * PAGE));
      const tokens = await Promise.all([0, 1, 2].map((pg) => s.token(ino, pg, 'READ')));
      const event = nextInvalidate(session, ino);
      await client.fallocate(ino, 'PUNCH_HOLE', PAGE, PAGE);
      assert.deepEqual(await event, { ino, firstPgoff: 1, lastPgoff: 1, reason: 'PUNCH_HOLE' });
      assert.equal((await failure(s.load(tokens[1], 0, 1))).reason, 'PTE_STALE');
      assert.deepEqual(await s.load(tokens[0], 0, 4), pattern(14, 4));
      assert.deepEqual(await s.load(tokens[2], 0, 4), pattern(14, 3 * PAGE).subarray(2 * PAGE, 2 * PAGE + 4));
      assert.deepEqual(await s.load(await s.token(ino, 1, 'READ'), 0, PAGE), Buffer.alloc(PAGE), 're-faulted: a hole again');
    });

    it('msync downgrade: writable PTEs refused for stores, read-only kept; no event for its own msync, Invalidate WRITEBACK for an fsync', async function () {
      const ino = await sparse(4);
      const writable = await Promise.all([0, 1, 2].map((pg) => s.token(ino, pg, 'WRITE')));
      const readOnly = await s.token(ino, 1, 'READ');
      const event = nextInvalidate(session, ino);
      await s.msync(ino, 0, 3); // the session's own action: it is not told
      for (const t of writable) assert.equal((await failure(s.store(t, 0, Buffer.from('x')))).reason, 'PTE_STALE');
      assert.deepEqual(await s.load(readOnly, 0, 2), Buffer.alloc(2));
      await s.token(ino, 2, 'WRITE');
      await client.fsync(ino); // another client's fsync: the first event the session gets
      assert.deepEqual(await event, { ino, firstPgoff: 2, lastPgoff: 2, reason: 'WRITEBACK' });
    });

    it('an allocating Write over a READ-faulted hole: Invalidate HOLE_FILLED, the zero-page PTE refused', async function () {
      const ino = await sparse(4);
      const zero = await s.token(ino, 3, 'READ');
      const event = nextInvalidate(session, ino);
      await client.write(ino, 3 * PAGE, pattern(15));
      assert.deepEqual(await event, { ino, firstPgoff: 3, lastPgoff: 3, reason: 'HOLE_FILLED' });
      assert.equal((await failure(s.load(zero, 0, 1))).reason, 'PTE_STALE');
    });

    it('MappedFile drops the PTEs an Invalidate names and reads the new bytes after re-faulting', async function () {
      const ino = (await client.create(`race-${files++}`)).ino;
      await client.write(ino, 0, pattern(16, 4 * PAGE));
      const map = session.mmap(ino, { shared: true });
      assert.deepEqual(await map.read(0, 4 * PAGE), pattern(16, 4 * PAGE));
      assert.equal(map.stats.ptesCached, 4);
      const event = nextInvalidate(session, ino);
      await client.fallocate(ino, 'PUNCH_HOLE', PAGE, 2 * PAGE);
      await event;
      assert.equal(map.stats.ptesCached, 2, 'pages 1 and 2 dropped by the event');
      assert.equal(map.stats.invalidatedPtes, 2);
      const expected = Buffer.concat([pattern(16, PAGE), Buffer.alloc(2 * PAGE), pattern(16, 4 * PAGE).subarray(3 * PAGE)]);
      assert.deepEqual(await map.read(0, 4 * PAGE), expected);
      assert.equal(map.stats.staleRetries, 0, 'no access went through a stale PTE');
      await map.unmap();
    });
  });
});

/**
 * Every Mapping RPC against a real daxd child process, through the raw stubs: the three
 * fault kinds (READ maps holes to the zero page without allocating, WRITE allocates and
 * revokes the zero page, COW copies and keeps nothing), Load and Store round trips checked
 * against Files.Read / Files.Write, FaultBatch and AccessBatch outcomes per op, Msync
 * (cleans, downgrades writable PTEs: S5), Unmap, Inspect fields; and durability: after
 * Msync (and after a MAP_SYNC fault) a SIGKILLed server restarts with the data there.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { DaxClient } from '../../client';
import type { RawClients } from '../../client/raw-clients';
import { fsckVolume, inspect, openRawSession, pattern, type RawMapping } from './mapping-fixture';
import { PAGE } from '../support/units';
import { failure, rawClients } from '../support/raw-rpc';
import { clientFor, startServer, tempDir, type StartedServer } from '../support/start-server';

const S = grpc.status;

describe('Mapping RPCs: faults, loads, stores, msync, unmap, inspect', function () {
  let tmp: ReturnType<typeof tempDir>;
  let server: StartedServer;
  let client: DaxClient;
  let raw: RawClients;
  let s: RawMapping;
  let ino: number;
  /** Tokens carried from test to test (the cases build on each other, in order). */
  const tokens: Record<string, string> = {};

  before(async function () {
    tmp = tempDir();
    server = await startServer({ volumePath: path.join(tmp.dir, 'mapping.vol') });
    client = clientFor(server);
    raw = rawClients(server.address);
    s = await openRawSession(raw);
    ino = (await client.create('mapped')).ino;
    await client.truncate(ino, 4 * PAGE); // 4 pages of holes
  });

  after(async function () {
    client?.close();
    raw?.close();
    if (server) {
      assert.deepEqual(await server.stop(), { code: 0, signal: null });
      assert.deepEqual(await fsckVolume(server.volumePath), []);
    }
    tmp?.remove();
  });

  it('READ fault on a hole: the zero page (pfn 0, read-only), nothing allocated; Load reads zeros', async function () {
    const r = await s.fault(ino, 1, 'READ');
    assert.ok(r.pte);
    assert.equal(r.pte.pgoff, '1');
    assert.equal(r.pte.pfn, '0');
    assert.equal(r.pte.writable, false);
    assert.match(r.pte.token, /^[A-Za-z0-9_-]{22,}$/);
    assert.equal(r.data.length, 0);
    tokens.zero1 = r.pte.token;
    assert.deepEqual(await s.load(r.pte.token, 0, PAGE), Buffer.alloc(PAGE));
    assert.equal((await client.stat(ino)).blocks, 0, 'a read fault allocates nothing');
    assert.deepEqual(await inspect(raw, ino, 0, 3), [
      { pgoff: 1, state: 'ZERO', pfn: 0, locked: false, dirty: false, towrite: false, pinCount: 0, mappers: 1, waiters: 0 },
    ]);
  });

  it('Store through a read-only PTE: ABORTED / PTE_STALE, nothing changes', async function () {
    const err = await failure(s.store(tokens.zero1, 0, Buffer.from('nope')));
    assert.equal(err.code, S.ABORTED);
    assert.equal(err.reason, 'PTE_STALE');
    assert.deepEqual(await client.read(ino, PAGE, PAGE), Buffer.alloc(PAGE));
    assert.deepEqual(await s.load(tokens.zero1, 0, 8), Buffer.alloc(8), 'the read-only PTE itself stays valid');
  });

  it('WRITE fault on the zero page: a zeroed block, the zero-page PTE revoked; Store shows in Read', async function () {
    const r = await s.fault(ino, 1, 'WRITE');
    assert.ok(r.pte);
    assert.notEqual(r.pte.pfn, '0');
    assert.equal(r.pte.writable, true);
    tokens.w1 = r.pte.token;
    assert.equal((await failure(s.load(tokens.zero1, 0, 1))).reason, 'PTE_STALE', 'S1: the zero-page PTE was revoked first');
    assert.deepEqual(await s.load(tokens.w1, 0, PAGE), Buffer.alloc(PAGE), 'S2: the new block reads as zeros');
    const data = pattern(1, 300);
    await s.store(tokens.w1, 100, data);
    assert.deepEqual(await client.read(ino, PAGE + 100, 300), data, 'Read sees the store');
    assert.deepEqual(await s.load(tokens.w1, 100, 300), data);
    const [e] = await inspect(raw, ino, 1, 1);
    assert.deepEqual({ state: e.state, pfn: e.pfn, dirty: e.dirty, mappers: e.mappers }, { state: 'MAPPED', pfn: Number(r.pte.pfn), dirty: true, mappers: 1 });
    assert.equal((await client.stat(ino)).blocks, 1);
  });

  it('a Write over the mapped block invalidates nothing: Load through the old token shows it (S3)', async function () {
    const data = pattern(2, PAGE);
    await client.write(ino, PAGE, data);
    assert.deepEqual(await s.load(tokens.w1, 0, PAGE), data);
    tokens.r1 = await s.token(ino, 1, 'READ');
    assert.deepEqual(await s.load(tokens.r1, 0, PAGE), data, 'a READ fault on a MAPPED page shares the block');
    assert.equal((await inspect(raw, ino, 1, 1))[0].mappers, 2);
  });

  it('COW fault: the page copied into the reply, no PTE, nothing allocated', async function () {
    const onData = await s.fault(ino, 1, 'COW');
    assert.equal(onData.pte, null);
    assert.deepEqual(onData.data, pattern(2, PAGE));
    const onHole = await s.fault(ino, 2, 'COW');
    assert.equal(onHole.pte, null);
    assert.deepEqual(onHole.data, Buffer.alloc(PAGE));
    assert.equal((await client.stat(ino)).blocks, 1, 'COW never allocates');
    assert.deepEqual((await inspect(raw, ino, 2, 2)).filter((e) => e.mappers > 0), [], 'COW keeps no PTE');
  });

  it('FaultBatch: outcomes per op in order; SIGBUS past EOF fails only its op', async function () {
    const r = await s.faultBatch(ino, [
      { pgoff: 0, kind: 'READ' }, { pgoff: 3, kind: 'WRITE' }, { pgoff: 1, kind: 'COW' }, { pgoff: 4, kind: 'READ' }, { pgoff: 2, kind: 'WRITE' },
    ]);
    assert.equal(r.results.length, 5);
    const [read0, write3, cow1, past, write2] = r.results;
    assert.equal(read0.pte?.pfn, '0');
    assert.equal(write3.pte?.writable, true);
    assert.deepEqual(cow1.data, pattern(2, PAGE));
    assert.equal(cow1.pte, null);
    assert.equal(past.pte, null);
    assert.equal(past.error?.code, S.OUT_OF_RANGE);
    assert.equal(past.error?.reason, 'SIGBUS');
    assert.equal(write2.pte?.writable, true);
    tokens.w3 = write3.pte?.token ?? '';
    tokens.w2 = write2.pte?.token ?? '';
    tokens.zero0 = read0.pte?.token ?? '';
  });

  it('FaultBatch with load: a READ op returns its page (written bytes, zeros for a hole) and a PTE that loads the same; load on WRITE or COW fails only its op (EINVAL)', async function () {
    const { ino: f } = await client.create('loaded');
    await client.truncate(f, 3 * PAGE);
    await client.write(f, PAGE, pattern(7, PAGE));
    const r = await s.faultBatch(f, [
      { pgoff: 1, kind: 'READ', load: true }, { pgoff: 0, kind: 'READ', load: true }, { pgoff: 2, kind: 'WRITE', load: true },
      { pgoff: 2, kind: 'COW', load: true }, { pgoff: 1, kind: 'READ' }, { pgoff: 3, kind: 'READ', load: true },
    ]);
    assert.equal(r.results.length, 6);
    const [data1, hole0, write2, cow2, plain1, past] = r.results;
    assert.deepEqual(data1.data, pattern(7, PAGE));
    assert.equal(data1.pte?.writable, false);
    assert.deepEqual(hole0.data, Buffer.alloc(PAGE));
    assert.equal(hole0.pte?.pfn, '0');
    for (const bad of [write2, cow2]) {
      assert.equal(bad.error?.code, S.INVALID_ARGUMENT);
      assert.equal(bad.error?.reason, 'EINVAL');
      assert.equal(bad.pte, null);
    }
    assert.equal(plain1.data.length, 0, 'without load: no data');
    assert.equal(plain1.pte?.token, data1.pte?.token, 'the same read-only PTE, faulted again');
    assert.equal(past.error?.reason, 'SIGBUS');
    const loaded = await s.accessBatch([{ token: data1.pte?.token ?? '', offset: 0, length: PAGE }]);
    assert.deepEqual(loaded.results[0].data, pattern(7, PAGE), 'the PTE loads what the fault returned');
    assert.equal((await client.stat(f)).blocks, 1, 'the refused WRITE op allocated nothing');
  });

  it('AccessBatch: loads and stores in order; a stale op fails alone', async function () {
    const r = await s.accessBatch([
      { token: tokens.w3, offset: 10, data: Buffer.from('abc'), store: true },
      { token: tokens.w3, offset: 8, length: 7 },
      { token: tokens.zero1, offset: 0, length: 1 }, // revoked by the WRITE fault above
      { token: tokens.w2, offset: 4000, data: Buffer.from('tail'), store: true },
      { token: tokens.zero0, offset: 0, data: Buffer.from('x'), store: true }, // read-only
    ]);
    assert.equal(r.results.length, 5);
    assert.equal(r.results[0].error, null);
    assert.deepEqual(r.results[1].data, Buffer.from('\0\0abc\0\0'));
    assert.equal(r.results[2].error?.reason, 'PTE_STALE');
    assert.equal(r.results[2].error?.code, S.ABORTED);
    assert.equal(r.results[3].error, null);
    assert.equal(r.results[4].error?.reason, 'PTE_STALE');
    assert.deepEqual(await client.read(ino, 3 * PAGE + 10, 3), Buffer.from('abc'));
    assert.deepEqual(await client.read(ino, 2 * PAGE + 4000, 4), Buffer.from('tail'));
    assert.deepEqual(await client.read(ino, 0, 1), Buffer.alloc(1));
  });

  it('Msync: dirty entries cleaned, writable PTEs downgraded (stale), read-only ones kept (S5)', async function () {
    assert.deepEqual((await inspect(raw, ino, 0, 3)).map((e) => e.dirty), [false, true, true, true]);
    await s.msync(ino, 0, 3);
    const after = await inspect(raw, ino, 0, 3);
    assert.deepEqual(after.map((e) => [e.dirty, e.towrite]), [[false, false], [false, false], [false, false], [false, false]]);
    for (const t of [tokens.w1, tokens.w2, tokens.w3]) assert.equal((await failure(s.store(t, 0, Buffer.from('z')))).reason, 'PTE_STALE');
    assert.deepEqual(await s.load(tokens.r1, 0, 4), pattern(2, 4), 'the read-only PTE survives writeback');
    // The next store needs a WRITE fault, which re-dirties the entry.
    const again = await s.token(ino, 3, 'WRITE');
    await s.store(again, 0, Buffer.from('re'));
    assert.equal((await inspect(raw, ino, 3, 3))[0].dirty, true);
    tokens.w3 = again;
  });

  it('Unmap drops the session PTEs of its range only', async function () {
    await s.unmap(ino, 3, 3);
    assert.equal((await failure(s.load(tokens.w3, 0, 1))).reason, 'PTE_STALE');
    assert.deepEqual(await s.load(tokens.r1, 0, 4), pattern(2, 4), 'page 1 still mapped');
    assert.equal((await inspect(raw, ino, 3, 3))[0].mappers, 0);
    await s.unmap(ino, 0, Number.MAX_SAFE_INTEGER);
    assert.equal((await failure(s.load(tokens.r1, 0, 1))).reason, 'PTE_STALE');
    assert.ok((await inspect(raw, ino, 0, 3)).every((e) => e.mappers === 0), 'no PTE left');
  });
});

describe('Mapping durability: Msync and MAP_SYNC faults survive SIGKILL', function () {
  let tmp: ReturnType<typeof tempDir>;
  const running = new Set<StartedServer>();

  async function start(): Promise<StartedServer> {
    const server = await startServer({ volumePath: path.join(tmp.dir, 'durable.vol') });
    running.add(server);
    void server.exited.then(() => running.delete(server));
    return server;
  }

  beforeEach(() => (tmp = tempDir()));
  afterEach(async function () {
    for (const server of running) await server.kill('SIGKILL');
    tmp.remove();
  });

  it('MappedFile write + msync, SIGKILL, restart: every byte is there; fsck clean', async function () {
    const first = await start();
    let client = clientFor(first);
    const { ino } = await client.create('durable');
    await client.truncate(ino, 64 * PAGE);
    const session = await client.openSession();
    const map = session.mmap(ino, { shared: true, writable: true });
    const data = pattern(7, 64 * PAGE - 1000);
    await map.write(500, data); // 64 WRITE faults on holes, one FaultBatch, one AccessBatch
    assert.deepEqual([map.stats.faultBatchCalls, map.stats.accessBatchCalls], [1, 1]);
    await map.msync();
    client.close();
    await first.kill('SIGKILL');

    const second = await start();
    client = clientFor(second);
    assert.deepEqual(await client.read(ino, 500, data.length), data);
    assert.equal((await client.stat(ino)).blocks, 64);
    client.close();
    assert.deepEqual(await second.stop(), { code: 0, signal: null });
    assert.deepEqual(await fsckVolume(second.volumePath), []);
  });

  it('WRITE fault with sync (MAP_SYNC): the allocation is durable on return, before any msync', async function () {
    const first = await start();
    let client = clientFor(first);
    const raw = rawClients(first.address);
    const { ino } = await client.create('map-sync');
    await client.truncate(ino, 4 * PAGE);
    const s = await openRawSession(raw);
    const token = await s.token(ino, 2, 'WRITE', true);
    await s.store(token, 0, pattern(3, PAGE));
    raw.close();
    client.close();
    await first.kill('SIGKILL');

    const second = await start();
    client = clientFor(second);
    assert.equal((await client.stat(ino)).blocks, 1, 'the block the MAP_SYNC fault allocated is still the file\'s');
    // The store itself sat in the volume's page cache, which SIGKILL leaves intact.
    assert.deepEqual(await client.read(ino, 2 * PAGE, PAGE), pattern(3, PAGE));
    client.close();
    assert.deepEqual(await second.stop(), { code: 0, signal: null });
    assert.deepEqual(await fsckVolume(second.volumePath), []);
  });
});

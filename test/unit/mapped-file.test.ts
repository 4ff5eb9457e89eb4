/**
 * MappedFile's client-side rules against a scripted Mapping stub (no server): batch
 * splitting (ops and bytes), the bound on PTE_STALE retries, sharing of a fault in
 * flight, a second COW answer never replacing a private page that holds writes, the drop
 * of a stale PTE only when it is still the cached one, and unmap failing queued accesses.
 */
import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { MappedFile } from '../../client/mapped-file';
import { MappingRpc, splitBatches } from '../../client/mapping-rpc';
import { PageTable } from '../../client/page-table';
import type { MappingClient } from '../../wire/generated/daxd/v1/Mapping';
import { MAPPING_STALE_RETRIES_MAX } from '../../client/limits';
import { DaxClientError } from '../../client/errors';
import { DaxSession } from '../../client/session';
import type { SessionClient } from '../../wire/generated/daxd/v1/Session';
import { PAGE } from '../support/units';

interface StubOptions {
  /** Every access answers PTE_STALE. */
  staleAlways?: boolean;
  /** Fault replies wait until release() is called. */
  holdFaults?: boolean;
}

/** A Mapping stub over an in-memory file of `pages` pages (page p filled with byte p). */
class StubMapping {
  readonly file: Buffer;
  faultCalls: Array<Array<{ pgoff: number; kind: string }>> = [];
  accessCalls = 0;
  private nextToken = 1;
  private held: Array<() => void> = [];

  constructor(readonly pages: number, readonly options: StubOptions = {}) {
    this.file = Buffer.alloc(pages * PAGE);
    for (let p = 0; p < pages; p++) this.file.fill(p, p * PAGE, (p + 1) * PAGE);
  }

  release(): void {
    for (const go of this.held.splice(0)) go();
  }

  asClient(): MappingClient {
    const reply = (cb: (err: null, res: unknown) => void, res: unknown, hold = false) => {
      const send = () => setImmediate(() => cb(null, res));
      if (hold) this.held.push(send);
      else send();
    };
    const stub = {
      FaultBatch: (req: { ops: Array<{ pgoff: number; kind: string }> }, _md: unknown, _o: unknown, cb: (e: null, r: unknown) => void) => {
        this.faultCalls.push(req.ops.map((o) => ({ pgoff: Number(o.pgoff), kind: o.kind })));
        const results = req.ops.map((o) => {
          const pg = Number(o.pgoff);
          if (pg >= this.pages) return { pte: null, data: Buffer.alloc(0), error: { code: grpc.status.OUT_OF_RANGE, reason: 'SIGBUS', message: 'past EOF' } };
          if (o.kind === 'COW') return { pte: null, data: Buffer.from(this.file.subarray(pg * PAGE, (pg + 1) * PAGE)), error: null };
          return { pte: { pgoff: String(pg), pfn: String(pg + 100), writable: o.kind === 'WRITE', token: `${pg}:${this.nextToken++}` }, data: Buffer.alloc(0), error: null };
        });
        reply(cb, { results }, this.options.holdFaults);
      },
      AccessBatch: (req: { ops: Array<{ token: string; offset: number; length: number; data: Buffer; store: boolean }> }, _md: unknown, _o: unknown, cb: (e: null, r: unknown) => void) => {
        this.accessCalls++;
        const results = req.ops.map((op) => {
          if (this.options.staleAlways) return { data: Buffer.alloc(0), error: { code: grpc.status.ABORTED, reason: 'PTE_STALE', message: 'stale' } };
          const at = Number(op.token.split(':')[0]) * PAGE + Number(op.offset);
          if (op.store) {
            op.data.copy(this.file, at);
            return { data: Buffer.alloc(0), error: null };
          }
          return { data: Buffer.from(this.file.subarray(at, at + Number(op.length))), error: null };
        });
        reply(cb, { results });
      },
      Msync: (_r: unknown, _md: unknown, _o: unknown, cb: (e: null, r: unknown) => void) => reply(cb, {}),
      Unmap: (_r: unknown, _md: unknown, _o: unknown, cb: (e: null, r: unknown) => void) => reply(cb, {}),
    };
    return stub as unknown as MappingClient;
  }

  map(options: { shared?: boolean; private?: boolean; writable?: boolean } = { shared: true, writable: true }): MappedFile {
    return new MappedFile(new MappingRpc(this.asClient(), 'session', { deadlineMs: 5_000, retries: 0 }), 1, options);
  }
}

describe('MappedFile client rules (scripted server)', function () {
  it('splitBatches cuts at maxOps and before maxBytes, keeping order', function () {
    const items = Array.from({ length: 10 }, (_, i) => i);
    assert.deepEqual(splitBatches(items, 4, Infinity, () => 0), [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]);
    assert.deepEqual(splitBatches(items, 100, 10, () => 4), [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]);
    assert.deepEqual(splitBatches([50], 1, 10, () => 50), [[50]], 'one oversized item still goes alone');
  });

  it('a read of 3000 pages: three FaultBatch calls (1024 ops max) and three AccessBatch calls', async function () {
    const stub = new StubMapping(3000);
    const map = stub.map({ shared: true });
    const data = await map.read(0, 3000 * PAGE);
    assert.ok(data.equals(stub.file));
    assert.deepEqual(stub.faultCalls.map((c) => c.length), [1024, 1024, 952]);
    assert.equal(stub.accessCalls, 3);
  });

  it(`PTE_STALE on every access: the op fails after ${MAPPING_STALE_RETRIES_MAX} re-faults`, async function () {
    const stub = new StubMapping(2, { staleAlways: true });
    const map = stub.map();
    await assert.rejects(map.read(PAGE, 10), (err: unknown) => err instanceof DaxClientError && err.reason === 'PTE_STALE');
    assert.equal(stub.faultCalls.length, MAPPING_STALE_RETRIES_MAX + 1);
    assert.equal(map.stats.staleRetries, MAPPING_STALE_RETRIES_MAX);
  });

  it('a read needing a page whose WRITE fault is in flight waits for it instead of faulting again', async function () {
    const stub = new StubMapping(4, { holdFaults: true });
    const map = stub.map();
    const writing = map.write(PAGE, Buffer.from('w'));
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    const reading = map.read(PAGE, 2);
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    stub.release();
    await writing;
    const got = await reading;
    assert.ok(got.equals(Buffer.from([0x77, 1])) || got.equals(Buffer.from([1, 1])), `read ${got.toString('hex')}`);
    assert.deepEqual(stub.faultCalls, [[{ pgoff: 1, kind: 'WRITE' }]], 'one fault for both');
  });

  it('private: the first COW copy wins; a racing second COW answer does not wipe its writes', function () {
    const table = new PageTable();
    const first = table.installPrivate(3, Buffer.alloc(PAGE, 1));
    first.write('mine', 0);
    const second = table.installPrivate(3, Buffer.alloc(PAGE, 2));
    assert.equal(second, first);
    assert.equal(second.toString('latin1', 0, 4), 'mine');
  });

  it('private: a COW copy that is a view of a larger reply is copied, so the page does not keep the reply alive', function () {
    const table = new PageTable();
    // A FaultBatch reply of 64 pages (READ faults carry their pages), one of them the COW copy.
    const reply = Buffer.alloc(64 * PAGE, 7);
    const view = reply.subarray(5 * PAGE, 6 * PAGE);
    const page = table.installPrivate(3, view);
    assert.deepEqual(page, view);
    assert.equal(page.buffer.byteLength, PAGE, 'the private page holds its own 4 KiB, not the 256 KiB reply');
    reply.fill(0);
    assert.equal(page[0], 7, 'the private page does not alias the reply');
  });

  it('a stale answer drops the cached PTE only if it is still the one that failed', function () {
    const table = new PageTable();
    table.install({ pgoff: 5, pfn: 9, writable: true, token: 'new' });
    table.dropToken(5, 'old');
    assert.equal(table.pte(5)?.token, 'new');
    table.dropToken(5, 'new');
    assert.equal(table.pte(5), undefined);
  });

  it('the PTE cache is bounded: past its maximum the oldest entries are forgotten', function () {
    const table = new PageTable(3);
    for (let pg = 0; pg < 5; pg++) table.install({ pgoff: pg, pfn: pg, writable: false, token: `t${pg}` });
    assert.equal(table.pteCount, 3);
    assert.equal(table.pte(0), undefined);
    assert.equal(table.pte(4)?.token, 't4');
  });

  it('unmap fails the accesses still queued', async function () {
    const stub = new StubMapping(4);
    const map = stub.map();
    const reading = assert.rejects(map.read(0, PAGE), /unmapped/);
    await map.unmap();
    await reading;
    await assert.rejects(map.write(0, Buffer.from('x')), /unmapped/);
    assert.equal(stub.faultCalls.length, 0);
  });

  it('a page past EOF fails with SIGBUS and the pages before it still complete', async function () {
    const stub = new StubMapping(2);
    const map = stub.map();
    await assert.rejects(map.write(PAGE, Buffer.alloc(2 * PAGE, 0xab)), (err: unknown) => err instanceof DaxClientError && err.reason === 'SIGBUS');
    assert.ok(stub.file.subarray(PAGE, 2 * PAGE).every((b) => b === 0xab));
  });
});

describe('SDK session: EventsLost', function () {
  it('an EventsLost event drops every PTE of every mapping (they fault again) and is emitted with its count', async function () {
    const stub = new StubMapping(4);
    const events = Object.assign(new EventEmitter(), { cancel: () => undefined });
    const sessionStub = {
      Open: (_req: unknown, _md: unknown, _o: unknown, cb: (e: null, r: unknown) => void) => setImmediate(() => cb(null, { session_id: 's1', lease_ms: '30000', expires_at_ms: '0' })),
      Events: () => events,
    } as unknown as SessionClient;
    const session = await DaxSession.open({ session: sessionStub, mapping: stub.asClient() }, { keepAlive: false }, { deadlineMs: 1000, retries: 0 });
    const map = session.mmap(7, { shared: true, writable: false });
    await map.read(0, 4 * PAGE);
    assert.equal(stub.faultCalls.length, 1, 'all four pages in one batch');
    await map.read(0, 4 * PAGE);
    assert.equal(stub.faultCalls.length, 1, 'cached PTEs: no fault');
    const lost = once(session, 'eventsLost');
    events.emit('data', { events_lost: { count: '4100' } });
    assert.deepEqual(await lost, [{ count: 4100 }]);
    assert.equal(map.stats.invalidatedPtes, 4);
    await map.read(0, 4 * PAGE);
    assert.equal(stub.faultCalls.length, 2, 'every page faults again');
  });
});

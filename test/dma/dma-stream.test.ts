/**
 * Dma.Stream (server/rpc/dma-streams.ts): pin / DMA / unpin ops pipelined on one stream.
 * Round trips (one-op cycles, pins kept and used by id), DMA ranges spanning the pages of
 * a pin, a pin revoked while an op's DMA is in flight (failpoint dma:in-flight; S4: the
 * block is not freed under it), another session's pin id (ENOENT), limits and bad input
 * answered per op without ending the stream, and the SDK's path (client.dma, DmaPin
 * streamRead / streamWrite, PinRevokedError).
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { DaxClientError, DmaPin, PinRevokedError, type DaxClient, type DaxSession } from '../../client';
import type { RawClients } from '../../client/raw-clients';
import type { DmaOp } from '../../wire/generated/daxd/v1/DmaOp';
import type { DmaResult__Output } from '../../wire/generated/daxd/v1/DmaResult';
import type { DmaStreamRequest } from '../../wire/generated/daxd/v1/DmaStreamRequest';
import type { DmaStreamResponse__Output } from '../../wire/generated/daxd/v1/DmaStreamResponse';
import { DMA_OP_BYTES_MAX, STREAM_OPS_PER_MESSAGE_MAX } from '../../server/rpc/limits';
import { PIN_PAGES_MAX } from '../../server/limits';
import { failure, streamOutcome } from '../support/raw-rpc';
import { track } from '../support/track';
import { settle, until } from '../support/until';
import { PAGE } from '../support/units';
import { guardPinnedFrees, patternByte, startDmaServer, type DmaServer } from './fixture';

/** A raw Dma.Stream: send batches, await their results by id, half-close. */
class RawDmaStream {
  readonly stream: grpc.ClientDuplexStream<DmaStreamRequest, DmaStreamResponse__Output>;
  private readonly results = new Map<number, DmaResult__Output>();
  private readonly waiters: Array<() => void> = [];
  readonly outcome: Promise<{ messages: DmaStreamResponse__Output[]; error: DaxClientError | null }>;
  messages = 0;

  constructor(raw: RawClients) {
    this.stream = raw.dma.Stream();
    this.outcome = streamOutcome(this.stream);
    this.stream.on('data', (m: DmaStreamResponse__Output) => {
      this.messages++;
      for (const r of m.results) this.results.set(r.id, r);
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** Sends `ops` in one message; resolves with their results in op order. */
  async send(ops: DmaOp[]): Promise<DmaResult__Output[]> {
    this.stream.write({ ops });
    return this.await(ops.map((o) => o.id as number));
  }

  async await(ids: number[]): Promise<DmaResult__Output[]> {
    let ended = false;
    void this.outcome.then(() => { ended = true; for (const w of this.waiters.splice(0)) w(); });
    while (!ids.every((id) => this.results.has(id))) {
      if (ended) throw new Error(`the stream ended before ops ${ids.filter((id) => !this.results.has(id)).join(',')} were answered`);
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    return ids.map((id) => this.results.get(id) as DmaResult__Output);
  }

  /** Half-close; the status the stream ends with. */
  async end(): Promise<DaxClientError | null> {
    this.stream.end();
    return (await this.outcome).error;
  }
}

function errorOf(r: DmaResult__Output): { code: number; reason: string } | null {
  return r.error === null ? null : { code: r.error.code, reason: r.error.reason };
}

function pattern(bytes: number, seed: number): Buffer {
  const out = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) out[i] = patternByte(seed + i);
  return out;
}

describe('dma: Dma.Stream (pipelined pin / DMA / unpin)', function () {
  this.timeout(60_000);
  let server: DmaServer;
  let client: DaxClient;
  let session: DaxSession;
  let fileNo = 0;

  before(async function () {
    server = await startDmaServer('dma-stream', { recallGraceMs: 100 });
    client = server.client();
    session = await client.openSession({ clientName: 'dma-stream' });
    await session.attached;
  });

  after(async function () {
    if (server) assert.deepEqual(await server.stopAndFsck(), []);
  });

  /** A file of `pages` pages of a known pattern; its bytes. */
  async function file(pages: number): Promise<{ ino: number; bytes: Buffer }> {
    const f = await client.create(`dma-stream-${fileNo++}`, { exclusive: true });
    const bytes = pattern(pages * PAGE, fileNo * 7);
    await client.write(f.ino, 0, bytes);
    return { ino: f.ino, bytes };
  }

  it('pin + write + unpin and pin + read + unpin are one op each; the pins are gone after', async function () {
    const { ino } = await file(4);
    const s = new RawDmaStream(server.raw);
    const data = Buffer.alloc(PAGE, 0x3c);
    const pinsBefore = server.dax.pinStats().active;
    const [w] = await s.send([{ id: 1, session_id: session.id, pin: { ino, first_pgoff: 2, npages: 1, writable: true }, access: 'WRITE', page: 0, offset: 0, data, unpin: true }]);
    assert.equal(w.error, null);
    assert.equal(w.pin_id, '', 'an unpinned op returns no pin');
    const [r] = await s.send([{ id: 2, session_id: session.id, pin: { ino, first_pgoff: 2, npages: 1 }, access: 'READ', page: 0, offset: 0, length: PAGE, unpin: true }]);
    assert.equal(r.error, null);
    assert.deepEqual(r.data, data);
    assert.deepEqual(await client.read(ino, 2 * PAGE, PAGE), data, 'the DMA write reached the file');
    assert.equal(server.dax.pinStats().active, pinsBefore, 'both pins were dropped');
    assert.equal(await s.end(), null, 'the stream ends OK after the half-close');
  });

  it('many cycles in one message share reply messages; results match ids', async function () {
    const { ino, bytes } = await file(16);
    const s = new RawDmaStream(server.raw);
    const ops: DmaOp[] = Array.from({ length: 64 }, (_, i) => ({
      id: 100 + i, session_id: session.id, pin: { ino, first_pgoff: i % 16, npages: 1 }, access: 'READ', page: 0, offset: 7, length: 100, unpin: true,
    }));
    const results = await s.send(ops);
    results.forEach((r, i) => {
      assert.equal(r.error, null, `op ${r.id}`);
      const at = (i % 16) * PAGE + 7;
      assert.deepEqual(r.data, bytes.subarray(at, at + 100), `op ${r.id} read its own page`);
    });
    assert.ok(s.messages < 64, `64 ops answered in ${s.messages} messages`);
    assert.equal(await s.end(), null);
  });

  it('a kept pin is returned (id, pfns, lease) and used by later ops by id; DMA spans its pages', async function () {
    const { ino, bytes } = await file(8);
    const s = new RawDmaStream(server.raw);
    const [p] = await s.send([{ id: 1, session_id: session.id, pin: { ino, first_pgoff: 1, npages: 6, writable: true } }]);
    assert.equal(p.error, null);
    assert.match(p.pin_id, /^[0-9a-f]{32}$/);
    assert.equal(p.pfns.length, 6);
    assert.ok(Number(p.lease_ms) > 0);
    assert.equal(server.dax.hasPin(p.pin_id), true);
    // From the middle of pin page 1 over 3 more pages (4 pages touched), unaligned end.
    const span = pattern(3 * PAGE + 1000, 99);
    const [w] = await s.send([{ id: 2, session_id: session.id, pin_id: p.pin_id, access: 'WRITE', page: 1, offset: 300, data: span }]);
    assert.equal(w.error, null);
    const expected = Buffer.from(bytes);
    span.copy(expected, (1 + 1) * PAGE + 300);
    assert.deepEqual(await client.read(ino, 0, 8 * PAGE), expected, 'the spanning write landed in the right blocks');
    const [r, whole] = await s.send([
      { id: 3, session_id: session.id, pin_id: p.pin_id, access: 'READ', page: 1, offset: 300, length: span.length },
      { id: 4, session_id: session.id, pin_id: p.pin_id, access: 'READ', page: 0, offset: 0, length: 6 * PAGE },
    ]);
    assert.deepEqual(r.data, span);
    assert.deepEqual(whole.data, expected.subarray(PAGE, 7 * PAGE), 'the whole pin in one op');
    // Past the pin's last page: EINVAL, and nothing written.
    const [past] = await s.send([{ id: 5, session_id: session.id, pin_id: p.pin_id, access: 'WRITE', page: 5, offset: 1, data: Buffer.alloc(PAGE) }]);
    assert.deepEqual(errorOf(past), { code: grpc.status.INVALID_ARGUMENT, reason: 'EINVAL' });
    assert.deepEqual(await client.read(ino, 0, 8 * PAGE), expected);
    const [u] = await s.send([{ id: 6, session_id: session.id, pin_id: p.pin_id, unpin: true }]);
    assert.equal(u.error, null);
    assert.equal(server.dax.hasPin(p.pin_id), false);
    const [gone] = await s.send([{ id: 7, session_id: session.id, pin_id: p.pin_id, access: 'READ', length: 1 }]);
    assert.deepEqual(errorOf(gone), { code: grpc.status.NOT_FOUND, reason: 'ENOENT' });
    assert.equal(await s.end(), null);
  });

  it('a read-only pin over a hole reads zeros across pages; a WRITE through it is EFAULT', async function () {
    const f = await client.create(`dma-stream-hole-${fileNo++}`, { exclusive: true });
    await client.truncate(f.ino, 4 * PAGE);
    await client.write(f.ino, PAGE, Buffer.alloc(PAGE, 0x11));
    const s = new RawDmaStream(server.raw);
    const [p] = await s.send([{ id: 1, session_id: session.id, pin: { ino: f.ino, first_pgoff: 0, npages: 3 }, access: 'READ', page: 0, offset: 4000, length: 2 * PAGE }]);
    assert.equal(p.error, null);
    assert.deepEqual(p.data, Buffer.concat([Buffer.alloc(96), Buffer.alloc(PAGE, 0x11), Buffer.alloc(PAGE - 96)]));
    const [w] = await s.send([{ id: 2, session_id: session.id, pin_id: p.pin_id, access: 'WRITE', page: 1, data: Buffer.from([1]), unpin: true }]);
    assert.deepEqual(errorOf(w), { code: grpc.status.PERMISSION_DENIED, reason: 'EFAULT' });
    assert.equal(server.dax.hasPin(p.pin_id), false, 'unpin is done even when the DMA fails');
    assert.deepEqual(await client.read(f.ino, PAGE, PAGE), Buffer.alloc(PAGE, 0x11));
    assert.equal(await s.end(), null);
  });

  it('a pin taken by an op whose DMA fails is dropped (the op holds no pin)', async function () {
    const { ino } = await file(2);
    const s = new RawDmaStream(server.raw);
    const before = server.dax.pinCountOf(session.id);
    const [r] = await s.send([{ id: 1, session_id: session.id, pin: { ino, first_pgoff: 0, npages: 1 }, access: 'READ', page: 0, offset: 10, length: PAGE }]);
    assert.deepEqual(errorOf(r), { code: grpc.status.INVALID_ARGUMENT, reason: 'EINVAL' }, 'the read runs past the 1-page pin');
    assert.equal(r.pin_id, '');
    assert.equal(server.dax.pinCountOf(session.id), before);
    assert.equal(await s.end(), null);
  });

  it('another session\'s pin id answers as an unknown one (ENOENT); nothing is done through it', async function () {
    const { ino, bytes } = await file(1);
    const other = await client.openSession({ clientName: 'dma-stream-other' });
    await other.attached;
    const s = new RawDmaStream(server.raw);
    const [p] = await s.send([{ id: 1, session_id: session.id, pin: { ino, first_pgoff: 0, npages: 1, writable: true } }]);
    assert.equal(p.error, null);
    const results = await s.send([
      { id: 2, session_id: other.id, pin_id: p.pin_id, access: 'READ', length: 10 },
      { id: 3, session_id: other.id, pin_id: p.pin_id, access: 'WRITE', data: Buffer.alloc(10, 0xee) },
      { id: 4, session_id: other.id, pin_id: p.pin_id, unpin: true },
      { id: 5, session_id: other.id, pin_id: 'f'.repeat(32), unpin: true },
    ]);
    for (const r of results) assert.deepEqual(errorOf(r), { code: grpc.status.NOT_FOUND, reason: 'ENOENT' }, `op ${r.id}`);
    assert.equal(server.dax.hasPin(p.pin_id), true, 'the other session could not unpin it');
    assert.deepEqual(await client.read(ino, 0, PAGE), bytes, 'nor write through it');
    const [u] = await s.send([{ id: 6, session_id: session.id, pin_id: p.pin_id, unpin: true }]);
    assert.equal(u.error, null);
    assert.equal(await s.end(), null);
    await other.close();
  });

  it('revoked mid-stream: the DMA in flight is PIN_REVOKED, its block is freed only after it, the stream goes on', async function () {
    const { ino } = await file(4);
    const victim = await client.create(`dma-stream-victim-${fileNo++}`, { exclusive: true });
    const s = new RawDmaStream(server.raw);
    const [p] = await s.send([{ id: 1, session_id: session.id, pin: { ino, first_pgoff: 0, npages: 4, writable: true } }]);
    assert.equal(p.error, null);
    const guard = guardPinnedFrees(server.dax);
    try {
      const fp = server.dax.failpoints.arm('dma:in-flight', { ino, pgoff: 1 });
      const dma = track(s.send([{ id: 2, session_id: session.id, pin_id: p.pin_id, access: 'WRITE', page: 1, offset: 0, data: Buffer.alloc(3 * PAGE, 0xab) }]));
      await fp.reached;
      const revocationsBefore = server.dax.pinStats().revocations;
      // Nobody answers the recall (a raw stream has no SDK handler): revoked after the grace.
      const truncating = track(client.truncate(ino, 0, { layoutBreak: 'RECALL' }));
      await until(() => server.dax.pinStats().revocations === revocationsBefore + 1, 'revocation after the grace');
      await settle();
      assert.equal(truncating.done, false, 'truncate completed while a DMA was in flight on the revoked pin');
      assert.equal(guard.freed, 0, 'a block under DMA was freed');
      await client.write(victim.ino, 0, Buffer.alloc(8 * PAGE, 0x15));
      fp.release();
      const [w] = await dma.promise;
      assert.deepEqual(errorOf(w), { code: grpc.status.ABORTED, reason: 'PIN_REVOKED' });
      const [r, u] = await s.send([
        { id: 3, session_id: session.id, pin_id: p.pin_id, access: 'READ', length: 1 },
        { id: 4, session_id: session.id, pin_id: p.pin_id, unpin: true },
      ]);
      assert.ok(r.error?.reason === 'PIN_REVOKED' || r.error?.reason === 'ENOENT', `a later op on the revoked pin: ${r.error?.reason}`);
      assert.ok(u.error === null || u.error.reason === 'ENOENT');
      await truncating.promise;
      assert.ok(guard.freed >= 4);
      assert.deepEqual(guard.violations, []);
      assert.deepEqual(await client.read(victim.ino, 0, 8 * PAGE), Buffer.alloc(8 * PAGE, 0x15), 'no block under DMA went to another file');
      assert.equal(await s.end(), null, 'the revocation did not end the stream');
    } finally {
      guard.restore();
    }
  });

  it('bad input: a precise status per op, the stream goes on', async function () {
    const { ino } = await file(2);
    const s = new RawDmaStream(server.raw);
    const sid = session.id;
    const pin = { ino, first_pgoff: 0, npages: 1 };
    const cases: Array<[string, DmaOp, number, string]> = [
      ['no pin, no pin_id', { session_id: sid, access: 'READ', length: 1 }, grpc.status.INVALID_ARGUMENT, 'EINVAL'],
      ['pin and pin_id', { session_id: sid, pin, pin_id: 'a'.repeat(32), access: 'READ', length: 1 }, grpc.status.INVALID_ARGUMENT, 'EINVAL'],
      ['malformed pin_id', { session_id: sid, pin_id: 'xyz', unpin: true }, grpc.status.INVALID_ARGUMENT, 'EINVAL'],
      ['pin_id too long', { session_id: sid, pin_id: 'a'.repeat(65), unpin: true }, grpc.status.INVALID_ARGUMENT, 'EINVAL'],
      ['unknown access', { session_id: sid, pin, access: 7 as unknown as 'READ', length: 1 }, grpc.status.INVALID_ARGUMENT, 'EINVAL'],
      ['offset past the page', { session_id: sid, pin, access: 'READ', offset: PAGE, length: 1 }, grpc.status.INVALID_ARGUMENT, 'EINVAL'],
      ['offset 2^53', { session_id: sid, pin, access: 'READ', offset: '9007199254740992', length: 1 }, grpc.status.INVALID_ARGUMENT, 'EINVAL'],
      ['read with data', { session_id: sid, pin, access: 'READ', length: 1, data: Buffer.from([1]) }, grpc.status.INVALID_ARGUMENT, 'EINVAL'],
      ['write with length', { session_id: sid, pin: { ...pin, writable: true }, access: 'WRITE', length: 1, data: Buffer.from([1]) }, grpc.status.INVALID_ARGUMENT, 'EINVAL'],
      ['NONE with a length', { session_id: sid, pin, length: 5 }, grpc.status.INVALID_ARGUMENT, 'EINVAL'],
      ['pin_id, no access, no unpin', { session_id: sid, pin_id: 'a'.repeat(32) }, grpc.status.INVALID_ARGUMENT, 'EINVAL'],
      ['page past the pin', { session_id: sid, pin, access: 'READ', page: 1, length: 1 }, grpc.status.INVALID_ARGUMENT, 'EINVAL'],
      ['npages 0', { session_id: sid, pin: { ...pin, npages: 0 }, access: 'READ', length: 1 }, grpc.status.INVALID_ARGUMENT, 'EINVAL'],
      ['npages over PIN_PAGES_MAX', { session_id: sid, pin: { ...pin, npages: PIN_PAGES_MAX + 1 } }, grpc.status.RESOURCE_EXHAUSTED, 'ELIMIT'],
      ['length over DMA_OP_BYTES_MAX', { session_id: sid, pin, access: 'READ', length: DMA_OP_BYTES_MAX + 1 }, grpc.status.RESOURCE_EXHAUSTED, 'ELIMIT'],
      ['pin past EOF', { session_id: sid, pin: { ...pin, first_pgoff: 2 }, access: 'READ', length: 1 }, grpc.status.OUT_OF_RANGE, 'SIGBUS'],
      ['no such file', { session_id: sid, pin: { ...pin, ino: 999_999 }, access: 'READ', length: 1 }, grpc.status.NOT_FOUND, 'ENOENT'],
      ['unknown session (as Dma.Read)', { session_id: 'nope', pin, access: 'READ', length: 1 }, grpc.status.UNAUTHENTICATED, 'SESSION_UNKNOWN'],
    ];
    const before = server.dax.pinCountOf(sid);
    const results = await s.send(cases.map(([, op], i) => ({ ...op, id: i + 1 })));
    results.forEach((r, i) => {
      const [what, , code, reason] = cases[i];
      assert.deepEqual(errorOf(r), { code, reason }, `${what}: ${r.error?.message}`);
    });
    assert.equal(server.dax.pinCountOf(sid), before, 'no refused op left a pin');
    const [ok] = await s.send([{ id: 99, session_id: sid, pin, access: 'READ', length: 1, unpin: true }]);
    assert.equal(ok.error, null, 'the stream still works');
    assert.equal(await s.end(), null);
  });

  it('more than STREAM_OPS_PER_MESSAGE_MAX ops in one message ends the stream with ELIMIT', async function () {
    const s = new RawDmaStream(server.raw);
    s.stream.write({ ops: Array.from({ length: STREAM_OPS_PER_MESSAGE_MAX + 1 }, (_, id) => ({ id, session_id: session.id, pin_id: 'a'.repeat(32), unpin: true })) });
    s.stream.end();
    const { error } = await s.outcome;
    assert.equal(error?.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.equal(error?.reason, 'ELIMIT');
  });

  describe('SDK', function () {
    it('client.dma cycles, DmaPin.streamRead / streamWrite across pages, concurrent ops', async function () {
      const { ino, bytes } = await file(8);
      assert.deepEqual(await client.dma.readCycle(session, ino, 2, 3, { page: 0, offset: 5, length: 2 * PAGE }), bytes.subarray(2 * PAGE + 5, 4 * PAGE + 5));
      const data = pattern(PAGE, 3);
      await client.dma.writeCycle(session, ino, 7, 1, { page: 0, offset: 0, data });
      assert.deepEqual(await client.read(ino, 7 * PAGE, PAGE), data);
      const pin = await client.pin(ino, 0, 8, { writable: true, session });
      const span = pattern(5 * PAGE + 17, 5);
      await pin.streamWrite(1, 100, span);
      assert.deepEqual(await pin.streamRead(1, 100, span.length), span);
      assert.deepEqual(await pin.dmaRead(1, 100, 10), span.subarray(0, 10), 'the unary path sees the same bytes');
      const reads = await Promise.all(Array.from({ length: 32 }, (_, i) => pin.streamRead(i % 8, 0, PAGE)));
      const now = await client.read(ino, 0, 8 * PAGE);
      reads.forEach((r, i) => assert.deepEqual(r, now.subarray((i % 8) * PAGE, (i % 8 + 1) * PAGE)));
      await pin.unpin();
      const err = await failure(pin.streamRead(0, 0, 1));
      assert.equal(err.reason, 'ENOENT');
    });

    it('a PIN_REVOKED answer on the stream path marks the DmaPin revoked (as the unary path does)', async function () {
      const { ino } = await file(1);
      // The stream path answers PIN_REVOKED before any PinRevoked event could: the pin must not wait for the event.
      const refusing = { op: () => Promise.reject(new PinRevokedError('x', 'PIN_REVOKED: revoked')) };
      const pin = await DmaPin.pin(server.raw.dma, session, ino, 0, 1, {}, { deadlineMs: 10_000, retries: 0, stream: refusing });
      try {
        await assert.rejects(pin.streamRead(0, 0, 1), (err: unknown) => err instanceof PinRevokedError && err.pinId === pin.id);
        assert.equal(pin.state, 'revoked');
        await assert.rejects(pin.streamRead(0, 0, 1), PinRevokedError, 'later DMA is refused locally');
      } finally {
        await pin.unpin();
      }
    });

    it('typed errors: PIN_REVOKED is PinRevokedError, others DaxClientError with their reason', async function () {
      const { ino } = await file(2);
      const pin = await client.pin(ino, 0, 2, { writable: true, session, onRecall: () => undefined });
      const fp = server.dax.failpoints.arm('dma:in-flight', { ino, pgoff: 0 });
      const dma = track(pin.streamWrite(0, 0, Buffer.alloc(2 * PAGE, 1)));
      await fp.reached;
      const truncating = track(client.truncate(ino, 0, { layoutBreak: 'RECALL' }));
      await until(() => pin.state === 'revoked', 'PinRevoked delivered');
      fp.release();
      await assert.rejects(dma.promise, (err: unknown) => err instanceof PinRevokedError && err.reason === 'PIN_REVOKED');
      await assert.rejects(pin.streamRead(0, 0, 1), PinRevokedError);
      await pin.unpin();
      await truncating.promise;
      const sigbus = await failure(client.dma.readCycle(session, ino, 0, 1, { page: 0, offset: 0, length: 1 }));
      assert.equal(sigbus.reason, 'SIGBUS');
      assert.ok(sigbus instanceof DaxClientError);
      await assert.rejects(client.dma.op(session, { pinId: 'a'.repeat(32), read: { page: 0, offset: 0, length: DMA_OP_BYTES_MAX + 1 } }), RangeError);
    });
  });
});

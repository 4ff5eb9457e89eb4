/**
 * Dma.Stream pins that nobody hears of, and reply sizes (server/rpc/dma-streams.ts over
 * op-stream.ts; SDK client/dma-stream.ts over op-pipeline.ts):
 *  - a pin taken by an op still running when the stream is cancelled or fails is dropped
 *    once the op finishes (its result, the pin's only trace, has no reader);
 *  - the SDK unpins a pin whose result arrives after the op's deadline;
 *  - a reply message counts pin ids and pfns, not only data, so a message of many large
 *    pins plus a 4 MiB read stays under the send limit; a pin op's pfns are charged to the
 *    stream memory account while it runs;
 *  - the SDK refuses page / npages of 2^32 and more (uint32 on the wire) instead of wrapping;
 *  - PinRevokedError names the pin the op itself took.
 * Synchronised on failpoint dma:in-flight, the stream account's 'closed' signal and the
 * DMA's own promise; never on time.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { DaxClientError, PinRevokedError, type DaxClient, type DaxSession } from '../../client';
import type { DmaOp } from '../../wire/generated/daxd/v1/DmaOp';
import type { DmaStreamRequest } from '../../wire/generated/daxd/v1/DmaStreamRequest';
import type { DmaStreamResponse__Output } from '../../wire/generated/daxd/v1/DmaStreamResponse';
import type { DmaResult__Output } from '../../wire/generated/daxd/v1/DmaResult';
import { DMA_OP_BYTES_MAX, STREAM_OPS_PER_MESSAGE_MAX } from '../../server/rpc/limits';
import { PIN_PAGES_MAX } from '../../server/limits';
import { streamOutcome } from '../support/raw-rpc';
import { track } from '../support/track';
import { settle, until } from '../support/until';
import { PAGE } from '../support/units';
import { patternByte, startDmaServer, type DmaServer } from './fixture';

describe('dma: Dma.Stream pins nobody hears of, reply sizes, SDK argument bounds', function () {
  this.timeout(60_000);
  let server: DmaServer;
  let client: DaxClient;
  let session: DaxSession;
  let fileNo = 0;

  before(async function () {
    server = await startDmaServer('dma-stream-pins', { recallGraceMs: 100 });
    client = server.client();
    session = await client.openSession({ clientName: 'dma-stream-pins' });
    await session.attached;
  });

  after(async function () {
    if (server) assert.deepEqual(await server.stopAndFsck(), []);
  });

  async function file(pages: number): Promise<{ ino: number; bytes: Buffer }> {
    const f = await client.create(`dma-stream-pins-${fileNo++}`, { exclusive: true });
    const bytes = Buffer.alloc(pages * PAGE);
    for (let i = 0; i < bytes.length; i++) bytes[i] = patternByte(fileNo * 13 + i);
    await client.write(f.ino, 0, bytes);
    return { ino: f.ino, bytes };
  }

  /** Wraps dax.dmaRead: the promise of each DMA read started from now on. */
  function spyDmaReads(): { reads: Promise<unknown>[]; restore(): void } {
    const dax = server.dax;
    const original = dax.dmaRead;
    const reads: Promise<unknown>[] = [];
    dax.dmaRead = (...args: Parameters<typeof original>) => {
      const p = original.apply(dax, args);
      reads.push(p.then(() => undefined, () => undefined));
      return p;
    };
    return { reads, restore: () => { dax.dmaRead = original; } };
  }

  /** A pin + READ op with no unpin, paused inside its DMA; the stream it was sent on. */
  async function opPausedInDma(ino: number): Promise<{ stream: grpc.ClientDuplexStream<DmaStreamRequest, DmaStreamResponse__Output>; release(): Promise<void> }> {
    const spy = spyDmaReads();
    const fp = server.dax.failpoints.arm('dma:in-flight', { ino, pgoff: 0 });
    const stream = server.raw.dma.Stream();
    stream.write({ ops: [{ id: 1, session_id: session.id, pin: { ino, first_pgoff: 0, npages: 2 }, access: 'READ', page: 0, offset: 0, length: PAGE }] });
    await fp.reached;
    spy.restore();
    assert.equal(spy.reads.length, 1);
    return {
      stream,
      release: async () => {
        fp.release();
        await spy.reads[0];
        await settle();
      },
    };
  }

  it('cancel while an op that keeps its pin is in its DMA: the pin is dropped once the op finishes', async function () {
    const { ino } = await file(2);
    const before = server.dax.pinCountOf(session.id);
    const op = await opPausedInDma(ino);
    assert.equal(server.dax.pinCountOf(session.id), before + 1, 'the op took its pin');
    const outcome = streamOutcome(op.stream);
    const closed = once(server.daxd.rpc.streamMemory, 'closed');
    op.stream.cancel();
    await closed; // the server saw the cancel: the op's result has no reader
    assert.equal((await outcome).error?.code, grpc.status.CANCELLED);
    await op.release();
    assert.equal(server.dax.pinCountOf(session.id), before, 'the pin of an op answered to nobody is still held');
  });

  it('the stream fails (too many ops in one message) while an op that keeps its pin is in its DMA: the pin is dropped', async function () {
    const { ino } = await file(2);
    const before = server.dax.pinCountOf(session.id);
    const op = await opPausedInDma(ino);
    const outcome = streamOutcome(op.stream);
    op.stream.write({ ops: Array.from({ length: STREAM_OPS_PER_MESSAGE_MAX + 1 }, (_, i) => ({ id: 10 + i, session_id: session.id, pin_id: 'a'.repeat(32), unpin: true })) });
    op.stream.end();
    const { error } = await outcome;
    assert.equal(error?.reason, 'ELIMIT');
    await op.release();
    assert.equal(server.dax.pinCountOf(session.id), before, 'the pin of an op answered to nobody is still held');
  });

  it('60 kept pins of PIN_PAGES_MAX pages and a 4 MiB read in one message: every result arrives, the stream ends OK', async function () {
    const { ino, bytes } = await file(PIN_PAGES_MAX);
    assert.equal(bytes.length, DMA_OP_BYTES_MAX);
    const before = server.dax.pinCountOf(session.id);
    const stream = server.raw.dma.Stream();
    const outcome = streamOutcome(stream);
    const pins = 60;
    const ops: DmaOp[] = Array.from({ length: pins }, (_, i) => ({ id: i + 1, session_id: session.id, pin: { ino, first_pgoff: 0, npages: PIN_PAGES_MAX } }));
    ops.push({ id: pins + 1, session_id: session.id, pin: { ino, first_pgoff: 0, npages: PIN_PAGES_MAX }, access: 'READ', page: 0, offset: 0, length: DMA_OP_BYTES_MAX, unpin: true });
    stream.write({ ops });
    stream.end();
    const { messages, error } = await outcome;
    const results = new Map<number, DmaResult__Output>();
    for (const m of messages) for (const r of m.results) results.set(r.id, r);
    // Whatever happened, give the pins back before asserting (the volume is fscked after).
    const kept = [...results.values()].filter((r) => r.pin_id !== '').map((r) => r.pin_id);
    if (kept.length > 0) {
      const unpin = server.raw.dma.Stream();
      const unpinned = streamOutcome(unpin);
      unpin.write({ ops: kept.map((pin_id, i) => ({ id: i + 1, session_id: session.id, pin_id, unpin: true })) });
      unpin.end();
      assert.equal((await unpinned).error, null);
    }
    assert.equal(error, null, `the stream ended with ${error?.message}`);
    assert.equal(results.size, pins + 1, 'every op answered');
    for (const r of results.values()) assert.equal(r.error, null, `op ${r.id}: ${r.error?.message}`);
    assert.equal(kept.length, pins);
    for (const r of results.values()) if (r.pin_id !== '') assert.equal(r.pfns.length, PIN_PAGES_MAX, `op ${r.id}`);
    assert.deepEqual(results.get(pins + 1)?.data, bytes);
    assert.equal(server.dax.pinCountOf(session.id), before);
  });

  it('an op that takes a pin holds its pfns\' reply bytes in the stream memory account while it runs', async function () {
    const { ino } = await file(PIN_PAGES_MAX);
    const memory = server.daxd.rpc.streamMemory;
    const idle = memory.bytes;
    const fp = server.dax.failpoints.arm('pin:after-fault', { ino, pgoff: 0 });
    const stream = server.raw.dma.Stream();
    const outcome = streamOutcome(stream);
    stream.write({ ops: [{ id: 1, session_id: session.id, pin: { ino, first_pgoff: 0, npages: PIN_PAGES_MAX }, unpin: true }] });
    await fp.reached;
    try {
      assert.equal(memory.bytes - idle, 10 * PIN_PAGES_MAX, 'a pin of PIN_PAGES_MAX pages is charged 10 bytes per pfn');
    } finally {
      fp.release();
      stream.end();
    }
    const { messages, error } = await outcome;
    assert.equal(error, null);
    assert.equal(messages[0]?.results[0]?.error, null);
  });

  describe('SDK', function () {
    it('page and npages of 2^32 and more are refused (uint32 on the wire), not wrapped', async function () {
      const { ino } = await file(2);
      const before = server.dax.pinCountOf(session.id);
      await assert.rejects(client.dma.op(session, { pin: { ino, firstPgoff: 0, npages: 2 }, read: { page: 2 ** 32 + 1, offset: 0, length: 1 }, unpin: true }), RangeError);
      await assert.rejects(client.dma.op(session, { pin: { ino, firstPgoff: 0, npages: 2 ** 32 + 1 }, read: { page: 0, offset: 0, length: 1 }, unpin: true }), RangeError);
      await assert.rejects(client.dma.op(session, { pin: { ino, firstPgoff: 0, npages: 2 }, write: { page: 2 ** 32, offset: 0, data: Buffer.from([1]) }, unpin: true }), RangeError);
      assert.equal(server.dax.pinCountOf(session.id), before);
      // The largest uint32 still goes to the server, which answers for it.
      const err = await client.dma.op(session, { pin: { ino, firstPgoff: 0, npages: 2 }, read: { page: 2 ** 32 - 1, offset: 0, length: 1 }, unpin: true }).then(() => null, (e: unknown) => e);
      assert.ok(err instanceof DaxClientError && err.reason === 'EINVAL', `page 2^32-1: ${String(err)}`);
    });

    it('PinRevokedError names the pin the op itself took', async function () {
      const { ino } = await file(2);
      const taken: string[] = [];
      const dax = server.dax;
      const original = dax.pin;
      dax.pin = async (...args: Parameters<typeof original>) => {
        const p = await original.apply(dax, args);
        taken.push(p.id);
        return p;
      };
      let revoking: { promise: Promise<unknown> } | null = null;
      try {
        const fp = dax.failpoints.arm('dma:in-flight', { ino, pgoff: 0 });
        const op = track(client.dma.op(session, { pin: { ino, firstPgoff: 0, npages: 2, writable: true }, write: { page: 0, offset: 0, data: Buffer.alloc(PAGE, 7) } }));
        await fp.reached;
        const revocations = dax.pinStats().revocations;
        // Nobody answers the recall of a pin the SDK does not track: revoked after the grace.
        revoking = track(client.truncate(ino, 0, { layoutBreak: 'RECALL' }));
        await until(() => dax.pinStats().revocations === revocations + 1, 'revocation after the grace');
        fp.release();
        const err = await op.promise.then(() => null, (e: unknown) => e);
        assert.ok(err instanceof PinRevokedError, `not a PinRevokedError: ${String(err)}`);
        assert.equal(taken.length, 1);
        assert.equal(err.pinId, taken[0]);
      } finally {
        dax.pin = original;
        await revoking?.promise;
      }
    });

    it('a pin whose result arrives after the op\'s deadline is unpinned by the SDK', async function () {
      const { ino } = await file(2);
      const before = server.dax.pinCountOf(session.id);
      const hasty = server.client({ deadlineMs: 300 });
      const fp = server.dax.failpoints.arm('dma:in-flight', { ino, pgoff: 0 });
      const op = track(hasty.dma.op(session, { pin: { ino, firstPgoff: 0, npages: 2 }, read: { page: 0, offset: 0, length: PAGE } }));
      await fp.reached;
      const err = await op.promise.then(() => null, (e: unknown) => e);
      assert.ok(err instanceof DaxClientError && err.code === grpc.status.DEADLINE_EXCEEDED, `${String(err)}`);
      assert.equal(server.dax.pinCountOf(session.id), before + 1);
      fp.release();
      await until(() => server.dax.pinCountOf(session.id) === before, 'the late pin unpinned by the SDK', 5_000);
    });
  });
});

/**
 * layout_break policies over gRPC (S4), against a real daxd on 127.0.0.1:0 in this
 * process (failpoints on, RECALL grace shortened to GRACE_MS), clients through the SDK:
 * - FAIL: FAILED_PRECONDITION / EBUSY at once (the pin still stands when it returns),
 *   nothing changed; only pages in the range count.
 * - WAIT + short deadline: DEADLINE_EXCEEDED, nothing changed, every lock released, a
 *   later truncate works. A cancelled call: the same. A change whose deadline passed while
 *   it queued behind another change must not run (regression).
 * - RECALL: PinRecall delivered; a holder that ignores it is revoked after the grace
 *   (PIN_REVOKED on later DMA); the SDK's default handler unpins in time (no revocation);
 *   a revoked block is freed only after the DMA in flight on it ends.
 * - Leases: the SDK renews a pin across many leases; a pin nobody renews is revoked.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { DaxClientError, PinRevokedError, type DaxClient, type DmaPin } from '../../client';
import type { PinResponse__Output } from '../../wire/generated/daxd/v1/PinResponse';
import { call, failure } from '../support/raw-rpc';
import { guardPinnedFrees, pinnedPfns, startDmaServer, type DmaServer } from './fixture';
import { PAGE } from '../support/units';
import { settle, until } from '../support/until';
import { track } from '../support/track';

const GRACE_MS = 300;

describe('dma: layout_break WAIT / FAIL / RECALL over gRPC', function () {
  this.timeout(60_000);
  let server: DmaServer;
  let client: DaxClient;
  let fileNo = 0;

  before(async function () {
    server = await startDmaServer('layout-break', { recallGraceMs: GRACE_MS });
    client = server.client();
  });

  after(async function () {
    if (server) assert.deepEqual(await server.stopAndFsck(), []);
  });

  afterEach(function () {
    server?.dax.failpoints.releaseAll();
  });

  /** A 4-page file, page i filled with 0x40 + i. */
  async function file4(): Promise<{ ino: number; bytes: Buffer }> {
    const f = await client.create(`lb-${fileNo++}`, { exclusive: true });
    const bytes = Buffer.alloc(4 * PAGE);
    for (let pg = 0; pg < 4; pg++) bytes.fill(0x40 + pg, pg * PAGE, (pg + 1) * PAGE);
    await client.write(f.ino, 0, bytes);
    return { ino: f.ino, bytes };
  }

  async function assertUnchanged(ino: number, bytes: Buffer, blocks: number): Promise<void> {
    const st = await client.stat(ino);
    assert.equal(st.size, bytes.length, 'size changed');
    assert.equal(st.blocks, blocks, 'blocks changed');
    assert.deepEqual(await client.read(ino, 0, bytes.length), bytes, 'content changed');
  }

  const waiting = (ino: number): boolean => (server.dax.spaceStats(ino)?.layoutBreaksWaiting ?? 0) > 0;

  it('FAIL: EBUSY at once for every layout change over a pinned page, nothing changed; pages outside the range do not count', async function () {
    const { ino, bytes } = await file4();
    const blocks = (await client.stat(ino)).blocks;
    const pin = await client.pin(ino, 2, 1, { writable: true });
    const failedBefore = server.dax.counters().layoutBreakWaits.failed;
    const attempts: Array<[string, Promise<unknown>]> = [
      ['truncate 0', client.truncate(ino, 0, { layoutBreak: 'FAIL' })],
      ['truncate 2.5 pages', client.truncate(ino, 2 * PAGE + 100, { layoutBreak: 'FAIL' })],
      ['punch', client.fallocate(ino, 'PUNCH_HOLE', 0, 4 * PAGE, { layoutBreak: 'FAIL' })],
      ['zero', client.fallocate(ino, 'ZERO_RANGE', 2 * PAGE, PAGE, { layoutBreak: 'FAIL' })],
      ['collapse', client.fallocate(ino, 'COLLAPSE_RANGE', 0, PAGE, { layoutBreak: 'FAIL' })],
    ];
    for (const [what, p] of attempts) {
      const err = await failure(p);
      assert.equal(err.code, grpc.status.FAILED_PRECONDITION, `${what}: ${err.message}`);
      assert.equal(err.reason, 'EBUSY', what);
    }
    assert.equal(pin.state, 'active', 'FAIL waited for the pin');
    assert.equal(server.dax.counters().layoutBreakWaits.failed, failedBefore + attempts.length);
    await assertUnchanged(ino, bytes, blocks);
    assert.deepEqual(await pin.dmaRead(0, 0, 3), Buffer.from([0x42, 0x42, 0x42]));
    // Page 3 and page 0 are not pinned: FAIL lets those changes through.
    await client.fallocate(ino, 'PUNCH_HOLE', 3 * PAGE, PAGE, { layoutBreak: 'FAIL' });
    await client.fallocate(ino, 'ZERO_RANGE', 0, PAGE, { layoutBreak: 'FAIL' });
    const now = await client.read(ino, 0, 4 * PAGE);
    assert.deepEqual(now.subarray(2 * PAGE, 3 * PAGE), bytes.subarray(2 * PAGE, 3 * PAGE));
    assert.deepEqual(now.subarray(3 * PAGE), Buffer.alloc(PAGE));
    await pin.unpin();
    await client.truncate(ino, 0, { layoutBreak: 'FAIL' });
    assert.equal((await client.stat(ino)).size, 0);
  });

  it('WAIT with a short deadline: DEADLINE_EXCEEDED, nothing changed, locks released, a later truncate works', async function () {
    const { ino, bytes } = await file4();
    const blocks = (await client.stat(ino)).blocks;
    // Short, yet long enough for the call to reach the server on a busy machine.
    const hurried = server.client({ deadlineMs: 1_000, retries: 0 });
    const pin = await client.pin(ino, 1, 2, { writable: true });
    const timedOutBefore = server.dax.counters().layoutBreakWaits.timedout;
    const err = await failure(hurried.truncate(ino, 0));
    assert.equal(err.code, grpc.status.DEADLINE_EXCEEDED, err.message);
    await until(() => server.dax.counters().layoutBreakWaits.timedout === timedOutBefore + 1, 'the server gave up at the deadline');
    await until(() => !waiting(ino), 'waiter gone');
    await assertUnchanged(ino, bytes, blocks);
    // Every lock was released: a change outside the pin and DMA go through at once.
    await client.fallocate(ino, 'PUNCH_HOLE', 3 * PAGE, PAGE, { layoutBreak: 'FAIL' });
    await pin.dmaWrite(1, 0, Buffer.alloc(PAGE, 0x77));
    await pin.unpin();
    await client.truncate(ino, PAGE);
    assert.equal((await client.stat(ino)).size, PAGE);
    assert.deepEqual(await client.read(ino, 0, PAGE), bytes.subarray(0, PAGE));
  });

  it('a cancelled WAIT truncate: CANCELLED, nothing changed, a later truncate works', async function () {
    const { ino, bytes } = await file4();
    const blocks = (await client.stat(ino)).blocks;
    const pin = await client.pin(ino, 0, 1, { writable: false });
    const cancelledBefore = server.dax.counters().layoutBreakWaits.cancelled;
    let callRef: grpc.ClientUnaryCall | null = null;
    const pending = call((cb) => (callRef = server.raw.files.Truncate({ ino, size: 0, layout_break: 'WAIT' }, cb)));
    await until(() => waiting(ino), 'truncate waiting for the pin');
    callRef!.cancel();
    const err = await failure(pending);
    assert.equal(err.code, grpc.status.CANCELLED);
    await until(() => server.dax.counters().layoutBreakWaits.cancelled === cancelledBefore + 1, 'the server saw the cancellation');
    await assertUnchanged(ino, bytes, blocks);
    await pin.unpin();
    await client.truncate(ino, 0);
    assert.equal((await client.stat(ino)).size, 0);
  });

  it('regression: a truncate whose deadline passed while it queued behind a waiting change does not run', async function () {
    const { ino, bytes } = await file4();
    const hurried = server.client({ deadlineMs: 300, retries: 0 });
    const pin = await client.pin(ino, 3, 1, { writable: false });
    const waitsBefore = { ...server.dax.counters().layoutBreakWaits };
    const punching = track(client.fallocate(ino, 'PUNCH_HOLE', 3 * PAGE, PAGE)); // WAIT: holds the inode lock
    await until(() => waiting(ino), 'punch waiting for the pin');
    const err = await failure(hurried.truncate(ino, PAGE));
    assert.equal(err.code, grpc.status.DEADLINE_EXCEEDED);
    await pin.unpin();
    await punching.promise;
    // Queued on the inode lock after the late truncate: when it is done, so is that one.
    await client.fallocate(ino, 'KEEP_SIZE', 0, PAGE);
    const st = await client.stat(ino);
    assert.equal(st.size, 4 * PAGE, 'the truncate ran after its caller was told DEADLINE_EXCEEDED');
    // It never met a pinned page: no layout-break wait recorded for it (issue 10, defect 7).
    // Only the punch waited (done); the truncate's deadline counts as neither timedout nor cancelled.
    assert.deepEqual(server.dax.counters().layoutBreakWaits, { ...waitsBefore, done: waitsBefore.done + 1 }, 'a late truncate counted a wait');
    assert.deepEqual((await client.read(ino, 0, 3 * PAGE)), bytes.subarray(0, 3 * PAGE));
  });

  it('RECALL, holder ignores the recall: PinRecall delivered, revoked after the grace, PIN_REVOKED on later DMA', async function () {
    const { ino } = await file4();
    const session = await client.openSession({ clientName: 'ignorer' });
    await session.attached;
    let recalls = 0;
    const pin = await client.pin(ino, 0, 4, { writable: true, session, onRecall: () => { recalls++; } });
    const revocationsBefore = server.dax.pinStats().revocations;
    const recalled = once(pin, 'recall') as Promise<[number]>;
    const revoked = once(pin, 'revoked');
    const t0 = Date.now();
    const truncating = track(client.truncate(ino, 0, { layoutBreak: 'RECALL' }));
    const [revokeAtMs] = await recalled;
    assert.ok(revokeAtMs >= t0 + GRACE_MS - 5 && revokeAtMs <= Date.now() + GRACE_MS + 5, `revoke_at_ms ${revokeAtMs - t0} ms after the call`);
    assert.equal(pin.state, 'recalled');
    // Within the grace the pin still works.
    await pin.dmaWrite(0, 0, Buffer.from('in grace'));
    await truncating.promise;
    const tookMs = Date.now() - t0;
    assert.ok(tookMs >= GRACE_MS - 5, `truncate completed after ${tookMs} ms, before the ${GRACE_MS} ms grace`);
    assert.equal(server.dax.pinStats().revocations, revocationsBefore + 1);
    assert.equal(recalls, 1);
    await revoked;
    assert.equal(pin.state, 'revoked');
    // The server refuses it (raw call: the SDK would refuse locally first) ...
    const raw = await failure(call((cb) => server.raw.dma.Write({ session_id: session.id, pin_id: pin.id, page: 0, offset: 0, data: Buffer.from('x') }, cb)));
    assert.equal(raw.code, grpc.status.ABORTED);
    assert.equal(raw.reason, 'PIN_REVOKED');
    // ... and the SDK throws the typed error.
    const sdk = await failure(pin.dmaRead(0, 0, 1));
    assert.ok(sdk instanceof PinRevokedError, sdk.message);
    assert.equal(sdk.code, grpc.status.ABORTED);
    assert.equal(sdk.reason, 'PIN_REVOKED');
    await pin.unpin(); // frees the server's slot
    assert.equal(server.dax.pinCountOf(session.id), 0);
    await session.close();
  });

  it('RECALL, default handler: the SDK unpins within the grace, no revocation', async function () {
    const { ino } = await file4();
    const pin = await client.pin(ino, 1, 2, { writable: true });
    const revocationsBefore = server.dax.pinStats().revocations;
    const recallsBefore = server.dax.pinStats().recalls;
    await client.truncate(ino, PAGE, { layoutBreak: 'RECALL' });
    assert.equal(server.dax.pinStats().recalls, recallsBefore + 1);
    assert.equal(server.dax.pinStats().revocations, revocationsBefore, 'the pin was revoked: the default handler did not unpin in time');
    assert.equal(pin.state, 'unpinned');
    const err = await failure(pin.dmaRead(0, 0, 1));
    assert.equal(err.reason, 'PIN_REVOKED', 'a recalled pin refuses new DMA');
    assert.equal((await client.stat(ino)).size, PAGE);
  });

  it('RECALL with a DMA in flight, holder ignores the recall: revoked after the grace, block freed only after that DMA ends (refused)', async function () {
    const { ino } = await file4();
    const victim = await client.create(`lb-victim-${fileNo++}`, { exclusive: true });
    const guard = guardPinnedFrees(server.dax);
    try {
      const pin: DmaPin = await client.pin(ino, 0, 4, { writable: true, onRecall: () => undefined });
      const fp = server.dax.failpoints.arm('dma:in-flight', { ino, pgoff: 3 });
      const dma = track(pin.dmaWrite(3, 0, Buffer.alloc(PAGE, 0xab)));
      await fp.reached;
      const revocationsBefore = server.dax.pinStats().revocations;
      const truncating = track(client.truncate(ino, 0, { layoutBreak: 'RECALL' }));
      await until(() => server.dax.pinStats().revocations === revocationsBefore + 1, 'revocation after the grace');
      await until(() => pin.state === 'revoked', 'PinRevoked delivered');
      await pin.unpin(); // the holder gives the revoked pin back: the DMA is still in flight
      assert.equal(server.dax.hasPin(pin.id), false);
      await settle();
      assert.equal(truncating.done, false, 'truncate completed while a DMA was in flight on a revoked block');
      assert.ok([...pinnedPfns(server.dax).values()].length > 0, 'the block under DMA lost its reference');
      assert.equal(guard.freed, 0);
      // New blocks for another file meanwhile: none may be the one under DMA.
      await client.write(victim.ino, 0, Buffer.alloc(8 * PAGE, 0x15));
      fp.release();
      const err = await failure(dma.promise);
      assert.equal(err.reason, 'PIN_REVOKED', 'the DMA in flight at revocation is refused');
      await truncating.promise;
      assert.ok(guard.freed >= 4);
      assert.deepEqual(guard.violations, []);
      assert.deepEqual(await client.read(victim.ino, 0, 8 * PAGE), Buffer.alloc(8 * PAGE, 0x15));
    } finally {
      guard.restore();
    }
  });

  it('RECALL with a DMA in flight, default handler: it waits for the DMA until revoke_at, unpins; the block outlives the DMA', async function () {
    const { ino } = await file4();
    const guard = guardPinnedFrees(server.dax);
    try {
      const pin: DmaPin = await client.pin(ino, 0, 4, { writable: true });
      const fp = server.dax.failpoints.arm('dma:in-flight', { ino, pgoff: 1 });
      const dma = track(pin.dmaWrite(1, 0, Buffer.alloc(PAGE, 0xac)));
      await fp.reached;
      const truncating = track(client.truncate(ino, 0, { layoutBreak: 'RECALL' }));
      // Whichever comes first, the SDK's unpin at revoke_at or the server's revocation, the
      // pin leaves the table while its DMA is still paused.
      await until(() => !server.dax.hasPin(pin.id), () => `the pin given back (${pin.state})`);
      await settle();
      assert.equal(truncating.done, false, 'truncate completed while a DMA was in flight on its block');
      assert.equal(guard.freed, 0);
      fp.release();
      await dma.promise.catch(() => undefined); // done, or PIN_REVOKED if the revocation came first
      await truncating.promise;
      assert.ok(guard.freed >= 4);
      assert.deepEqual(guard.violations, []);
    } finally {
      guard.restore();
    }
  });

  it('lease: the SDK renews a pin across many leases; a pin nobody renews is revoked at its lease', async function () {
    const { ino } = await file4();
    const session = await client.openSession({ clientName: 'short-lease', leaseMs: 200 });
    await session.attached;
    const pin = await client.pin(ino, 0, 1, { writable: true, session });
    assert.equal(pin.leaseMs, 200);
    const revocationsBefore = server.dax.pinStats().revocations;
    for (let i = 0; i < 6; i++) await once(pin, 'renewed'); // 6 renewals = 3 leases
    await pin.dmaWrite(0, 0, Buffer.from('alive'));
    assert.equal(server.dax.pinStats().revocations, revocationsBefore);
    // A pin taken with the raw stub: nobody renews it.
    const raw = await call<PinResponse__Output>((cb) => server.raw.dma.Pin({ session_id: session.id, ino, first_pgoff: 1, npages: 1, writable: false }, cb));
    const [event] = (await once(session, 'pinRevoked')) as [{ pinId: string }];
    assert.equal(event.pinId, raw.pin_id);
    const err = await failure(call((cb) => server.raw.dma.Read({ session_id: session.id, pin_id: raw.pin_id, page: 0, offset: 0, length: 1 }, cb)));
    assert.equal(err.reason, 'PIN_REVOKED');
    assert.equal(pin.state, 'active', 'the renewed pin survived');
    await pin.unpin();
    await call((cb) => server.raw.dma.Unpin({ session_id: session.id, pin_id: raw.pin_id }, cb));
    await session.close();
  });

  it('session close while holding pins: the SDK marks them revoked and a waiting truncate completes', async function () {
    const { ino } = await file4();
    const session = await client.openSession({ clientName: 'closer' });
    await session.attached;
    const pin = await client.pin(ino, 0, 4, { writable: true, session });
    const truncating = track(client.truncate(ino, 0));
    await until(() => waiting(ino), 'truncate waiting');
    const revoked = once(pin, 'revoked') as Promise<[PinRevokedError]>;
    await session.close();
    await truncating.promise;
    const [err] = await revoked;
    assert.ok(err instanceof DaxClientError);
    assert.equal(pin.state, 'revoked');
    assert.equal((await client.stat(ino)).size, 0);
  });
});

/**
 * Each quota at its edge, against `daxd serve --auth FILE` (principals of
 * test/support/auth-server.ts, one per quota, each confined to its own prefix):
 *   - sessions: QUOTA.sessions open, one more is RESOURCE_EXHAUSTED / EDQUOT; closing one
 *     makes room; other principals' sessions do not count;
 *   - pins: QUOTA.pins pins, one more is EDQUOT; unpinning makes room;
 *   - pinned blocks: pins adding up to QUOTA.pinnedBlocks pages, one page more is EDQUOT;
 *   - allocated bytes: writes up to QUOTA.allocatedBlocks blocks, one block more is EDQUOT
 *     and writes nothing (not even the part that needed no new block); overwriting
 *     allocated blocks needs no quota; an allocating fallocate past it is EDQUOT too.
 * Refusals are DaxQuotaError (reason EDQUOT), and change nothing.
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { DaxQuotaError, type DaxClient, type DaxSession, type DmaPin } from '../../client';
import { BLOCK_BYTES, QUOTA, startAuthServer, type AuthServer } from '../support/auth-server';
import { failure } from '../support/raw-rpc';

async function overQuota(promise: Promise<unknown>, quota: string): Promise<void> {
  const err = await failure(promise);
  assert.ok(err instanceof DaxQuotaError, `expected DaxQuotaError, got ${err.name}: ${err.message}`);
  assert.deepEqual([err.code, err.reason], [grpc.status.RESOURCE_EXHAUSTED, 'EDQUOT']);
  assert.ok(err.message.includes(quota), `${err.message} should name the ${quota} quota`);
}

describe('auth: quotas at their edge', function () {
  this.timeout(60_000);
  let auth: AuthServer;

  before(async function () {
    auth = await startAuthServer();
  });

  after(async function () {
    await auth?.stop();
  });

  it(`sessions: ${QUOTA.sessions} open, one more EDQUOT; closing one makes room; others' sessions do not count`, async function () {
    const q = auth.as('q-sessions');
    const others = [await auth.as('alice').openSession(), await auth.as('bob').openSession()];
    const open: DaxSession[] = [];
    for (let i = 0; i < QUOTA.sessions; i++) open.push(await q.openSession());
    await overQuota(q.openSession(), 'sessions');
    await open.pop()?.close();
    open.push(await q.openSession());
    await overQuota(q.openSession(), 'sessions');
    for (const s of [...open, ...others]) await s.close();
  });

  it(`pins: ${QUOTA.pins} pins, one more EDQUOT; unpinning makes room`, async function () {
    const q = auth.as('q-pins');
    const file = await q.create('q-pins/f');
    await q.write(file.ino, 0, Buffer.alloc(8 * BLOCK_BYTES, 1));
    const session = await q.openSession();
    const pins: DmaPin[] = [];
    for (let i = 0; i < QUOTA.pins; i++) pins.push(await q.pin(file.ino, i, 1, { session }));
    await overQuota(q.pin(file.ino, 7, 1, { session }), 'pins');
    // A second session of the same principal shares the quota.
    const second = await q.openSession();
    await overQuota(q.pin(file.ino, 7, 1, { session: second }), 'pins');
    await pins.pop()?.unpin();
    pins.push(await q.pin(file.ino, 7, 1, { session: second }));
    for (const p of pins) await p.unpin();
    await second.close();
    await session.close();
  });

  it(`pinned blocks: pins of ${QUOTA.pinnedBlocks} pages in all, one page more EDQUOT`, async function () {
    const q = auth.as('q-blocks');
    const file = await q.create('q-blocks/f');
    await q.write(file.ino, 0, Buffer.alloc(4 * QUOTA.pinnedBlocks * BLOCK_BYTES, 2));
    const session = await q.openSession();
    await overQuota(q.pin(file.ino, 0, QUOTA.pinnedBlocks + 1, { session }), 'pinned blocks');
    const first = await q.pin(file.ino, 0, QUOTA.pinnedBlocks - 3, { session });
    const second = await q.pin(file.ino, QUOTA.pinnedBlocks, 3, { session });
    await overQuota(q.pin(file.ino, 2 * QUOTA.pinnedBlocks, 1, { session }), 'pinned blocks');
    await second.unpin();
    const again = await q.pin(file.ino, 2 * QUOTA.pinnedBlocks, 3, { session });
    await again.unpin();
    await first.unpin();
    await session.close();
  });

  it(`allocated bytes: ${QUOTA.allocatedBlocks} blocks written, one block more EDQUOT with nothing written`, async function () {
    const q: DaxClient = auth.as('q-bytes');
    const file = await q.create('q-bytes/f');
    const full = Buffer.alloc(QUOTA.allocatedBlocks * BLOCK_BYTES, 3);
    await q.write(file.ino, 0, full, { sync: true });
    assert.equal((await q.stat(file.ino)).blocks, QUOTA.allocatedBlocks);
    // Overwriting allocated blocks allocates nothing: allowed at the quota.
    await q.write(file.ino, 0, Buffer.alloc(BLOCK_BYTES, 4));
    // One block more: the last allocated block and the next one, in one write. Refused whole.
    const spanning = Buffer.alloc(2 * BLOCK_BYTES, 5);
    await overQuota(q.write(file.ino, full.length - BLOCK_BYTES, spanning), 'allocated bytes');
    await overQuota(q.write(file.ino, full.length, Buffer.alloc(1, 6)), 'allocated bytes');
    // A second file under the same prefix shares the quota.
    const other = await q.create('q-bytes/g');
    await overQuota(q.write(other.ino, 0, Buffer.alloc(1, 7)), 'allocated bytes');
    await overQuota(q.fallocate(file.ino, 'ALLOCATE', full.length, BLOCK_BYTES), 'allocated bytes');
    const after = await q.stat(file.ino);
    assert.deepEqual([after.size, after.blocks], [full.length, QUOTA.allocatedBlocks]);
    const expected = Buffer.from(full);
    expected.fill(4, 0, BLOCK_BYTES);
    assert.deepEqual(await q.read(file.ino, 0, full.length + BLOCK_BYTES), expected);
    assert.deepEqual([(await q.stat(other.ino)).size, (await q.stat(other.ino)).blocks], [0, 0]);
    // Freeing makes room: truncate away the last block, and one block fits again.
    await q.truncate(file.ino, full.length - BLOCK_BYTES);
    await q.write(other.ino, 0, Buffer.alloc(BLOCK_BYTES, 8));
    assert.equal((await q.stat(other.ino)).blocks, 1);
  });
});

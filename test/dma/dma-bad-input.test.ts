/**
 * Bad input to the Dma service (raw stubs: what the SDK would refuse or never send), each
 * row with its status and reason; never UNKNOWN or INTERNAL. Limits: PIN_PAGES_MAX pages
 * per pin and PINS_PER_SESSION_MAX pins per session are ELIMIT with "(actual vs. max)".
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import type { DaxClientError } from '../../client';
import type { PinResponse__Output } from '../../wire/generated/daxd/v1/PinResponse';
import type { SessionInfo__Output } from '../../wire/generated/daxd/v1/SessionInfo';
import { PIN_PAGES_MAX, PINS_PER_SESSION_MAX } from '../../server/limits';
import { call, failure } from '../support/raw-rpc';
import { PAGE } from '../support/units';
import { startDmaServer, type DmaServer } from './fixture';

type Status = keyof typeof grpc.status;

describe('dma: bad input', function () {
  this.timeout(30_000);
  let server: DmaServer;
  let sid: string;
  let otherSid: string;
  let ino: number;
  let pinId: string;
  let roPinId: string;

  before(async function () {
    server = await startDmaServer('dma-bad-input');
    const client = server.client();
    const f = await client.create('bad-input', { exclusive: true });
    ino = f.ino;
    await client.write(ino, 0, Buffer.alloc(4 * PAGE, 0x11));
    sid = (await call<SessionInfo__Output>((cb) => server.raw.session.Open({ client_name: 'bad' }, cb))).session_id;
    otherSid = (await call<SessionInfo__Output>((cb) => server.raw.session.Open({ client_name: 'other' }, cb))).session_id;
    pinId = (await pin(sid, 0, 2, true)).pin_id;
    roPinId = (await pin(sid, 0, 1, false)).pin_id;
  });

  after(async function () {
    if (server) assert.deepEqual(await server.stopAndFsck(), []);
  });

  function pin(session: string, first: number | string, npages: number, writable: boolean, file: number | string = ino): Promise<PinResponse__Output> {
    return call<PinResponse__Output>((cb) => server.raw.dma.Pin({ session_id: session, ino: file, first_pgoff: first, npages, writable }, cb));
  }
  const read = (session: string, id: string, page: number, offset: number | string, length: number | string) =>
    call((cb) => server.raw.dma.Read({ session_id: session, pin_id: id, page, offset, length }, cb));
  const write = (session: string, id: string, page: number, offset: number | string, data: Buffer) =>
    call((cb) => server.raw.dma.Write({ session_id: session, pin_id: id, page, offset, data }, cb));
  const unpin = (session: string, id: string) => call((cb) => server.raw.dma.Unpin({ session_id: session, pin_id: id }, cb));
  const renew = (session: string, id: string) => call((cb) => server.raw.dma.Renew({ session_id: session, pin_id: id }, cb));

  async function expect(p: Promise<unknown>, status: Status, reason: string, what: string): Promise<DaxClientError> {
    const err = await failure(p);
    assert.equal(err.codeName, status, `${what}: ${err.message}`);
    assert.equal(err.reason, reason, `${what}: ${err.message}`);
    return err;
  }

  const UNKNOWN_PIN = 'f'.repeat(32);

  it('unknown pin id: NOT_FOUND / ENOENT for Read, Write, Unpin, Renew', async function () {
    await expect(read(sid, UNKNOWN_PIN, 0, 0, 1), 'NOT_FOUND', 'ENOENT', 'Read');
    await expect(write(sid, UNKNOWN_PIN, 0, 0, Buffer.from([1])), 'NOT_FOUND', 'ENOENT', 'Write');
    await expect(unpin(sid, UNKNOWN_PIN), 'NOT_FOUND', 'ENOENT', 'Unpin');
    await expect(renew(sid, UNKNOWN_PIN), 'NOT_FOUND', 'ENOENT', 'Renew');
  });

  it("another session's pin: NOT_FOUND / ENOENT, as a pin never issued (nothing learnt), and the pin is untouched", async function () {
    await expect(read(otherSid, pinId, 0, 0, 1), 'NOT_FOUND', 'ENOENT', 'Read');
    await expect(write(otherSid, pinId, 0, 0, Buffer.from([9])), 'NOT_FOUND', 'ENOENT', 'Write');
    await expect(unpin(otherSid, pinId), 'NOT_FOUND', 'ENOENT', 'Unpin');
    await expect(renew(otherSid, pinId), 'NOT_FOUND', 'ENOENT', 'Renew');
    assert.ok(server.dax.hasPin(pinId));
    assert.deepEqual(await read(sid, pinId, 0, 0, 1), { data: Buffer.from([0x11]) });
  });

  it('malformed pin ids: INVALID_ARGUMENT / EINVAL', async function () {
    for (const bad of ['', 'xyz', 'F'.repeat(32), 'f'.repeat(31), 'f'.repeat(33), `${'f'.repeat(31)}\u00e9`]) {
      await expect(read(sid, bad, 0, 0, 1), 'INVALID_ARGUMENT', 'EINVAL', `Read ${JSON.stringify(bad)}`);
      await expect(unpin(sid, bad), 'INVALID_ARGUMENT', 'EINVAL', `Unpin ${JSON.stringify(bad)}`);
    }
  });

  it('unknown or missing session: SESSION_UNKNOWN / EINVAL', async function () {
    await expect(read('nope', pinId, 0, 0, 1), 'UNAUTHENTICATED', 'SESSION_UNKNOWN', 'Read');
    await expect(pin('nope', 0, 1, false), 'UNAUTHENTICATED', 'SESSION_UNKNOWN', 'Pin');
    await expect(pin('', 0, 1, false), 'INVALID_ARGUMENT', 'EINVAL', 'Pin without session');
  });

  it('page out of the pin, offset/length not inside one page: EINVAL', async function () {
    await expect(read(sid, pinId, 2, 0, 1), 'INVALID_ARGUMENT', 'EINVAL', 'page = npages');
    await expect(read(sid, pinId, 0xffffffff, 0, 1), 'INVALID_ARGUMENT', 'EINVAL', 'page 2^32-1');
    await expect(write(sid, pinId, 2, 0, Buffer.from([1])), 'INVALID_ARGUMENT', 'EINVAL', 'write page = npages');
    await expect(read(sid, pinId, 0, 4000, 200), 'INVALID_ARGUMENT', 'EINVAL', 'read crossing the page');
    await expect(read(sid, pinId, 0, 0, PAGE + 1), 'INVALID_ARGUMENT', 'EINVAL', 'read longer than a page');
    await expect(read(sid, pinId, 0, PAGE, 0), 'INVALID_ARGUMENT', 'EINVAL', 'offset = page size');
    await expect(read(sid, pinId, 0, '18446744073709551615', 1), 'INVALID_ARGUMENT', 'EINVAL', 'offset 2^64-1');
    await expect(read(sid, pinId, 0, 0, '9007199254740993'), 'INVALID_ARGUMENT', 'EINVAL', 'length 2^53+1');
    await expect(write(sid, pinId, 1, 4095, Buffer.from([1, 2])), 'INVALID_ARGUMENT', 'EINVAL', 'write crossing the page');
    await expect(write(sid, pinId, 0, 0, Buffer.alloc(PAGE + 1)), 'INVALID_ARGUMENT', 'EINVAL', 'write longer than a page');
    // The edges that are fine.
    assert.equal(((await read(sid, pinId, 1, 4095, 1)) as { data: Buffer }).data.length, 1);
    assert.equal(((await read(sid, pinId, 1, 0, 0)) as { data: Buffer }).data.length, 0);
    await write(sid, pinId, 1, 0, Buffer.alloc(PAGE, 0x11));
  });

  it('Pin: npages 0 EINVAL, npages > PIN_PAGES_MAX ELIMIT, past EOF SIGBUS, unknown inode ENOENT, huge pgoff', async function () {
    await expect(pin(sid, 0, 0, false), 'INVALID_ARGUMENT', 'EINVAL', 'npages 0');
    const limit = await expect(pin(sid, 0, PIN_PAGES_MAX + 1, false), 'RESOURCE_EXHAUSTED', 'ELIMIT', 'npages > max');
    assert.match(limit.message, new RegExp(`\\(${PIN_PAGES_MAX + 1} vs\\. max ${PIN_PAGES_MAX}\\)`));
    await expect(pin(sid, 0, 5, false), 'OUT_OF_RANGE', 'SIGBUS', 'last page past EOF');
    await expect(pin(sid, 4, 1, true), 'OUT_OF_RANGE', 'SIGBUS', 'first page at EOF');
    await expect(pin(sid, '9007199254740991', 1, false), 'OUT_OF_RANGE', 'SIGBUS', 'pgoff 2^53-1');
    await expect(pin(sid, '18446744073709551615', 1, false), 'INVALID_ARGUMENT', 'EINVAL', 'pgoff 2^64-1');
    await expect(pin(sid, 0, 1, false, 999_999), 'NOT_FOUND', 'ENOENT', 'unknown inode');
    assert.equal(server.dax.pinCountOf(sid), 2, 'a refused Pin left a pin behind');
  });

  it(`too many pins: the ${PINS_PER_SESSION_MAX + 1}th is ELIMIT; unpinning one makes room`, async function () {
    const s = (await call<SessionInfo__Output>((cb) => server.raw.session.Open({ client_name: 'many' }, cb))).session_id;
    const ids: string[] = [];
    for (let i = 0; i < PINS_PER_SESSION_MAX; i++) ids.push((await pin(s, i % 4, 1, false)).pin_id);
    const err = await expect(pin(s, 0, 1, false), 'RESOURCE_EXHAUSTED', 'ELIMIT', 'one pin too many');
    assert.match(err.message, new RegExp(`\\(${PINS_PER_SESSION_MAX + 1} vs\\. max ${PINS_PER_SESSION_MAX}\\)`));
    await unpin(s, ids.pop()!);
    ids.push((await pin(s, 0, 1, false)).pin_id);
    await call((cb) => server.raw.session.Close({ session_id: s }, cb));
    for (const id of ids) assert.equal(server.dax.hasPin(id), false, 'Close released every pin');
  });

  it('unpin twice: the second is ENOENT; a read-only pin refuses DMA writes (EFAULT)', async function () {
    const p = await pin(sid, 3, 1, false);
    await unpin(sid, p.pin_id);
    await expect(unpin(sid, p.pin_id), 'NOT_FOUND', 'ENOENT', 'second Unpin');
    await expect(read(sid, p.pin_id, 0, 0, 1), 'NOT_FOUND', 'ENOENT', 'Read after Unpin');
    await expect(write(sid, roPinId, 0, 0, Buffer.from([1])), 'PERMISSION_DENIED', 'EFAULT', 'write through a read-only pin');
  });

  it('a closed session: its pins are gone (SESSION_EXPIRED for later calls)', async function () {
    const s = (await call<SessionInfo__Output>((cb) => server.raw.session.Open({ client_name: 'closing' }, cb))).session_id;
    const p = await pin(s, 0, 1, true);
    await call((cb) => server.raw.session.Close({ session_id: s }, cb));
    await expect(read(s, p.pin_id, 0, 0, 1), 'UNAUTHENTICATED', 'SESSION_EXPIRED', 'Read after Close');
    await expect(pin(s, 0, 1, false), 'UNAUTHENTICATED', 'SESSION_EXPIRED', 'Pin after Close');
    assert.equal(server.dax.hasPin(p.pin_id), false);
  });
});

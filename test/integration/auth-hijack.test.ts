/**
 * Session hijack across principals, against `daxd serve --auth FILE`: bob presents alice's
 * session id (and her pin id) on every call that takes one: Session.KeepAlive, Close,
 * Events; Mapping.Fault, FaultBatch, Load, Store, AccessBatch, Msync, Unmap; Dma.Pin,
 * Read, Write, Renew, Unpin. Each answer must be exactly what an id
 * never issued gets (UNAUTHENTICATED / SESSION_UNKNOWN, the same message but for the id):
 * the refusal tells bob nothing about alice's session. And nothing of alice's changed: her
 * pin still DMA-reads her data and renews, her session still renews, her mapping still
 * reads, and her Events stream is still hers (an Invalidate still reaches it; a taken-over
 * stream would have ended with EBUSY). Once alice closes her session, bob still gets
 * SESSION_UNKNOWN where alice gets SESSION_EXPIRED.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import type { DaxClient, DaxClientError, DaxSession, DmaPin, FileInfo, InvalidateEvent, MappedFile } from '../../client';
import { startAuthServer, type AuthServer } from '../support/auth-server';
import { call, failure, streamOutcome } from '../support/raw-rpc';

const PAGE = 4096;

/** What the refusal says, with the ids it names replaced: equal answers are equal here. */
function answer(err: DaxClientError | null, ids: string[]): { code: grpc.status | null; reason: string | null; details: string } {
  if (err === null) return { code: null, reason: null, details: 'no error' };
  let details = err.details;
  for (const id of ids) details = details.split(id).join('<id>');
  return { code: err.code, reason: err.reason, details };
}

describe('auth: session hijack across principals', function () {
  this.timeout(60_000);
  let auth: AuthServer;
  let alice: DaxClient;
  let bob: DaxClient;
  let aliceFile: FileInfo;
  let bobFile: FileInfo;
  let session: DaxSession;
  let mapping: MappedFile;
  let pin: DmaPin;
  const content = Buffer.alloc(2 * PAGE);

  before(async function () {
    auth = await startAuthServer();
    alice = auth.as('alice');
    bob = auth.as('bob');
    content.fill(0x41, 0, PAGE).fill(0x42, PAGE);
    aliceFile = await alice.create('alice/data');
    await alice.write(aliceFile.ino, 0, content, { sync: true });
    bobFile = await bob.create('bob/data');
    await bob.write(bobFile.ino, 0, Buffer.alloc(PAGE, 0x62), { sync: true });
    session = await alice.openSession({ clientName: 'victim' });
    await session.attached;
    mapping = session.mmap(aliceFile.ino, { shared: true });
    assert.deepEqual(await mapping.read(0, PAGE), content.subarray(0, PAGE)); // page 0 has a PTE
    pin = await alice.pin(aliceFile.ino, 1, 1, { session }); // page 1 is pinned
  });

  after(async function () {
    await auth?.stop();
  });

  it('bob presenting alice\'s session (and pin) id gets exactly what an unknown id gets; alice is untouched', async function () {
    const ended: unknown[] = [];
    session.on('ended', (err) => ended.push(err));
    session.on('expired', (err) => ended.push(err));
    const unknown = randomBytes(16).toString('hex');
    const unknownPin = randomBytes(16).toString('hex');
    const calls: Record<string, (sessionId: string, pinId: string) => Promise<DaxClientError | null>> = {
      'Session.KeepAlive': (s) => failure(call((cb) => bob.raw.session.KeepAlive({ session_id: s }, cb))),
      'Session.Close': (s) => failure(call((cb) => bob.raw.session.Close({ session_id: s }, cb))),
      'Session.Events': async (s) => (await streamOutcome(bob.raw.session.Events({ session_id: s }))).error,
      'Mapping.Fault': (s) => failure(call((cb) => bob.raw.mapping.Fault({ session_id: s, ino: bobFile.ino, pgoff: 0, kind: 'READ' }, cb))),
      'Dma.Pin': (s) => failure(call((cb) => bob.raw.dma.Pin({ session_id: s, ino: bobFile.ino, first_pgoff: 0, npages: 1, writable: false }, cb))),
      'Dma.Read': (s, p) => failure(call((cb) => bob.raw.dma.Read({ session_id: s, pin_id: p, page: 0, offset: 0, length: 8 }, cb))),
      'Dma.Renew': (s, p) => failure(call((cb) => bob.raw.dma.Renew({ session_id: s, pin_id: p }, cb))),
      'Dma.Unpin': (s, p) => failure(call((cb) => bob.raw.dma.Unpin({ session_id: s, pin_id: p }, cb))),
      'Dma.Write': (s, p) => failure(call((cb) => bob.raw.dma.Write({ session_id: s, pin_id: p, page: 0, offset: 0, data: Buffer.from('x') }, cb))),
      'Mapping.Load': (s) => failure(call((cb) => bob.raw.mapping.Load({ session_id: s, token: 'AAAAAAAAAAAAAAAAAAAAAA', offset: 0, length: 8 }, cb))),
      'Mapping.Store': (s) => failure(call((cb) => bob.raw.mapping.Store({ session_id: s, token: 'AAAAAAAAAAAAAAAAAAAAAA', offset: 0, data: Buffer.from('x') }, cb))),
      'Mapping.AccessBatch': (s) => failure(call((cb) => bob.raw.mapping.AccessBatch({ session_id: s, ops: [{ token: 'AAAAAAAAAAAAAAAAAAAAAA', offset: 0, length: 8 }] }, cb))),
      'Mapping.FaultBatch': (s) => failure(call((cb) => bob.raw.mapping.FaultBatch({ session_id: s, ino: bobFile.ino, ops: [{ pgoff: 0, kind: 'READ' }] }, cb))),
      'Mapping.Msync': (s) => failure(call((cb) => bob.raw.mapping.Msync({ session_id: s, ino: bobFile.ino, first_pgoff: 0, last_pgoff: 0 }, cb))),
      'Mapping.Unmap': (s) => failure(call((cb) => bob.raw.mapping.Unmap({ session_id: s, ino: bobFile.ino, first_pgoff: 0, last_pgoff: 0 }, cb))),
    };
    for (const [method, attempt] of Object.entries(calls)) {
      const hijack = answer(await attempt(session.id, pin.id), [session.id, pin.id]);
      const stranger = answer(await attempt(unknown, unknownPin), [unknown, unknownPin]);
      assert.deepEqual(hijack, stranger, method);
      assert.deepEqual([hijack.code, hijack.reason], [grpc.status.UNAUTHENTICATED, 'SESSION_UNKNOWN'], method);
    }

    // Bob's own session does not open alice's pin either: refused, no data, and the same
    // answer as a pin id never issued (it does not learn that the pin is live).
    const own = await bob.openSession();
    for (const [method, attempt] of Object.entries({
      'Dma.Read': (p: string) => call((cb) => bob.raw.dma.Read({ session_id: own.id, pin_id: p, page: 0, offset: 0, length: 8 }, cb)),
      'Dma.Renew': (p: string) => call((cb) => bob.raw.dma.Renew({ session_id: own.id, pin_id: p }, cb)),
      'Dma.Unpin': (p: string) => call((cb) => bob.raw.dma.Unpin({ session_id: own.id, pin_id: p }, cb)),
    })) {
      const foreign = answer(await failure(attempt(pin.id)), [pin.id]);
      const never = answer(await failure(attempt(unknownPin)), [unknownPin]);
      assert.deepEqual(foreign, never, method);
      assert.deepEqual([foreign.code, foreign.reason], [grpc.status.NOT_FOUND, 'ENOENT'], method);
    }
    await own.close();

    // Alice's session, pin, mapping and Events stream are as they were.
    assert.equal(pin.state, 'active');
    assert.deepEqual(await pin.dmaRead(0, 0, PAGE), content.subarray(PAGE));
    await pin.renew();
    await session.keepAlive();
    assert.deepEqual(await mapping.read(0, PAGE), content.subarray(0, PAGE));
    const invalidated = once(session, 'invalidate') as Promise<[InvalidateEvent]>;
    const endedNow = once(session, 'ended').then(() => 'ended');
    await alice.fallocate(aliceFile.ino, 'PUNCH_HOLE', 0, PAGE); // drops alice's PTE of page 0: an Invalidate to her stream
    const first = await Promise.race([invalidated.then(([e]) => e), endedNow]);
    assert.notEqual(first, 'ended', 'alice\'s Events stream was taken over');
    assert.equal((first as InvalidateEvent).ino, aliceFile.ino);
    assert.deepEqual(ended, []);
    assert.deepEqual(await alice.read(aliceFile.ino, PAGE, PAGE), content.subarray(PAGE));
  });

  it('after alice closes her session, bob still gets SESSION_UNKNOWN (alice: SESSION_EXPIRED)', async function () {
    const id = session.id;
    await pin.unpin();
    await session.close();
    const bobs = await failure(call((cb) => bob.raw.session.KeepAlive({ session_id: id }, cb)));
    const alices = await failure(call((cb) => alice.raw.session.KeepAlive({ session_id: id }, cb)));
    assert.deepEqual([bobs.code, bobs.reason], [grpc.status.UNAUTHENTICATED, 'SESSION_UNKNOWN']);
    assert.deepEqual([alices.code, alices.reason], [grpc.status.UNAUTHENTICATED, 'SESSION_EXPIRED']);
  });
});

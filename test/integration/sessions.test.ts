/**
 * The Session service against a real server: leases kept alive by the SDK, Close and
 * expiry ending the Events stream (OK vs. SESSION_EXPIRED), an Events stream taken over
 * by a newer one, and the session limit. Waits are on events (stream ends, renewals),
 * never on timers.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { DaxClient, DaxClientError, DaxSession } from '../../client';
import type { RawClients } from '../../client/raw-clients';
import type { Event__Output } from '../../wire/generated/daxd/v1/Event';
import type { SessionInfo__Output } from '../../wire/generated/daxd/v1/SessionInfo';
import { SESSION_EVENTS_QUEUED_MAX } from '../../server/session/limits';
import { call, failure, rawClients, streamOutcome } from '../support/raw-rpc';
import { clientFor, startServer, tempDir, type StartedServer } from '../support/start-server';

describe('sessions: leases, keep-alive, close, expiry, events', function () {
  let tmp: ReturnType<typeof tempDir>;
  let server: StartedServer;
  let client: DaxClient;
  let raw: RawClients;

  before(async function () {
    tmp = tempDir();
    server = await startServer({ volumePath: path.join(tmp.dir, 'sessions.vol') });
    client = clientFor(server);
    raw = rawClients(server.address);
  });

  after(async function () {
    client?.close();
    raw?.close();
    if (server) assert.deepEqual(await server.stop(), { code: 0, signal: null });
    tmp?.remove();
  });

  it('Open grants the default lease for lease_ms 0 and the asked one otherwise', async function () {
    const byDefault = await call<SessionInfo__Output>((cb) => raw.session.Open({ client_name: 'd' }, cb));
    assert.equal(byDefault.lease_ms, '30000');
    assert.match(byDefault.session_id, /^[0-9a-f]{32}$/);
    assert.ok(Number(byDefault.expires_at_ms) > Date.now());
    const asked = await call<SessionInfo__Output>((cb) => raw.session.Open({ lease_ms: 5000 }, cb));
    assert.equal(asked.lease_ms, '5000');
    assert.notEqual(asked.session_id, byDefault.session_id);
    await call((cb) => raw.session.Close({ session_id: byDefault.session_id }, cb));
    await call((cb) => raw.session.Close({ session_id: asked.session_id }, cb));
  });

  it('the SDK keeps a 150 ms lease alive across many lease periods', async function () {
    const session = await client.openSession({ clientName: 'kept', leaseMs: 150 });
    await session.attached;
    const openedAt = Date.now();
    let renewals = 0;
    while (renewals < 8 || Date.now() - openedAt < 3 * 150) {
      await once(session, 'renewed');
      renewals++;
    }
    // Still alive after more than three leases: a raw KeepAlive succeeds.
    const info = await call<SessionInfo__Output>((cb) => raw.session.KeepAlive({ session_id: session.id }, cb));
    assert.equal(info.session_id, session.id);
    const closed = once(session, 'closed');
    await session.close();
    await closed;
  });

  it('Close ends the Events stream with OK; the id is then SESSION_EXPIRED', async function () {
    const session = await client.openSession({ clientName: 'closer' });
    await session.attached;
    const closed = once(session, 'closed');
    await session.close();
    await closed;
    const err = await failure(session.keepAlive());
    assert.equal(err.code, grpc.status.UNAUTHENTICATED);
    assert.equal(err.reason, 'SESSION_EXPIRED');
  });

  it('a session whose lease runs out expires: Events ends with SESSION_EXPIRED, as does KeepAlive', async function () {
    const session = await client.openSession({ clientName: 'lapsing', leaseMs: 100, keepAlive: false });
    const [err] = (await once(session, 'expired')) as [DaxClientError];
    assert.equal(err.code, grpc.status.UNAUTHENTICATED);
    assert.equal(err.reason, 'SESSION_EXPIRED');
    const again = await failure(session.keepAlive());
    assert.equal(again.reason, 'SESSION_EXPIRED');
  });

  it('a second Events stream takes over: the first ends with FAILED_PRECONDITION / EBUSY', async function () {
    const info = await call<SessionInfo__Output>((cb) => raw.session.Open({ client_name: 'twice' }, cb));
    const first = raw.session.Events({ session_id: info.session_id });
    await once(first, 'metadata');
    const firstEnd = streamOutcome(first);
    const second = raw.session.Events({ session_id: info.session_id });
    const secondEnd = streamOutcome(second);
    const { error } = await firstEnd;
    assert.equal(error?.code, grpc.status.FAILED_PRECONDITION);
    assert.equal(error?.reason, 'EBUSY');
    await call((cb) => raw.session.Close({ session_id: info.session_id }, cb));
    assert.equal((await secondEnd).error, null, 'the newer stream ends OK at Close');
  });

  it('a quiet client (no Events stream) keeps its session past SESSION_EVENTS_QUEUED_MAX events; its next stream starts with EventsLost{count}', async function () {
    const quiet = await call<SessionInfo__Output>((cb) => raw.session.Open({ client_name: 'quiet' }, cb));
    const pages = SESSION_EVENTS_QUEUED_MAX + 100;
    const file = await client.create('quiet-holes');
    await client.truncate(file.ino, pages * 4096);
    // The quiet session maps every hole page read-only (the zero page).
    for (let first = 0; first < pages; first += 1024) {
      const ops = Array.from({ length: Math.min(1024, pages - first) }, (_, i) => ({ pgoff: first + i, kind: 'READ' as const }));
      await call((cb) => raw.mapping.FaultBatch({ session_id: quiet.session_id, ino: file.ino, ops }, cb));
    }
    // Another client fills each hole with its own write: one Invalidate(HOLE_FILLED) each.
    const writes = raw.files.WriteStream();
    const outcome = streamOutcome(writes);
    const page = Buffer.alloc(4096, 1);
    for (let first = 0; first < pages; first += 1024) {
      writes.write({ ops: Array.from({ length: Math.min(1024, pages - first) }, (_, i) => ({ id: first + i, ino: file.ino, offset: (first + i) * 4096, data: page })) });
    }
    writes.end();
    assert.equal((await outcome).error, null);
    // Alive: KeepAlive works (it used to be ended after 4,096 queued events).
    await call((cb) => raw.session.KeepAlive({ session_id: quiet.session_id }, cb));
    const events = raw.session.Events({ session_id: quiet.session_id });
    const [first] = await once(events, 'data') as [Event__Output];
    assert.equal(first.events_lost?.count, String(pages), `first event ${JSON.stringify(first)}`);
    const end = streamOutcome(events);
    await call((cb) => raw.session.Close({ session_id: quiet.session_id }, cb));
    assert.equal((await end).error, null);
  });

  it('at most 1024 sessions: the next Open is RESOURCE_EXHAUSTED / ELIMIT (actual vs. max)', async function () {
    const opened: string[] = [];
    let refused: DaxClientError | null = null;
    try {
      for (let i = 0; i < 1100 && refused === null; i++) {
        try {
          const info = await call<SessionInfo__Output>((cb) => raw.session.Open({ client_name: `many-${i}` }, cb));
          opened.push(info.session_id);
        } catch (err) {
          refused = err as DaxClientError;
        }
      }
      assert.ok(refused !== null, 'Open was refused before 1100 sessions');
      assert.equal(refused.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.equal(refused.reason, 'ELIMIT');
      assert.match(refused.details, /\(1025 vs\. max 1024\)/);
    } finally {
      for (const id of opened) await call((cb) => raw.session.Close({ session_id: id }, cb));
    }
    // Closing made room again.
    const info = await call<SessionInfo__Output>((cb) => raw.session.Open({ client_name: 'after' }, cb));
    await call((cb) => raw.session.Close({ session_id: info.session_id }, cb));
  });

  it('sessions are independent: closing one leaves another alive', async function () {
    const a: DaxSession = await client.openSession({ clientName: 'a' });
    const b: DaxSession = await client.openSession({ clientName: 'b' });
    await a.close();
    assert.equal((await failure(a.keepAlive())).reason, 'SESSION_EXPIRED');
    const renewed = once(b, 'renewed');
    await b.keepAlive();
    const [expiresAtMs] = (await renewed) as [number];
    assert.ok(expiresAtMs > Date.now());
    await b.close();
  });
});

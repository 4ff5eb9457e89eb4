/**
 * The session layer without the network (S7): every way a session ends runs the same
 * cleanup — each attached resource released once, newest first, with the reason — and
 * its event queue delivers in order, honours backpressure, hands over to a newer stream,
 * queues nothing while no stream is attached, and never ends a session because of events:
 * a reader that falls behind loses events and is told so by one EventsLost{count}.
 */
import assert from 'node:assert/strict';
import { DaxError } from '../../server/errors';
import type { EventSink, SinkEndReason } from '../../server/session/event-queue';
import { SESSION_EVENTS_QUEUED_MAX } from '../../server/session/limits';
import type { SessionEndReason, SessionEvent } from '../../server/session/session-event';
import { SessionTable } from '../../server/session/session-table';

const quietLog = { info: () => undefined, error: () => undefined };

function invalidate(pgoff: number): SessionEvent {
  return { kind: 'invalidate', ino: 1, firstPgoff: pgoff, lastPgoff: pgoff, reason: 'TRUNCATE' };
}

/** A sink recording what it got; `ready` says what write() returns. */
class RecordingSink implements EventSink {
  events: SessionEvent[] = [];
  endedWith: SinkEndReason | null = null;
  ready = true;
  private onEnd: (() => void) | null = null;
  readonly ended = new Promise<void>((resolve) => (this.onEnd = resolve));
  write(event: SessionEvent): boolean {
    this.events.push(event);
    return this.ready;
  }
  end(reason: SinkEndReason): void {
    assert.equal(this.endedWith, null, 'end() called twice');
    this.endedWith = reason;
    this.onEnd?.();
  }
}

describe('session layer (S7: sessions bound every resource)', function () {
  let table: SessionTable;

  beforeEach(function () {
    table = new SessionTable({ log: quietLog });
  });

  afterEach(async function () {
    await table.closeAll();
  });

  it('Close releases every resource once, newest first, then ends the event stream', async function () {
    const session = table.open('c', 10_000);
    const released: string[] = [];
    for (const name of ['pte-1', 'pin-1', 'pte-2']) {
      session.attach({ kind: name.split('-')[0], release: (reason) => { released.push(`${name}:${reason}`); } });
    }
    assert.equal(session.resourceCountOf('pte'), 2);
    const sink = new RecordingSink();
    session.events.attach(sink);
    await table.close(session.id);
    assert.deepEqual(released, ['pte-2:closed', 'pin-1:closed', 'pte-1:closed']);
    assert.equal(sink.endedWith, 'closed');
    assert.equal(session.state, 'ended');
    assert.throws(() => table.get(session.id), (e: DaxError) => e.code === 'SESSION_EXPIRED');
  });

  it('a detached resource is not released; resources are counted by kind', async function () {
    const session = table.open('d', 10_000);
    let releases = 0;
    const handle = session.attach({ kind: 'pin', release: () => { releases++; } });
    assert.equal(session.detach(handle), true);
    assert.equal(session.detach(handle), false);
    assert.equal(session.resourceCountOf('pin'), 0);
    await table.close(session.id);
    assert.equal(releases, 0);
  });

  it('lease expiry runs the same cleanup as Close, with reason expired', async function () {
    const session = table.open('e', 100);
    const released = new Promise<SessionEndReason>((resolve) => session.attach({ kind: 'pte', release: resolve }));
    const sink = new RecordingSink();
    session.events.attach(sink);
    assert.equal(await released, 'expired');
    await sink.ended;
    assert.equal(sink.endedWith, 'expired');
    assert.throws(() => table.keepAlive(session.id), (e: DaxError) => e.code === 'SESSION_EXPIRED');
  });

  it('an async release is awaited by Close; a release that throws is reported after all others ran', async function () {
    const session = table.open('f', 10_000);
    const order: string[] = [];
    session.attach({ kind: 'pin', release: async () => { await Promise.resolve(); order.push('async'); } });
    session.attach({ kind: 'pte', release: () => { throw new Error('bug in a release'); } });
    session.attach({ kind: 'pte', release: () => { order.push('sync'); } });
    await assert.rejects(table.close(session.id), (e: AggregateError) => e.errors.length === 1);
    assert.deepEqual(order, ['sync', 'async']);
  });

  it('nothing attaches to an ending session (SESSION_EXPIRED), so a racing fault cannot leak', async function () {
    const session = table.open('g', 10_000);
    let finishRelease: () => void = () => undefined;
    session.attach({ kind: 'pin', release: () => new Promise<void>((resolve) => (finishRelease = resolve)) });
    const closing = table.close(session.id);
    assert.throws(() => session.attach({ kind: 'pte', release: () => undefined }), (e: DaxError) => e.code === 'SESSION_EXPIRED');
    finishRelease();
    await closing;
  });

  it('unknown ids are SESSION_UNKNOWN; closed ones SESSION_EXPIRED; the session limit is ELIMIT', async function () {
    assert.throws(() => table.get('nope'), (e: DaxError) => e.code === 'SESSION_UNKNOWN');
    const small = new SessionTable({ log: quietLog, maxSessions: 2 });
    small.open('1', 10_000);
    small.open('2', 10_000);
    assert.throws(() => small.open('3', 10_000), (e: DaxError) => e.code === 'ELIMIT' && /\(3 vs\. max 2\)/.test(e.message));
    await small.closeAll();
    assert.equal(small.size, 0);
  });

  it('events arrive in order; backpressure pauses delivery until resume', async function () {
    const session = table.open('h', 10_000);
    const sink = new RecordingSink();
    session.events.attach(sink);
    sink.ready = false; // the first write fills the stream's buffer
    session.notify(invalidate(1));
    session.notify(invalidate(2));
    assert.deepEqual(sink.events.map((e) => (e.kind === 'invalidate' ? e.firstPgoff : -1)), [1]);
    session.notify(invalidate(3));
    assert.equal(sink.events.length, 1, 'nothing more until resume');
    sink.ready = true;
    session.events.resume(sink);
    assert.deepEqual(sink.events.map((e) => (e.kind === 'invalidate' ? e.firstPgoff : -1)), [1, 2, 3]);
  });

  it('with no Events stream nothing is queued and the session lives; the next stream starts with EventsLost{count}', async function () {
    const session = table.open('quiet', 10_000);
    let released = false;
    session.attach({ kind: 'pte', release: () => { released = true; } });
    const n = 3 * SESSION_EVENTS_QUEUED_MAX;
    for (let i = 0; i < n; i++) session.notify(invalidate(i));
    assert.equal(session.events.queued, 0, 'queued while no stream is attached');
    assert.equal(session.state, 'open');
    assert.equal(released, false);
    assert.equal(table.get(session.id), session);
    const sink = new RecordingSink();
    session.events.attach(sink);
    session.notify(invalidate(n));
    assert.deepEqual(sink.events, [{ kind: 'eventsLost', count: n }, invalidate(n)]);
  });

  it('a reader that falls behind: events past SESSION_EVENTS_QUEUED_MAX are dropped, one EventsLost{count} follows, the session lives', async function () {
    const session = table.open('slow', 10_000);
    let released = false;
    session.attach({ kind: 'pte', release: () => { released = true; } });
    const sink = new RecordingSink();
    session.events.attach(sink);
    sink.ready = false;
    const extra = 1000;
    for (let i = 0; i < 1 + SESSION_EVENTS_QUEUED_MAX + extra; i++) session.notify(invalidate(i));
    assert.equal(session.events.queued, SESSION_EVENTS_QUEUED_MAX, 'the queue stays at its bound');
    assert.equal(session.state, 'open');
    assert.equal(released, false);
    sink.ready = true;
    session.events.resume(sink);
    session.notify(invalidate(-1));
    assert.equal(sink.events.length, 1 + SESSION_EVENTS_QUEUED_MAX + 1 + 1);
    assert.deepEqual(sink.events[SESSION_EVENTS_QUEUED_MAX], invalidate(SESSION_EVENTS_QUEUED_MAX), 'the queued ones, in order');
    assert.deepEqual(sink.events[SESSION_EVENTS_QUEUED_MAX + 1], { kind: 'eventsLost', count: extra }, 'then one marker for the dropped ones');
    assert.deepEqual(sink.events[SESSION_EVENTS_QUEUED_MAX + 2], invalidate(-1), 'then new events as usual');
  });

  it('a newer stream takes over: the older one ends with replaced and gets nothing more', async function () {
    const session = table.open('i', 10_000);
    const older = new RecordingSink();
    const newer = new RecordingSink();
    session.events.attach(older);
    session.events.attach(newer);
    assert.equal(older.endedWith, 'replaced');
    session.notify(invalidate(7));
    assert.equal(older.events.length, 0);
    assert.equal(newer.events.length, 1);
  });

  it('shutdown ends every session with reason shutdown', async function () {
    const a = table.open('k', 10_000);
    const b = table.open('l', 10_000);
    const reasons: SessionEndReason[] = [];
    a.attach({ kind: 'pin', release: (r) => { reasons.push(r); } });
    b.attach({ kind: 'pin', release: (r) => { reasons.push(r); } });
    await table.closeAll();
    assert.deepEqual(reasons, ['shutdown', 'shutdown']);
    assert.equal(table.size, 0);
  });
});

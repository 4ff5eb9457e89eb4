/**
 * The Session service: Open / KeepAlive / Close over the session table, and Events, the
 * server stream that carries a session's events for as long as the session lives.
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { BusyError, type DaxError, SessionExpiredError, ShutdownError } from '../errors';
import type { EventSink, SinkEndReason } from '../session/event-queue';
import type { Session } from '../session/session';
import type { SessionEvent } from '../session/session-event';
import type { SessionTable } from '../session/session-table';
import type { InvalidateReason } from '../dax/owner';
import type { Event } from '../../wire/generated/daxd/v1/Event';
import type { _daxd_v1_Invalidate_Reason__Output as WireInvalidateReason } from '../../wire/generated/daxd/v1/Invalidate';
import type { SessionHandlers } from '../../wire/generated/daxd/v1/Session';
import type { SessionInfo } from '../../wire/generated/daxd/v1/SessionInfo';
import type { SessionRef__Output } from '../../wire/generated/daxd/v1/SessionRef';
import { toServiceError } from './status';
import { principalOf } from '../auth/call-principal';
import type { QuotaLedger } from '../auth/quota';
import { unary } from './unary';
import * as v from './validate';

/** The engine's invalidate reasons travel by name: the two lists must be the same (compile time). */
const INVALIDATE_REASONS_ARE_WIRE_NAMES: v.SameNames<InvalidateReason, Exclude<WireInvalidateReason, 'REASON_UNSPECIFIED'>> = true;
void INVALIDATE_REASONS_ARE_WIRE_NAMES;

function sessionInfo(session: Session): SessionInfo {
  return { session_id: session.id, lease_ms: session.leaseMs, expires_at_ms: session.expiresAtMs };
}

function eventToWire(event: SessionEvent): Event {
  switch (event.kind) {
    case 'invalidate':
      return { invalidate: { ino: event.ino, first_pgoff: event.firstPgoff, last_pgoff: event.lastPgoff, reason: event.reason } };
    case 'pinRecall':
      return { pin_recall: { pin_id: event.pinId, revoke_at_ms: event.revokeAtMs } };
    case 'pinRevoked':
      return { pin_revoked: { pin_id: event.pinId } };
    case 'eventsLost':
      return { events_lost: { count: event.count } };
  }
}

/** How an Events stream ends: OK after Close, else the status that says why. */
function endError(sessionId: string, reason: SinkEndReason): DaxError | null {
  switch (reason) {
    case 'closed': return null;
    case 'expired': return new SessionExpiredError(sessionId, 'missed its lease');
    case 'shutdown': return new ShutdownError();
    case 'replaced': return new BusyError(`a newer Events stream of session ${sessionId} took over`);
  }
}

function serveEvents(call: grpc.ServerWritableStream<SessionRef__Output, Event>, sessions: SessionTable, log: Logger): void {
  let session: Session;
  try {
    session = sessions.get(v.sessionId(call.request.session_id), principalOf(call));
  } catch (err) {
    call.emit('error', toServiceError(err, log, 'Session.Events'));
    return;
  }
  let ended = false;
  const sink: EventSink = {
    write: (event) => call.write(eventToWire(event)),
    end: (reason) => {
      if (ended) return;
      ended = true;
      const err = endError(session.id, reason);
      if (err === null) call.end();
      else call.emit('error', toServiceError(err, log, 'Session.Events'));
    },
  };
  // Headers now, so the client knows the stream is attached before any event arrives.
  call.sendMetadata(new grpc.Metadata());
  const detach = session.events.attach(sink);
  call.on('drain', () => session.events.resume(sink));
  call.on('cancelled', () => {
    ended = true;
    detach();
  });
}

/** A session belongs to the principal that opened it; any other gets SESSION_UNKNOWN for it (session-table.ts). */
export function sessionHandlers(sessions: SessionTable, quota: QuotaLedger, log: Logger): SessionHandlers {
  return {
    Open: unary(log, 'Session.Open', (req, call) => {
      const lease = v.leaseMs(req.lease_ms);
      const clientName = v.clientName(req.client_name);
      const principal = principalOf(call);
      quota.checkSession(principal);
      return sessionInfo(sessions.open(clientName, lease, principal));
    }),

    KeepAlive: unary(log, 'Session.KeepAlive', (req, call) => sessionInfo(sessions.keepAlive(v.sessionId(req.session_id), principalOf(call)))),

    Close: unary(log, 'Session.Close', async (req, call) => {
      await sessions.close(v.sessionId(req.session_id), principalOf(call));
      return {};
    }),

    Events: (call) => serveEvents(call, sessions, log),
  };
}

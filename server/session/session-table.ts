/**
 * All open sessions of the server: Open / KeepAlive / Close / lookup, lease expiry, and
 * the end of every session at shutdown.
 *
 * Arguments are validated by server/rpc (lease bounds included); this layer asserts.
 */
import assert from 'node:assert';
import { randomBytes } from 'node:crypto';
import { LimitError, SessionExpiredError, SessionUnknownError } from '../errors';
import { LEASE_MS_MAX, LEASE_MS_MIN, SESSIONS_MAX, SESSION_TOMBSTONES_MAX } from './limits';
import { Session } from './session';
import type { SessionEndReason } from './session-event';
import { OPEN_ACCESS, type Principal } from '../auth/principal';

export interface SessionTableOptions {
  maxSessions?: number;
  /** Where failures of cleanup (bugs) and expiries are reported. */
  log: {
    info(obj: object, msg: string): void;
    error(obj: object, msg: string): void;
  };
  now?: () => number;
}

export class SessionTable {
  private readonly sessions = new Map<string, Session>();
  /** Ended session ids -> how they ended and whose they were; insertion order = age. */
  private readonly tombstones = new Map<string, { reason: SessionEndReason; principal: Principal }>();
  private readonly maxSessions: number;
  private readonly now: () => number;
  private closedForShutdown = false;
  /** Since start, for metrics: sessions opened, and ended by reason. */
  readonly stats = { opened: 0, ended: { closed: 0, expired: 0, shutdown: 0 } as Record<SessionEndReason, number> };

  constructor(private readonly options: SessionTableOptions) {
    this.maxSessions = options.maxSessions ?? SESSIONS_MAX;
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.sessions.size;
  }

  /** Sessions, for the admin API and tests. */
  list(): readonly Session[] {
    return [...this.sessions.values()];
  }

  /** Open sessions of `principal` (its sessions quota; O(sessions)). */
  countOf(principal: Principal): number {
    let n = 0;
    for (const s of this.sessions.values()) if (s.principal === principal) n++;
    return n;
  }

  open(clientName: string, leaseMs: number, principal: Principal = OPEN_ACCESS): Session {
    assert(Number.isSafeInteger(leaseMs) && leaseMs >= LEASE_MS_MIN && leaseMs <= LEASE_MS_MAX, `lease ${leaseMs} not validated`);
    assert(!this.closedForShutdown, 'open after shutdown began (the gRPC server stops accepting first)');
    if (this.sessions.size >= this.maxSessions) {
      throw new LimitError('sessions', this.sessions.size + 1, this.maxSessions);
    }
    // 128 random bits: unguessable (S7), so ids are capabilities.
    const id = randomBytes(16).toString('hex');
    const session = new Session(
      id, clientName, leaseMs, this.now(),
      (s) => this.endInBackground(s, 'expired'),
      principal,
    );
    this.sessions.set(id, session);
    this.stats.opened++;
    return session;
  }

  /**
   * The open session with this id, opened by `principal`; SESSION_EXPIRED if it ended,
   * SESSION_UNKNOWN if never seen. A session of another principal is SESSION_UNKNOWN too,
   * open or ended: the same answer as an id never issued, so presenting a stolen or guessed
   * id reveals nothing about it (and changes nothing: no renew, no close).
   */
  get(id: string, principal: Principal = OPEN_ACCESS): Session {
    const session = this.sessions.get(id);
    if (session !== undefined && session.principal === principal) return session;
    const ended = this.tombstones.get(id);
    if (session === undefined && ended !== undefined && ended.principal === principal) {
      throw new SessionExpiredError(id, ended.reason === 'closed' ? 'was closed' : `ended (${ended.reason})`);
    }
    throw new SessionUnknownError(id);
  }

  keepAlive(id: string, principal: Principal = OPEN_ACCESS): Session {
    const session = this.get(id, principal);
    session.renew(this.now());
    return session;
  }

  /** Close: the same end as expiry, awaited. */
  async close(id: string, principal: Principal = OPEN_ACCESS): Promise<void> {
    await this.end(this.get(id, principal), 'closed');
  }

  /** Shutdown: end every session (releasing their resources) before the volume unmounts. */
  async closeAll(): Promise<void> {
    this.closedForShutdown = true;
    const all = [...this.sessions.values()];
    const results = await Promise.allSettled(all.map((s) => this.end(s, 'shutdown')));
    for (const r of results) {
      if (r.status === 'rejected') this.options.log.error({ err: r.reason }, 'session cleanup failed at shutdown');
    }
  }

  private end(session: Session, reason: SessionEndReason): Promise<void> {
    // Forget the session first: from here on a call naming it gets SESSION_EXPIRED, and
    // nothing new can attach to it while its resources are being released.
    if (this.sessions.get(session.id) === session) {
      this.sessions.delete(session.id);
      this.remember(session, reason);
      this.stats.ended[reason]++;
    }
    return session.end(reason);
  }

  private endInBackground(session: Session, reason: SessionEndReason): void {
    this.options.log.info({ sessionId: session.id, clientName: session.clientName, reason }, 'session ended');
    this.end(session, reason).catch((err: unknown) => {
      this.options.log.error({ err, sessionId: session.id }, 'session cleanup failed');
    });
  }

  private remember(session: Session, reason: SessionEndReason): void {
    if (this.tombstones.size >= SESSION_TOMBSTONES_MAX) {
      const oldest = this.tombstones.keys().next();
      if (!oldest.done) this.tombstones.delete(oldest.value);
    }
    this.tombstones.set(session.id, { reason, principal: session.principal });
  }
}

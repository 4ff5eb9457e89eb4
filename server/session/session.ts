/**
 * One client session: its lease, the resources it holds and its event queue.
 *
 * Lifecycle: open -> (KeepAlive renews) -> ending -> ended. end() is the only way out,
 * whatever the reason (Close, lease expiry, server shutdown), so every
 * path runs the same cleanup (S7): stop the lease timer, release every resource (PTEs,
 * pins: waking whoever waits on them), then end the event stream.
 */
import { EventQueue } from './event-queue';
import { SESSION_EVENTS_QUEUED_MAX } from './limits';
import { ResourceRegistry, type ResourceHandle, type SessionResource } from './resource-registry';
import { SessionExpiredError } from '../errors';
import { OPEN_ACCESS, type Principal } from '../auth/principal';
import type { SessionEndReason, SessionEvent } from './session-event';

export type SessionState = 'open' | 'ending' | 'ended';

export class Session {
  readonly events: EventQueue;
  private readonly resources = new ResourceRegistry();
  private readonly timer: NodeJS.Timeout;
  private stateValue: SessionState = 'open';
  private endPromise: Promise<void> | null = null;
  private renewedAtMs: number;

  constructor(
    readonly id: string,
    readonly clientName: string,
    readonly leaseMs: number,
    readonly openedAtMs: number,
    /** Called once when the lease runs out; the table then ends the session. */
    onExpire: (session: Session) => void,
    /** Who opened it: only calls acting for the same principal may name it (server/auth). */
    readonly principal: Principal = OPEN_ACCESS,
  ) {
    this.renewedAtMs = openedAtMs;
    this.events = new EventQueue(SESSION_EVENTS_QUEUED_MAX);
    this.timer = setTimeout(() => onExpire(this), leaseMs);
    this.timer.unref();
  }

  get state(): SessionState {
    return this.stateValue;
  }

  get expiresAtMs(): number {
    return this.renewedAtMs + this.leaseMs;
  }

  get resourceCount(): number {
    return this.resources.size;
  }

  resourceCountOf(kind: string): number {
    return this.resources.count(kind);
  }

  /** Restart the lease from nowMs. */
  renew(nowMs: number): void {
    this.assertOpen();
    this.renewedAtMs = nowMs;
    this.timer.refresh();
  }

  /**
   * Attach a resource to give back when the session ends (see ResourceRegistry). Throws
   * SESSION_EXPIRED once the session is ending: a fault or pin racing Close must undo
   * its own work rather than leak it.
   */
  attach(resource: SessionResource): ResourceHandle {
    this.assertOpen();
    return this.resources.attach(resource);
  }

  /** Give a resource back the normal way (unmap, unpin); false if it is already gone. */
  detach(handle: ResourceHandle): boolean {
    return this.resources.detach(handle);
  }

  /** Queue an event for the client. Events of an ending session are dropped. */
  notify(event: SessionEvent): void {
    if (this.stateValue !== 'open') return;
    this.events.push(event);
  }

  /**
   * End the session (idempotent: later calls get the first call's promise). Rejects only
   * with a bug report (a release callback that threw), after all cleanup ran.
   */
  end(reason: SessionEndReason): Promise<void> {
    if (this.endPromise === null) this.endPromise = this.runEnd(reason);
    return this.endPromise;
  }

  private async runEnd(reason: SessionEndReason): Promise<void> {
    this.stateValue = 'ending';
    clearTimeout(this.timer);
    try {
      await this.resources.releaseAll(reason);
    } finally {
      this.stateValue = 'ended';
      this.events.end(reason);
    }
  }

  private assertOpen(): void {
    if (this.stateValue !== 'open') throw new SessionExpiredError(this.id, 'is ending');
  }
}

/**
 * DaxSession: a session on the server (leases, PTEs and pins belong to it).
 *
 * Lifecycle: open -> keep-alive every lease/3 (automatic) -> close(). The Events stream
 * is attached at open and delivers, as EventEmitter events:
 *   'invalidate' ({ino, firstPgoff, lastPgoff, reason}), 'pinRecall' ({pinId, revokeAtMs}),
 *   'pinRevoked' ({pinId}), then exactly one of
 *   'closed' (after close()), 'expired' (the lease ran out: every PTE and pin is gone),
 *   'ended' (DaxClientError: server shutdown, stream replaced, events overflow).
 * Each successful keep-alive emits 'renewed' (the server's new expiry time, ms).
 * A keep-alive that finds the session expired also emits 'expired'; one that fails otherwise
 * (UNAVAILABLE aside: it is retried) emits 'keepAliveFailed' (DaxClientError).
 */
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { DaxClientError, isUnavailable } from './errors';
import type { Event__Output } from './generated/daxd/v1/Event';
import type { SessionClient } from './generated/daxd/v1/Session';
import type { SessionInfo__Output } from './generated/daxd/v1/SessionInfo';
import { RETRY_BACKOFF_MS } from './limits';
import { callUnary } from './unary-call';

export interface OpenSessionOptions {
  clientName?: string;
  /** 0 or absent: the server's default lease. */
  leaseMs?: number;
  /** Renew automatically (default true). Tests turn it off to watch a lease expire. */
  keepAlive?: boolean;
}

export interface InvalidateEvent {
  ino: number;
  firstPgoff: number;
  lastPgoff: number;
  reason: string;
}

interface CallDefaults {
  deadlineMs: number;
  retries: number;
}

export class DaxSession extends EventEmitter {
  private keepAliveTimer: NodeJS.Timeout | null = null;
  private events: grpc.ClientReadableStream<Event__Output> | null = null;
  private ended = false;
  /** Resolves when the Events stream is attached (the server sent its headers). */
  readonly attached: Promise<void>;

  private constructor(
    private readonly client: SessionClient,
    readonly id: string,
    readonly leaseMs: number,
    private readonly defaults: CallDefaults,
  ) {
    super();
    this.attached = new Promise((resolve) => this.once('attached', resolve));
  }

  static async open(client: SessionClient, options: OpenSessionOptions, defaults: CallDefaults): Promise<DaxSession> {
    const info: SessionInfo__Output = await callUnary(
      (req, md, opts, cb) => client.Open(req, md, opts, cb),
      { client_name: options.clientName ?? '', lease_ms: options.leaseMs ?? 0 },
      { deadlineMs: defaults.deadlineMs, idempotent: false, retries: 0, backoffMs: RETRY_BACKOFF_MS },
    );
    const session = new DaxSession(client, info.session_id, Number(info.lease_ms), defaults);
    session.attachEvents();
    if (options.keepAlive ?? true) session.startKeepAlive();
    return session;
  }

  /** Renew the lease now. */
  async keepAlive(): Promise<void> {
    const info: SessionInfo__Output = await callUnary(
      (req, md, opts, cb) => this.client.KeepAlive(req, md, opts, cb),
      { session_id: this.id },
      { deadlineMs: Math.min(this.defaults.deadlineMs, this.leaseMs), idempotent: true, retries: this.defaults.retries, backoffMs: RETRY_BACKOFF_MS },
    );
    this.emit('renewed', Number(info.expires_at_ms));
  }

  /** Close the session: the server drops its PTEs and pins. */
  async close(): Promise<void> {
    this.stopKeepAlive();
    await callUnary(
      (req, md, opts, cb) => this.client.Close(req, md, opts, cb),
      { session_id: this.id },
      { deadlineMs: this.defaults.deadlineMs, idempotent: false, retries: 0, backoffMs: RETRY_BACKOFF_MS },
    );
  }

  /**
   * Stop renewing and stop listening, without telling the server (the client is going
   * away): the session expires at the end of its lease. Emits nothing more.
   */
  abandon(): void {
    this.ended = true;
    this.stopKeepAlive();
    this.events?.cancel();
    this.events = null;
  }

  private startKeepAlive(): void {
    const periodMs = Math.max(1, Math.floor(this.leaseMs / 3));
    this.keepAliveTimer = setInterval(() => {
      this.keepAlive().catch((err: unknown) => {
        if (err instanceof DaxClientError && err.reason === 'SESSION_EXPIRED') this.finish('expired', err);
        else if (!isUnavailable(err)) this.emit('keepAliveFailed', err);
      });
    }, periodMs);
    this.keepAliveTimer.unref();
  }

  private stopKeepAlive(): void {
    if (this.keepAliveTimer !== null) clearInterval(this.keepAliveTimer);
    this.keepAliveTimer = null;
  }

  private attachEvents(): void {
    const stream = this.client.Events({ session_id: this.id });
    this.events = stream;
    stream.on('metadata', () => this.emit('attached'));
    stream.on('data', (event: Event__Output) => this.deliver(event));
    stream.on('error', (err: grpc.ServiceError) => {
      const error = DaxClientError.fromServiceError(err);
      this.finish(error.reason === 'SESSION_EXPIRED' ? 'expired' : 'ended', error);
    });
    stream.on('end', () => this.finish('closed', null));
  }

  private deliver(event: Event__Output): void {
    if (event.invalidate) {
      const e = event.invalidate;
      this.emit('invalidate', { ino: Number(e.ino), firstPgoff: Number(e.first_pgoff), lastPgoff: Number(e.last_pgoff), reason: e.reason } satisfies InvalidateEvent);
    } else if (event.pin_recall) {
      this.emit('pinRecall', { pinId: event.pin_recall.pin_id, revokeAtMs: Number(event.pin_recall.revoke_at_ms) });
    } else if (event.pin_revoked) {
      this.emit('pinRevoked', { pinId: event.pin_revoked.pin_id });
    }
  }

  private finish(how: 'closed' | 'expired' | 'ended', err: DaxClientError | null): void {
    if (this.ended) return;
    this.ended = true;
    this.stopKeepAlive();
    this.events = null;
    if (how === 'closed') this.emit('closed');
    else this.emit(how, err);
  }
}

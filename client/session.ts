/**
 * DaxSession: a session on the server (leases, PTEs and pins belong to it).
 *
 * Lifecycle: open -> keep-alive every lease/3 (automatic) -> close(). The Events stream
 * is attached at open and delivers, as EventEmitter events:
 *   'invalidate' ({ino, firstPgoff, lastPgoff, reason}), 'pinRecall' ({pinId, revokeAtMs}),
 *   'pinRevoked' ({pinId}), 'eventsLost' ({count}: the server dropped that many events, the
 *   stream's reader having fallen behind or no stream having been attached; every
 *   mapping has already dropped its PTEs, which fault in again: a pin holder should check
 *   its pins), then exactly one of
 *   'closed' (after close()), 'expired' (the lease ran out: every PTE and pin is gone),
 *   'ended' (DaxClientError: server shutdown, stream replaced).
 * Events never end a session; they are a hint: the token check on the server is the fence.
 * Each successful keep-alive emits 'renewed' (the server's new expiry time, ms).
 * A keep-alive that finds the session expired also emits 'expired'; one that fails otherwise
 * (UNAVAILABLE aside: it is retried) emits 'keepAliveFailed' (DaxClientError).
 *
 * mmap(ino, {shared | private, writable}) maps a file into the session (mapped-file.ts).
 * The session routes each Invalidate event to the mappings of its file, before emitting
 * it, and tells every mapping when the session ends (its PTEs are gone server-side).
 */
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { DaxClientError, isUnavailable } from './errors';
import type { Event__Output } from '../wire/generated/daxd/v1/Event';
import type { MappingClient } from '../wire/generated/daxd/v1/Mapping';
import type { SessionClient } from '../wire/generated/daxd/v1/Session';
import type { SessionInfo__Output } from '../wire/generated/daxd/v1/SessionInfo';
import { RETRY_BACKOFF_MS } from './limits';
import { MappedFile, type MmapOptions } from './mapped-file';
import { MappingRpc } from './mapping-rpc';
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
  /** Most data one mapping batch carries: the server's max_io_bytes (RPC_IO_BYTES_MAX if not given). */
  ioBytesMax?: () => number;
}

/** The stubs a session calls (RawClients satisfies it). */
export interface SessionStubs {
  readonly session: SessionClient;
  readonly mapping: MappingClient;
}

export class DaxSession extends EventEmitter {
  private keepAliveTimer: NodeJS.Timeout | null = null;
  private events: grpc.ClientReadableStream<Event__Output> | null = null;
  private ended = false;
  /** Live mappings by inode, for routing Invalidate events. */
  private readonly mapped = new Map<number, Set<MappedFile>>();
  /** Resolves when the Events stream is attached (the server sent its headers). */
  readonly attached: Promise<void>;

  private readonly client: SessionClient;

  private constructor(
    private readonly stubs: SessionStubs,
    readonly id: string,
    readonly leaseMs: number,
    private readonly defaults: CallDefaults,
  ) {
    super();
    this.client = stubs.session;
    this.attached = new Promise((resolve) => this.once('attached', resolve));
  }

  static async open(stubs: SessionStubs, options: OpenSessionOptions, defaults: CallDefaults): Promise<DaxSession> {
    const client = stubs.session;
    const info: SessionInfo__Output = await callUnary(
      (req, md, opts, cb) => client.Open(req, md, opts, cb),
      { client_name: options.clientName ?? '', lease_ms: options.leaseMs ?? 0 },
      { deadlineMs: defaults.deadlineMs, idempotent: false, retries: 0, backoffMs: RETRY_BACKOFF_MS },
    );
    const session = new DaxSession(stubs, info.session_id, Number(info.lease_ms), defaults);
    session.attachEvents();
    if (options.keepAlive ?? true) session.startKeepAlive();
    return session;
  }

  /**
   * Map file `ino` into this session: exactly one of `shared` / `private`; `writable`
   * for PROT_WRITE. No call is made: pages fault in on first access.
   */
  mmap(ino: number, options: MmapOptions): MappedFile {
    const rpc = new MappingRpc(this.stubs.mapping, this.id, this.defaults);
    const m = new MappedFile(rpc, ino, options, (gone) => this.forget(gone));
    let set = this.mapped.get(ino);
    if (!set) this.mapped.set(ino, (set = new Set()));
    set.add(m);
    return m;
  }

  /** A mapping was unmapped: true when it was the session's last mapping of its file. */
  private forget(m: MappedFile): boolean {
    const set = this.mapped.get(m.ino);
    set?.delete(m);
    if (set && set.size > 0) return false;
    this.mapped.delete(m.ino);
    return true;
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
      for (const m of this.mapped.get(Number(e.ino)) ?? []) m.invalidate(Number(e.first_pgoff), Number(e.last_pgoff));
      this.emit('invalidate', { ino: Number(e.ino), firstPgoff: Number(e.first_pgoff), lastPgoff: Number(e.last_pgoff), reason: e.reason } satisfies InvalidateEvent);
    } else if (event.pin_recall) {
      this.emit('pinRecall', { pinId: event.pin_recall.pin_id, revokeAtMs: Number(event.pin_recall.revoke_at_ms) });
    } else if (event.pin_revoked) {
      this.emit('pinRevoked', { pinId: event.pin_revoked.pin_id });
    } else if (event.events_lost) {
      // IN_Q_OVERFLOW: which PTEs went is unknown, so all are suspect (cheap: re-fault on use).
      for (const set of this.mapped.values()) for (const m of set) m.eventsLost();
      this.emit('eventsLost', { count: Number(event.events_lost.count) });
    }
  }

  private finish(how: 'closed' | 'expired' | 'ended', err: DaxClientError | null): void {
    if (this.ended) return;
    this.ended = true;
    this.stopKeepAlive();
    this.events = null;
    // S7: the server dropped every PTE of the session; private pages stay.
    for (const set of this.mapped.values()) for (const m of set) m.sessionEnded();
    if (how === 'closed') this.emit('closed');
    else this.emit(how, err);
  }
}

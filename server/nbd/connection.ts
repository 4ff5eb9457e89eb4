/**
 * One NBD client connection: the handshake (handshake.ts), then the transmission phase,
 * where requests are parsed straight from the socket's chunks and run concurrently.
 *
 * Flow control (all per connection, all bounded):
 *   - at most NBD_REQUESTS_IN_FLIGHT_MAX requests run or wait for their reply;
 *   - at most NBD_CONNECTION_BYTES_BUFFERED_MAX bytes are held: admitted WRITE payloads
 *     and READ replies until the kernel took them (socket.writableLength);
 *   - past either bound the parser stops and the socket is paused (backpressure): the
 *     client's TCP window closes, nothing is refused.
 *
 * Replies of one event-loop turn are written together (reply-writer.ts): a burst of
 * requests from one socket read costs one write system call.
 *
 * Ending: NBD_CMD_DISC answers every request in flight, then closes. A socket that closes
 * first drops the replies; requests already in the engine still finish (the engine has no
 * way to cancel a write halfway) and a layout-break wait is aborted. `done` resolves once
 * nothing of this connection runs in the engine any more and its inode is released.
 *
 * TLS (starttls.ts): after NBD_OPT_STARTTLS the TLS socket takes over the TCP socket and
 * every listener moves to it; `socket` is always the one to read, write and close. With
 * auth on, the connection's principal comes from the client certificate once TLS is up
 * (none before, or without a known certificate: it sees and opens nothing).
 */
import type net from 'node:net';
import { CancelledError, DaxError, ShutdownError, TimedOutError } from '../errors';
import type { LayoutBreakOptions } from '../fs/types';
import { ByteQueue } from './byte-queue';
import { NBD_BLOCK_STATUS_BYTES_MAX, NBD_POOLED_BUFFER_BYTES_MAX } from './limits';
import { ReplyWriter } from './reply-writer';
import { allocatingAs, blockStatusReply, checkRequest, readReply, runCommand, transmissionFlags, type CommandTarget } from './commands';
import { nbdErrno } from './errno';
import type { ExportInfo } from './exports';
import type { ConnectionDeps } from './connection-deps';
import { HardDisconnect, negotiate, type HandshakeIo } from './handshake';
import { PeerAccess } from './peer-access';
import { upgradeToTls, type NbdTlsOptions } from './starttls';
import {
  COMMAND_NAMES, decodeRequest, errorChunkBytes, NBD_CMD_BLOCK_STATUS, NBD_CMD_DISC, NBD_CMD_READ, NBD_CMD_WRITE, REQUEST_HEADER_BYTES, SIMPLE_REPLY_BYTES,
  utf8Bounded, writeErrorChunk, writeSimpleReply, type Request,
} from './wire-format';

/** Reply bytes besides the data a request's cost counts (headers, an error chunk). */
const REPLY_OVERHEAD_BYTES = 1024;
/** Error chunk messages are cut to this (so an error reply fits REPLY_OVERHEAD_BYTES). */
const ERROR_MESSAGE_CHARS_MAX = 240;
const PAGE = 4096;

/** A hard disconnect lets the replies already made reach the peer for at most this long. */
const HARD_DISCONNECT_FLUSH_MS = 1_000;

let nextId = 1;

export class NbdConnection {
  readonly id = nextId++;
  readonly peer: string;
  readonly openedAtMs = Date.now();
  private readonly queue = new ByteQueue();
  private phase: 'handshake' | 'transmission' | 'closed' = 'handshake';
  private waiter: { n: number; skip: boolean; resolve(b: Buffer): void; reject(e: Error): void } | null = null;
  private handshakeTimer: NodeJS.Timeout | undefined;
  /** The export in use (its inode held), from GO / EXPORT_NAME on. */
  exportInfo: ExportInfo | null = null;
  private target: CommandTarget | null = null;
  // ---- transmission state
  /** A parsed WRITE waiting for its payload (already admitted). */
  private pendingWrite: { req: Request; t0: number } | null = null;
  /** A parsed request waiting for admission, with its problem if it has one. */
  private held: { req: Request; t0: number; error: DaxError | null } | null = null;
  /** Payload bytes of a refused WRITE still to discard, and the error to answer after. */
  private discard = 0;
  private refusedWrite: { req: Request; error: DaxError; t0: number } | null = null;
  inFlight = 0;
  private reservedBytes = 0;
  private paused = false;
  private disconnecting = false;
  /** Aborts layout-break waits: the socket closed (ECANCELED) or the server stops (ESHUTDOWN). */
  private readonly abort = new AbortController();
  /** The replies (reply-writer.ts); READ and BLOCK_STATUS write theirs into it in place. */
  private readonly out: ReplyWriter;
  private pumping = false;
  private settled: () => void = () => undefined;
  /** Resolves when the socket is closed and nothing of this connection runs in the engine. */
  readonly done: Promise<void>;
  /** The TCP socket, or the TLS socket over it after STARTTLS. */
  private socket: net.Socket;
  /** TLS required or not, and who the connection acts for (peer-access.ts). */
  readonly access: PeerAccess;
  private readonly listeners = {
    data: (chunk: Buffer) => this.onData(chunk),
    drain: () => this.pump(),
    error: (err: Error) => this.deps.log.debug({ conn: this.id, err: err.message }, 'nbd socket error'),
    close: () => this.onClose(),
    end: () => this.onEnd(),
  };

  constructor(socket: net.Socket, private readonly deps: ConnectionDeps) {
    this.socket = socket;
    this.peer = `${socket.remoteAddress}:${socket.remotePort}`;
    this.access = new PeerAccess(socket.remoteAddress ?? '', deps.tls, deps.auth);
    this.done = new Promise((resolve) => (this.settled = resolve));
    this.out = new ReplyWriter(socket, deps.pool, () => this.phase === 'closed');
    socket.setNoDelay(true);
    this.attach(socket);
    this.handshakeTimer = setTimeout(() => this.hardDisconnect(`no handshake step within ${deps.limits.handshakeMsMax} ms (NBD_HANDSHAKE_MS_MAX)`), deps.limits.handshakeMsMax);
    void this.handshake();
  }

  // ---- handshake ----------------------------------------------------------------------

  private async handshake(): Promise<void> {
    const { deps } = this;
    const io: HandshakeIo = {
      read: (n) => this.read(n, false),
      skip: async (n) => {
        await this.read(n, true);
      },
      send: (b) => this.out.send(b),
      drained: () => this.out.drained(deps.limits.connectionBytesBufferedMax / 4),
      answered: () => this.handshakeTimer?.refresh(),
    };
    let negotiated;
    try {
      negotiated = await negotiate(io, {
        exports: {
          resolve: (name) => deps.exports.resolveFor(this.access.principal, name),
          all: () => deps.exports.all(this.access.principal),
          // GO / EXPORT_NAME: the inode is held from the moment the export is chosen.
          open: (name) => this.open(name),
        },
        transmissionFlags: (structured) => transmissionFlags(structured, this.access.readOnly),
        tlsOffered: this.access.tlsOffered,
        plaintextRefused: () => this.access.plaintextRefused(),
        startTls: (ack) => this.startTls(ack),
        shuttingDown: deps.shuttingDown,
        optionsMax: deps.limits.optionsMax, optionBytesMax: deps.limits.optionBytesMax,
      });
    } catch (err) {
      if (this.phase === 'closed') return;
      if (err instanceof HardDisconnect) this.hardDisconnect(err.message);
      else {
        deps.log.error({ conn: this.id, err }, 'nbd handshake failed (bug)');
        this.hardDisconnect('internal error');
      }
      return;
    }
    clearTimeout(this.handshakeTimer);
    if (this.phase === 'closed') return;
    if (negotiated === null) {
      // NBD_OPT_ABORT: acknowledged; the client closes (we close too once the ack is out).
      this.out.flush();
      this.socket.end();
      return;
    }
    const exp = negotiated.export;
    this.target = {
      fs: deps.fs, dax: deps.dax, ino: exp.ino, exportBytes: exp.sizeBytes, structured: negotiated.structured, blockStatus: negotiated.blockStatus,
      readOnly: this.access.readOnly,
      allocating: allocatingAs(deps.quota, this.access.principal, exp.ino),
      fence: deps.fence,
      gate: deps.gate,
    };
    this.phase = 'transmission';
    deps.log.debug({ conn: this.id, peer: this.peer, export: exp.name, structured: negotiated.structured }, 'nbd transmission');
    this.pump();
  }

  private open(name: string): ExportInfo {
    const exp = this.deps.exports.resolveFor(this.access.principal, name);
    this.deps.fs.acquire(exp.ino);
    this.exportInfo = exp;
    return exp;
  }

  private attach(socket: net.Socket): void {
    for (const [event, fn] of Object.entries(this.listeners)) socket.on(event, fn);
  }

  private detach(socket: net.Socket): void {
    for (const [event, fn] of Object.entries(this.listeners)) socket.off(event, fn);
  }

  /**
   * STARTTLS answered NBD_REP_ACK: the upgrade (starttls.ts). Bytes the client sent after
   * STARTTLS before reading the ACK came in plaintext: a hard disconnect, never read as TLS.
   * The raw socket is paused before the ACK goes out, so the client's first TLS bytes stay
   * in it for the TLS socket to take over. The wait is bounded by the handshake timer.
   */
  private async startTls(ack: Buffer): Promise<void> {
    const tlsOptions = this.deps.tls as NbdTlsOptions;
    const raw = this.socket;
    if (this.queue.length > 0 || raw.readableLength > 0) {
      throw new HardDisconnect('data sent after NBD_OPT_STARTTLS before its reply (plaintext is not read as TLS)');
    }
    raw.pause();
    raw.off('data', this.listeners.data);
    this.out.flush();
    await new Promise<void>((resolve) => raw.write(ack, () => resolve()));
    if (this.phase === 'closed' || raw.destroyed) throw new Error('connection closed');
    this.detach(raw);
    const upgrade = upgradeToTls(raw, tlsOptions);
    this.socket = upgrade.socket;
    this.out.retarget(upgrade.socket);
    this.attach(upgrade.socket);
    try {
      await upgrade.secured;
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      this.deps.observer.tlsHandshake?.('failed');
      this.deps.log.info({ conn: this.id, peer: this.peer, why }, 'nbd TLS handshake failed: connection closed');
      throw new HardDisconnect(why);
    }
    this.deps.observer.tlsHandshake?.('ok');
    const why = this.access.secured(upgrade.socket.getPeerCertificate());
    // No principal: the connection sees and opens nothing (exports.ts), as a client without TLS.
    if (why !== null) this.deps.log.info({ conn: this.id, peer: this.peer, why }, 'nbd client certificate names no principal');
    this.deps.log.debug({ conn: this.id, peer: this.peer, principal: this.access.principal?.name ?? null }, 'nbd TLS on');
  }

  /** The next n bytes (skip: discarded as they come). Rejects once the socket closed. */
  private read(n: number, skip: boolean): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      if (this.phase === 'closed') {
        reject(new Error('connection closed'));
        return;
      }
      this.waiter = { n, skip, resolve, reject };
      this.serveWaiter();
    });
  }

  private serveWaiter(): void {
    const w = this.waiter;
    if (w === null) return;
    if (w.skip) {
      w.n -= this.queue.skip(w.n);
      if (w.n > 0) return this.resumeReading();
      this.waiter = null;
      w.resolve(EMPTY);
    } else {
      if (this.queue.length < w.n) return this.resumeReading();
      this.waiter = null;
      w.resolve(this.queue.take(w.n));
    }
  }

  // ---- input --------------------------------------------------------------------------

  private onData(chunk: Buffer): void {
    if (this.phase === 'closed' || this.disconnecting) return;
    this.queue.push(chunk);
    if (this.phase === 'handshake') {
      this.serveWaiter();
      // A client may not send ahead during the handshake: more unread bytes than one
      // option is a client to slow down, not to buffer for.
      if (this.queue.length > this.deps.limits.optionBytesMax + 64) this.pauseReading();
      return;
    }
    this.pump();
  }

  /**
   * Parses and starts requests while the bounds allow (see the top of the file). Called on
   * data, on each reply, and when the socket drains. Every request, even one answered with
   * an error at once, passes admission: a client that never reads its replies is paused.
   */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      this.pumpLoop();
    } finally {
      this.pumping = false;
    }
  }

  private pumpLoop(): void {
    if (this.phase !== 'transmission' || this.disconnecting) return;
    const t = this.target as CommandTarget;
    const { limits } = this.deps;
    for (;;) {
      if (this.disconnecting) return;
      if (this.discard > 0) {
        this.discard -= this.queue.skip(this.discard);
        if (this.discard > 0) break;
        const refused = this.refusedWrite as { req: Request; error: DaxError; t0: number };
        this.refusedWrite = null;
        this.answerError(refused.req, refused.error, refused.t0);
        continue;
      }
      if (this.pendingWrite !== null) {
        const { req, t0 } = this.pendingWrite;
        if (this.queue.length < req.length) break;
        this.pendingWrite = null;
        if (this.queue.contiguous(req.length) || req.length > NBD_POOLED_BUFFER_BYTES_MAX) this.start(req, this.queue.take(req.length), t0, null);
        else {
          // Spread over socket chunks: assembled in a pooled buffer, given back once written.
          const base = this.deps.pool.take(req.length);
          this.queue.takeInto(req.length, base);
          this.start(req, base.subarray(0, req.length), t0, base);
        }
        continue;
      }
      if (this.held === null) {
        if (this.queue.length < REQUEST_HEADER_BYTES) break;
        const t0 = this.deps.observer.request ? performance.now() : 0;
        const req = decodeRequest(this.queue.take(REQUEST_HEADER_BYTES), 0);
        if (req === null) return this.hardDisconnect('bad request magic');
        let error = req.type === NBD_CMD_DISC ? null : checkRequest(req, t);
        if (error === null && this.deps.shuttingDown() && req.type !== NBD_CMD_DISC) error = new ShutdownError();
        this.held = { req, t0, error };
      }
      const { req, t0, error } = this.held;
      if (req.type === NBD_CMD_DISC) {
        this.held = null;
        this.disconnect();
        return;
      }
      // Admission: a connection holding nothing always admits one request.
      if (this.inFlight >= limits.requestsInFlightMax) return this.pauseReading();
      const buffered = this.buffered();
      if (buffered > 0 && buffered + (error === null ? this.costOf(req) : REPLY_OVERHEAD_BYTES) > limits.connectionBytesBufferedMax) return this.pauseReading();
      this.held = null;
      if (error !== null) {
        if (req.type === NBD_CMD_WRITE) {
          this.discard = req.length;
          this.refusedWrite = { req, error, t0 };
        } else this.answerError(req, error, t0);
        continue;
      }
      this.admit(req);
      if (req.type === NBD_CMD_WRITE) this.pendingWrite = { req, t0 };
      else this.start(req, null, t0, null);
    }
    this.resumeReading();
  }

  /**
   * What a request may hold until the kernel took its reply: a WRITE's payload, a READ's
   * data, a BLOCK_STATUS's extents (8 bytes a page at most), plus REPLY_OVERHEAD_BYTES for
   * headers (a structured READ's chunk headers stay under it: every hole chunk but the
   * first and last replaces at least a page of data) or an error chunk.
   */
  private costOf(req: Request): number {
    switch (req.type) {
      case NBD_CMD_READ:
      case NBD_CMD_WRITE:
        return req.length + REPLY_OVERHEAD_BYTES;
      case NBD_CMD_BLOCK_STATUS:
        return 8 * (Math.ceil(Math.min(req.length, NBD_BLOCK_STATUS_BYTES_MAX) / PAGE) + 1) + REPLY_OVERHEAD_BYTES;
      default:
        return REPLY_OVERHEAD_BYTES;
    }
  }

  private admit(req: Request): void {
    this.inFlight++;
    this.reservedBytes += this.costOf(req);
  }

  bufferedState(): { bytes: number; paused: boolean } {
    return { bytes: this.buffered(), paused: this.paused };
  }

  private buffered(): number {
    return this.reservedBytes + this.out.pendingBytes + this.socket.writableLength;
  }

  private pauseReading(): void {
    if (this.paused) return;
    this.paused = true;
    this.socket.pause();
  }

  private resumeReading(): void {
    if (!this.paused || this.phase === 'closed') return;
    this.paused = false;
    this.socket.resume();
  }

  // ---- running ------------------------------------------------------------------------

  /**
   * READ and BLOCK_STATUS run synchronously, their reply written in place (no promise,
   * no copy but the one from the blocks); the others go through the engine's async calls.
   */
  private start(req: Request, data: Buffer | null, t0: number, pooled: Buffer | null): void {
    const t = this.target as CommandTarget;
    if (req.type === NBD_CMD_READ || req.type === NBD_CMD_BLOCK_STATUS) {
      const mark = this.out.mark();
      let err: unknown = null;
      try {
        if (req.type === NBD_CMD_READ) readReply(req, t, this.out);
        else blockStatusReply(req, t, this.out);
      } catch (e) {
        this.out.rollback(mark);
        err = e;
      }
      this.finish(req, err, t0, false);
      return;
    }
    let p: Promise<void>;
    try {
      p = runCommand(req, t, data, () => this.layoutBreak(req));
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(() => {
      if (pooled !== null) this.deps.pool.give(pooled);
      this.finish(req, null, t0, true);
    }, (err: unknown) => {
      if (pooled !== null) this.deps.pool.give(pooled);
      this.finish(req, err ?? new Error('rejected'), t0, true);
    });
  }

  /** layout_break for one TRIM / WRITE_ZEROES: the policy, bounded by NBD_LAYOUT_BREAK_TIMEOUT_MS. */
  private layoutBreak(req: Request): LayoutBreakOptions {
    const timeout = new AbortController();
    const ms = this.deps.limits.layoutBreakTimeoutMs;
    const timer = setTimeout(() => timeout.abort(new TimedOutError(`pinned pages were not unpinned within ${ms} ms (NBD_LAYOUT_BREAK_TIMEOUT_MS); nothing was changed`)), ms);
    timer.unref();
    const signal = AbortSignal.any([timeout.signal, this.abort.signal]);
    signal.addEventListener('abort', () => clearTimeout(timer), { once: true });
    // The wait ends with the request; the timer must not outlive it.
    this.afterRequest.set(req, () => clearTimeout(timer));
    return { policy: this.deps.policy, signal, requestId: `nbd-${this.id}-${req.cookieHi.toString(16)}${req.cookieLo.toString(16).padStart(8, '0')}` };
  }

  private readonly afterRequest = new Map<Request, () => void>();

  /** A request is done (err null: success; `simpleOk`: answer success with a simple reply). */
  private finish(req: Request, err: unknown, t0: number, simpleOk: boolean): void {
    if (this.afterRequest.size > 0) {
      const cleanup = this.afterRequest.get(req);
      if (cleanup !== undefined) {
        this.afterRequest.delete(req);
        cleanup();
      }
    }
    this.inFlight--;
    this.reservedBytes -= this.costOf(req);
    if (err === null) {
      if (simpleOk) {
        const at = this.out.alloc(SIMPLE_REPLY_BYTES);
        writeSimpleReply(this.out.buf, at, req, 0);
      }
      this.observe(req, 0, t0);
    } else {
      if (!(err instanceof DaxError)) this.deps.log.error({ conn: this.id, err, command: COMMAND_NAMES[req.type] }, 'nbd request failed (bug)');
      this.answerError(req, err, t0);
    }
    if (this.inFlight === 0 && this.phase === 'closed') this.settle();
    else if (this.inFlight === 0 && (this.disconnecting || this.deps.shuttingDown())) this.endAfterFlush();
    else this.pump();
  }

  private answerError(req: Request, err: unknown, t0: number): void {
    const errno = nbdErrno(err);
    // Structured replies carry the message; READ must be answered structured once negotiated.
    if (this.target?.structured) {
      const message = utf8Bounded((err instanceof Error ? err.message : String(err)).slice(0, ERROR_MESSAGE_CHARS_MAX));
      const at = this.out.alloc(errorChunkBytes(message));
      writeErrorChunk(this.out.buf, at, req, errno, message);
    } else {
      const at = this.out.alloc(SIMPLE_REPLY_BYTES);
      writeSimpleReply(this.out.buf, at, req, errno);
    }
    this.observe(req, errno, t0);
  }

  private observe(req: Request, errno: number, t0: number): void {
    const { observer } = this.deps;
    if (observer.request === undefined) return;
    const bytes = errno === 0 && (req.type === NBD_CMD_READ || req.type === NBD_CMD_WRITE) ? req.length : 0;
    observer.request(COMMAND_NAMES[req.type] ?? 'READ', (performance.now() - t0) / 1000, errno, bytes);
  }

  // ---- ending -------------------------------------------------------------------------

  /** NBD_CMD_DISC: read nothing more, answer what is in flight, then close. */
  private disconnect(): void {
    this.disconnecting = true;
    this.queue.clear();
    this.pauseReading();
    if (this.inFlight === 0) this.endAfterFlush();
  }

  private endAfterFlush(): void {
    this.disconnecting = true;
    this.out.flush();
    this.socket.end();
  }

  /** The client half-closed: nothing more will come; answer what is in flight, then close. */
  private onEnd(): void {
    if (this.phase !== 'transmission') {
      this.socket.end();
      return;
    }
    this.disconnecting = true;
    if (this.inFlight === 0) this.endAfterFlush();
  }

  /**
   * The spec's hard disconnect: read nothing more, close the TCP connection. Replies to
   * earlier requests still go out first, within HARD_DISCONNECT_FLUSH_MS.
   */
  hardDisconnect(why: string): void {
    if (this.phase === 'closed' || this.socket.destroyed) return;
    this.deps.log.info({ conn: this.id, peer: this.peer, why }, 'nbd connection closed (hard disconnect)');
    this.disconnecting = true;
    this.queue.clear();
    this.pauseReading();
    this.out.flush();
    this.socket.destroySoon();
    setTimeout(() => this.socket.destroy(), HARD_DISCONNECT_FLUSH_MS).unref();
  }

  /**
   * Server stop: a connection still negotiating is closed; one in transmission answers
   * later requests ESHUTDOWN (pump checks), stops layout-break waits (ESHUTDOWN), and
   * closes once its requests are answered.
   */
  shutdown(): void {
    if (this.phase === 'handshake') {
      this.hardDisconnect('server shutting down');
      return;
    }
    this.abort.abort(new ShutdownError('; nothing was changed'));
    if (this.phase === 'transmission') {
      this.pump();
      if (this.inFlight === 0) this.endAfterFlush();
    }
  }

  /** After the shutdown grace: close the socket now (replies still unsent are lost). */
  destroy(): void {
    this.socket.destroy();
  }

  private onClose(): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    clearTimeout(this.handshakeTimer);
    this.queue.clear();
    this.out.drop();
    const w = this.waiter;
    this.waiter = null;
    w?.reject(new Error('connection closed'));
    this.abort.abort(new CancelledError('the NBD connection closed; nothing was changed'));
    if (this.inFlight === 0) this.settle();
  }

  private released = false;

  private settle(): void {
    if (this.released) return;
    this.released = true;
    const exp = this.exportInfo;
    const release = exp === null ? Promise.resolve() : this.deps.fs.release(exp.ino);
    release.catch((err: unknown) => this.deps.log.error({ conn: this.id, err }, 'nbd: releasing the export inode failed')).finally(() => this.settled());
  }
}

const EMPTY = Buffer.alloc(0);

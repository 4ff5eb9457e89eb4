/**
 * The memory the op streams (Files.ReadStream, Files.WriteStream) may hold, accounted at
 * three levels: each stream, each connection (HTTP/2 session, told apart by its peer
 * address), and the whole server. Bounds: STREAM_BYTES_BUFFERED_MAX,
 * CONNECTION_BYTES_BUFFERED_MAX, SERVER_BYTES_BUFFERED_MAX.
 *
 * What is counted: the data bytes of an op from the moment it starts until the reply that
 * carries its result has left the process (grpc-js called the write's callback: the bytes
 * went to the HTTP/2 stream, within the peer's flow-control window). For a read that is the
 * data it returns (reserved at start for the length asked, trimmed to what was read); for
 * a write, the input data, which is given back when the engine is done with it.
 *
 * Invariant: at every level, bytes <= max, except that a stream holding nothing may take
 * one op of up to RPC_IO_BYTES_MAX past its own bound (every max is >= that, so it never
 * happens): take() either takes at all three levels or at none.
 *
 * A stream that cannot take waits (it does not read further requests, see op-stream.ts)
 * until a give() at the level that refused it: waiters are woken on every give at that
 * level (a stalled stream only ever waits on its own level; a healthy stream waiting on a
 * full connection or server is woken as soon as any stream there sends a reply).
 *
 * Unary calls that move data (Files.Read/Write, Dma.Read/Write, Mapping.Load/Store/
 * AccessBatch) take from the same account (unary-memory.ts): one account per call, on the
 * connection of its peer, so 1024 calls on one connection share its bound like streams.
 */
import { EventEmitter } from 'node:events';
import { CONNECTION_BYTES_BUFFERED_MAX, SERVER_BYTES_BUFFERED_MAX, STREAM_BYTES_BUFFERED_MAX } from './limits';

/** One level of the account: bytes held against a bound, and who waits for room. */
class Level {
  bytes = 0;
  peakBytes = 0;
  private readonly waiters = new Set<() => void>();
  constructor(readonly maxBytes: number) {}

  fits(bytes: number): boolean {
    return this.bytes + bytes <= this.maxBytes;
  }

  add(bytes: number): void {
    this.bytes += bytes;
    if (this.bytes > this.peakBytes) this.peakBytes = this.bytes;
  }

  sub(bytes: number): void {
    this.bytes -= bytes;
  }

  /** After sub at every level (a woken stream takes again: the levels must agree first). */
  wakeAll(): void {
    if (this.waiters.size === 0) return;
    const woken = [...this.waiters];
    this.waiters.clear();
    for (const wake of woken) wake();
  }

  wait(wake: () => void): void {
    this.waiters.add(wake);
  }

  unwait(wake: () => void): void {
    this.waiters.delete(wake);
  }
}

interface Connection {
  readonly level: Level;
  streams: number;
}

/**
 * The whole server's account; one per RpcServer. Events (StreamAccount), for tests: 'blocked'
 * (an op waits for room), 'held' (a request is not read for now), 'closed' (all given back).
 */
export interface StreamMemoryLimits {
  streamMaxBytes: number;
  connectionMaxBytes: number;
  serverMaxBytes: number;
}

const DEFAULT_LIMITS: StreamMemoryLimits = {
  streamMaxBytes: STREAM_BYTES_BUFFERED_MAX, connectionMaxBytes: CONNECTION_BYTES_BUFFERED_MAX,
  serverMaxBytes: SERVER_BYTES_BUFFERED_MAX,
};

export class StreamMemory extends EventEmitter {
  readonly limits: StreamMemoryLimits;
  readonly server: Level;
  private readonly connections = new Map<string, Connection>();

  constructor(
    limits: Partial<StreamMemoryLimits> = {},
  ) {
    super();
    this.limits = { ...DEFAULT_LIMITS, ...limits };
    this.server = new Level(this.limits.serverMaxBytes);
  }

  /** Bytes held by every stream now (the daxd_stream_bytes_buffered gauge). */
  get bytes(): number {
    return this.server.bytes;
  }

  /** Connections with an open op stream or bytes still held. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** A new stream's (or data-moving unary call's) account; close() it when the call is gone. */
  open(peer: string): StreamAccount {
    let connection = this.connections.get(peer);
    if (connection === undefined) {
      connection = { level: new Level(this.limits.connectionMaxBytes), streams: 0 };
      this.connections.set(peer, connection);
    }
    connection.streams++;
    return new StreamAccount(this, connection.level, new Level(this.limits.streamMaxBytes), () => {
      const c = this.connections.get(peer);
      if (c !== undefined && --c.streams === 0) this.connections.delete(peer);
    });
  }
}

/** One stream's share of the account. */
export class StreamAccount {
  private closed = false;
  private waitingOn: Level | null = null;
  private wake: (() => void) | null = null;

  constructor(
    private readonly memory: StreamMemory,
    private readonly connection: Level,
    readonly stream: Level,
    private readonly onClose: () => void,
  ) {}

  get bytes(): number {
    return this.stream.bytes;
  }

  /**
   * Take bytes at all three levels, or none. False: the caller waits; `wake` runs once
   * after a give at the level that refused (then the caller tries again).
   */
  take(bytes: number, wake: () => void): boolean {
    if (this.closed) return false;
    const refusing = this.refusing(bytes);
    if (refusing !== null) {
      this.waitOn(refusing, wake);
      return false;
    }
    this.stopWaiting();
    this.stream.add(bytes);
    this.connection.add(bytes);
    this.memory.server.add(bytes);
    return true;
  }

  /** Give back bytes taken before. After close() a no-op (close gave everything back). */
  give(bytes: number): void {
    if (this.closed || bytes === 0) return;
    this.stream.sub(bytes);
    this.connection.sub(bytes);
    this.memory.server.sub(bytes);
    this.stream.wakeAll();
    this.connection.wakeAll();
    this.memory.server.wakeAll();
  }

  /** Stop waiting for room (the call was cancelled or timed out while waiting). */
  cancelWait(): void {
    this.stopWaiting();
  }

  /** The stream holds back its input (reads no further request) until bytes are given back. */
  inputHeld(): void {
    this.memory.emit('held', this);
  }

  /** The stream is gone (ended and flushed, or cancelled): give back all it holds. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.stopWaiting();
    const held = this.stream.bytes;
    this.give(held);
    this.closed = true;
    this.onClose();
    this.memory.emit('closed', this);
  }

  private refusing(bytes: number): Level | null {
    // One op always fits an empty stream: every max is at least RPC_IO_BYTES_MAX.
    if (this.stream.bytes > 0 && !this.stream.fits(bytes)) return this.stream;
    if (!this.connection.fits(bytes)) return this.connection;
    if (!this.memory.server.fits(bytes)) return this.memory.server;
    return null;
  }

  private waitOn(level: Level, wake: () => void): void {
    this.stopWaiting();
    const once = (): void => {
      this.waitingOn = null;
      this.wake = null;
      wake();
    };
    this.waitingOn = level;
    this.wake = once;
    level.wait(once);
    this.memory.emit('blocked', this);
  }

  private stopWaiting(): void {
    if (this.waitingOn !== null && this.wake !== null) this.waitingOn.unwait(this.wake);
    this.waitingOn = null;
    this.wake = null;
  }
}

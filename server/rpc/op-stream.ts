/**
 * The server side of a pipelined op stream (Files.ReadStream, Files.WriteStream): batches
 * of ops in, batches of results out, many ops in flight, backpressure both ways.
 *
 *   client batch --data--> pending (FIFO) --start--> in flight (engine) --done--> reply batch
 *                  ^ paused while pending is non-empty,     ^ bounded by ops      | write(); false =
 *                    i.e. while in-flight is at its bound     and bytes           | stop starting ops
 *                                                                                  v until 'drain'
 *
 * Flow control: an op starts only while fewer than STREAM_OPS_IN_FLIGHT_MAX ops are in
 * flight, the reply side is not backed up (write() returned false: wait for 'drain'), and
 * the stream memory account (stream-memory.ts) takes the op's bytes at all three levels:
 * the stream, its connection, the server. Those bytes stay taken until the reply carrying
 * the op's result has been handed to HTTP/2 (the write's callback), so a client that stops
 * reading holds at most STREAM_BYTES_BUFFERED_MAX of its stream's replies in server memory.
 * Ops that cannot start wait in `pending`, and while any wait, or while the account is at
 * its bound, no further request is read: the call is paused and its _read is held back
 * (a paused Readable would still fill its 16-message buffer), so grpc-js stops reading the
 * HTTP/2 stream and the client's window fills: a client going faster than the engine sees
 * write() return false, never an error. `pending` is bounded by one message's ops.
 *
 * Replies: results of ops that finish in the same tick share one message (flushed at the
 * end of the tick, or as soon as STREAM_REPLY_FLUSH_BYTES or the per-message op maximum
 * accumulate), so a burst of small ops costs one gRPC message each way.
 *
 * Ending: after the client half-closes, the stream ends OK once every op is answered.
 * drain() (server shutdown) answers ops not yet started with ESHUTDOWN, lets the started
 * ones finish and be answered, then ends the stream with UNAVAILABLE / ESHUTDOWN. A
 * cancelled call stops at once (results are dropped: nobody can read them; the kind's
 * discarded() releases what they held, e.g. a pin) and gives back all its memory
 * (grpc-js never calls the callbacks of writes cut off by a cancel).
 */
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { LimitError, ShutdownError } from '../errors';
import {
  RPC_IO_BYTES_MAX, STREAM_OPS_IN_FLIGHT_MAX, STREAM_OPS_PER_MESSAGE_MAX, STREAM_REPLY_FLUSH_BYTES,
} from './limits';
import { toServiceError, toWireStatus } from './status';
import type { StreamAccount } from './stream-memory';

/** An op's failure as carried inside a result (proto OpError). */
export interface OpErrorWire {
  code: number;
  reason: string;
  message: string;
}

/** What one kind of op stream (read or write) plugs into the pipeline. */
export interface OpKind<Op extends { id: number }, Result> {
  readonly name: string;
  /** Bytes the op holds while in flight (its data, or the data it will return). */
  costBytes(op: Op): number;
  /** Validate and run the op; throws DaxError for expected failures. */
  run(op: Op): Promise<Result>;
  /** The result for an op that failed. */
  failed(op: Op, error: OpErrorWire): Result;
  /** Bytes a result adds to a reply message (its data and any other field that can be large). */
  replyBytes(result: Result): number;
  /**
   * The reply carrying `result` has been written to the connection (its write callback
   * ran without error): its memory may be reused (files-streams.ts gives read buffers
   * back to wire/bulk-codec.ts's pool). Not called for replies cut off by a cancel or an
   * error: their memory is left to the GC.
   */
  sent?(result: Result): void;
  /**
   * `result` will never be sent: the stream finished (cancelled, failed) before it could
   * be. Anything the op left for its client to release (Dma.Stream: a pin it took and
   * kept) is released here, since the client cannot know of it.
   */
  discarded?(result: Result): void;
}

/** Shutdown hook: the set of live op streams, drained before the volume unmounts. */
export interface Drainable {
  drain(): void;
}

export class OpStream<Req, Res, Op extends { id: number }, Result> implements Drainable {
  private readonly pending: Op[] = [];
  private pendingHead = 0;
  private opsInFlight = 0;
  private replyResults: Result[] = [];
  private replyBytes = 0;
  /** Account bytes of the results in replyResults, given back when their message is sent. */
  private replyHeldBytes = 0;
  /** Reply messages written whose callback has not run yet. */
  private writesPending = 0;
  /** The account refused an op; a give wakes us (wakeOnMemory). */
  private waitingForMemory = false;
  /** grpc-js asked for the next request (_read) while the input was held back. */
  private readDeferred = false;
  private readonly readRequest: ((size: number) => void) | null;
  private flushScheduled = false;
  private replyBlocked = false;
  private inputEnded = false;
  private draining = false;
  private finished = false;

  constructor(
    private readonly call: grpc.ServerDuplexStream<Req, Res>,
    private readonly kind: OpKind<Op, Result>,
    private readonly batch: { opsOf(request: Req): Op[]; reply(results: Result[]): Res },
    private readonly log: Logger,
    private readonly onFinish: (stream: OpStream<Req, Res, Op, Result>) => void,
    private readonly account: StreamAccount,
  ) {
    // Hold back reads: grpc-js reads the next request when the Readable asks (_read), and a
    // paused Readable still asks until 16 messages wait in its buffer (16 x 4 MiB). The
    // request is passed on when the input opens again (pump).
    const readable = call as unknown as { _read?: (size: number) => void };
    if (typeof readable._read === 'function') {
      const read = readable._read.bind(call);
      this.readRequest = read;
      readable._read = (size: number) => {
        if (this.inputOpen()) read(size);
        else {
          this.readDeferred = true;
          this.account.inputHeld();
        }
      };
    } else {
      this.readRequest = null;
    }
    call.on('data', (request: Req) => this.onBatch(request));
    call.on('end', () => {
      this.inputEnded = true;
      this.pump();
    });
    call.on('drain', () => {
      this.replyBlocked = false;
      this.pump();
    });
    call.on('cancelled', () => {
      this.finish();
      this.account.close();
    });
  }

  /** Server shutdown: answer what has not started with ESHUTDOWN, finish the rest, end. */
  drain(): void {
    if (this.finished || this.draining) return;
    this.draining = true;
    this.pump();
  }

  private onBatch(request: Req): void {
    if (this.finished) return;
    const ops = this.batch.opsOf(request);
    if (ops.length > STREAM_OPS_PER_MESSAGE_MAX) {
      this.fail(new LimitError(`${this.kind.name} ops per message`, ops.length, STREAM_OPS_PER_MESSAGE_MAX));
      return;
    }
    for (const op of ops) this.pending.push(op);
    this.pump();
  }

  /** Start what the bounds allow, pause or resume the input, end when all is done. */
  private pump(): void {
    if (this.finished) return;
    while (this.pendingHead < this.pending.length) {
      const op = this.pending[this.pendingHead];
      if (this.draining) {
        this.pendingHead++;
        this.addResult(this.kind.failed(op, shutdownError()));
        continue;
      }
      if (!this.canStart(op)) break;
      this.pendingHead++;
      this.start(op);
    }
    if (this.pendingHead === this.pending.length) {
      this.pending.length = 0;
      this.pendingHead = 0;
      if (this.call.isPaused()) this.call.resume();
    } else if (!this.call.isPaused()) {
      this.call.pause();
    }
    if (this.readDeferred && this.inputOpen() && this.readRequest !== null) {
      this.readDeferred = false;
      this.readRequest(0);
    }
    if ((this.inputEnded || this.draining) && this.opsInFlight === 0 && this.pending.length === 0) {
      this.flush();
      this.end();
    }
  }

  /** A further request may be read: nothing waits to start and the account has room. */
  private inputOpen(): boolean {
    return !this.finished && this.pendingHead === this.pending.length && !this.replyBlocked
      && !this.waitingForMemory && this.account.bytes < this.account.stream.maxBytes;
  }

  /** Checks the bounds and, if the op may start, takes its bytes from the account. */
  private canStart(op: Op): boolean {
    if (this.replyBlocked || this.waitingForMemory) return false;
    if (this.opsInFlight >= STREAM_OPS_IN_FLIGHT_MAX) return false;
    if (this.account.take(this.kind.costBytes(op), this.wakeOnMemory)) return true;
    this.waitingForMemory = true;
    return false;
  }

  private readonly wakeOnMemory = (): void => {
    this.waitingForMemory = false;
    this.pump();
  };

  /** Starts an op whose bytes canStart took. */
  private start(op: Op): void {
    const cost = this.kind.costBytes(op);
    this.opsInFlight++;
    let running: Promise<Result>;
    try {
      running = this.kind.run(op);
    } catch (err) {
      running = Promise.reject(err);
    }
    running.then(
      (result) => this.done(cost, result),
      (err: unknown) => this.done(cost, this.kind.failed(op, this.opError(err))),
    );
  }

  private done(cost: number, result: Result): void {
    this.opsInFlight--;
    // What the reply holds stays taken until it is sent; the rest (a write's input, the
    // unread part of a short read) is given back now.
    const held = this.finished ? 0 : Math.min(cost, this.kind.replyBytes(result));
    this.account.give(cost - held);
    if (this.finished) {
      // Cancelled or failed while the op ran: nobody will read its result.
      this.kind.discarded?.(result);
      return;
    }
    this.addResult(result, held);
    this.pump();
  }

  private addResult(result: Result, heldBytes = 0): void {
    const bytes = this.kind.replyBytes(result);
    // A reply message stays within RPC_IO_BYTES_MAX of data (plus framing: MESSAGE_BYTES_MAX).
    if (this.replyBytes + bytes > RPC_IO_BYTES_MAX) this.flush();
    this.replyResults.push(result);
    this.replyBytes += bytes;
    this.replyHeldBytes += heldBytes;
    if (this.replyBytes >= STREAM_REPLY_FLUSH_BYTES || this.replyResults.length >= STREAM_OPS_PER_MESSAGE_MAX) {
      this.flush();
    } else if (!this.flushScheduled) {
      // End of tick: ops finishing in this tick (one incoming batch, typically) share a reply.
      this.flushScheduled = true;
      process.nextTick(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
  }

  private flush(): void {
    if (this.finished || this.replyResults.length === 0) return;
    const results = this.replyResults;
    const held = this.replyHeldBytes;
    this.replyResults = [];
    this.replyBytes = 0;
    this.replyHeldBytes = 0;
    this.writesPending++;
    const written = this.call.write(this.batch.reply(results), (err?: Error | null) => {
      if (!err && this.kind.sent !== undefined) for (const result of results) this.kind.sent(result);
      this.writesPending--;
      this.account.give(held);
      if (this.finished && this.writesPending === 0) this.account.close();
    });
    if (!written) this.replyBlocked = true;
  }

  private opError(err: unknown): OpErrorWire {
    const status = toWireStatus(err, this.log, this.kind.name);
    return { code: status.code, reason: status.reason ?? '', message: status.details };
  }

  private end(): void {
    if (this.finished) return;
    if (this.draining) {
      this.fail(new ShutdownError());
      return;
    }
    this.finish();
    this.call.end();
  }

  private fail(err: unknown): void {
    if (this.finished) return;
    this.flush();
    this.finish();
    this.call.emit('error', toServiceError(err, this.log, this.kind.name));
  }

  /**
   * No more ops or replies. The account stays open while written replies are still
   * buffered (their callbacks close it); a cancel closes it at once.
   */
  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.pending.length = 0;
    this.pendingHead = 0;
    // Results not yet written (a cancel; fail() flushes first) never reach the client.
    if (this.kind.discarded !== undefined) for (const result of this.replyResults) this.kind.discarded(result);
    this.replyResults = [];
    this.account.give(this.replyHeldBytes);
    this.replyHeldBytes = 0;
    if (this.writesPending === 0) this.account.close();
    this.onFinish(this);
  }
}

function shutdownError(): OpErrorWire {
  const err = new ShutdownError('; the op was not started');
  return { code: err.status, reason: err.code, message: err.message };
}

/**
 * The client side of a pipelined op stream (Files.ReadStream / Files.WriteStream).
 *
 * Every read or write the SDK makes becomes an op with an id. Ops submitted in the same
 * tick travel in one message (up to STREAM_OPS_PER_MESSAGE_MAX ops / BATCH_FLUSH_BYTES of data), and
 * results come back in batches, matched by id. So 64 concurrent 4 KiB reads cost about
 * one gRPC message each way, not 64 round trips.
 *
 * Bounds: at most PIPELINE_OPS_IN_FLIGHT_MAX ops and PIPELINE_BYTES_IN_FLIGHT_MAX bytes
 * are sent and unanswered; more wait here, unsent. When the stream's write() returns
 * false (HTTP/2 window full: the server is behind), nothing more is sent until 'drain'.
 *
 * Failure: if the stream fails (server gone, shutting down), every op sent on it fails
 * with that status; ops not yet sent go out on a fresh stream. Whether a failed op may be
 * retried is the caller's decision (reads may, writes may not). An op gets no answer
 * within its deadline: it fails with DEADLINE_EXCEEDED; its late result is dropped, or
 * handed to the kind's late() (Dma.Stream unpins a pin it carries): the pipeline keeps
 * the last PIPELINE_OPS_IN_FLIGHT_MAX expired ops for that, each until its stream ends.
 * The stream is half-closed after STREAM_IDLE_CLOSE_MS without ops, so an idle client
 * does not keep the process alive; it reopens on the next op.
 */
import * as grpc from '@grpc/grpc-js';
import { DaxClientError } from './errors';
import type { OpError__Output } from '../wire/generated/daxd/v1/OpError';
import {
  RPC_IO_BYTES_MAX, BATCH_FLUSH_BYTES, STREAM_OPS_PER_MESSAGE_MAX, PIPELINE_BYTES_IN_FLIGHT_MAX, PIPELINE_OPS_IN_FLIGHT_MAX, STREAM_IDLE_CLOSE_MS,
} from './limits';

/** How one kind of stream (read or write) builds its messages and reads its results. */
export interface PipelineKind<Op, Req, Res, Result extends { id: number; error: OpError__Output | null }> {
  open(): grpc.ClientDuplexStream<Req, Res>;
  request(ops: Op[]): Req;
  results(response: Res): Result[];
  /** Most data one message carries: the server's max_io_bytes (RPC_IO_BYTES_MAX if not given). */
  messageDataBytesMax?: () => number;
  /** The error for a failed result (default: DaxClientError.fromOpError of its error). */
  error?(result: Result): Error;
  /** A result that arrived after its op's deadline (the caller got DEADLINE_EXCEEDED). */
  late?(op: Op, result: Result): void;
}

interface Waiting<Op, Result> {
  make(id: number): Op;
  bytes: number;
  deadlineMs: number;
  resolve(result: Result): void;
  reject(err: Error): void;
  /** The op as sent (set once it has an id). */
  sent?: Op;
}

export class OpPipeline<Op, Req, Res, Result extends { id: number; error: OpError__Output | null }> {
  private readonly waiting: Waiting<Op, Result>[] = [];
  private waitingHead = 0;
  private readonly inFlight = new Map<number, Waiting<Op, Result>>();
  /**
   * Ops that missed their deadline, by id, with the stream that carried them, for kind.late
   * (oldest first). Kept until that stream ends: a stream the SDK half-closed as idle still
   * delivers the answers the server sends before it ends.
   */
  private readonly expired = new Map<number, { sent: Op; stream: grpc.ClientDuplexStream<Req, Res> }>();
  private bytesInFlight = 0;
  private stream: grpc.ClientDuplexStream<Req, Res> | null = null;
  private writeBlocked = false;
  private batch: Op[] = [];
  private batchBytes = 0;
  private flushScheduled = false;
  private nextId = 1;
  private idleTimer: NodeJS.Timeout | null = null;
  private deadlineTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(private readonly kind: PipelineKind<Op, Req, Res, Result>) {}

  /** Run one op; `make` builds it once its id is known. `bytes` is its data (or expected reply) size. */
  submit(make: (id: number) => Op, bytes: number, timeoutMs: number): Promise<Result> {
    if (this.closed) return Promise.reject(new DaxClientError(grpc.status.CANCELLED, null, 'client closed'));
    return new Promise<Result>((resolve, reject) => {
      this.waiting.push({ make, bytes, deadlineMs: Date.now() + timeoutMs, resolve, reject });
      this.pump();
    });
  }

  /** Fail everything and close the stream. */
  close(): void {
    this.closed = true;
    const err = new DaxClientError(grpc.status.CANCELLED, null, 'client closed');
    for (let i = this.waitingHead; i < this.waiting.length; i++) this.waiting[i].reject(err);
    this.waiting.length = 0;
    this.waitingHead = 0;
    this.expired.clear();
    this.failInFlight(err);
    this.clearTimers();
    const stream = this.stream;
    this.stream = null;
    stream?.cancel();
  }

  private pump(): void {
    while (this.waitingHead < this.waiting.length && this.canSend(this.waiting[this.waitingHead].bytes)) {
      const op = this.waiting[this.waitingHead++];
      // Keep a message within the server's data limit per message (its max_io_bytes).
      if (this.batchBytes + op.bytes > (this.kind.messageDataBytesMax?.() ?? RPC_IO_BYTES_MAX)) this.flush();
      const id = this.allocateId();
      this.inFlight.set(id, op);
      this.bytesInFlight += op.bytes;
      op.sent = op.make(id);
      this.batch.push(op.sent);
      this.batchBytes += op.bytes;
      if (this.batch.length >= STREAM_OPS_PER_MESSAGE_MAX || this.batchBytes >= BATCH_FLUSH_BYTES) this.flush();
    }
    if (this.waitingHead === this.waiting.length) {
      this.waiting.length = 0;
      this.waitingHead = 0;
    }
    if (this.batch.length > 0 && !this.flushScheduled) {
      // End of tick: everything submitted in this tick (and by the continuations of the
      // results that just arrived) shares one message.
      this.flushScheduled = true;
      process.nextTick(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
    this.armTimers();
  }

  private canSend(bytes: number): boolean {
    if (this.writeBlocked) return false;
    if (this.inFlight.size === 0) return true;
    return this.inFlight.size < PIPELINE_OPS_IN_FLIGHT_MAX && this.bytesInFlight + bytes <= PIPELINE_BYTES_IN_FLIGHT_MAX;
  }

  private allocateId(): number {
    // uint32 ids, wrapping; skipping any still in flight (at most 1024 are).
    do {
      this.nextId = this.nextId >= 0xffff_ffff ? 1 : this.nextId + 1;
    } while (this.inFlight.has(this.nextId) || this.expired.has(this.nextId));
    return this.nextId;
  }

  private flush(): void {
    if (this.batch.length === 0) return;
    const ops = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    const stream = this.ensureStream();
    if (!stream.write(this.kind.request(ops))) {
      this.writeBlocked = true;
      stream.once('drain', () => {
        this.writeBlocked = false;
        this.pump();
      });
    }
  }

  private ensureStream(): grpc.ClientDuplexStream<Req, Res> {
    if (this.stream !== null) return this.stream;
    const stream = this.kind.open();
    this.stream = stream;
    this.writeBlocked = false;
    stream.on('data', (response: Res) => this.onResults(this.kind.results(response)));
    stream.on('error', (err: grpc.ServiceError) => this.onStreamEnd(stream, DaxClientError.fromServiceError(err)));
    stream.on('end', () => this.onStreamEnd(stream, new DaxClientError(grpc.status.UNAVAILABLE, null, 'op stream ended by the server')));
    stream.on('close', () => this.forgetExpired(stream));
    return stream;
  }

  private onResults(results: Result[]): void {
    for (const result of results) {
      const op = this.inFlight.get(result.id);
      if (op === undefined) {
        // Timed out already: the caller has its error; the kind may still act on the result.
        const expired = this.expired.get(result.id);
        if (expired !== undefined) {
          this.expired.delete(result.id);
          this.kind.late?.(expired.sent, result);
        }
        continue;
      }
      this.inFlight.delete(result.id);
      this.bytesInFlight -= op.bytes;
      if (result.error !== null && result.error !== undefined) op.reject(this.kind.error?.(result) ?? DaxClientError.fromOpError(result.error));
      else op.resolve(result);
    }
    this.pump();
  }

  /** The expired ops a stream carried: their results can no longer arrive once it ended. */
  private forgetExpired(stream: grpc.ClientDuplexStream<Req, Res>): void {
    for (const [id, e] of this.expired) if (e.stream === stream) this.expired.delete(id);
  }

  private onStreamEnd(stream: grpc.ClientDuplexStream<Req, Res>, err: DaxClientError): void {
    this.forgetExpired(stream);
    if (this.stream !== stream) return; // an idle stream we closed ourselves
    this.stream = null;
    this.writeBlocked = false;
    this.failInFlight(err);
    this.pump();
  }

  private failInFlight(err: Error): void {
    const ops = [...this.inFlight.values()];
    this.inFlight.clear();
    this.bytesInFlight = 0;
    for (const op of ops) op.reject(err);
  }

  /** The idle timer runs while nothing is in flight; the deadline sweep while something is. */
  private armTimers(): void {
    const busy = this.inFlight.size > 0 || this.waiting.length > 0;
    if (busy && this.idleTimer !== null) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
    if (!busy && this.idleTimer === null && this.stream !== null) {
      this.idleTimer = setTimeout(() => this.closeIdle(), STREAM_IDLE_CLOSE_MS);
      this.idleTimer.unref();
    }
    if (busy && this.deadlineTimer === null) {
      this.deadlineTimer = setInterval(() => this.sweepDeadlines(), 250);
      this.deadlineTimer.unref();
    }
    if (!busy && this.deadlineTimer !== null) {
      clearInterval(this.deadlineTimer);
      this.deadlineTimer = null;
    }
  }

  private closeIdle(): void {
    this.idleTimer = null;
    if (this.inFlight.size > 0 || this.stream === null) return;
    const stream = this.stream;
    this.stream = null;
    stream.end();
  }

  private sweepDeadlines(): void {
    const nowMs = Date.now();
    const late = (op: Waiting<Op, Result>) => op.deadlineMs <= nowMs;
    const err = () => new DaxClientError(grpc.status.DEADLINE_EXCEEDED, null, 'op deadline exceeded');
    for (const [id, op] of this.inFlight) {
      if (!late(op)) continue;
      this.inFlight.delete(id);
      this.bytesInFlight -= op.bytes;
      if (this.kind.late !== undefined && op.sent !== undefined && this.stream !== null) {
        // In flight means sent on the current stream.
        this.expired.set(id, { sent: op.sent, stream: this.stream });
        // Bounded: the oldest expired op's result is given up on (dropped if it comes).
        if (this.expired.size > PIPELINE_OPS_IN_FLIGHT_MAX) this.expired.delete(this.expired.keys().next().value as number);
      }
      op.reject(err());
    }
    const stillWaiting: Waiting<Op, Result>[] = [];
    for (let i = this.waitingHead; i < this.waiting.length; i++) {
      const op = this.waiting[i];
      if (late(op)) op.reject(err());
      else stillWaiting.push(op);
    }
    this.waiting.length = 0;
    this.waiting.push(...stillWaiting);
    this.waitingHead = 0;
    this.pump();
  }

  private clearTimers(): void {
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    if (this.deadlineTimer !== null) clearInterval(this.deadlineTimer);
    this.idleTimer = null;
    this.deadlineTimer = null;
  }
}

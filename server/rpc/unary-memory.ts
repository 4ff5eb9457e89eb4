/**
 * The memory of unary calls that move data, charged to the stream memory account
 * (stream-memory.ts) like the op streams: a server interceptor, so no handler carries
 * accounting code.
 *
 * What is charged, per call (UNARY_COST): a read's reply (the length asked, clamped to
 * what the call can return: RPC_IO_BYTES_MAX, a page for DMA reads, a PMD (PMD_BYTES) for
 * Mapping loads, as a PMD token maps 2 MiB), a write's request
 * data, AccessBatch the sum of both over its ops (at most MESSAGE_BYTES_MAX), FaultBatch a
 * page per op whose reply carries one (READ with load, COW). Taken at
 * all three levels (the call, its connection: CONNECTION_BYTES_BUFFERED_MAX, the server:
 * SERVER_BYTES_BUFFERED_MAX) before the handler runs; given back when the call's status
 * is sent (for an answered call that is after its reply was handed to HTTP/2: grpc-js
 * sends the status from the reply's write callback), or when it is cancelled. Without it,
 * 1024 Files.Read(4 MiB) on one connection whose client never reads make HTTP/2 buffer
 * 4 GiB (issue 10, defect 3).
 *
 * A call that does not fit waits before its handler runs: nothing is done. The wait ends
 * at the call's deadline (DEADLINE_EXCEEDED / ETIMEDOUT) or when the client cancels
 * (CANCELLED). While it waits, its request (and half-close) is held here.
 *
 * A request's bytes are in memory once they arrived whatever we do: that is bounded by
 * MESSAGE_BYTES_MAX per call and STREAMS_PER_CONNECTION_MAX calls per connection, and what
 * HTTP/2 buffers by FLOW_CONTROL_WINDOW_BYTES per connection; this account bounds what the
 * server keeps past that (queued engine work, replies waiting for the peer).
 *
 * Not done: a call whose peer never reads its reply keeps its bytes until the call ends
 * (deadline, cancel, disconnect). A stall timeout that reset such streams closed whole
 * connections under the protocol fuzzer and was left out until understood.
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { BLOCK_SIZE, PMD_BYTES } from '../limits';
import { TimedOutError } from '../errors';
import { methodLabel } from './instrument';
import { MESSAGE_BYTES_MAX, RPC_IO_BYTES_MAX } from './limits';
import { toServiceError } from './status';
import type { StreamAccount, StreamMemory } from './stream-memory';

type Cost = (request: unknown) => number;

/** A requested length as bytes the reply may carry: junk counts 0 (validation refuses it). */
function lengthOf(value: unknown, max: number): number {
  const n = typeof value === 'string' || typeof value === 'number' ? Number(value) : 0;
  if (!Number.isFinite(n) || n <= 0) return 0;
  return Math.min(n, max);
}

function dataOf(m: unknown): number {
  const data = (m as { data?: { length: number } } | null | undefined)?.data;
  return data === undefined || data === null ? 0 : data.length;
}

const readCost = (max: number): Cost => (req) => lengthOf((req as { length?: unknown }).length, max);

function accessBatchCost(req: unknown): number {
  const ops = (req as { ops?: Array<{ store?: boolean; data?: Uint8Array; length?: unknown }> }).ops ?? [];
  let bytes = 0;
  for (const op of ops) bytes += op.store ? dataOf(op) : lengthOf(op.length, PMD_BYTES);
  return Math.min(bytes, MESSAGE_BYTES_MAX);
}

/** FaultBatch: a page per op whose reply carries one (a READ with load, a COW copy). */
function faultBatchCost(req: unknown): number {
  const ops = (req as { ops?: Array<{ load?: boolean; kind?: unknown }> }).ops ?? [];
  let pages = 0;
  for (const op of ops) if (op.load === true || op.kind === 'COW') pages++;
  return Math.min(pages * BLOCK_SIZE, MESSAGE_BYTES_MAX);
}

/** Bytes a data-moving unary call holds, by method label (instrument.ts's methodLabel). */
export const UNARY_COST: Readonly<Record<string, Cost>> = {
  'Files.Read': readCost(RPC_IO_BYTES_MAX),
  'Files.Write': dataOf,
  'Dma.Read': readCost(BLOCK_SIZE),
  'Dma.Write': dataOf,
  'Mapping.Load': readCost(PMD_BYTES),
  'Mapping.Store': dataOf,
  'Mapping.AccessBatch': accessBatchCost,
  'Mapping.FaultBatch': faultBatchCost,
};

interface StreamLike {
  close(code: number): void;
  closed: boolean;
  destroyed: boolean;
}

/** The HTTP/2 stream under a grpc-js server call (internals; null if they moved). Depth-bounded. */
function http2StreamOf(call: unknown): StreamLike | null {
  let c = call as { call?: unknown; nextCall?: unknown; stream?: Partial<StreamLike> } | undefined;
  for (let depth = 0; depth < 16 && c !== undefined && c !== null; depth++) {
    const stream = c.stream;
    if (stream !== undefined && typeof stream.close === 'function') return stream as StreamLike;
    c = (c.nextCall ?? c.call) as typeof c;
  }
  return null;
}

/** The peer reset the call (grpc-js tells us on the next tick): do not start it. */
function callGone(call: unknown): boolean {
  const stream = http2StreamOf(call);
  return stream !== null && (stream.closed || stream.destroyed);
}

export function unaryMemory(memory: StreamMemory, log: Logger): grpc.ServerInterceptor {
  return (method, nextCall) => {
    const cost = method.requestStream || method.responseStream ? undefined : UNARY_COST[methodLabel(method.path)];
    // Nothing to charge: no layer at all (grpc-js chains interceptors by what each returns). A
    // pass-through ServerInterceptingCall forwarded every message, read and write of every
    // op stream: ~2 us of the ~60 us of server JS per 4 KiB stream op (profiled).
    if (cost === undefined) return nextCall as grpc.ServerInterceptingCall;
    const where = methodLabel(method.path);
    let account: StreamAccount | null = null;
    let admitted = false;
    let ended = false;
    let heldHalfClose: (() => void) | null = null;
    let deadlineTimer: NodeJS.Timeout | undefined;
    // Idempotent: the call is over (status sent, or cancelled); every byte goes back.
    const end = (): void => {
      if (ended) return;
      ended = true;
      clearTimeout(deadlineTimer);
      account?.close();
    };
    const call: grpc.ServerInterceptingCall = new grpc.ServerInterceptingCall(nextCall, {
      start: (next) => next({
        onReceiveMessage: (message: unknown, nextMessage) => {
          if (ended || account !== null) {
            nextMessage(message); // a second message: grpc-js answers it
            return;
          }
          const bytes = cost(message);
          const own = memory.open(call.getPeer());
          account = own;
          const admit = (): void => {
            if (ended) return;
            if (callGone(nextCall)) {
              end();
              return;
            }
            // Woken after the I/O phase (setImmediate): when a client goes away, HTTP/2 closes
            // its streams one callback at a time, and a call waiting behind them must see its
            // own close before it would start.
            if (!own.take(bytes, () => setImmediate(admit))) return;
            admitted = true;
            clearTimeout(deadlineTimer);
            nextMessage(message);
            if (heldHalfClose !== null) heldHalfClose();
            heldHalfClose = null;
          };
          admit();
          if (admitted || ended) return;
          const deadline = call.getDeadline();
          const deadlineMs = deadline instanceof Date ? deadline.getTime() : Number(deadline);
          if (Number.isFinite(deadlineMs)) {
            deadlineTimer = setTimeout(() => {
              if (admitted || ended) return;
              own.cancelWait();
              call.sendStatus(statusOf(new TimedOutError(`the deadline passed while waiting for buffer memory (${bytes} bytes; CONNECTION_BYTES_BUFFERED_MAX / SERVER_BYTES_BUFFERED_MAX); nothing was done`), log, where));
            }, Math.max(0, deadlineMs - Date.now()));
            deadlineTimer.unref();
          }
        },
        onReceiveHalfClose: (nextHalfClose) => {
          if (account !== null && !admitted) heldHalfClose = nextHalfClose;
          else nextHalfClose();
        },
        onCancel: () => end(),
      }),
      sendMessage: (message, next) => next(message),
      sendStatus: (status, next) => {
        end();
        next(status);
      },
    });
    return call;
  };
}

function statusOf(err: unknown, log: Logger, where: string): grpc.StatusObject {
  const e = toServiceError(err, log, where);
  return { code: e.code ?? grpc.status.INTERNAL, details: e.details ?? e.message, metadata: e.metadata ?? new grpc.Metadata() };
}

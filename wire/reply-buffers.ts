/**
 * The memory of bulk messages (wire/bulk-codec.ts): read buffers with headroom in front,
 * so a reply's protobuf header and gRPC frame prefix are written in front of the data
 * instead of copying it; message buffers with room for the frame prefix; the pool that
 * reuses 1 MiB read buffers once their reply is written.
 */
import { REPLY_BUFFERS_POOLED_MAX } from './limits';

/**
 * Bytes reserved in front of data read by withHeadroom: enough for the largest header
 * any encoder here writes before a single data field (ReadStreamResponse: results tag +
 * length, id, data tag + length, 2 + 5 + 6 + 6 = 19) plus the 5-byte gRPC frame prefix.
 */
export const HEADROOM_BYTES = 32;

/**
 * Buffers whose first HEADROOM_BYTES are free for a header (made by withHeadroom): only
 * for these does an encoder write in front of the data instead of copying it. A WeakSet
 * of the ArrayBuffers, so a view of anyone else's memory is never written to.
 */
const headroomOwned = new WeakSet<ArrayBufferLike>();

/**
 * A Buffer of `bytes` data bytes preceded by HEADROOM_BYTES of free space, in memory of
 * its own (never Node's shared pool), when bytes >= FRAMABLE_BYTES_MIN; a pooled Buffer
 * (no headroom) below that. Fill it (e.g. the engine's readInto), then put the
 * result (or a prefix of it, `subarray(0, n)`) in a ReadResponse / ReadResult: its
 * encoder writes the header into the headroom and sends data and header as one Buffer,
 * without copying the data.
 */
export function withHeadroom(bytes: number): Buffer {
  // Small reads come from Node's pool (an ArrayBuffer of its own costs more than copying
  // a few KiB): their reply is encoded by copying.
  if (bytes < FRAMABLE_BYTES_MIN) return Buffer.allocUnsafe(bytes);
  if (bytes <= POOLED_DATA_BYTES) {
    const pooled = replyPool.pop();
    if (pooled !== undefined) {
      inPool.delete(pooled.buffer);
      return pooled.subarray(HEADROOM_BYTES, HEADROOM_BYTES + bytes);
    }
  }
  return wholeBuffer(bytes).subarray(HEADROOM_BYTES);
}

/** A headroom buffer's whole memory (headroom + data), marked as ours. */
function wholeBuffer(bytes: number): Buffer {
  // allocUnsafeSlow: memory of its own, not zero-filled (the caller fills the data area;
  // the headroom is overwritten by the header and frame prefix before anything is sent).
  const whole = Buffer.allocUnsafeSlow(HEADROOM_BYTES + bytes);
  headroomOwned.add(whole.buffer);
  return whole;
}

/**
 * Reuse of read-reply buffers (the SDK reads in 1 MiB chunks, so most bulk replies are
 * exactly this size). Only whole buffers of HEADROOM_BYTES + POOLED_DATA_BYTES return to
 * the pool, at most REPLY_BUFFERS_POOLED_MAX of them.
 */
const POOLED_DATA_BYTES = 1024 * 1024;
const replyPool: Buffer[] = [];
/** The ArrayBuffers now in replyPool: a buffer released twice is pooled once. */
const inPool = new WeakSet<ArrayBufferLike>();

/**
 * Gives `data` (a withHeadroom buffer, or a view of one) back for reuse. Ownership: call
 * it only once nothing will read or send that memory again. The op streams call it from
 * the write callback of the reply that carried it: grpc-js runs that callback after
 * HTTP/2 has written the framed bytes to the socket (server/rpc/op-stream.ts). A reply
 * whose write failed or was cancelled is never released (the GC takes it). Anything that
 * is not a whole pooled-size headroom buffer is ignored.
 */
export function releaseHeadroom(data: Uint8Array): void {
  const backing = data.buffer;
  if (backing.byteLength !== HEADROOM_BYTES + POOLED_DATA_BYTES || !headroomOwned.has(backing) || inPool.has(backing)) return;
  if (replyPool.length >= REPLY_BUFFERS_POOLED_MAX) return;
  inPool.add(backing);
  replyPool.push(Buffer.from(backing, 0, backing.byteLength));
}

/** Buffers idle in the pool (tests). */
export function pooledReplyBuffers(): number {
  return replyPool.length;
}

/**
 * `header` bytes written right in front of `data` if it sits at the start of a
 * withHeadroom buffer's data area (so the header, plus a frame prefix, fits in front):
 * the Buffer [header, data) over the same memory. null otherwise.
 */
export function inFront(data: Uint8Array, header: number[]): Buffer | null {
  if (data.byteOffset !== HEADROOM_BYTES || !headroomOwned.has(data.buffer)) return null;
  const start = data.byteOffset - header.length;
  const out = Buffer.from(data.buffer, start, header.length + data.length);
  for (let i = 0; i < header.length; i++) out[i] = header[i];
  return out;
}

/** Bytes of the gRPC frame prefix (compressed flag, 4-byte big-endian length). */
export const FRAME_PREFIX_BYTES = 5;

/**
 * A message encoded into a headroom buffer (in front of its data, or by an encoder that
 * left room), framed in place: the 5-byte gRPC prefix written in front of it, and the
 * framed message returned over the same memory. null if `message` is not such a buffer
 * (the caller frames it by copying, as grpc-js does).
 */
export function framedInPlace(message: Uint8Array): Buffer | null {
  if (message.byteOffset < FRAME_PREFIX_BYTES || !headroomOwned.has(message.buffer)) return null;
  const framed = Buffer.from(message.buffer, message.byteOffset - FRAME_PREFIX_BYTES, FRAME_PREFIX_BYTES + message.length);
  framed[0] = 0; // not compressed
  framed.writeUInt32BE(message.length, 1);
  return framed;
}

/** A Buffer of `bytes` with room for the frame prefix in front (framedInPlace frames it without a copy). */
function framable(bytes: number): Buffer {
  const whole = Buffer.allocUnsafeSlow(FRAME_PREFIX_BYTES + bytes);
  headroomOwned.add(whole.buffer);
  return whole.subarray(FRAME_PREFIX_BYTES);
}


/**
 * Messages at least this long are encoded into a buffer of their own with room for the
 * frame prefix (framed in place, no second copy); smaller ones come from Node's pool
 * (allocUnsafe), where a copy costs less than an allocation of its own.
 */
const FRAMABLE_BYTES_MIN = 16 * 1024;

export function allocMessage(bytes: number): Buffer {
  return bytes >= FRAMABLE_BYTES_MIN ? framable(bytes) : Buffer.allocUnsafe(bytes);
}

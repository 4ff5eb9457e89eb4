/**
 * Hand-written protobuf codecs for the messages that carry file data: ReadResponse,
 * ReadStreamResponse (server encodes, SDK decodes) and WriteRequest, WriteStreamRequest
 * (SDK encodes, server decodes). They replace @grpc/proto-loader's protobufjs
 * (de)serializers on those RPCs only, on both ends.
 *
 * Contract: the bytes are exactly protobufjs's. An encoder writes what
 * `Type.encode(Type.fromObject(obj)).finish()` writes for the same object (fields in field
 * number order; a field present in the object is written even when zero, as protobufjs
 * does); a decoder returns what `Type.toObject(Type.decode(buf), PROTO_LOADER_OPTIONS)`
 * returns (uint64 as decimal strings, defaults filled in, unknown fields skipped, the last
 * of repeated scalar occurrences wins, a repeated message field appends). An object the
 * fast path does not cover (a Long, a base64 string for bytes, a negative or fractional
 * number...) goes to protobufjs itself, so the bytes never differ.
 * test/unit/bulk-codec.test.ts checks both against protobufjs on random messages.
 *
 * Why: protobufjs copies every data field into its writer's buffer (then grpc-js copies
 * the message once more into its framed buffer). Here:
 *   - an encoder copies each data field once, into one outgoing Buffer, and when the
 *     data already lives in a Buffer made by `withHeadroom` (a Read reply read straight
 *     from the mapping into it), it writes the few header bytes in front of the data and
 *     copies nothing (withHeadroom);
 *   - a decoder returns `data` as a view (subarray) of the incoming message, no copy.
 *
 * Ownership of views (decoders): `data` points into the Buffer grpc-js assembled for this
 * one message (its StreamDecoder concatenates the HTTP/2 chunks into a fresh Buffer per
 * message), so nothing else writes to it; it stays valid as long as it is referenced. The
 * server hands it to the engine, which copies it into the mapping before the write's
 * promise settles, and keeps no reference after that (server/fs/file-data.ts copies; op
 * streams drop the op once answered), so the message's memory is freed with the request.
 */
import * as protobuf from 'protobufjs';
import { REPLY_BUFFERS_POOLED_MAX } from './limits';

const utf8 = protobuf.util.utf8;

/** Field tags (field number << 3 | wire type). */
const TAG = {
  // ReadResponse / WriteRequest / ReadResult / WriteOp / OpError share the small numbers.
  f1Varint: 0x08, f1Len: 0x0a, f2Varint: 0x10, f2Len: 0x12, f3Varint: 0x18, f3Len: 0x1a, f4Varint: 0x20, f4Len: 0x22, f5Varint: 0x28,
} as const;

// ---- sizes and writes ----------------------------------------------------------

/** Bytes of a varint holding n (0 <= n < 2^53). */
export function varintBytes(n: number): number {
  if (n < 0x80) return 1;
  if (n < 0x4000) return 2;
  if (n < 0x200000) return 3;
  if (n < 0x10000000) return 4;
  let bytes = 4;
  for (let v = Math.floor(n / 0x10000000); v > 0; v = Math.floor(v / 0x80)) bytes++;
  return bytes;
}

/** Writes n (0 <= n < 2^53) as a varint at pos; returns the position after it. */
function writeVarint(buf: Uint8Array, pos: number, n: number): number {
  while (n >= 0x80) {
    buf[pos++] = (n % 0x80) | 0x80;
    n = Math.floor(n / 0x80);
  }
  buf[pos++] = n;
  return pos;
}

/** A uint64 field's value as a safe non-negative integer, or null if only protobufjs can encode it. */
function u64Of(value: unknown): number | null {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : null;
  if (typeof value === 'string' && /^[0-9]{1,16}$/.test(value)) {
    const n = Number(value);
    return Number.isSafeInteger(n) ? n : null;
  }
  return null;
}

/** A uint32 field's value as protobufjs's fromObject makes it (`>>> 0`), or null if not a plain number. */
function u32Of(value: unknown): number | null {
  return typeof value === 'number' ? value >>> 0 : null;
}

/** protobufjs's test for a field being set (`!= null`): neither null nor undefined. */
function present(value: unknown): boolean {
  return value !== null && value !== undefined;
}

function isBytes(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array;
}

// ---- zero-copy replies: headroom ------------------------------------------------

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
function inFront(data: Uint8Array, header: number[]): Buffer | null {
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

/** Varint bytes of n as an array (for headers written in front of data). */
function varintArray(out: number[], n: number): void {
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
}

/**
 * Messages at least this long are encoded into a buffer of their own with room for the
 * frame prefix (framed in place, no second copy); smaller ones come from Node's pool
 * (allocUnsafe), where a copy costs less than an allocation of its own.
 */
const FRAMABLE_BYTES_MIN = 16 * 1024;

function allocMessage(bytes: number): Buffer {
  return bytes >= FRAMABLE_BYTES_MIN ? framable(bytes) : Buffer.allocUnsafe(bytes);
}

// ---- OpError (part of ReadResult) ------------------------------------------------

interface OpErrorLike {
  code?: unknown;
  reason?: unknown;
  message?: unknown;
}

/** The encoded size of an OpError body, or null if protobufjs must encode it. */
function opErrorBytes(e: OpErrorLike): number | null {
  let n = 0;
  if (present(e.code)) {
    const code = u32Of(e.code);
    if (code === null) return null;
    n += 1 + varintBytes(code);
  }
  for (const s of [e.reason, e.message]) {
    if (!present(s)) continue;
    if (typeof s !== 'string') return null;
    const len = utf8.length(s);
    n += 1 + varintBytes(len) + len;
  }
  return n;
}

function writeOpError(buf: Buffer, pos: number, e: OpErrorLike): number {
  if (present(e.code)) {
    buf[pos++] = TAG.f1Varint;
    pos = writeVarint(buf, pos, (e.code as number) >>> 0);
  }
  const strings: Array<[number, unknown]> = [[TAG.f2Len, e.reason], [TAG.f3Len, e.message]];
  for (const [tag, s] of strings) {
    if (!present(s)) continue;
    buf[pos++] = tag;
    pos = writeVarint(buf, pos, utf8.length(s as string));
    pos += utf8.write(s as string, buf, pos);
  }
  return pos;
}

// ---- encoders --------------------------------------------------------------------

/** What an encoder falls back to: proto-loader's serializer of the same type. */
export type Serialize = (value: unknown) => Buffer;

/** ReadResponse { bytes data = 1 }. */
export function encodeReadResponse(value: unknown, fallback: Serialize): Buffer {
  const data = (value as { data?: unknown } | null)?.data;
  if (!present(data)) return fallback(value);
  if (!isBytes(data)) return fallback(value);
  const header: number[] = [TAG.f1Len];
  varintArray(header, data.length);
  const zeroCopy = inFront(data, header);
  if (zeroCopy !== null) return zeroCopy;
  const out = allocMessage(header.length + data.length);
  for (let i = 0; i < header.length; i++) out[i] = header[i];
  out.set(data, header.length);
  return out;
}

interface ReadResultLike {
  id?: unknown;
  data?: unknown;
  error?: OpErrorLike | null;
}

/** ReadStreamResponse { repeated ReadResult results = 1 }, ReadResult { uint32 id = 1; bytes data = 2; OpError error = 3 }. */
export function encodeReadStreamResponse(value: unknown, fallback: Serialize): Buffer {
  const results = (value as { results?: unknown } | null)?.results;
  if (!Array.isArray(results)) return fallback(value);
  // Sizes first (and whether the fast path covers every result).
  const bodies = new Array<number>(results.length);
  const errorBodies = new Array<number>(results.length);
  let total = 0;
  for (let i = 0; i < results.length; i++) {
    const r = results[i] as ReadResultLike | null;
    if (r === null || typeof r !== 'object') return fallback(value);
    let n = 0;
    if (present(r.id)) {
      const id = u32Of(r.id);
      if (id === null) return fallback(value);
      n += 1 + varintBytes(id);
    }
    if (present(r.data)) {
      if (!isBytes(r.data)) return fallback(value);
      n += 1 + varintBytes(r.data.length) + r.data.length;
    }
    if (present(r.error)) {
      if (typeof r.error !== 'object') return fallback(value);
      const e = opErrorBytes(r.error as OpErrorLike);
      if (e === null) return fallback(value);
      errorBodies[i] = e;
      n += 1 + varintBytes(e) + e;
    }
    bodies[i] = n;
    total += 1 + varintBytes(n) + n;
  }
  // One result whose data ends the message, read into a headroom buffer: header in front.
  if (results.length === 1) {
    const r = results[0] as ReadResultLike;
    if (!present(r.error) && isBytes(r.data)) {
      const header: number[] = [TAG.f1Len];
      varintArray(header, bodies[0]);
      if (present(r.id)) {
        header.push(TAG.f1Varint);
        varintArray(header, (r.id as number) >>> 0);
      }
      header.push(TAG.f2Len);
      varintArray(header, r.data.length);
      const zeroCopy = inFront(r.data, header);
      if (zeroCopy !== null) return zeroCopy;
    }
  }
  const out = allocMessage(total);
  let pos = 0;
  for (let i = 0; i < results.length; i++) {
    const r = results[i] as ReadResultLike;
    out[pos++] = TAG.f1Len;
    pos = writeVarint(out, pos, bodies[i]);
    if (present(r.id)) {
      out[pos++] = TAG.f1Varint;
      pos = writeVarint(out, pos, (r.id as number) >>> 0);
    }
    if (present(r.data)) {
      const data = r.data as Uint8Array;
      out[pos++] = TAG.f2Len;
      pos = writeVarint(out, pos, data.length);
      out.set(data, pos);
      pos += data.length;
    }
    if (present(r.error)) {
      out[pos++] = TAG.f3Len;
      pos = writeVarint(out, pos, errorBodies[i]);
      pos = writeOpError(out, pos, r.error as OpErrorLike);
    }
  }
  return out;
}

interface WriteFields {
  id?: unknown;
  ino?: unknown;
  offset?: unknown;
  data?: unknown;
  sync?: unknown;
}

/**
 * The size of a WriteRequest (withId false: ino = 1, offset = 2, data = 3, sync = 4) or
 * WriteOp body (withId true: id = 1, ino = 2, offset = 3, data = 4, sync = 5), or null if
 * protobufjs must encode it.
 */
function writeFieldsBytes(m: WriteFields, withId: boolean): number | null {
  let n = 0;
  if (withId && present(m.id)) {
    const id = u32Of(m.id);
    if (id === null) return null;
    n += 1 + varintBytes(id);
  }
  for (const v of [m.ino, m.offset]) {
    if (!present(v)) continue;
    const u = u64Of(v);
    if (u === null) return null;
    n += 1 + varintBytes(u);
  }
  if (present(m.data)) {
    if (!isBytes(m.data)) return null;
    n += 1 + varintBytes(m.data.length) + m.data.length;
  }
  if (present(m.sync)) n += 2;
  return n;
}

function writeWriteFields(out: Buffer, pos: number, m: WriteFields, withId: boolean): number {
  let field = 1;
  if (withId) {
    if (present(m.id)) {
      out[pos++] = TAG.f1Varint;
      pos = writeVarint(out, pos, (m.id as number) >>> 0);
    }
    field = 2;
  }
  if (present(m.ino)) {
    out[pos++] = (field << 3) | 0;
    pos = writeVarint(out, pos, u64Of(m.ino) as number);
  }
  if (present(m.offset)) {
    out[pos++] = ((field + 1) << 3) | 0;
    pos = writeVarint(out, pos, u64Of(m.offset) as number);
  }
  if (present(m.data)) {
    const data = m.data as Uint8Array;
    out[pos++] = ((field + 2) << 3) | 2;
    pos = writeVarint(out, pos, data.length);
    out.set(data, pos);
    pos += data.length;
  }
  if (present(m.sync)) {
    out[pos++] = ((field + 3) << 3) | 0;
    out[pos++] = m.sync ? 1 : 0;
  }
  return pos;
}

/** WriteRequest { uint64 ino = 1; uint64 offset = 2; bytes data = 3; bool sync = 4 }. */
export function encodeWriteRequest(value: unknown, fallback: Serialize): Buffer {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return fallback(value);
  const n = writeFieldsBytes(value as WriteFields, false);
  if (n === null) return fallback(value);
  const out = allocMessage(n);
  writeWriteFields(out, 0, value as WriteFields, false);
  return out;
}

/** WriteStreamRequest { repeated WriteOp ops = 1 }, WriteOp { uint32 id = 1; uint64 ino = 2; uint64 offset = 3; bytes data = 4; bool sync = 5 }. */
export function encodeWriteStreamRequest(value: unknown, fallback: Serialize): Buffer {
  const ops = (value as { ops?: unknown } | null)?.ops;
  if (!Array.isArray(ops)) return fallback(value);
  const bodies = new Array<number>(ops.length);
  let total = 0;
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i] as WriteFields | null;
    if (op === null || typeof op !== 'object') return fallback(value);
    const n = writeFieldsBytes(op, true);
    if (n === null) return fallback(value);
    bodies[i] = n;
    total += 1 + varintBytes(n) + n;
  }
  const out = allocMessage(total);
  let pos = 0;
  for (let i = 0; i < ops.length; i++) {
    out[pos++] = TAG.f1Len;
    pos = writeVarint(out, pos, bodies[i]);
    pos = writeWriteFields(out, pos, ops[i] as WriteFields, true);
  }
  return out;
}

// ---- decoders --------------------------------------------------------------------

/** The input does not parse as the message (a decoder throws this; callers map it). */
export class BulkDecodeError extends Error {}

/** A bounds-checked reader over [pos, end) of one message. */
class Reader {
  constructor(readonly buf: Buffer, public pos: number, readonly end: number) {}

  /** A varint as a number when below 2^53; larger ones only through u64String. */
  varint(): number {
    let n = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new BulkDecodeError('a varint is cut short');
      const b = this.buf[this.pos++];
      n += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) return n;
      scale *= 0x80;
    }
    throw new BulkDecodeError('a varint is longer than 10 bytes');
  }

  /** A uint64 varint as protobufjs's `longs: String` gives it: its exact decimal value (mod 2^64). */
  u64String(): string {
    const start = this.pos;
    const n = this.varint();
    if (Number.isSafeInteger(n)) return String(n);
    let v = 0n;
    for (let i = this.pos - 1; i >= start; i--) v = (v << 7n) | BigInt(this.buf[i] & 0x7f);
    return BigInt.asUintN(64, v).toString();
  }

  /** A uint32 varint as protobufjs reads it: the low 32 bits. */
  u32(): number {
    const start = this.pos;
    this.varint();
    let v = 0;
    for (let i = Math.min(this.pos, start + 5) - 1; i >= start; i--) v = v * 0x80 + (this.buf[i] & 0x7f);
    return v % 2 ** 32;
  }

  /** A LEN field's [start, end), checked against the message. */
  len(): [number, number] {
    const n = this.varint();
    if (n > this.end - this.pos) throw new BulkDecodeError(`a length-delimited field overruns the message (${n} bytes declared, ${this.end - this.pos} left)`);
    const start = this.pos;
    this.pos += n;
    return [start, this.pos];
  }

  bytes(): Buffer {
    const [s, e] = this.len();
    return this.buf.subarray(s, e);
  }

  /** Skips a field of an unknown number (or of an unexpected wire type: protobufjs skips it too). */
  skip(wireType: number): void {
    switch (wireType) {
      case 0: this.varint(); break;
      case 1: this.advance(8); break;
      case 2: this.len(); break;
      case 5: this.advance(4); break;
      default: throw new BulkDecodeError(`wire type ${wireType} is not used by proto3`);
    }
  }

  private advance(n: number): void {
    if (n > this.end - this.pos) throw new BulkDecodeError('a fixed-size field is cut short');
    this.pos += n;
  }
}

/** The tag of the next field: [field number, wire type]. */
function tagOf(r: Reader): [number, number] {
  const key = r.varint();
  return [Math.floor(key / 8), key % 8];
}

/** The empty `data` of a message that has none: a fresh Buffer (as protobufjs's default). */
function noData(): Buffer {
  return Buffer.alloc(0);
}

export interface WriteRequestObject {
  ino: string;
  offset: string;
  data: Buffer;
  sync: boolean;
}

export interface WriteOpObject extends WriteRequestObject {
  id: number;
}

/** Decodes a WriteRequest (withId false) or WriteOp body (withId true) in [start, end). */
function decodeWriteFields(buf: Buffer, start: number, end: number, withId: boolean): WriteOpObject {
  // The same keys in the same order as protobufjs's toObject (deepEqual does not care; logs do).
  const out = (withId ? { id: 0, ino: '0', offset: '0', data: null, sync: false } : { ino: '0', offset: '0', data: null, sync: false }) as unknown as WriteOpObject;
  let data: Buffer | null = null;
  const r = new Reader(buf, start, end);
  const shift = withId ? 1 : 0;
  while (r.pos < r.end) {
    const [field, wireType] = tagOf(r);
    const f = field - shift;
    if (withId && field === 1 && wireType === 0) out.id = r.u32();
    else if (f === 1 && wireType === 0) out.ino = r.u64String();
    else if (f === 2 && wireType === 0) out.offset = r.u64String();
    else if (f === 3 && wireType === 2) data = r.bytes();
    else if (f === 4 && wireType === 0) out.sync = r.varint() !== 0;
    else r.skip(wireType);
  }
  out.data = data === null || data.length === 0 ? noData() : data;
  return out;
}

/** WriteRequest as proto-loader decodes it, `data` a view of `buf`. Throws BulkDecodeError. */
export function decodeWriteRequest(buf: Buffer): WriteRequestObject {
  return decodeWriteFields(buf, 0, buf.length, false);
}

/** WriteStreamRequest as proto-loader decodes it, each op's `data` a view of `buf`. Throws BulkDecodeError. */
export function decodeWriteStreamRequest(buf: Buffer): { ops: WriteOpObject[] } {
  const ops: WriteOpObject[] = [];
  const r = new Reader(buf, 0, buf.length);
  while (r.pos < r.end) {
    const [field, wireType] = tagOf(r);
    if (field === 1 && wireType === 2) {
      const [s, e] = r.len();
      ops.push(decodeWriteFields(buf, s, e, true));
    } else {
      r.skip(wireType);
    }
  }
  return { ops };
}

export interface OpErrorObject {
  code: number;
  reason: string;
  message: string;
}

export interface ReadResultObject {
  id: number;
  data: Buffer;
  error: OpErrorObject | null;
}

function decodeOpError(buf: Buffer, start: number, end: number): OpErrorObject {
  const out: OpErrorObject = { code: 0, reason: '', message: '' };
  const r = new Reader(buf, start, end);
  while (r.pos < r.end) {
    const [field, wireType] = tagOf(r);
    if (field === 1 && wireType === 0) out.code = r.u32();
    else if ((field === 2 || field === 3) && wireType === 2) {
      const [s, e] = r.len();
      const text = utf8.read(buf, s, e);
      if (field === 2) out.reason = text;
      else out.message = text;
    } else r.skip(wireType);
  }
  return out;
}

/** ReadResponse as proto-loader decodes it, `data` a view of `buf`. Throws BulkDecodeError. */
export function decodeReadResponse(buf: Buffer): { data: Buffer } {
  let data: Buffer | null = null;
  const r = new Reader(buf, 0, buf.length);
  while (r.pos < r.end) {
    const [field, wireType] = tagOf(r);
    if (field === 1 && wireType === 2) data = r.bytes();
    else r.skip(wireType);
  }
  return { data: data === null || data.length === 0 ? noData() : data };
}

/** ReadStreamResponse as proto-loader decodes it, each `data` a view of `buf`. Throws BulkDecodeError. */
export function decodeReadStreamResponse(buf: Buffer): { results: ReadResultObject[] } {
  const results: ReadResultObject[] = [];
  const r = new Reader(buf, 0, buf.length);
  while (r.pos < r.end) {
    const [field, wireType] = tagOf(r);
    if (field !== 1 || wireType !== 2) {
      r.skip(wireType);
      continue;
    }
    const [s, e] = r.len();
    const result = { id: 0, data: null, error: null } as unknown as ReadResultObject;
    let data: Buffer | null = null;
    const inner = new Reader(buf, s, e);
    while (inner.pos < inner.end) {
      const [f, w] = tagOf(inner);
      if (f === 1 && w === 0) result.id = inner.u32();
      else if (f === 2 && w === 2) data = inner.bytes();
      else if (f === 3 && w === 2) {
        const [es, ee] = inner.len();
        result.error = decodeOpError(buf, es, ee);
      } else inner.skip(w);
    }
    result.data = data === null || data.length === 0 ? noData() : data;
    results.push(result);
  }
  return { results };
}

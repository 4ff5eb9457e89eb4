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
import { allocMessage, inFront } from './reply-buffers';

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

/** Varint bytes of n as an array (for headers written in front of data). */
function varintArray(out: number[], n: number): void {
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
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

export {
  FRAME_PREFIX_BYTES, framedInPlace, HEADROOM_BYTES, pooledReplyBuffers, releaseHeadroom, withHeadroom,
} from './reply-buffers';
export {
  BulkDecodeError, decodeReadResponse, decodeReadStreamResponse, decodeWriteRequest, decodeWriteStreamRequest,
  type OpErrorObject, type ReadResultObject, type WriteOpObject, type WriteRequestObject,
} from './bulk-decode';

/**
 * The decoders of wire/bulk-codec.ts (its header states the contract): WriteRequest and
 * WriteStreamRequest (server), ReadResponse and ReadStreamResponse (SDK), `data` always a
 * view of the received message.
 */
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
      // Node's decoder, as protobufjs's Buffer reader uses: invalid UTF-8 becomes U+FFFD
      // and never reads past the field (its pure-JS utf8.read may).
      const text = buf.toString('utf8', s, e);
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

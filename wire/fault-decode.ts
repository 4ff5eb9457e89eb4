/**
 * Hand-written decoders for Mapping.FaultBatch (the request on the server, the reply in
 * the SDK). A FaultBatch carries up to MAPPING_BATCH_OPS_MAX ops or outcomes, and the
 * generic path cost more per op than the fault itself: the strict walk, then protobufjs's
 * decode into message instances (a Long per uint64), then toObject (a Long.toString per
 * uint64). These decode in one pass into exactly the plain objects protobufjs's
 * toObject gives with the contract's options (wire/proto.ts: uint64 as decimal strings,
 * enums as names or the bare number, defaults filled in, a missing message as null), so
 * their users see nothing new (test/unit/fault-decode.test.ts compares them).
 *
 * The request decoder is strict as server/rpc/strict-decode.ts's walk is (its rules, the
 * same for every field of these three messages): every tag a complete varint with a field
 * number >= 1 and a proto3 wire type, every value complete (a varint within 10 bytes and
 * 64 bits, fixed values whole, a LEN within what is left), a known field with its type's
 * wire type, the enum within 32 bits; unknown fields skipped once their framing is
 * checked. Anything else throws WireDecodeError, which the server answers with
 * INVALID_ARGUMENT / EBADMSG (never INTERNAL). A bool is any varint that is not 0.
 *
 * The reply decoder returns `data` as a view of the reply buffer (subarray, no copy), as
 * protobufjs's Buffer reader did: grpc-js hands each message's buffer to the deserializer
 * once and keeps no reference to it, so the views own what they cover.
 */

/** A FaultBatch message that is not well-formed protobuf for its type. */
export class WireDecodeError extends Error {}

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

/** A bounds-checked cursor; varints are read into lo/hi (32 bits each, unsigned). */
class Reader {
  lo = 0;
  hi = 0;
  constructor(readonly buf: Buffer, public pos: number, public end: number) {}

  /** Reads a varint into lo/hi; refuses one cut short, longer than 10 bytes or past 64 bits. */
  varint(): void {
    const buf = this.buf;
    let pos = this.pos;
    const end = this.end;
    if (pos < end && buf[pos] < 128) { // the common case: one byte
      this.lo = buf[pos];
      this.hi = 0;
      this.pos = pos + 1;
      return;
    }
    // Bit operations on 32-bit halves (no floating-point powers: this runs per field).
    let lo = 0;
    for (let shift = 0; shift < 28; shift += 7) { // bytes 1..4: bits 0..27
      if (pos >= end) throw new WireDecodeError('a varint is cut short');
      const b = buf[pos++];
      lo |= (b & 0x7f) << shift;
      if (b < 128) {
        this.lo = lo;
        this.hi = 0;
        this.pos = pos;
        return;
      }
    }
    if (pos >= end) throw new WireDecodeError('a varint is cut short');
    let b = buf[pos++]; // byte 5: bits 28..34
    lo = (lo | ((b & 0x0f) << 28)) >>> 0;
    let hi = (b & 0x7f) >> 4;
    if (b < 128) {
      this.lo = lo;
      this.hi = hi;
      this.pos = pos;
      return;
    }
    for (let shift = 3; shift < 31; shift += 7) { // bytes 6..9: bits 35..62
      if (pos >= end) throw new WireDecodeError('a varint is cut short');
      b = buf[pos++];
      hi |= (b & 0x7f) << shift;
      if (b < 128) {
        this.lo = lo;
        this.hi = hi >>> 0;
        this.pos = pos;
        return;
      }
    }
    if (pos >= end) throw new WireDecodeError('a varint is cut short');
    b = buf[pos++]; // byte 10: bit 63
    if ((b & 0x7f) > 1) throw new WireDecodeError('a varint does not fit 64 bits');
    if (b < 128) {
      this.lo = lo;
      this.hi = (hi | ((b & 1) << 31)) >>> 0;
      this.pos = pos;
      return;
    }
    throw new WireDecodeError('a varint is longer than 10 bytes');
  }

  /** The varint just read as protobufjs writes a uint64 with longs: String. */
  u64String(): string {
    if (this.hi < 2 ** 21) return String(this.hi * 2 ** 32 + this.lo);
    return ((BigInt(this.hi) << 32n) + BigInt(this.lo)).toString();
  }

  /** A LEN field's bytes [start, end), checked against what is left. */
  length(what: string): number {
    this.varint();
    if (this.hi !== 0 || this.lo > this.end - this.pos) {
      throw new WireDecodeError(`${what} overruns the message (${this.hi === 0 ? this.lo : '>= 2^32'} bytes declared, ${this.end - this.pos} left)`);
    }
    return this.lo;
  }

  /** Skips an unknown field's value after checking its framing. */
  skip(wireType: number, what: string): void {
    switch (wireType) {
      case WIRE_VARINT: this.varint(); return;
      case WIRE_I64: this.fixed(8, what); return;
      case WIRE_I32: this.fixed(4, what); return;
      case WIRE_LEN: {
        const n = this.length(what); // (advances pos past the length first)
        this.pos += n;
        return;
      }
      default: throw new WireDecodeError(`${what} has wire type ${wireType}, which proto3 does not use`);
    }
  }

  private fixed(bytes: number, what: string): void {
    if (bytes > this.end - this.pos) throw new WireDecodeError(`${what} overruns the message (${bytes} bytes declared, ${this.end - this.pos} left)`);
    this.pos += bytes;
  }

  /** The next tag as field number * 8 + wire type (a field number >= 1 that fits 32 bits). */
  tag(): number {
    this.varint();
    if (this.hi !== 0) throw new WireDecodeError('a field tag does not fit 32 bits');
    if (this.lo < 8) throw new WireDecodeError('field number 0');
    return this.lo;
  }
}

function wrongWire(name: string, got: number, want: number): WireDecodeError {
  return new WireDecodeError(`${name} has wire type ${got}, its type needs ${want}`);
}

/** FaultRequest.Kind by number (enums: String). */
const FAULT_KIND_NAMES: Readonly<Record<number, string>> = { 0: 'KIND_UNSPECIFIED', 1: 'READ', 2: 'WRITE', 3: 'COW' };

/** FaultRequest.Size by number (enums: String). */
const FAULT_SIZE_NAMES: Readonly<Record<number, string>> = { 0: 'PAGE', 1: 'PMD' };

/**
 * The varint just read as an int32 (an enum's wire type): within 32 bits, or a negative
 * int32 sign-extended to 64; anything else is refused, as the strict walk refuses it.
 */
function int32(r: Reader, name: string): number {
  if (r.hi === 0 && r.lo < 2 ** 31) return r.lo;
  if (r.hi === 0xffffffff && r.lo >= 2 ** 31) return r.lo - 2 ** 32;
  throw new WireDecodeError(`${name} does not fit its 32-bit type`);
}

/** A FaultOp as the server's handlers see it (protobufjs's toObject, defaults on). */
export interface DecodedFaultOp {
  pgoff: string;
  kind: string | number;
  sync: boolean;
  load: boolean;
  /** 'PAGE', 'PMD', or the bare number of a value this side does not know. */
  size: string | number;
}

export interface DecodedFaultBatchRequest {
  session_id: string;
  ino: string;
  ops: DecodedFaultOp[];
}

function decodeFaultOp(r: Reader, end: number): DecodedFaultOp {
  const outerEnd = r.end;
  r.end = end;
  const op: DecodedFaultOp = { pgoff: '0', kind: 'KIND_UNSPECIFIED', sync: false, load: false, size: 'PAGE' };
  while (r.pos < end) {
    const tag = r.tag();
    const wire = tag & 7;
    const field = tag >>> 3;
    if (field >= 1 && field <= 5) {
      if (wire !== WIRE_VARINT) throw wrongWire(['', 'FaultOp.pgoff', 'FaultOp.kind', 'FaultOp.sync', 'FaultOp.load', 'FaultOp.size'][field], wire, WIRE_VARINT);
      r.varint();
      if (field === 1) op.pgoff = r.u64String();
      else if (field === 2) {
        const n = int32(r, 'FaultOp.kind');
        op.kind = FAULT_KIND_NAMES[n] ?? n;
      } else if (field === 3) op.sync = r.lo !== 0 || r.hi !== 0;
      else if (field === 4) op.load = r.lo !== 0 || r.hi !== 0;
      else {
        const n = int32(r, 'FaultOp.size');
        op.size = FAULT_SIZE_NAMES[n] ?? n;
      }
    } else r.skip(wire, `unknown field ${field}`);
  }
  r.end = outerEnd;
  return op;
}

/** FaultBatchRequest { string session_id = 1; uint64 ino = 2; repeated FaultOp ops = 3 }. */
export function decodeFaultBatchRequest(buf: Buffer): DecodedFaultBatchRequest {
  const r = new Reader(buf, 0, buf.length);
  const req: DecodedFaultBatchRequest = { session_id: '', ino: '0', ops: [] };
  while (r.pos < r.end) {
    const tag = r.tag();
    const wire = tag & 7;
    const field = tag >>> 3;
    if (field === 1) {
      if (wire !== WIRE_LEN) throw wrongWire('FaultBatchRequest.session_id', wire, WIRE_LEN);
      const n = r.length('FaultBatchRequest.session_id');
      req.session_id = buf.toString('utf8', r.pos, r.pos + n);
      r.pos += n;
    } else if (field === 2) {
      if (wire !== WIRE_VARINT) throw wrongWire('FaultBatchRequest.ino', wire, WIRE_VARINT);
      r.varint();
      req.ino = r.u64String();
    } else if (field === 3) {
      if (wire !== WIRE_LEN) throw wrongWire('FaultBatchRequest.ops', wire, WIRE_LEN);
      const n = r.length('FaultBatchRequest.ops');
      req.ops.push(decodeFaultOp(r, r.pos + n));
    } else r.skip(wire, `unknown field ${field}`);
  }
  return req;
}

/** The reply as the SDK sees it (protobufjs's toObject with the contract's options). */
export interface DecodedPte {
  pgoff: string;
  pfn: string;
  writable: boolean;
  token: string;
  /** 'PAGE' (also from a server that never sends it), 'PMD', or a newer server's number. */
  size: string | number;
  /** Empty unless a PMD fault fell back to a PAGE fault: the reason's name. */
  fallback_reason: string;
}

export interface DecodedOpError {
  code: number;
  reason: string;
  message: string;
}

export interface DecodedFaultOutcome {
  pte: DecodedPte | null;
  data: Buffer;
  error: DecodedOpError | null;
}

function str(r: Reader, name: string): string {
  const n = r.length(name);
  const s = r.buf.toString('utf8', r.pos, r.pos + n);
  r.pos += n;
  return s;
}

function decodePte(r: Reader, end: number): DecodedPte {
  const outerEnd = r.end;
  r.end = end;
  const pte: DecodedPte = { pgoff: '0', pfn: '0', writable: false, token: '', size: 'PAGE', fallback_reason: '' };
  while (r.pos < end) {
    const tag = r.tag();
    const wire = tag & 7;
    const field = tag >>> 3;
    if ((field >= 1 && field <= 3) || field === 5) {
      if (wire !== WIRE_VARINT) throw wrongWire(['', 'Pte.pgoff', 'Pte.pfn', 'Pte.writable', '', 'Pte.size'][field], wire, WIRE_VARINT);
      r.varint();
      if (field === 1) pte.pgoff = r.u64String();
      else if (field === 2) pte.pfn = r.u64String();
      else if (field === 3) pte.writable = r.lo !== 0 || r.hi !== 0;
      else {
        const n = r.lo | 0; // int32: the low 32 bits, as protobufjs keeps (a reply is not walked strictly)
        pte.size = FAULT_SIZE_NAMES[n] ?? n;
      }
    } else if (field === 4 || field === 6) {
      if (wire !== WIRE_LEN) throw wrongWire(field === 4 ? 'Pte.token' : 'Pte.fallback_reason', wire, WIRE_LEN);
      if (field === 4) pte.token = str(r, 'Pte.token');
      else pte.fallback_reason = str(r, 'Pte.fallback_reason');
    } else r.skip(wire, `unknown field ${field}`);
  }
  r.end = outerEnd;
  return pte;
}

function decodeOpError(r: Reader, end: number): DecodedOpError {
  const outerEnd = r.end;
  r.end = end;
  const e: DecodedOpError = { code: 0, reason: '', message: '' };
  while (r.pos < end) {
    const tag = r.tag();
    const wire = tag & 7;
    const field = tag >>> 3;
    if (field === 1) {
      if (wire !== WIRE_VARINT) throw wrongWire('OpError.code', wire, WIRE_VARINT);
      r.varint();
      e.code = r.lo; // uint32: the low 32 bits, as protobufjs keeps
    } else if (field === 2 || field === 3) {
      if (wire !== WIRE_LEN) throw wrongWire(field === 2 ? 'OpError.reason' : 'OpError.message', wire, WIRE_LEN);
      const s = str(r, 'OpError');
      if (field === 2) e.reason = s;
      else e.message = s;
    } else r.skip(wire, `unknown field ${field}`);
  }
  r.end = outerEnd;
  return e;
}

const EMPTY = Buffer.alloc(0);

function decodeOutcome(r: Reader, buf: Buffer, end: number): DecodedFaultOutcome {
  const outerEnd = r.end;
  r.end = end;
  // data defaults to an empty Buffer (one shared, never written: it has no bytes).
  const o: DecodedFaultOutcome = { pte: null, data: EMPTY, error: null };
  while (r.pos < end) {
    const tag = r.tag();
    const wire = tag & 7;
    const field = tag >>> 3;
    if (field >= 1 && field <= 3) {
      if (wire !== WIRE_LEN) throw wrongWire(['', 'FaultOutcome.pte', 'FaultOutcome.data', 'FaultOutcome.error'][field], wire, WIRE_LEN);
      const n = r.length('FaultOutcome');
      const at = r.pos;
      // A repeated occurrence of a message field replaces the first, as protobufjs does.
      if (field === 1) o.pte = decodePte(r, at + n);
      else if (field === 2) o.data = n === 0 ? EMPTY : buf.subarray(at, at + n); // a view: see the file comment
      else o.error = decodeOpError(r, at + n);
      r.pos = at + n;
    } else r.skip(wire, `unknown field ${field}`);
  }
  r.end = outerEnd;
  return o;
}

/** FaultBatchResponse { repeated FaultOutcome results = 1 }; data as views of `buf`. */
export function decodeFaultBatchResponse(buf: Buffer): { results: DecodedFaultOutcome[] } {
  const r = new Reader(buf, 0, buf.length);
  const results: DecodedFaultOutcome[] = [];
  while (r.pos < r.end) {
    const tag = r.tag();
    const wire = tag & 7;
    const field = tag >>> 3;
    if (field === 1) {
      if (wire !== WIRE_LEN) throw wrongWire('FaultBatchResponse.results', wire, WIRE_LEN);
      const n = r.length('FaultBatchResponse.results');
      const at = r.pos;
      results.push(decodeOutcome(r, buf, at + n));
      r.pos = at + n;
    } else r.skip(wire, `unknown field ${field}`);
  }
  return { results };
}

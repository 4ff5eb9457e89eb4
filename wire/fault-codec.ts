/**
 * A hand-written encoder for Mapping.FaultBatch replies (FaultBatchResponse): the server
 * sends up to MAPPING_BATCH_OPS_MAX outcomes per call, and protobufjs's writer spent more
 * per outcome than the fault itself (a fork of writer state per nested message, a JS
 * UTF-8 loop per token, then a copy of every chunk at finish()). This one sizes the
 * reply, allocates it once and writes each field in place; page data (a READ with load,
 * a COW copy) is copied once, into the reply.
 *
 * The bytes are exactly protobufjs's for the same object (test/unit/fault-codec.test.ts
 * compares them): fields in field-number order, each field written when it is present
 * (not undefined or null), as protobufjs's generated encoders do, uint64 values as
 * varints. Anything this encoder does not take on (an outcome with an error, a uint64
 * given as a string, a token or fallback reason that is not ASCII, a size given as a
 * number) falls back to protobufjs for the whole reply: same bytes, the old cost.
 */
import type * as grpc from '@grpc/grpc-js';
import { decodeFaultBatchResponse } from './fault-decode';

export type Serialize = (value: unknown) => Buffer;

interface PteLike {
  pgoff?: unknown;
  pfn?: unknown;
  writable?: unknown;
  token?: unknown;
  size?: unknown;
  fallback_reason?: unknown;
}

interface OutcomeLike {
  pte?: PteLike | null;
  data?: unknown;
  error?: unknown;
}

function varintSize(n: number): number {
  let size = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function writeVarint(buf: Buffer, at: number, n: number): number {
  while (n >= 128) {
    buf[at++] = (n % 128) | 128;
    n = Math.floor(n / 128);
  }
  buf[at++] = n;
  return at;
}

/** FaultRequest.Size by name (enums: String); a number or an unknown name goes to protobufjs. */
const FAULT_SIZE_NUMBERS: Readonly<Record<string, number>> = { PAGE: 0, PMD: 1 };

const isU64 = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** An ASCII string (its UTF-8 length is its length), or false. */
function isAscii(s: unknown): s is string {
  if (typeof s !== 'string') return false;
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 127) return false;
  return true;
}

/** Bytes of the Pte message, or -1 if this encoder does not take it on. */
function pteSize(p: PteLike): number {
  let n = 0;
  if (p.pgoff !== undefined && p.pgoff !== null) {
    if (!isU64(p.pgoff)) return -1;
    n += 1 + varintSize(p.pgoff);
  }
  if (p.pfn !== undefined && p.pfn !== null) {
    if (!isU64(p.pfn)) return -1;
    n += 1 + varintSize(p.pfn);
  }
  if (p.writable !== undefined && p.writable !== null) {
    if (typeof p.writable !== 'boolean') return -1;
    n += 2;
  }
  if (p.token !== undefined && p.token !== null) {
    if (!isAscii(p.token)) return -1;
    n += 1 + varintSize(p.token.length) + p.token.length;
  }
  if (p.size !== undefined && p.size !== null) {
    if (typeof p.size !== 'string' || FAULT_SIZE_NUMBERS[p.size] === undefined) return -1;
    n += 2;
  }
  if (p.fallback_reason !== undefined && p.fallback_reason !== null) {
    if (!isAscii(p.fallback_reason)) return -1;
    n += 1 + varintSize(p.fallback_reason.length) + p.fallback_reason.length;
  }
  return n;
}

/** Bytes of the FaultOutcome message, or -1. Sizes of its Pte go to `pteSizes`. */
function outcomeSize(o: OutcomeLike, pteSizes: number[], i: number): number {
  if (o === null || typeof o !== 'object' || (o.error !== undefined && o.error !== null)) return -1;
  let n = 0;
  if (o.pte !== undefined && o.pte !== null) {
    const p = pteSize(o.pte);
    if (p < 0) return -1;
    pteSizes[i] = p;
    n += 1 + varintSize(p) + p;
  }
  if (o.data !== undefined && o.data !== null) {
    if (!(o.data instanceof Uint8Array)) return -1;
    n += 1 + varintSize(o.data.length) + o.data.length;
  }
  return n;
}

/** FaultBatchResponse { repeated FaultOutcome results = 1 }, or protobufjs's encoding of it. */
export function encodeFaultBatchResponse(value: unknown, fallback: Serialize): Buffer {
  const results = (value as { results?: unknown } | null)?.results;
  if (!Array.isArray(results)) return fallback(value);
  const outcomes = results as OutcomeLike[];
  const sizes = new Array<number>(outcomes.length);
  const pteSizes = new Array<number>(outcomes.length).fill(-1);
  let total = 0;
  for (let i = 0; i < outcomes.length; i++) {
    const n = outcomeSize(outcomes[i], pteSizes, i);
    if (n < 0) return fallback(value);
    sizes[i] = n;
    total += 1 + varintSize(n) + n;
  }
  const buf = Buffer.allocUnsafe(total);
  let at = 0;
  for (let i = 0; i < outcomes.length; i++) {
    const o = outcomes[i];
    buf[at++] = 0x0a; // results = 1, LEN
    at = writeVarint(buf, at, sizes[i]);
    const p = o.pte;
    if (p !== undefined && p !== null) {
      buf[at++] = 0x0a; // pte = 1, LEN
      at = writeVarint(buf, at, pteSizes[i]);
      if (p.pgoff !== undefined && p.pgoff !== null) {
        buf[at++] = 0x08; // pgoff = 1, VARINT
        at = writeVarint(buf, at, p.pgoff as number);
      }
      if (p.pfn !== undefined && p.pfn !== null) {
        buf[at++] = 0x10; // pfn = 2, VARINT
        at = writeVarint(buf, at, p.pfn as number);
      }
      if (p.writable !== undefined && p.writable !== null) {
        buf[at++] = 0x18; // writable = 3, VARINT
        buf[at++] = p.writable === true ? 1 : 0;
      }
      if (p.token !== undefined && p.token !== null) {
        const t = p.token as string;
        buf[at++] = 0x22; // token = 4, LEN
        at = writeVarint(buf, at, t.length);
        at += buf.write(t, at, t.length, 'latin1');
      }
      if (p.size !== undefined && p.size !== null) {
        buf[at++] = 0x28; // size = 5, VARINT (0..1: one byte)
        buf[at++] = FAULT_SIZE_NUMBERS[p.size as string];
      }
      if (p.fallback_reason !== undefined && p.fallback_reason !== null) {
        const r = p.fallback_reason as string;
        buf[at++] = 0x32; // fallback_reason = 6, LEN
        at = writeVarint(buf, at, r.length);
        at += buf.write(r, at, r.length, 'latin1');
      }
    }
    if (o.data !== undefined && o.data !== null) {
      const d = o.data as Uint8Array;
      buf[at++] = 0x12; // data = 2, LEN
      at = writeVarint(buf, at, d.length);
      buf.set(d, at);
      at += d.length;
    }
  }
  if (at !== total) throw new Error(`FaultBatchResponse encoder wrote ${at} of ${total} bytes`);
  return buf;
}

/** The Mapping service with FaultBatch replies encoded by hand (the server's side). */
export function withFaultBatchEncoder(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, def] of Object.entries(service) as Array<[string, grpc.MethodDefinition<unknown, unknown>]>) {
    if (def.path !== '/daxd.v1.Mapping/FaultBatch') {
      out[name] = def;
      continue;
    }
    const fallback = def.responseSerialize as Serialize;
    out[name] = { ...def, responseSerialize: (value: unknown) => encodeFaultBatchResponse(value, fallback) };
  }
  return out as grpc.ServiceDefinition;
}

/**
 * The Mapping service with FaultBatch requests encoded and replies decoded by hand (the
 * SDK's side: the outcomes' page data as views of the reply, wire/fault-decode.ts). Build
 * a client constructor from it with grpc.makeGenericClientConstructor.
 */
export function withFaultBatchDecoder(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, def] of Object.entries(service) as Array<[string, grpc.MethodDefinition<unknown, unknown>]>) {
    if (def.path !== '/daxd.v1.Mapping/FaultBatch') {
      out[name] = def;
      continue;
    }
    const fallback = def.requestSerialize as Serialize;
    out[name] = { ...def, requestSerialize: (value: unknown) => encodeFaultBatchRequest(value, fallback), responseDeserialize: decodeFaultBatchResponse };
  }
  return out as grpc.ServiceDefinition;
}

interface FaultOpLike {
  pgoff?: unknown;
  kind?: unknown;
  sync?: unknown;
  load?: unknown;
  size?: unknown;
}

const FAULT_KIND_NUMBERS: Readonly<Record<string, number>> = { KIND_UNSPECIFIED: 0, READ: 1, WRITE: 2, COW: 3 };

/** Bytes of a FaultOp, or -1 if this encoder does not take it on. */
function faultOpSize(op: FaultOpLike): number {
  if (op === null || typeof op !== 'object') return -1;
  let n = 0;
  if (op.pgoff !== undefined && op.pgoff !== null) {
    if (!isU64(op.pgoff)) return -1;
    n += 1 + varintSize(op.pgoff);
  }
  if (op.kind !== undefined && op.kind !== null) {
    if (typeof op.kind !== 'string' || FAULT_KIND_NUMBERS[op.kind] === undefined) return -1;
    n += 2;
  }
  for (const b of [op.sync, op.load]) {
    if (b === undefined || b === null) continue;
    if (typeof b !== 'boolean') return -1;
    n += 2;
  }
  if (op.size !== undefined && op.size !== null) {
    if (typeof op.size !== 'string' || FAULT_SIZE_NUMBERS[op.size] === undefined) return -1;
    n += 2;
  }
  return n;
}

/**
 * FaultBatchRequest { string session_id = 1; uint64 ino = 2; repeated FaultOp ops = 3 }
 * (the SDK's side), or protobufjs's encoding of it. As the reply encoder: protobufjs's
 * bytes (a field written when present, in field-number order); anything else (a uint64 as
 * a string, a kind or size given as a number, a non-ASCII session id) falls back to protobufjs.
 */
export function encodeFaultBatchRequest(value: unknown, fallback: Serialize): Buffer {
  const req = value as { session_id?: unknown; ino?: unknown; ops?: unknown } | null;
  if (req === null || typeof req !== 'object' || !Array.isArray(req.ops)) return fallback(value);
  const hasSession = req.session_id !== undefined && req.session_id !== null;
  const hasIno = req.ino !== undefined && req.ino !== null;
  if ((hasSession && !isAscii(req.session_id)) || (hasIno && !isU64(req.ino))) return fallback(value);
  const ops = req.ops as FaultOpLike[];
  const sizes = new Array<number>(ops.length);
  let total = hasSession ? 1 + varintSize((req.session_id as string).length) + (req.session_id as string).length : 0;
  if (hasIno) total += 1 + varintSize(req.ino as number);
  for (let i = 0; i < ops.length; i++) {
    const n = faultOpSize(ops[i]);
    if (n < 0) return fallback(value);
    sizes[i] = n;
    total += 1 + varintSize(n) + n;
  }
  const buf = Buffer.allocUnsafe(total);
  let at = 0;
  if (hasSession) {
    const s = req.session_id as string;
    buf[at++] = 0x0a; // session_id = 1, LEN
    at = writeVarint(buf, at, s.length);
    at += buf.write(s, at, s.length, 'latin1');
  }
  if (hasIno) {
    buf[at++] = 0x10; // ino = 2, VARINT
    at = writeVarint(buf, at, req.ino as number);
  }
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i];
    buf[at++] = 0x1a; // ops = 3, LEN
    at = writeVarint(buf, at, sizes[i]);
    if (op.pgoff !== undefined && op.pgoff !== null) {
      buf[at++] = 0x08; // pgoff = 1, VARINT
      at = writeVarint(buf, at, op.pgoff as number);
    }
    if (op.kind !== undefined && op.kind !== null) {
      buf[at++] = 0x10; // kind = 2, VARINT (0..3: one byte)
      buf[at++] = FAULT_KIND_NUMBERS[op.kind as string];
    }
    if (op.sync !== undefined && op.sync !== null) {
      buf[at++] = 0x18; // sync = 3, VARINT
      buf[at++] = op.sync === true ? 1 : 0;
    }
    if (op.load !== undefined && op.load !== null) {
      buf[at++] = 0x20; // load = 4, VARINT
      buf[at++] = op.load === true ? 1 : 0;
    }
    if (op.size !== undefined && op.size !== null) {
      buf[at++] = 0x28; // size = 5, VARINT (0..1: one byte)
      buf[at++] = FAULT_SIZE_NUMBERS[op.size as string];
    }
  }
  if (at !== total) throw new Error(`FaultBatchRequest encoder wrote ${at} of ${total} bytes`);
  return buf;
}

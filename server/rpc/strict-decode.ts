/**
 * The request deserializer of every RPC: strict protobuf, or nothing.
 *
 * protobufjs decodes leniently: a string or bytes field whose declared length overruns
 * the message is cut at the end of the buffer (issue 10, defect 5: a name declared as 50
 * bytes that carried 3 created "abc"), a field with the wrong wire type is read as its
 * declared type anyway, a uint32 or an enum above 32 bits is silently truncated. And
 * grpc-js turns a deserializer that throws into INTERNAL. So each request is first walked
 * against its message type, then decoded:
 *   - every tag is a complete varint with a field number >= 1 and a wire type of proto3
 *     (VARINT, I64, LEN, I32; groups and 6/7 are refused);
 *   - every value is complete: varints end within 10 bytes and fit 64 bits, fixed values
 *     have their 4 or 8 bytes, a LEN field's declared length fits in what is left;
 *   - a known field has the wire type of its type (or LEN, packed, for a repeated
 *     scalar), a uint32/int32/enum varint fits 32 bits, a nested message is walked the same
 *     way (at most NESTING_DEPTH_MAX deep);
 *   - unknown fields are skipped once their framing is checked (proto3: a newer client's
 *     fields are not an error).
 * A message that passes is decoded by protobufjs with the same options as the rest of the
 * wire contract (wire/proto.ts), so handlers see exactly what they saw before; the
 * data-carrying requests (Files.Write, Files.WriteStream) by the hand-written decoders of
 * wire/bulk-codec.ts instead, which return the same objects with `data` as a view of the
 * request (no copy), and run only on bytes this walk accepted. One that
 * fails becomes a MalformedRequest, which wire-guard.ts answers with INVALID_ARGUMENT /
 * EBADMSG before any handler runs. Never a partial decode.
 *
 * String fields are not checked for UTF-8 here: names are refused (EINVAL) when they hold
 * U+FFFD, which is what invalid UTF-8 decodes to (validate.ts).
 */
import * as protobuf from 'protobufjs';
import type * as grpc from '@grpc/grpc-js';
import { PROTO_LOADER_OPTIONS, PROTO_PATH } from '../../wire/proto';
import { BULK_REQUEST_DECODERS, withBulkResponseEncoders } from '../../wire/bulk-service';
import { decodeFaultBatchRequest, WireDecodeError } from '../../wire/fault-decode';

/** Nested messages deeper than this are refused (the contract nests 2 deep). */
const NESTING_DEPTH_MAX = 16;

/** What the deserializer hands grpc-js for a malformed request; wire-guard.ts refuses it. */
export class MalformedRequest {
  constructor(
    /** The RPC, e.g. "/daxd.v1.Files/Create". */
    readonly path: string,
    /** What is wrong, for the status message (never quotes the bytes). */
    readonly problem: string,
  ) {}
}

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

/** The wire type a field of this protobuf type is written with (packed aside). */
function wireTypeOf(field: protobuf.Field): number {
  if (field.resolvedType instanceof protobuf.Type) return WIRE_LEN;
  switch (field.type) {
    case 'string': case 'bytes': return WIRE_LEN;
    case 'fixed64': case 'sfixed64': case 'double': return WIRE_I64;
    case 'fixed32': case 'sfixed32': case 'float': return WIRE_I32;
    default: return WIRE_VARINT; // (u)int32/64, sint32/64, bool, enum
  }
}

/** Does a varint of this field's type have to fit 32 bits (as the decoder keeps only 32)? */
function is32Bit(field: protobuf.Field): 'unsigned' | 'signed' | null {
  if (field.resolvedType instanceof protobuf.Enum) return 'signed';
  switch (field.type) {
    case 'uint32': case 'sint32': return 'unsigned';
    case 'int32': return 'signed';
    default: return null;
  }
}

class Malformed extends Error {}

/** A bounds-checked cursor over one message's bytes [pos, end). */
class Cursor {
  constructor(readonly buf: Uint8Array, public pos: number, readonly end: number) {}

  /**
   * A varint as [low 32 bits as a number, whether bits 32..63 are zero, whether bits
   * 31..63 are all one (a sign-extended negative int32)].
   */
  varint(): { low: number; highZero: boolean; negative32: boolean } {
    let low = 0;
    let highZero = true;
    let highOnes = true;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new Malformed('a varint is cut short');
      const b = this.buf[this.pos++];
      const bits = b & 0x7f;
      const shift = 7 * i;
      if (shift < 28) low += bits * 2 ** shift;
      else if (shift === 28) {
        low += (bits & 0x0f) * 2 ** 28;
        if (bits >> 4 !== 0) highZero = false;
        if (bits >> 3 !== 0x0f) highOnes = false; // bits 31..34 of the value
      } else if (i === 9) {
        if (bits > 1) throw new Malformed('a varint does not fit 64 bits');
        if (bits !== 0) highZero = false;
        if (bits !== 1) highOnes = false;
      } else {
        if (bits !== 0) highZero = false;
        if (bits !== 0x7f) highOnes = false;
      }
      if ((b & 0x80) === 0) {
        // A varint that ended before bit 63 has zeros above: not sign-extended.
        if (i < 9) highOnes = false;
        return { low, highZero, negative32: highOnes && low >= 2 ** 31 };
      }
    }
    throw new Malformed('a varint is longer than 10 bytes');
  }

  skip(bytes: number, what: string): void {
    if (bytes > this.end - this.pos) throw new Malformed(`${what} overruns the message (${bytes} bytes declared, ${this.end - this.pos} left)`);
    this.pos += bytes;
  }

  /** A LEN field's declared length, checked against what is left; returns its [start, end). */
  lengthDelimited(what: string): [number, number] {
    const { low, highZero } = this.varint();
    if (!highZero || low > this.end - this.pos) {
      throw new Malformed(`${what} overruns the message (${highZero ? low : '>= 2^32'} bytes declared, ${this.end - this.pos} left)`);
    }
    const start = this.pos;
    this.pos += low;
    return [start, this.pos];
  }
}

/**
 * What the walk needs of a message type, computed once per type (the walk runs on every
 * request: no descriptor lookups on the hot path).
 */
interface FieldPlan {
  readonly name: string;
  readonly wireType: number;
  readonly width: 'unsigned' | 'signed' | null;
  readonly repeated: boolean;
  /** The plan of a nested message field (filled in after creation: types may recurse). */
  nested: MessagePlan | null;
}
type MessagePlan = Map<number, FieldPlan>;

function planOf(type: protobuf.Type, plans = new Map<protobuf.Type, MessagePlan>()): MessagePlan {
  const known = plans.get(type);
  if (known !== undefined) return known;
  const plan: MessagePlan = new Map();
  plans.set(type, plan);
  for (const field of type.fieldsArray) {
    const nestedType = field.resolvedType instanceof protobuf.Type ? field.resolvedType : null;
    const fieldPlan: FieldPlan = { name: `${type.name}.${field.name}`, wireType: wireTypeOf(field), width: is32Bit(field), repeated: field.repeated, nested: null };
    plan.set(field.id, fieldPlan);
    if (nestedType !== null) fieldPlan.nested = planOf(nestedType, plans);
  }
  return plan;
}

/** Walks one message in [start, end) against its plan; throws Malformed at the first fault. */
function check(plan: MessagePlan, buf: Uint8Array, start: number, end: number, depth: number): void {
  if (depth > NESTING_DEPTH_MAX) throw new Malformed(`messages nested deeper than ${NESTING_DEPTH_MAX}`);
  const at = new Cursor(buf, start, end);
  while (at.pos < at.end) {
    const key = at.varint();
    if (!key.highZero) throw new Malformed('a field tag does not fit 32 bits');
    const fieldNo = Math.floor(key.low / 8);
    const wireType = key.low % 8;
    if (fieldNo === 0) throw new Malformed('field number 0');
    const field = plan.get(fieldNo);
    const name = field === undefined ? `unknown field ${fieldNo}` : field.name;
    if (field !== undefined) {
      const packed = field.repeated && field.wireType !== WIRE_LEN && wireType === WIRE_LEN;
      if (wireType !== field.wireType && !packed) throw new Malformed(`${name} has wire type ${wireType}, its type needs ${field.wireType}`);
      if (packed) {
        checkPacked(field, at);
        continue;
      }
    }
    switch (wireType) {
      case WIRE_VARINT: {
        const v = at.varint();
        if (field !== undefined) checkVarint(field, v);
        break;
      }
      case WIRE_I64: at.skip(8, name); break;
      case WIRE_I32: at.skip(4, name); break;
      case WIRE_LEN: {
        const [s, e] = at.lengthDelimited(name);
        if (field?.nested) check(field.nested, buf, s, e, depth + 1);
        break;
      }
      default:
        throw new Malformed(`${name} has wire type ${wireType}, which proto3 does not use`);
    }
  }
}

function checkVarint(field: FieldPlan, v: { low: number; highZero: boolean; negative32: boolean }): void {
  const width = field.width;
  if (width === null || v.highZero && (width === 'unsigned' || v.low < 2 ** 31)) return;
  if (width === 'signed' && v.negative32) return;
  throw new Malformed(`${field.name} does not fit its 32-bit type`);
}

function checkPacked(field: FieldPlan, at: Cursor): void {
  const [s, e] = at.lengthDelimited(field.name);
  const inner = new Cursor(at.buf, s, e);
  while (inner.pos < inner.end) {
    if (field.wireType === WIRE_VARINT) checkVarint(field, inner.varint());
    else inner.skip(field.wireType === WIRE_I64 ? 8 : 4, field.name);
  }
}

let root: protobuf.Root | null = null;

/** The contract's message types, loaded as @grpc/proto-loader loads them. */
function contractRoot(): protobuf.Root {
  if (root === null) {
    root = new protobuf.Root();
    root.loadSync(PROTO_PATH, { keepCase: true });
    root.resolveAll();
  }
  return root;
}

/**
 * Hand-written decoders that walk and decode in one pass, with the walk's rules, into what
 * protobufjs's toObject gives (wire/fault-decode.ts): for the RPCs whose requests carry
 * many ops, where the walk plus protobufjs cost more per op than the op itself.
 */
const HAND_DECODERS: Readonly<Record<string, (bytes: Buffer) => unknown>> = {
  '/daxd.v1.Mapping/FaultBatch': decodeFaultBatchRequest,
};

/** The strict deserializer of one RPC, by its path ("/daxd.v1.Files/Create"). */
export function strictDeserializer(path: string): (bytes: Buffer) => unknown {
  const hand = HAND_DECODERS[path];
  if (hand !== undefined) {
    return (bytes: Buffer) => {
      try {
        return hand(bytes);
      } catch (err) {
        if (err instanceof WireDecodeError) return new MalformedRequest(path, err.message);
        throw err;
      }
    };
  }
  const match = /^\/([^/]+)\/([^/]+)$/.exec(path);
  if (match === null) throw new Error(`bug: ${path} is not an RPC path`);
  const method = contractRoot().lookupService(match[1]).methods[match[2]];
  if (method === undefined) throw new Error(`bug: no RPC ${path} in the contract`);
  const type = method.resolvedRequestType;
  if (type === null) throw new Error(`bug: ${path} has no resolved request type`);
  const plan = planOf(type);
  const fast = BULK_REQUEST_DECODERS[path];
  const options: protobuf.IConversionOptions = {
    longs: String, enums: String, defaults: PROTO_LOADER_OPTIONS.defaults, oneofs: PROTO_LOADER_OPTIONS.oneofs,
  };
  return (bytes: Buffer) => {
    try {
      check(plan, bytes, 0, bytes.length, 0);
    } catch (err) {
      if (err instanceof Malformed) return new MalformedRequest(path, err.message);
      throw err;
    }
    try {
      return fast !== undefined ? fast(bytes) : type.toObject(type.decode(bytes), options);
    } catch (err) {
      // check() passed yet protobufjs gave up (its bool reader refuses varints longer than
      // it expects; the fast decoders accept every message check() accepts): still the
      // client's bytes, so EBADMSG, never a throw (INTERNAL).
      return new MalformedRequest(path, `protobufjs could not decode it: ${err instanceof Error ? err.message : String(err)}`);
    }
  };
}

/**
 * The same service with every request deserializer replaced by the strict one. The
 * response side is ours: encoded by protobufjs as loaded, but for the replies that carry
 * file data (Read, ReadStream), encoded by hand (wire/bulk-service.ts).
 */
export function strictService(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, def] of Object.entries(withBulkResponseEncoders(service))) {
    out[name] = { ...def, requestDeserialize: strictDeserializer(def.path) };
  }
  return out as grpc.ServiceDefinition;
}

/**
 * Generated messages as the SDK hands them to callers: field names in camelCase and 64-bit
 * integers as numbers. uint64 fields arrive as exact decimal strings (wire/proto.ts decodes
 * `longs: String`); every one daxd sends is below 2^53 (docs/PROTOCOL.md, "64-bit
 * safety"), so they become numbers here, and anything that is not a safe integer is
 * refused rather than rounded.
 *
 * The shape is derived from the generated types (FromWire), and which fields are 64-bit
 * is read off the proto itself, so a field added to a message reaches SDK users without a
 * second, hand-written copy of the message.
 */
import * as protobuf from 'protobufjs';
import type { Long } from '@grpc/proto-loader';
import { PROTO_PATH } from './proto';

/** 'max_io_bytes' -> 'maxIoBytes'. */
export type CamelCase<S extends string> = S extends `${infer Head}_${infer Tail}` ? `${Head}${Capitalize<CamelCase<Tail>>}` : S;

/**
 * The SDK's view of a message: `Output` (the generated __Output type) with camelCase
 * names, and as numbers the fields that `Input` (the generated request type) types as
 * 64-bit (those that accept a Long).
 */
export type FromWire<Output, Input> = {
  [K in keyof Output & string as CamelCase<K>]: K extends keyof Input ? (Long extends NonNullable<Input[K]> ? number : Output[K]) : Output[K];
};

/** A uint64 field's value as a number; throws RangeError if it is not a safe non-negative integer. */
export function u64ToNumber(value: string | number, field = 'uint64 field'): number {
  const n = typeof value === 'string' ? (/^[0-9]+$/.test(value) ? Number(value) : Number.NaN) : value;
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${field} is not a safe non-negative integer: ${String(value)}`);
  return n;
}

function camelCase(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

const INT64_TYPES = new Set(['uint64', 'int64', 'sint64', 'fixed64', 'sfixed64']);
let root: protobuf.Root | null = null;
const int64FieldsOf = new Map<string, ReadonlySet<string>>();

/** The 64-bit integer fields of message type `typeName` (e.g. 'daxd.v1.VolumeInfo'), from the proto. */
export function int64Fields(typeName: string): ReadonlySet<string> {
  let fields = int64FieldsOf.get(typeName);
  if (fields === undefined) {
    if (root === null) {
      root = new protobuf.Root();
      root.loadSync(PROTO_PATH, { keepCase: true }); // the field names as written, as wire/proto.ts decodes them
    }
    const type = root.lookupType(typeName);
    fields = new Set(type.fieldsArray.filter((f) => !f.repeated && INT64_TYPES.has(f.type)).map((f) => f.name));
    int64FieldsOf.set(typeName, fields);
  }
  return fields;
}

/**
 * `message` (a decoded `typeName`) as FromWire<Output, Input>: camelCase names, 64-bit
 * integers as numbers, every other field as it is (top level only: nested messages and
 * repeated fields are copied as decoded).
 */
export function fromWire<Output extends object, Input>(typeName: string, message: Output): FromWire<Output, Input> {
  const int64 = int64Fields(typeName);
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(message)) {
    out[camelCase(name)] = int64.has(name) ? u64ToNumber(value as string | number, name) : value;
  }
  return out as FromWire<Output, Input>;
}

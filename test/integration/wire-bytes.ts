/**
 * Hand-built protobuf wire bytes for tests that send what no encoder would: fields with
 * the wrong wire type, declared lengths that overrun the message, varints that never end.
 * Each helper returns the encoding of one field (or one varint); concatenate them.
 */
export const WIRE = { VARINT: 0, I64: 1, LEN: 2, SGROUP: 3, EGROUP: 4, I32: 5 } as const;

export function varint(value: number | bigint): Buffer {
  let v = BigInt(value);
  const out: number[] = [];
  do {
    const low = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v > 0n ? low | 0x80 : low);
  } while (v > 0n);
  return Buffer.from(out);
}

export function tag(field: number, wireType: number): Buffer {
  return varint((BigInt(field) << 3n) | BigInt(wireType));
}

/** A length-delimited field; `declaredLength` may lie about the bytes that follow. */
export function lenField(field: number, payload: Buffer | string, declaredLength?: number): Buffer {
  const bytes = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  return Buffer.concat([tag(field, WIRE.LEN), varint(declaredLength ?? bytes.length), bytes]);
}

export function varintField(field: number, value: number | bigint): Buffer {
  return Buffer.concat([tag(field, WIRE.VARINT), varint(value)]);
}

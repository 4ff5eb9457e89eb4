/**
 * The hand-written codecs of the data-carrying messages (wire/bulk-codec.ts) against
 * protobufjs, the reference the rest of the contract uses:
 *   - every encoder writes exactly the bytes of `Type.encode(Type.fromObject(obj))` for
 *     random messages (empty and absent data, zero values, large ids and offsets, errors
 *     with non-ASCII text, many results), including the objects only protobufjs handles
 *     (a Long, base64 data), which must go to the fallback;
 *   - every decoder returns what `Type.toObject(Type.decode(bytes), options)` returns, for
 *     random messages with their fields in any order, repeated, with unknown fields of
 *     every wire type, and uint64 values up to 2^64 - 1;
 *   - decoded `data` is a view of the incoming bytes, and a reply read into a withHeadroom
 *     buffer is encoded in place (one copy: the read's), the bytes still protobufjs's;
 *   - the server's strict deserializer of Write/WriteStream (which now ends in the fast
 *     decoder) still refuses truncated, overlong and wrong-wire-type input (EBADMSG path)
 *     and decodes every valid message as protobufjs does.
 */
import assert from 'node:assert/strict';
import Long from 'long';
import * as protobuf from 'protobufjs';
import { PROTO_PATH } from '../../wire/proto';
import {
  decodeReadResponse, decodeReadStreamResponse, decodeWriteRequest, decodeWriteStreamRequest,
  encodeReadResponse, encodeReadStreamResponse, encodeWriteRequest, encodeWriteStreamRequest, HEADROOM_BYTES, pooledReplyBuffers,
  releaseHeadroom, withHeadroom,
} from '../../wire/bulk-codec';
import { REPLY_BUFFERS_POOLED_MAX } from '../../wire/limits';
import { MiB } from '../support/units';
import { MalformedRequest, strictDeserializer } from '../../server/rpc/strict-decode';
import { randInt, seededRng } from '../support/rng';
import * as serverInterceptors from '@grpc/grpc-js/build/src/server-interceptors';
import * as compressionFilter from '@grpc/grpc-js/build/src/compression-filter';
import { frameRepliesInPlace, frameRequestsInPlace } from '../../wire/frame-in-place';

const root = new protobuf.Root();
root.loadSync(PROTO_PATH, { keepCase: true });
root.resolveAll();
const type = (name: string) => root.lookupType(`daxd.v1.${name}`);
const OPTIONS: protobuf.IConversionOptions = { longs: String, enums: String, defaults: true, oneofs: true };
const RUNS = 400;

function reference(name: string): (value: unknown) => Buffer {
  const t = type(name);
  return (value) => Buffer.from(t.encode(t.fromObject(value as Record<string, unknown>)).finish());
}
function referenceDecode(name: string, bytes: Buffer): unknown {
  const t = type(name);
  return t.toObject(t.decode(bytes), OPTIONS);
}

type Rng = () => number;
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[randInt(rng, 0, xs.length - 1)];

function data(rng: Rng): Buffer {
  const len = pick(rng, [0, 1, 5, 127, 128, 300, 4096, 16_385, 70_000]);
  const b = Buffer.allocUnsafe(len);
  const seed = randInt(rng, 0, 255);
  for (let i = 0; i < len; i++) b[i] = (seed + i * 31) & 0xff;
  return b;
}
function u64(rng: Rng): number | string {
  const n = pick(rng, [0, 1, 127, 128, 2 ** 31, 2 ** 32, 2 ** 35 + 7, Number.MAX_SAFE_INTEGER, randInt(rng, 0, 2 ** 40)]);
  return rng() < 0.3 ? String(n) : n;
}
function u32(rng: Rng): number {
  return pick(rng, [0, 1, 127, 128, 16_384, 2 ** 31, 2 ** 32 - 1, randInt(rng, 0, 2 ** 32 - 1)]);
}
function text(rng: Rng): string {
  return pick(rng, ['', 'EIO', 'ENOENT', 'no such file: «é» 😀', 'x'.repeat(200)]);
}
/** Each field present with probability 3/4 (protobufjs writes a present field even when zero). */
function maybe<T>(rng: Rng, make: () => T): T | undefined {
  return rng() < 0.75 ? make() : undefined;
}
function opError(rng: Rng): Record<string, unknown> {
  return { code: maybe(rng, () => u32(rng)), reason: maybe(rng, () => text(rng)), message: maybe(rng, () => text(rng)) };
}
function readResult(rng: Rng): Record<string, unknown> {
  return { id: maybe(rng, () => u32(rng)), data: maybe(rng, () => data(rng)), error: rng() < 0.3 ? opError(rng) : null };
}
function writeFields(rng: Rng, withId: boolean): Record<string, unknown> {
  return {
    ...(withId ? { id: maybe(rng, () => u32(rng)) } : {}),
    ino: maybe(rng, () => u64(rng)), offset: maybe(rng, () => u64(rng)), data: maybe(rng, () => data(rng)), sync: maybe(rng, () => rng() < 0.5),
  };
}
const many = <T>(rng: Rng, make: () => T) => Array.from({ length: pick(rng, [0, 1, 1, 2, 7, 40]) }, make);

/** A field's bytes: tag and value, written by protobufjs. */
function field(no: number, write: (w: protobuf.Writer) => void, wireType: number): Buffer {
  const w = protobuf.Writer.create();
  w.uint32((no << 3) | wireType);
  write(w);
  return Buffer.from(w.finish());
}
/** Unknown fields of every wire type (numbers past the message's). */
function unknownField(rng: Rng): Buffer {
  const no = randInt(rng, 6, 2000);
  switch (randInt(rng, 0, 3)) {
    case 0: return field(no, (w) => w.uint64(Long.fromString('18446744073709551615', true)), 0);
    case 1: return field(no, (w) => w.fixed64(7), 1);
    case 2: return field(no, (w) => w.bytes(Buffer.from('unknown')), 2);
    default: return field(no, (w) => w.fixed32(9), 5);
  }
}
/** A uint64 varint field, sometimes beyond 2^53 (only a decimal string holds it exactly). */
function u64Field(rng: Rng, no: number): Buffer {
  const big = pick(rng, ['0', '1', '9007199254740993', '18446744073709551615', String(randInt(rng, 0, 2 ** 40))]);
  return field(no, (w) => w.uint64(Long.fromString(big, true)), 0);
}
function shuffled(rng: Rng, parts: Buffer[]): Buffer {
  for (let i = parts.length - 1; i > 0; i--) {
    const j = randInt(rng, 0, i);
    [parts[i], parts[j]] = [parts[j], parts[i]];
  }
  return Buffer.concat(parts);
}
/** A random write body (WriteRequest, or WriteOp with withId) as separate fields, shuffled, with extras. */
function writeBody(rng: Rng, withId: boolean): Buffer {
  const k = withId ? 1 : 0;
  const parts: Buffer[] = [];
  if (withId && rng() < 0.8) parts.push(field(1, (w) => w.uint32(u32(rng)), 0));
  if (rng() < 0.8) parts.push(u64Field(rng, 1 + k));
  if (rng() < 0.8) parts.push(u64Field(rng, 2 + k));
  if (rng() < 0.8) parts.push(field(3 + k, (w) => w.bytes(data(rng)), 2));
  if (rng() < 0.2) parts.push(field(3 + k, (w) => w.bytes(data(rng)), 2)); // repeated: the last wins
  if (rng() < 0.8) parts.push(field(4 + k, (w) => w.bool(rng() < 0.5), 0));
  for (let i = randInt(rng, 0, 2); i > 0; i--) parts.push(unknownField(rng));
  return shuffled(rng, parts);
}
function readResultBody(rng: Rng): Buffer {
  const parts: Buffer[] = [];
  if (rng() < 0.8) parts.push(field(1, (w) => w.uint32(u32(rng)), 0));
  if (rng() < 0.8) parts.push(field(2, (w) => w.bytes(data(rng)), 2));
  if (rng() < 0.3) parts.push(field(3, (w) => w.bytes(reference('OpError')(opError(rng))), 2));
  for (let i = randInt(rng, 0, 2); i > 0; i--) parts.push(unknownField(rng));
  return shuffled(rng, parts);
}
function repeatedOf(rng: Rng, body: () => Buffer): Buffer {
  const parts = many(rng, () => field(1, (w) => w.bytes(body()), 2));
  if (rng() < 0.5) parts.push(unknownField(rng));
  return shuffled(rng, parts);
}

describe('bulk codecs (wire/bulk-codec.ts) against protobufjs', function () {
  const never = () => {
    throw new Error('the fast path should cover this object');
  };

  it('encodeReadResponse writes protobufjs\'s bytes', function () {
    const rng = seededRng(1);
    for (let i = 0; i < RUNS; i++) {
      const msg = { data: data(rng) };
      assert.deepEqual(encodeReadResponse(msg, never), reference('ReadResponse')(msg));
    }
    assert.deepEqual(encodeReadResponse({}, reference('ReadResponse')), reference('ReadResponse')({}));
  });

  it('encodeReadStreamResponse writes protobufjs\'s bytes (ids, empty and absent data, errors, many results)', function () {
    const rng = seededRng(2);
    for (let i = 0; i < RUNS; i++) {
      const msg = { results: many(rng, () => readResult(rng)) };
      assert.deepEqual(encodeReadStreamResponse(msg, never), reference('ReadStreamResponse')(msg), JSON.stringify(msg).slice(0, 300));
    }
  });

  it('encodeWriteRequest and encodeWriteStreamRequest write protobufjs\'s bytes (numbers and decimal strings for uint64)', function () {
    const rng = seededRng(3);
    for (let i = 0; i < RUNS; i++) {
      const req = writeFields(rng, false);
      assert.deepEqual(encodeWriteRequest(req, never), reference('WriteRequest')(req));
      const stream = { ops: many(rng, () => writeFields(rng, true)) };
      assert.deepEqual(encodeWriteStreamRequest(stream, never), reference('WriteStreamRequest')(stream));
    }
  });

  it('objects only protobufjs can encode (a Long, base64 data, a negative or huge uint64) go to it', function () {
    const ref = reference('WriteStreamRequest');
    for (const op of [
      { id: 1, ino: Long.fromString('18446744073709551615', true), offset: 0, data: Buffer.from('x') },
      { id: 2, ino: 3, offset: 0, data: 'aGVsbG8=' },
      { id: 3, ino: -1, offset: 0, data: Buffer.alloc(0) },
      { id: 4, ino: '18446744073709551615', offset: 0, data: Buffer.alloc(0) },
    ]) {
      let fellBack = false;
      const out = encodeWriteStreamRequest({ ops: [op] }, (v) => {
        fellBack = true;
        return ref(v);
      });
      assert.ok(fellBack, `op ${op.id} should have fallen back`);
      assert.deepEqual(out, ref({ ops: [op] }));
    }
  });

  it('a reply read into a withHeadroom buffer is encoded in place: protobufjs\'s bytes, the same memory, no copy', function () {
    const rng = seededRng(4);
    for (let i = 0; i < 50; i++) {
      const src = Buffer.concat([data(rng), Buffer.alloc(16 * 1024, 9)]); // in-place sizes (>= 16 KiB)
      const buf = withHeadroom(src.length + 10);
      src.copy(buf);
      const view = buf.subarray(0, src.length); // a short read uses a prefix
      const id = u32(rng);
      const stream = encodeReadStreamResponse({ results: [{ id, data: view, error: null }] }, never);
      assert.deepEqual(stream, reference('ReadStreamResponse')({ results: [{ id, data: src, error: null }] }));
      assert.equal(stream.buffer, view.buffer, 'encoded over the read buffer itself');
      assert.ok(stream.byteOffset >= 5, 'room is left for the 5-byte gRPC frame prefix');
      const unary = encodeReadResponse({ data: view }, never);
      assert.deepEqual(unary, reference('ReadResponse')({ data: src }));
      assert.equal(unary.buffer, view.buffer);
    }
    assert.ok(HEADROOM_BYTES >= 19 + 5);
    // Small reads come from the pool and are copied into their reply, bytes unchanged.
    const small = withHeadroom(100).fill(5);
    assert.deepEqual(encodeReadResponse({ data: small }, never), reference('ReadResponse')({ data: Buffer.alloc(100, 5) }));
    // A view of memory that is not a withHeadroom buffer's is copied, never written in front of.
    const foreign = Buffer.alloc(64, 7);
    const inner = foreign.subarray(HEADROOM_BYTES, 40);
    const out = encodeReadResponse({ data: inner }, never);
    assert.notEqual(out.buffer, foreign.buffer);
    assert.deepEqual(foreign, Buffer.alloc(64, 7));
  });

  it('decoders return protobufjs\'s objects for fields in any order, repeated, unknown, and uint64 up to 2^64 - 1', function () {
    const rng = seededRng(5);
    for (let i = 0; i < RUNS; i++) {
      const w = writeBody(rng, false);
      assert.deepEqual(decodeWriteRequest(w), referenceDecode('WriteRequest', w), w.toString('hex').slice(0, 200));
      const ws = repeatedOf(rng, () => writeBody(rng, true));
      assert.deepEqual(decodeWriteStreamRequest(ws), referenceDecode('WriteStreamRequest', ws));
      const r = Buffer.concat([field(1, (x) => x.bytes(data(rng)), 2), ...(rng() < 0.5 ? [unknownField(rng)] : [])]);
      assert.deepEqual(decodeReadResponse(r), referenceDecode('ReadResponse', r));
      const rs = repeatedOf(rng, () => readResultBody(rng));
      assert.deepEqual(decodeReadStreamResponse(rs), referenceDecode('ReadStreamResponse', rs));
    }
    assert.deepEqual(decodeWriteRequest(Buffer.alloc(0)), referenceDecode('WriteRequest', Buffer.alloc(0)));
  });

  it('an op error message of invalid UTF-8 decodes as protobufjs decodes it (U+FFFD), never reading past its field', function () {
    // ReadStreamResponse { results: [{ id: 1, error: { code: 5, message: <0xE2> } }, { id: 2 }] }:
    // 0xE2 opens a 3-byte sequence that the field ends after one byte.
    const reply = Buffer.from('0a09' + '0801' + '1a05' + '0805' + '1a01e2' + '0a02' + '0802', 'hex');
    const got = decodeReadStreamResponse(reply);
    assert.deepEqual(got, referenceDecode('ReadStreamResponse', reply));
    assert.equal(got.results[0].error?.message, '\uFFFD');
  });

  it('decoded data is a view of the incoming message (no copy)', function () {
    const payload = Buffer.from('payload bytes');
    const bytes = reference('WriteStreamRequest')({ ops: [{ id: 1, ino: 2, offset: 0, data: payload }] });
    const op = decodeWriteStreamRequest(bytes).ops[0];
    assert.deepEqual(op.data, payload);
    assert.equal(op.data.buffer, bytes.buffer);
    bytes[bytes.length - 1] ^= 0xff; // the view sees the message's memory
    assert.notEqual(op.data[op.data.length - 1], payload[payload.length - 1]);
    const reply = reference('ReadStreamResponse')({ results: [{ id: 1, data: payload }] });
    assert.equal(decodeReadStreamResponse(reply).results[0].data.buffer, reply.buffer);
  });
});

describe('strict decoding of Files.Write / WriteStream through the fast decoder', function () {
  for (const [path, name, body] of [
    ['/daxd.v1.Files/Write', 'WriteRequest', (rng: Rng) => writeBody(rng, false)],
    ['/daxd.v1.Files/WriteStream', 'WriteStreamRequest', (rng: Rng) => repeatedOf(rng, () => writeBody(rng, true))],
  ] as const) {
    const decode = strictDeserializer(path);

    it(`${name}: valid messages decode as protobufjs decodes them`, function () {
      const rng = seededRng(6);
      for (let i = 0; i < RUNS; i++) {
        const bytes = body(rng);
        assert.deepEqual(decode(bytes), referenceDecode(name, bytes));
      }
    });

    it(`${name}: truncated, overlong and wrong-wire-type input is a MalformedRequest, never a partial decode`, function () {
      const valid = reference(name)(name === 'WriteRequest'
        ? { ino: 1, offset: 4096, data: Buffer.alloc(100, 1), sync: true }
        : { ops: [{ id: 1, ino: 1, offset: 0, data: Buffer.alloc(100, 1), sync: false }] });
      // Every proper prefix that cuts a field short.
      for (let cut = 1; cut < valid.length; cut++) {
        const out = decode(valid.subarray(0, cut));
        if (!(out instanceof MalformedRequest)) assert.deepEqual(out, referenceDecode(name, valid.subarray(0, cut)), `prefix ${cut} decoded partially`);
      }
      assert.ok(decode(valid.subarray(0, valid.length - 1)) instanceof MalformedRequest, 'cut inside data');
      const overlong = Buffer.from(valid);
      overlong[overlong.indexOf(100)] = 101; // data declares one byte more than there is
      assert.ok(decode(overlong) instanceof MalformedRequest, 'overlong data');
      const wrongType = name === 'WriteRequest' ? Buffer.from([0x0a, 0x01, 0x00]) /* ino as LEN */ : Buffer.from([0x08, 0x01]) /* ops as VARINT */;
      assert.ok(decode(wrongType) instanceof MalformedRequest, 'wrong wire type');
      assert.ok(decode(Buffer.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])) instanceof MalformedRequest, 'varint over 10 bytes');
    });
  }
});

describe('read-reply buffer pool (withHeadroom / releaseHeadroom)', function () {
  it(`a released 1 MiB reply buffer is reused by the next read, once, and the pool holds at most ${REPLY_BUFFERS_POOLED_MAX}`, function () {
    while (pooledReplyBuffers() > 0) withHeadroom(MiB); // start empty
    const a = withHeadroom(MiB);
    releaseHeadroom(a);
    releaseHeadroom(a); // twice: pooled once
    assert.equal(pooledReplyBuffers(), 1);
    const b = withHeadroom(MiB - 100); // a short read takes the pooled buffer, at the same offset
    assert.equal(b.buffer, a.buffer);
    assert.equal(b.byteOffset, HEADROOM_BYTES);
    assert.equal(b.length, MiB - 100);
    assert.equal(pooledReplyBuffers(), 0);
    assert.notEqual(withHeadroom(MiB).buffer, a.buffer, 'taken buffers are not handed out again');
    // Only whole pooled-size headroom buffers go back: not a smaller one, not foreign memory.
    releaseHeadroom(withHeadroom(64 * 1024));
    releaseHeadroom(Buffer.alloc(MiB + HEADROOM_BYTES).subarray(HEADROOM_BYTES));
    assert.equal(pooledReplyBuffers(), 0);
    for (let i = 0; i < REPLY_BUFFERS_POOLED_MAX + 5; i++) releaseHeadroom(withHeadroom(MiB));
    assert.equal(pooledReplyBuffers(), 1, 'each take reuses what the previous release put back');
    const many = Array.from({ length: REPLY_BUFFERS_POOLED_MAX + 5 }, () => withHeadroom(MiB));
    for (const m of many) releaseHeadroom(m);
    assert.equal(pooledReplyBuffers(), REPLY_BUFFERS_POOLED_MAX);
    while (pooledReplyBuffers() > 0) withHeadroom(MiB);
  });
});

describe('framing in place (wire/frame-in-place.ts)', function () {
  const payload = Buffer.alloc(70_000, 3);
  function expectedFrame(m: Buffer): Buffer {
    const out = Buffer.alloc(m.length + 5);
    out.writeUInt32BE(m.length, 1);
    m.copy(out, 5);
    return out;
  }

  it('the server hook is installed on this grpc-js and frames a bulk reply without a copy, any other message by copying', function () {
    assert.equal(frameRepliesInPlace(), true, 'grpc-js internals moved: BaseServerInterceptingCall.serializeMessage');
    const proto = (serverInterceptors as unknown as { BaseServerInterceptingCall: { prototype: { serializeMessage(v: unknown): Buffer } } }).BaseServerInterceptingCall.prototype;
    const data = withHeadroom(payload.length);
    payload.copy(data);
    const call = (message: unknown, encode: (v: unknown) => Buffer) => proto.serializeMessage.call({ handler: { serialize: encode } }, message);
    const encode = (v: unknown) => encodeReadStreamResponse(v, reference('ReadStreamResponse'));
    const framed = call({ results: [{ id: 7, data }] }, encode);
    assert.deepEqual(framed, expectedFrame(reference('ReadStreamResponse')({ results: [{ id: 7, data: payload }] })));
    assert.equal(framed.buffer, data.buffer, 'framed over the read buffer');
    // In an ArrayBuffer of its own, so "not the same memory" is a meaningful check.
    const small = Buffer.from(new Uint8Array(reference('ReadStreamResponse')({ results: [{ id: 1, data: Buffer.from('abc') }] })).buffer);
    const copied = call({}, () => small);
    assert.deepEqual(copied, expectedFrame(small));
    assert.notEqual(copied.buffer, small.buffer);
  });

  it('the client hook is installed on this grpc-js and frames a large bulk request without a copy', async function () {
    assert.equal(frameRequestsInPlace(), true, 'grpc-js internals moved: CompressionFilter.sendMessage');
    const proto = (compressionFilter as unknown as { CompressionFilter: { prototype: { sendMessage(m: Promise<{ message: Buffer; flags?: number }>): Promise<{ message: Buffer }> } } }).CompressionFilter.prototype;
    const message = encodeWriteStreamRequest({ ops: [{ id: 1, ino: 2, offset: 0, data: payload }] }, reference('WriteStreamRequest'));
    const filter = { maxSendMessageLength: -1, sendCompression: new (class IdentityHandler {})() };
    const out = await proto.sendMessage.call(filter, Promise.resolve({ message }));
    assert.deepEqual(out.message, expectedFrame(reference('WriteStreamRequest')({ ops: [{ id: 1, ino: 2, offset: 0, data: payload }] })));
    assert.equal(out.message.buffer, message.buffer, 'framed over the encoded request');
  });
});

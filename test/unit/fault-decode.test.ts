/**
 * wire/fault-decode.ts: the hand-written FaultBatch decoders give exactly the objects
 * protobufjs gives (proto-loader's own deserializers, the contract's options) for random
 * messages (so a field read under a wrong number or type fails), the reply's page data as
 * views of the reply, and the request decoder refuses malformed bytes with WireDecodeError
 * (the server answers it INVALID_ARGUMENT / EBADMSG), never another error.
 */
import assert from 'node:assert/strict';
import type * as grpc from '@grpc/grpc-js';
import { decodeFaultBatchRequest, decodeFaultBatchResponse, WireDecodeError } from '../../wire/fault-decode';
import { withFaultBatchDecoder } from '../../wire/fault-codec';
import { loadDaxdProto } from '../../wire/proto';
import { MalformedRequest, strictDeserializer } from '../../server/rpc/strict-decode';
import { randInt, seededRng } from '../support/rng';

const faultBatch = loadDaxdProto().daxd.v1.Mapping.service.FaultBatch as grpc.MethodDefinition<unknown, unknown>;

/** Protobuf framing, by hand: a tag, a varint, a LEN field. */
function varint(n: bigint): Buffer {
  const out: number[] = [];
  let v = BigInt.asUintN(64, n);
  while (v >= 128n) {
    out.push(Number(v & 127n) | 128);
    v >>= 7n;
  }
  out.push(Number(v));
  return Buffer.from(out);
}
const tag = (field: number, wire: number) => varint(BigInt(field * 8 + wire));
const varintField = (field: number, n: bigint | number) => Buffer.concat([tag(field, 0), varint(BigInt(n))]);
const lenField = (field: number, body: Buffer, declared = body.length) => Buffer.concat([tag(field, 2), varint(BigInt(declared)), body]);

function u64(rng: () => number): string | number {
  const picks: Array<string | number> = [0, 1, 127, 128, 16_384, 2 ** 31, 2 ** 32, 2 ** 53 - 1, '9007199254740993', '18446744073709551615', randInt(rng, 0, 1e9)];
  return picks[randInt(rng, 0, picks.length - 1)];
}

/** Unknown fields of every wire type (a newer peer's), to be skipped: above every field these messages have (Pte has 6). */
function unknownField(rng: () => number): Buffer {
  const field = randInt(rng, 7, 2000);
  switch (randInt(rng, 0, 3)) {
    case 0: return varintField(field, BigInt(randInt(rng, 0, 2 ** 30)) * 1000n);
    case 1: return Buffer.concat([tag(field, 1), Buffer.alloc(8, 7)]);
    case 2: return Buffer.concat([tag(field, 5), Buffer.alloc(4, 9)]);
    default: return lenField(field, Buffer.alloc(randInt(rng, 0, 20), 3));
  }
}

describe('FaultBatch decoders (wire/fault-decode.ts)', function () {
  it('the request: the objects protobufjs decodes, over 400 random requests (unknown fields, unknown kinds and sizes, repeats)', function () {
    const rng = seededRng(1402);
    const kinds: Array<string | number> = ['KIND_UNSPECIFIED', 'READ', 'WRITE', 'COW', 7, -1, 2 ** 31 - 1];
    const sizes: Array<string | number> = ['PAGE', 'PMD', 2, 9, -3, 2 ** 31 - 1];
    for (let r = 0; r < 400; r++) {
      const ops = Array.from({ length: randInt(rng, 0, 30) }, () => {
        const op: Record<string, unknown> = {};
        if (rng() < 0.8) op.pgoff = u64(rng);
        if (rng() < 0.8) op.kind = kinds[randInt(rng, 0, kinds.length - 1)];
        if (rng() < 0.5) op.sync = rng() < 0.5;
        if (rng() < 0.5) op.load = rng() < 0.5;
        if (rng() < 0.5) op.size = sizes[randInt(rng, 0, sizes.length - 1)];
        return op;
      });
      const value: Record<string, unknown> = { ops };
      if (rng() < 0.9) value.session_id = rng() < 0.5 ? 'sess-' + String(r) : 'séance-✓-' + String(r);
      if (rng() < 0.9) value.ino = u64(rng);
      let bytes = faultBatch.requestSerialize(value);
      if (r % 3 === 0) bytes = Buffer.concat([unknownField(rng), bytes, unknownField(rng)]);
      // A repeated scalar: the last one wins.
      if (r % 5 === 0) bytes = Buffer.concat([bytes, varintField(2, 77), lenField(3, Buffer.concat([varintField(3, 1), varintField(1, 5), varintField(1, 6), unknownField(rng)]))]);
      assert.deepEqual(decodeFaultBatchRequest(bytes), faultBatch.requestDeserialize(bytes), `request ${r}: ${JSON.stringify(value)}`);
    }
  });

  it('the request: a bool written as a long varint is true, and the fields after it are read in place', function () {
    // protobufjs's bool reader skips a fixed 10 bytes after a 5-byte prefix: it read this
    // op as pgoff 0, sync false. The strict walk let it through; the hand decoder reads it right.
    const bytes = lenField(3, Buffer.concat([varintField(3, 2n ** 40n), varintField(1, 5), varintField(1, 6)]));
    assert.deepEqual(decodeFaultBatchRequest(bytes).ops, [{ pgoff: '6', kind: 'KIND_UNSPECIFIED', sync: true, load: false, size: 'PAGE' }]);
  });

  it('the request: a negative kind sign-extended to 10 bytes decodes as protobufjs does (the bare number)', function () {
    const bytes = lenField(3, varintField(2, -2));
    assert.equal(bytes.length, 13);
    assert.deepEqual(decodeFaultBatchRequest(bytes), faultBatch.requestDeserialize(bytes));
    assert.equal(decodeFaultBatchRequest(bytes).ops[0].kind, -2);
  });

  it('the request: size PMD, PAGE, absent and unknown (a newer client\'s) decode as protobufjs does', function () {
    const cases: Array<[Buffer, string | number]> = [
      [lenField(3, Buffer.concat([varintField(1, 512), varintField(2, 1), varintField(5, 1)])), 'PMD'],
      [lenField(3, Buffer.concat([varintField(5, 0), varintField(1, 3)])), 'PAGE'],
      [lenField(3, varintField(1, 3)), 'PAGE'],
      [lenField(3, varintField(5, 2)), 2],
      [lenField(3, varintField(5, -4)), -4],
    ];
    for (const [bytes, size] of cases) {
      assert.deepEqual(decodeFaultBatchRequest(bytes), faultBatch.requestDeserialize(bytes));
      assert.equal(decodeFaultBatchRequest(bytes).ops[0].size, size);
    }
  });

  it('the request: malformed bytes throw WireDecodeError (EBADMSG on the server), never another error', function () {
    const session = lenField(1, Buffer.from('s'));
    const op = lenField(3, Buffer.concat([varintField(1, 5), varintField(2, 1)]));
    const cases: Array<[string, Buffer]> = [
      ['session_id as a varint', varintField(1, 3)],
      ['ino as LEN', lenField(2, Buffer.from([1]))],
      ['ops as a varint', varintField(3, 1)],
      ['pgoff as LEN', lenField(3, lenField(1, Buffer.from([1])))],
      ['kind as I32', lenField(3, Buffer.concat([tag(2, 5), Buffer.alloc(4)]))],
      ['sync as I64', lenField(3, Buffer.concat([tag(3, 1), Buffer.alloc(8)]))],
      ['load as LEN', lenField(3, lenField(4, Buffer.alloc(0)))],
      ['size as LEN', lenField(3, lenField(5, Buffer.from([1])))],
      ['size above 32 bits', lenField(3, varintField(5, 2n ** 33n))],
      ['kind above 32 bits', lenField(3, varintField(2, 2n ** 33n))],
      ['kind 2^31 in 5 bytes (not an int32)', lenField(3, varintField(2, 2n ** 31n))],
      ['an 11-byte varint', Buffer.concat([tag(2, 0), Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])])],
      ['a varint past 64 bits', Buffer.concat([tag(2, 0), Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02])])],
      ['session_id overrunning the message', lenField(1, Buffer.from('abc'), 50)],
      ['an op overrunning the message', Buffer.concat([session, lenField(3, varintField(1, 0), 30)])],
      ['a pgoff longer than its op', Buffer.concat([tag(3, 2), varint(2n), tag(1, 0), Buffer.from([0x80, 0x80, 0x01])])],
      ['field number 0', varintField(0, 1)],
      ['a group (wire type 3)', tag(9, 3)],
      ['wire type 7', tag(9, 7)],
      ['an unknown I64 cut short', Buffer.concat([tag(9, 1), Buffer.alloc(5)])],
      ['an unknown LEN overrunning', lenField(9, Buffer.alloc(2), 9)],
      ['a tag above 32 bits', varint(2n ** 35n)],
    ];
    for (const [what, bytes] of cases) {
      assert.throws(() => decodeFaultBatchRequest(bytes), WireDecodeError, what);
      const answer = strictDeserializer('/daxd.v1.Mapping/FaultBatch')(bytes);
      assert.ok(answer instanceof MalformedRequest, `${what}: the server refuses it (${JSON.stringify(answer)})`);
    }
    // Every cut of a valid request: decoded (it ended on a field boundary) or WireDecodeError.
    const whole = Buffer.concat([session, varintField(2, 2n ** 40n), op, op, unknownField(seededRng(3))]);
    let refused = 0;
    for (let n = 0; n < whole.length; n++) {
      try {
        decodeFaultBatchRequest(whole.subarray(0, n));
      } catch (err) {
        assert.ok(err instanceof WireDecodeError, `cut at ${n}: ${String(err)}`);
        refused++;
      }
    }
    assert.ok(refused > whole.length / 2, `most cuts are refused (${refused} of ${whole.length})`);
  });

  it('the reply: the objects protobufjs decodes, page data as views of the reply, over 300 random replies', function () {
    const rng = seededRng(1403);
    const token = () => Buffer.from(Array.from({ length: randInt(rng, 0, 27) }, () => randInt(rng, 0, 255))).toString('base64url');
    for (let r = 0; r < 300; r++) {
      const results = Array.from({ length: randInt(rng, 0, 30) }, () => {
        const o: Record<string, unknown> = {};
        const shape = randInt(rng, 0, 4);
        if (shape <= 1) {
          const pte: Record<string, unknown> = { pgoff: u64(rng), pfn: u64(rng), writable: rng() < 0.5, token: token() };
          const sizeShape = randInt(rng, 0, 3);
          if (sizeShape === 1) pte.size = 'PMD';
          if (sizeShape === 2) Object.assign(pte, { size: 'PAGE', fallback_reason: ['CROSSES_EOF', 'PTE_LOCKED', 'NO_ALIGNED_SPACE', 'é✓'][randInt(rng, 0, 3)] });
          if (sizeShape === 3) pte.size = [5, -1, 2 ** 31 - 1][randInt(rng, 0, 2)]; // a newer server's size
          o.pte = pte;
        }
        if (shape === 1 || shape === 2) o.data = Buffer.alloc(randInt(rng, 1, 4096), randInt(rng, 0, 255));
        if (shape === 3) o.error = { code: randInt(rng, 0, 2 ** 32 - 1), reason: 'SIGBUS', message: `past EOF ✓ ${r}` };
        if (shape === 4) o.pte = { token: token() }; // fields left out
        return o;
      });
      let bytes = faultBatch.responseSerialize({ results });
      if (r % 4 === 0) bytes = Buffer.concat([unknownField(rng), bytes]);
      // A second occurrence of a message field replaces the first (as protobufjs decodes it).
      if (r % 7 === 0) bytes = Buffer.concat([bytes, lenField(1, Buffer.concat([lenField(1, varintField(2, 9)), lenField(1, lenField(4, Buffer.from('t2'))), lenField(3, varintField(1, 5)), lenField(3, lenField(3, Buffer.from('m')))]))]);
      const mine = decodeFaultBatchResponse(bytes);
      assert.deepEqual(mine, faultBatch.responseDeserialize(bytes), `reply ${r}`);
      for (const o of mine.results) {
        if (o.data.length > 0) assert.equal(o.data.buffer, bytes.buffer, `reply ${r}: data is a view of the reply`);
      }
    }
  });

  it('the reply: malformed bytes throw (the call fails), never a partial decode', function () {
    for (const bytes of [
      varintField(1, 3), lenField(1, Buffer.alloc(4), 9), lenField(1, lenField(2, Buffer.alloc(3), 8)), lenField(1, varintField(1, 1)),
      lenField(1, lenField(1, lenField(5, Buffer.from([1])))), lenField(1, lenField(1, varintField(6, 1))), lenField(1, lenField(1, lenField(6, Buffer.from('x'), 4))),
    ]) {
      assert.throws(() => decodeFaultBatchResponse(bytes), WireDecodeError);
    }
  });

  it('is plugged into FaultBatch replies only: the other Mapping methods keep protobufjs', function () {
    const service = loadDaxdProto().daxd.v1.Mapping.service;
    const wrapped = withFaultBatchDecoder(service);
    for (const [name, def] of Object.entries(service)) {
      if (name === 'FaultBatch') assert.equal(wrapped[name].responseDeserialize, decodeFaultBatchResponse);
      else assert.equal(wrapped[name], def, name);
    }
  });
});

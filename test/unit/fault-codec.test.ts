/**
 * wire/fault-codec.ts: the hand-written FaultBatchResponse encoder writes exactly the
 * bytes protobufjs writes for the same reply (the proto-loader service's own serializer),
 * decodes back to the same outcomes, and hands anything it does not take on to protobufjs.
 */
import assert from 'node:assert/strict';
import type * as grpc from '@grpc/grpc-js';
import { encodeFaultBatchRequest, encodeFaultBatchResponse, withFaultBatchEncoder, type Serialize } from '../../wire/fault-codec';
import { loadDaxdProto } from '../../wire/proto';
import { randInt, seededRng } from '../support/rng';

const faultBatch = loadDaxdProto().daxd.v1.Mapping.service.FaultBatch as grpc.MethodDefinition<unknown, unknown>;
const protobufjs = faultBatch.responseSerialize as Serialize;
const decode = (b: Buffer) => faultBatch.responseDeserialize(b) as {
  results: Array<{ pte: { pgoff: string; pfn: string; writable: boolean; token: string; size: string; fallback_reason: string } | null; data: Buffer; error: unknown }>;
};

function sameBytes(value: unknown, what: string): Buffer {
  let fellBack = false;
  const mine = encodeFaultBatchResponse(value, (v) => {
    fellBack = true;
    return protobufjs(v);
  });
  assert.equal(fellBack, false, `${what}: encoded by hand`);
  assert.deepEqual(mine, protobufjs(value), `${what}: the bytes protobufjs writes`);
  return mine;
}

describe('FaultBatchResponse encoder (wire/fault-codec.ts)', function () {
  it('writes protobufjs\'s bytes for PTEs, loaded pages, COW copies and empty data, over 300 random replies', function () {
    const rng = seededRng(140);
    const token = () => Buffer.from(Array.from({ length: 27 }, () => randInt(rng, 0, 255))).toString('base64url');
    const u64 = () => [0, 1, 127, 128, 16_383, 16_384, 2 ** 31, 2 ** 32, 2 ** 47 + 5, Number.MAX_SAFE_INTEGER, randInt(rng, 0, 1e9)][randInt(rng, 0, 10)];
    for (let r = 0; r < 300; r++) {
      const results = Array.from({ length: randInt(rng, 0, 40) }, () => {
        const shape = randInt(rng, 0, 3);
        const pte: { pgoff: number; pfn: number; writable: boolean; token: string; size?: string; fallback_reason?: string } = { pgoff: u64(), pfn: u64(), writable: rng() < 0.5, token: token() };
        // A PMD PTE, a PAGE PTE that fell back (with its reason), or neither field (as before).
        const sizeShape = randInt(rng, 0, 2);
        if (sizeShape === 1) Object.assign(pte, { size: 'PMD', fallback_reason: '' });
        if (sizeShape === 2) Object.assign(pte, { size: 'PAGE', fallback_reason: ['CROSSES_EOF', 'NOT_CONTIGUOUS', 'PTE_ENTRIES', 'PTE_LOCKED', 'COW', 'NO_ALIGNED_SPACE'][randInt(rng, 0, 5)] });
        if (shape === 0) return { pte, data: Buffer.alloc(0) }; // a fault as the handler answers it
        if (shape === 1) return { pte, data: Buffer.from(Array.from({ length: randInt(rng, 1, 5000) }, () => randInt(rng, 0, 255))) };
        if (shape === 2) return { pte: null, data: Buffer.alloc(4096, r & 0xff) }; // COW
        return { pte: { pgoff: u64(), token: '' } }; // fields left out
      });
      const bytes = sameBytes({ results }, `reply ${r}`);
      const back = decode(bytes).results;
      assert.equal(back.length, results.length);
      results.forEach((o, i) => {
        if (o.pte && 'pfn' in o.pte) {
          assert.deepEqual(back[i].pte, {
            pgoff: String(o.pte.pgoff), pfn: String(o.pte.pfn), writable: o.pte.writable, token: o.pte.token,
            size: o.pte.size ?? 'PAGE', fallback_reason: o.pte.fallback_reason ?? '',
          });
        }
        if (o.data) assert.deepEqual(back[i].data, o.data);
      });
    }
  });

  it('an error outcome, a uint64 given as a string, a non-ASCII token or reason, a size as a number: protobufjs encodes the reply (same bytes)', function () {
    const pte = { pgoff: 3, pfn: 9, writable: false, token: 'abc' };
    for (const value of [
      { results: [{ pte, data: Buffer.alloc(0) }, { error: { code: 11, reason: 'SIGBUS', message: 'past EOF' } }] },
      { results: [{ pte: { ...pte, pgoff: '3' } }] },
      { results: [{ pte: { ...pte, token: 'é' } }] },
      { results: [{ pte: { ...pte, fallback_reason: 'é' } }] },
      { results: [{ pte: { ...pte, size: 1 } }] },
    ]) {
      let fellBack = false;
      const bytes = encodeFaultBatchResponse(value, (v) => {
        fellBack = true;
        return protobufjs(v);
      });
      assert.ok(fellBack, JSON.stringify(value));
      assert.deepEqual(bytes, protobufjs(value));
    }
  });

  it('is plugged into FaultBatch only: the other Mapping methods keep protobufjs', function () {
    const service = loadDaxdProto().daxd.v1.Mapping.service;
    const wrapped = withFaultBatchEncoder(service);
    for (const [name, def] of Object.entries(service)) {
      if (name === 'FaultBatch') assert.notEqual(wrapped[name].responseSerialize, def.responseSerialize);
      else assert.equal(wrapped[name], def, name);
    }
    const value = { results: [{ pte: { pgoff: 1, pfn: 2, writable: true, token: 'tok' }, data: Buffer.alloc(0) }] };
    assert.deepEqual(wrapped.FaultBatch.responseSerialize(value), protobufjs(value));
  });
});

describe('FaultBatchRequest encoder (wire/fault-codec.ts, the SDK side)', function () {
  const requestSerialize = faultBatch.requestSerialize as Serialize;

  it('writes protobufjs\'s bytes for 300 random requests (fields left out, every kind, load absent or set)', function () {
    const rng = seededRng(1404);
    const u64 = () => [0, 1, 127, 128, 16_384, 2 ** 32, Number.MAX_SAFE_INTEGER, randInt(rng, 0, 1e9)][randInt(rng, 0, 7)];
    const kinds = ['KIND_UNSPECIFIED', 'READ', 'WRITE', 'COW'];
    for (let r = 0; r < 300; r++) {
      const ops = Array.from({ length: randInt(rng, 0, 40) }, () => {
        const op: Record<string, unknown> = {};
        if (rng() < 0.9) op.pgoff = u64();
        if (rng() < 0.9) op.kind = kinds[randInt(rng, 0, 3)];
        if (rng() < 0.7) op.sync = rng() < 0.5;
        if (rng() < 0.5) op.load = rng() < 0.5;
        if (rng() < 0.5) op.size = rng() < 0.5 ? 'PAGE' : 'PMD';
        return op;
      });
      const value: Record<string, unknown> = { ops };
      if (rng() < 0.9) value.session_id = `s${r}-`.repeat(randInt(rng, 0, 40));
      if (rng() < 0.9) value.ino = u64();
      let fellBack = false;
      const mine = encodeFaultBatchRequest(value, (v) => {
        fellBack = true;
        return requestSerialize(v);
      });
      assert.equal(fellBack, false, `request ${r}: encoded by hand`);
      assert.deepEqual(mine, requestSerialize(value), `request ${r}: the bytes protobufjs writes`);
    }
  });

  it('a uint64 given as a string, a kind as a number or a non-ASCII session id: protobufjs encodes it (same bytes)', function () {
    for (const value of [
      { session_id: 's', ino: '5', ops: [] },
      { session_id: 's', ino: 5, ops: [{ pgoff: 1, kind: 2 }] },
      { session_id: 'é', ino: 5, ops: [{ pgoff: 1, kind: 'READ' }] },
      { session_id: 's', ino: 5, ops: [{ pgoff: '1', kind: 'READ' }] },
      { session_id: 's', ino: 5, ops: [{ pgoff: 1, kind: 'READ', size: 1 }] },
    ]) {
      let fellBack = false;
      const bytes = encodeFaultBatchRequest(value, (v) => {
        fellBack = true;
        return requestSerialize(v);
      });
      assert.ok(fellBack, JSON.stringify(value));
      assert.deepEqual(bytes, requestSerialize(value));
    }
  });
});

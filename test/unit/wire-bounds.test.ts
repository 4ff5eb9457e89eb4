/**
 * The bounds of the gRPC edge, as units (issue 10, defects 4 and 5):
 * - excerpt(): user input in a message is cut to ECHO_CHARS_MAX characters plus "…";
 * - boundedDetails(): a status message never exceeds STATUS_DETAILS_BYTES_MAX of UTF-8;
 * - boundedMetadata(): a header/trailer value over METADATA_VALUE_BYTES_MAX is dropped;
 * - the strict deserializer decodes every well-formed request exactly as
 *   @grpc/proto-loader does (so handlers see the same objects), and refuses the
 *   truncated string that protobufjs accepted.
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import pino from 'pino';
import * as protobuf from 'protobufjs';
import { loadDaxdProto, PROTO_PATH } from '../../client';
import { excerpt } from '../../server/excerpt';
import { ECHO_CHARS_MAX } from '../../server/limits';
import { METADATA_VALUE_BYTES_MAX, STATUS_DETAILS_BYTES_MAX } from '../../server/rpc/limits';
import { boundedDetails } from '../../server/rpc/status';
import { MalformedRequest, strictDeserializer } from '../../server/rpc/strict-decode';
import { boundedMetadata } from '../../server/rpc/wire-guard';

describe('gRPC edge bounds (issue 10, defects 4 and 5)', function () {
  it(`excerpt keeps ${ECHO_CHARS_MAX} characters and marks the cut with "…"`, function () {
    assert.equal(excerpt('short'), 'short');
    assert.equal(excerpt('x'.repeat(ECHO_CHARS_MAX)), 'x'.repeat(ECHO_CHARS_MAX));
    assert.equal(excerpt('x'.repeat(110_000)), `${'x'.repeat(ECHO_CHARS_MAX)}…`);
    // A surrogate pair straddling the cut is dropped whole, never split.
    const cut = excerpt(`${'x'.repeat(ECHO_CHARS_MAX - 1)}😀tail`);
    assert.equal(cut, `${'x'.repeat(ECHO_CHARS_MAX - 1)}…`);
    assert.ok(cut.isWellFormed());
  });

  it(`boundedDetails keeps any message within ${STATUS_DETAILS_BYTES_MAX} bytes of well-formed UTF-8`, function () {
    fc.assert(fc.property(fc.string({ maxLength: 3000, unit: 'grapheme' }), (text) => {
      const out = boundedDetails(text);
      assert.ok(Buffer.byteLength(out, 'utf8') <= STATUS_DETAILS_BYTES_MAX);
      if (Buffer.byteLength(text, 'utf8') <= STATUS_DETAILS_BYTES_MAX) assert.equal(out, text);
      else assert.ok(out.endsWith('…') && text.startsWith(out.slice(0, -1)));
    }), { seed: 10, numRuns: 300 });
  });

  it(`boundedMetadata drops a value over ${METADATA_VALUE_BYTES_MAX} bytes and keeps the rest`, function () {
    const md = new grpc.Metadata();
    md.set('daxd-reason', 'EINVAL');
    md.set('daxd-huge', 'h'.repeat(METADATA_VALUE_BYTES_MAX + 1));
    const out = boundedMetadata(md, pino({ level: 'silent' }), 'test');
    assert.deepEqual(out.get('daxd-reason'), ['EINVAL']);
    assert.deepEqual(out.get('daxd-huge'), []);
  });

  it('the strict deserializer decodes well-formed requests exactly as proto-loader does', function () {
    const root = new protobuf.Root();
    root.loadSync(PROTO_PATH, { keepCase: true });
    root.resolveAll();
    const v1 = loadDaxdProto().daxd.v1 as unknown as Record<string, { service?: grpc.ServiceDefinition }>;
    let checked = 0;
    for (const { service } of Object.values(v1)) {
      if (service === undefined) continue;
      for (const def of Object.values(service)) {
        const type = root.lookupService(def.path.split('/')[1]).methods[def.path.split('/')[2]].resolvedRequestType!;
        const strict = strictDeserializer(def.path);
        // Random field values through protobufjs's own encoder: always well-formed.
        const samples = [{}, ...type.fieldsArray.map((f) => ({ [f.name]: sampleValue(f) }))];
        for (const sample of samples) {
          const bytes = Buffer.from(type.encode(type.fromObject(sample)).finish());
          assert.deepEqual(strict(bytes), def.requestDeserialize(bytes), `${def.path} ${JSON.stringify(sample)}`);
          checked++;
        }
      }
    }
    assert.ok(checked >= 100, `${checked} samples`);
  });

  it('the strict deserializer refuses a string declared as 50 bytes that carries 3 (protobufjs took "abc")', function () {
    const bytes = Buffer.from([0x0a, 50, 0x61, 0x62, 0x63]);
    const lenient = loadDaxdProto().daxd.v1.Files.service.Create.requestDeserialize(bytes) as { name: string };
    assert.equal(lenient.name, 'abc', 'the lenient decode this guards against');
    const strict = strictDeserializer('/daxd.v1.Files/Create')(bytes);
    assert.ok(strict instanceof MalformedRequest);
    assert.match(strict.problem, /overruns the message \(50 bytes declared, 3 left\)/);
  });

  it('a request protobufjs cannot decode after all (a bool as a 9-byte varint) is malformed, never a throw (INTERNAL)', function () {
    // Found by the protocol fuzzer: well-formed varint framing, but protobufjs's bool reader
    // gives up ("index out of range") on a varint this long.
    const bytes = Buffer.from('10c6eae2b5e18490d80e', 'hex');
    const strict = strictDeserializer('/daxd.v1.Files/Create')(bytes);
    assert.ok(strict instanceof MalformedRequest);
    assert.match(strict.problem, /index out of range/);
  });
});

function sampleValue(field: protobuf.Field): unknown {
  const value = (() => {
    if (field.resolvedType instanceof protobuf.Enum) return Object.values(field.resolvedType.values).at(-1);
    if (field.resolvedType instanceof protobuf.Type) return {};
    switch (field.type) {
      case 'string': return 'sample-é';
      case 'bytes': return Buffer.from([1, 2, 3]);
      case 'bool': return true;
      case 'uint32': return 4_000_000_000;
      case 'uint64': return '18446744073709551615';
      default: throw new Error(`no sample for ${field.type}`);
    }
  })();
  return field.repeated ? [value, value] : value;
}

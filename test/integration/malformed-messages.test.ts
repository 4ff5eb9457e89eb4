/**
 * Regression test for issue 10, defect 5: malformed protobuf.
 *
 * A wrong wire type, a garbage body or a truncated bytes field answered INTERNAL ("Error
 * deserializing request"), and a truncated string field was even accepted: a name
 * declared as 50 bytes that carried 3 created "abc". Every request is now decoded by
 * daxd's strict deserializer (server/rpc/strict-decode.ts): a message that is not
 * well-formed for its type is INVALID_ARGUMENT / EBADMSG and the handler never runs; a
 * well-formed message with fields this server does not know is accepted (proto3).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { DaxClientError } from '../../client';
import type { RawClients } from '../../client/raw-clients';
import { call, callBytes, failure, rawClients } from '../support/raw-rpc';
import { fsckFindings, startServer, tempDir, type StartedServer } from '../support/start-server';
import { lenField, tag, varint, varintField, WIRE } from './wire-bytes';

const S = grpc.status;
const DEADLINE_MS = 5_000;

interface Row {
  name: string;
  service: 'files' | 'session' | 'mapping' | 'dma';
  method: string;
  body: () => Buffer;
  code: grpc.status;
  reason: string | null;
}

describe('malformed protobuf: INVALID_ARGUMENT / EBADMSG, never INTERNAL, never a partial decode (issue 10, defect 5)', function () {
  let tmp: ReturnType<typeof tempDir>;
  let server: StartedServer;
  let raw: RawClients;
  let ino: number;
  let session: string;

  before(async function () {
    tmp = tempDir();
    server = await startServer({ volumePath: path.join(tmp.dir, 'malformed.vol') });
    raw = rawClients(server.address);
    ino = Number((await call<{ ino: string }>((cb) => raw.files.Create({ name: 'victim' }, cb))).ino);
    await call((cb) => raw.files.Write({ ino, offset: 0, data: Buffer.alloc(4096, 7) }, cb));
    session = (await call<{ session_id: string }>((cb) => raw.session.Open({ client_name: 'malformed' }, cb))).session_id;
  });

  after(async function () {
    raw?.close();
    if (server) assert.deepEqual(await server.stop(), { code: 0, signal: null });
    if (server) assert.deepEqual(await fsckFindings(server.volumePath), [], 'fsck after the malformed messages');
    tmp?.remove();
  });

  const bad = (name: string, service: Row['service'], method: string, body: () => Buffer): Row => ({ name, service, method, body, code: S.INVALID_ARGUMENT, reason: 'EBADMSG' });
  const rows: Row[] = [
    bad('Create whose name is declared as 50 bytes and carries 3 ("abc")', 'files', 'Create', () => lenField(1, 'abc', 50)),
    bad('Lookup whose name (a string) comes as a varint', 'files', 'Lookup', () => varintField(1, 5)),
    bad('Lookup with a garbage body (eleven 0xff bytes: a varint that never ends)', 'files', 'Lookup', () => Buffer.alloc(11, 0xff)),
    bad('Lookup with a body cut inside a varint tag', 'files', 'Lookup', () => Buffer.from([0x80])),
    bad('Write whose data is declared as 50 bytes and carries 3', 'files', 'Write', () => Buffer.concat([varintField(1, ino), varintField(2, 0), lenField(3, 'abc', 50)])),
    bad('Write whose data (bytes) comes as a fixed32', 'files', 'Write', () => Buffer.concat([varintField(1, ino), tag(3, WIRE.I32), Buffer.alloc(4)])),
    bad('Read whose offset (uint64) comes length-delimited', 'files', 'Read', () => Buffer.concat([varintField(1, ino), lenField(2, 'xx')])),
    bad('Stat whose ino comes as a fixed64', 'files', 'Stat', () => Buffer.concat([tag(1, WIRE.I64), Buffer.alloc(8)])),
    bad('Stat with field number 0', 'files', 'Stat', () => varintField(0, 1)),
    bad('Stat with wire type 7', 'files', 'Stat', () => Buffer.concat([tag(1, 7), Buffer.from([0])])),
    bad('List whose page_size (uint32) is 2^32', 'files', 'List', () => varintField(3, 2n ** 32n)),
    bad('List with an unknown field cut short (fixed32 of 2 bytes)', 'files', 'List', () => Buffer.concat([tag(9, WIRE.I32), Buffer.alloc(2)])),
    bad('KeepAlive with a group (wire type 3, proto2 only)', 'session', 'KeepAlive', () => Buffer.concat([tag(5, WIRE.SGROUP), tag(5, WIRE.EGROUP)])),
    bad('FaultBatch whose op (a nested message) declares a pgoff longer than the op', 'mapping', 'FaultBatch', () => Buffer.concat([
      lenField(1, session), varintField(2, ino), lenField(3, Buffer.concat([tag(1, WIRE.LEN), varint(40), Buffer.from('xy')])),
    ])),
    bad('FaultBatch whose op declares more bytes than the message holds', 'mapping', 'FaultBatch', () => Buffer.concat([lenField(1, session), lenField(3, varintField(1, 0), 30)])),
    bad('Dma.Write whose page (uint32) comes as a string', 'dma', 'Write', () => Buffer.concat([lenField(1, session), lenField(3, 'page')])),
    { name: 'Fault of an unknown kind (enum number 99)', service: 'mapping', method: 'Fault', body: () => Buffer.concat([lenField(1, session), varintField(2, ino), varintField(3, 0), varintField(4, 99)]), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Lookup with a field this server does not know (boundary: OK)', service: 'files', method: 'Lookup', body: () => Buffer.concat([lenField(1, 'victim'), varintField(15, 1), lenField(16, 'future')]), code: S.OK, reason: null },
    { name: 'StatVolume with an empty body (boundary: OK)', service: 'files', method: 'StatVolume', body: () => Buffer.alloc(0), code: S.OK, reason: null },
  ];

  const SERVICE_PATHS = { files: 'Files', session: 'Session', mapping: 'Mapping', dma: 'Dma' } as const;
  for (const row of rows) {
    it(`${row.name} -> ${S[row.code]}${row.reason ? ` / ${row.reason}` : ''}`, async function () {
      const client = raw[row.service] as unknown as grpc.Client;
      const run = callBytes(client, `/daxd.v1.${SERVICE_PATHS[row.service]}/${row.method}`, row.body(), { deadline: Date.now() + DEADLINE_MS });
      if (row.code === S.OK) {
        await run;
        return;
      }
      const err = await failure(run);
      assert.equal(S[err.code], S[row.code], err.message);
      assert.equal(err.reason, row.reason, err.message);
    });
  }

  it('the truncated Create left no file "abc" (no partial decode)', async function () {
    const err = await failure(call((cb) => raw.files.Lookup({ name: 'abc' }, cb)));
    assert.equal(err.reason, 'ENOENT');
  });

  it('the victim file is unchanged', async function () {
    const read = await call<{ data: Buffer }>((cb) => raw.files.Read({ ino, offset: 0, length: 8192 }, cb));
    assert.equal(read.data.length, 4096);
    assert.ok(read.data.every((b) => b === 7));
  });

  it('Session.Events (server stream) with a garbage body ends INVALID_ARGUMENT / EBADMSG', async function () {
    const client = raw.session as unknown as grpc.Client;
    const stream = client.makeServerStreamRequest('/daxd.v1.Session/Events', (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(11, 0xff), { deadline: Date.now() + DEADLINE_MS });
    const err = await streamError(stream);
    assert.equal(S[err.code], 'INVALID_ARGUMENT', err.message);
    assert.equal(err.reason, 'EBADMSG', err.message);
  });

  it('Files.ReadStream (bidi) with one malformed message ends INVALID_ARGUMENT / EBADMSG', async function () {
    const client = raw.files as unknown as grpc.Client;
    const stream = client.makeBidiStreamRequest('/daxd.v1.Files/ReadStream', (b: Buffer) => b, (b: Buffer) => b, { deadline: Date.now() + DEADLINE_MS });
    // ops[0] declares 20 bytes and carries 2.
    stream.write(lenField(1, Buffer.from([0x08, 0x01]), 20));
    const err = await streamError(stream);
    assert.equal(S[err.code], 'INVALID_ARGUMENT', err.message);
    assert.equal(err.reason, 'EBADMSG', err.message);
  });
});

function streamError(stream: grpc.ClientReadableStream<Buffer> | grpc.ClientDuplexStream<Buffer, Buffer>): Promise<DaxClientError> {
  return new Promise((resolve, reject) => {
    stream.on('data', () => undefined);
    stream.on('error', (err: grpc.ServiceError) => resolve(DaxClientError.fromServiceError(err)));
    stream.on('end', () => reject(new Error('the stream ended OK; it was expected to fail')));
  });
}

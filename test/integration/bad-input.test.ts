/**
 * The bad-input table: each row sends one malformed or out-of-range request to a real
 * server and asserts the exact gRPC status and daxd-reason. A few boundary rows that must
 * succeed sit among them. After the table, the server stops and fsck finds the volume
 * clean: no bad input left a mark on it.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { DaxClientError } from '../../client';
import type { RawClients } from '../../client/raw-clients';
import type { SessionInfo__Output } from '../../wire/generated/daxd/v1/SessionInfo';
import { badInputTable, type BadInputRow } from '../support/bad-input-table';
import { call, callBytes, rawClients, streamOutcome, stringField1 } from '../support/raw-rpc';
import { fsckFindings, startServer, tempDir, type StartedServer } from '../support/start-server';
import { MiB } from '../support/units';

const S = grpc.status;
const IO_MAX = 4 * MiB;
const FILE_MAX = 2 ** 40;
const U64_MAX = '18446744073709551615';
const TWO_53 = '9007199254740992';
const TWO_53_PLUS_1 = '9007199254740993';
const MAX_SAFE = String(Number.MAX_SAFE_INTEGER);

describe('bad input: exact status and reason for every malformed request', function () {
  let tmp: ReturnType<typeof tempDir>;
  let server: StartedServer;
  let raw: RawClients;
  let ino: number;
  let expiredSession: string;
  let closedSession: string;

  before(async function () {
    tmp = tempDir();
    server = await startServer({ volumePath: path.join(tmp.dir, 'bad-input.vol') });
    raw = rawClients(server.address);
    const file = await call<{ ino: string }>((cb) => raw.files.Create({ name: 'victim' }, cb));
    ino = Number(file.ino);
    await call((cb) => raw.files.Write({ ino, offset: 0, data: Buffer.alloc(3 * 4096, 7) }, cb));
    // A session that expires: lease 100 ms, never renewed; its Events stream says when.
    const expiring = await call<SessionInfo__Output>((cb) => raw.session.Open({ client_name: 'expiring', lease_ms: 100 }, cb));
    const ended = await streamOutcome(raw.session.Events({ session_id: expiring.session_id }));
    assert.equal(ended.error?.reason, 'SESSION_EXPIRED');
    expiredSession = expiring.session_id;
    const closing = await call<SessionInfo__Output>((cb) => raw.session.Open({ client_name: 'closing' }, cb));
    await call((cb) => raw.session.Close({ session_id: closing.session_id }, cb));
    closedSession = closing.session_id;
  });

  after(async function () {
    raw?.close();
    if (server) assert.deepEqual(await server.stop(), { code: 0, signal: null });
    if (server) assert.deepEqual(await fsckFindings(server.volumePath), [], 'fsck after the bad-input table');
    tmp?.remove();
  });

  const f = () => raw.files;
  const rows: BadInputRow[] = [
    // ---- names
    { name: 'Lookup with an empty name', run: () => call((cb) => f().Lookup({ name: '' }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Create with a missing name', run: () => call((cb) => f().Create({}, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Create with a 256-byte name', run: () => call((cb) => f().Create({ name: 'n'.repeat(256) }, cb)), code: S.INVALID_ARGUMENT, reason: 'ENAMETOOLONG' },
    { name: 'Create with 128 two-byte characters (256 bytes)', run: () => call((cb) => f().Create({ name: 'é'.repeat(128) }, cb)), code: S.INVALID_ARGUMENT, reason: 'ENAMETOOLONG' },
    { name: 'Create with a 255-byte name (boundary: OK)', run: () => call((cb) => f().Create({ name: 'm'.repeat(255) }, cb)), code: S.OK, reason: null },
    { name: 'Create with a NUL in the name', run: () => call((cb) => f().Create({ name: 'a\0b' }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Lookup with invalid UTF-8 bytes (a 0xFF byte)', run: () => callBytes(f(), '/daxd.v1.Files/Lookup', stringField1([0x61, 0xff, 0x62])), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Create with an overlong UTF-8 encoding of "/"', run: () => callBytes(f(), '/daxd.v1.Files/Create', stringField1([0xc0, 0xaf])), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Create with a lone surrogate (encoded as CESU-8 bytes)', run: () => call((cb) => f().Create({ name: 'x\uD800y' }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Create with U+FFFD in the name (documented refusal)', run: () => call((cb) => f().Create({ name: 'a\uFFFDb' }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Create exclusive of an existing name', run: () => call((cb) => f().Create({ name: 'victim', exclusive: true }, cb)), code: S.ALREADY_EXISTS, reason: 'EEXIST' },
    { name: 'Unlink of a name that does not exist', run: () => call((cb) => f().Unlink({ name: 'ghost' }, cb)), code: S.NOT_FOUND, reason: 'ENOENT' },
    { name: 'List with a NUL in the prefix', run: () => call((cb) => f().List({ prefix: 'a\0' }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'List with a forged page token', run: () => call((cb) => f().List({ page_token: '!!not-a-token!!' }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    // ---- inodes
    { name: 'Stat of an unknown inode', run: () => call((cb) => f().Stat({ ino: 4000 }, cb)), code: S.NOT_FOUND, reason: 'ENOENT' },
    { name: 'Stat of inode 2^53', run: () => call((cb) => f().Stat({ ino: TWO_53 }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Stat of inode 2^64-1', run: () => call((cb) => f().Stat({ ino: U64_MAX }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Fsync of an unknown inode', run: () => call((cb) => f().Fsync({ ino: 4001 }, cb)), code: S.NOT_FOUND, reason: 'ENOENT' },
    { name: 'Write to an unknown inode', run: () => call((cb) => f().Write({ ino: 4002, offset: 0, data: Buffer.from('x') }, cb)), code: S.NOT_FOUND, reason: 'ENOENT' },
    // ---- offsets and lengths near and above 2^53 and 2^64-1
    { name: 'Read at offset 2^53+1', run: () => call((cb) => f().Read({ ino, offset: TWO_53_PLUS_1, length: 1 }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Read at offset 2^64-1', run: () => call((cb) => f().Read({ ino, offset: U64_MAX, length: 1 }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Read at offset 2^53-1 (past the max file size)', run: () => call((cb) => f().Read({ ino, offset: MAX_SAFE, length: 1 }, cb)), code: S.INVALID_ARGUMENT, reason: 'EFBIG' },
    { name: 'Read at offset max file size + 1', run: () => call((cb) => f().Read({ ino, offset: FILE_MAX + 1, length: 1 }, cb)), code: S.INVALID_ARGUMENT, reason: 'EFBIG' },
    { name: 'Read at offset = max file size (boundary: OK, empty)', run: () => call((cb) => f().Read({ ino, offset: FILE_MAX, length: 1 }, cb)), code: S.OK, reason: null },
    { name: 'Read of length 2^53', run: () => call((cb) => f().Read({ ino, offset: 0, length: TWO_53 }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Read of length 2^64-1', run: () => call((cb) => f().Read({ ino, offset: 0, length: U64_MAX }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Read of 4 MiB + 1 (max I/O per call)', run: () => call((cb) => f().Read({ ino, offset: 0, length: IO_MAX + 1 }, cb)), code: S.RESOURCE_EXHAUSTED, reason: 'ELIMIT' },
    { name: 'Read of length 0 (boundary: OK, empty)', run: () => call((cb) => f().Read({ ino, offset: 0, length: 0 }, cb)), code: S.OK, reason: null },
    { name: 'Write at offset 2^64-1', run: () => call((cb) => f().Write({ ino, offset: U64_MAX, data: Buffer.from('x') }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Write at offset 2^53-1', run: () => call((cb) => f().Write({ ino, offset: MAX_SAFE, data: Buffer.from('x') }, cb)), code: S.INVALID_ARGUMENT, reason: 'EFBIG' },
    { name: 'Write past the max file size (2 bytes at max - 1)', run: () => call((cb) => f().Write({ ino, offset: FILE_MAX - 1, data: Buffer.from('xy') }, cb)), code: S.INVALID_ARGUMENT, reason: 'EFBIG' },
    { name: 'Write of 4 MiB + 1 bytes (max I/O per call)', run: () => call((cb) => f().Write({ ino, offset: 0, data: Buffer.alloc(IO_MAX + 1) }, cb)), code: S.RESOURCE_EXHAUSTED, reason: 'ELIMIT' },
    { name: 'Write in a message above the gRPC limit (5 MiB: refused by grpc-js, no reason)', run: () => call((cb) => f().Write({ ino, offset: 0, data: Buffer.alloc(5 * MiB) }, cb)), code: S.RESOURCE_EXHAUSTED, reason: null },
    { name: 'Write of no data (boundary: OK, written 0)', run: () => call((cb) => f().Write({ ino, offset: 0 }, cb)), code: S.OK, reason: null },
    // ---- truncate
    { name: 'Truncate to 2^64-1 (-1 as int64)', run: () => call((cb) => f().Truncate({ ino, size: U64_MAX }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Truncate to 2^63 (int64 minimum)', run: () => call((cb) => f().Truncate({ ino, size: '9223372036854775808' }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Truncate to max file size + 1', run: () => call((cb) => f().Truncate({ ino, size: FILE_MAX + 1 }, cb)), code: S.INVALID_ARGUMENT, reason: 'EFBIG' },
    { name: 'Truncate with an unknown layout_break (7)', run: () => call((cb) => f().Truncate({ ino, size: 0, layout_break: 7 as never }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Truncate of an unknown inode', run: () => call((cb) => f().Truncate({ ino: 4003, size: 0 }, cb)), code: S.NOT_FOUND, reason: 'ENOENT' },
    // ---- fallocate
    { name: 'Fallocate without a mode', run: () => call((cb) => f().Fallocate({ ino, offset: 0, length: 4096 }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Fallocate with an unknown mode (42)', run: () => call((cb) => f().Fallocate({ ino, mode: 42 as never, offset: 0, length: 4096 }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Fallocate of length 0', run: () => call((cb) => f().Fallocate({ ino, mode: 'KEEP_SIZE', offset: 0, length: 0 }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Fallocate of length 2^64-1', run: () => call((cb) => f().Fallocate({ ino, mode: 'KEEP_SIZE', offset: 0, length: U64_MAX }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Fallocate past the max file size', run: () => call((cb) => f().Fallocate({ ino, mode: 'ALLOCATE', offset: FILE_MAX - 4096, length: 8192 }, cb)), code: S.INVALID_ARGUMENT, reason: 'EFBIG' },
    { name: 'Fallocate COLLAPSE_RANGE at an unaligned offset', run: () => call((cb) => f().Fallocate({ ino, mode: 'COLLAPSE_RANGE', offset: 100, length: 4096 }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Fallocate COLLAPSE_RANGE of an unaligned length', run: () => call((cb) => f().Fallocate({ ino, mode: 'COLLAPSE_RANGE', offset: 0, length: 100 }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Fallocate COLLAPSE_RANGE reaching end of file', run: () => call((cb) => f().Fallocate({ ino, mode: 'COLLAPSE_RANGE', offset: 4096, length: 8192 }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Fallocate with an unknown layout_break (9)', run: () => call((cb) => f().Fallocate({ ino, mode: 'PUNCH_HOLE', offset: 0, length: 1, layout_break: 9 as never }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    // ---- sessions
    { name: 'Open with a lease above the maximum', run: () => call((cb) => raw.session.Open({ lease_ms: 120_001 }, cb)), code: S.INVALID_ARGUMENT, reason: 'LEASE_TOO_LONG' },
    { name: 'Open with a lease below the minimum', run: () => call((cb) => raw.session.Open({ lease_ms: 99 }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Open with a lease of 2^64-1 ms', run: () => call((cb) => raw.session.Open({ lease_ms: U64_MAX }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Open with a 256-byte client name', run: () => call((cb) => raw.session.Open({ client_name: 'c'.repeat(256) }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'KeepAlive without a session id', run: () => call((cb) => raw.session.KeepAlive({}, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'KeepAlive of a session never issued (wrong session)', run: () => call((cb) => raw.session.KeepAlive({ session_id: '0123456789abcdef0123456789abcdef' }, cb)), code: S.UNAUTHENTICATED, reason: 'SESSION_UNKNOWN' },
    { name: 'KeepAlive of an expired session', run: () => call((cb) => raw.session.KeepAlive({ session_id: expiredSession }, cb)), code: S.UNAUTHENTICATED, reason: 'SESSION_EXPIRED' },
    { name: 'Close of a closed session', run: () => call((cb) => raw.session.Close({ session_id: closedSession }, cb)), code: S.UNAUTHENTICATED, reason: 'SESSION_EXPIRED' },
    { name: 'Events of a session never issued', run: () => eventsOutcome(raw, 'ffffffffffffffffffffffffffffffff'), code: S.UNAUTHENTICATED, reason: 'SESSION_UNKNOWN' },
    { name: 'Events of an expired session', run: () => eventsOutcome(raw, expiredSession), code: S.UNAUTHENTICATED, reason: 'SESSION_EXPIRED' },
    // ---- capabilities not built yet
    { name: 'Mapping.Fault with a closed session', run: () => call((cb) => raw.mapping.Fault({ session_id: closedSession, ino, pgoff: 0, kind: 'READ' }, cb)), code: S.UNAUTHENTICATED, reason: 'SESSION_EXPIRED' },
    { name: 'Dma.Pin with a closed session', run: () => call((cb) => raw.dma.Pin({ session_id: closedSession, ino, first_pgoff: 0, npages: 1 }, cb)), code: S.UNAUTHENTICATED, reason: 'SESSION_EXPIRED' },
    // ---- streams
    { name: 'ReadStream op at offset 2^64-1 (fails alone)', run: () => readStreamOp(raw, { id: 1, ino, offset: U64_MAX, length: 1 }), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'ReadStream op of 4 MiB + 1', run: () => readStreamOp(raw, { id: 2, ino, offset: 0, length: IO_MAX + 1 }), code: S.RESOURCE_EXHAUSTED, reason: 'ELIMIT' },
    { name: 'ReadStream message of 1025 ops (ends the stream)', run: () => oversizedBatch(raw), code: S.RESOURCE_EXHAUSTED, reason: 'ELIMIT' },
  ];

  badInputTable(rows, 40);

  it('the victim file is unchanged by all of the above', async function () {
    const stat = await call<{ size: string }>((cb) => raw.files.Stat({ ino }, cb));
    assert.equal(stat.size, String(3 * 4096));
    const read = await call<{ data: Buffer }>((cb) => raw.files.Read({ ino, offset: 0, length: 3 * 4096 }, cb));
    assert.ok(read.data.every((b) => b === 7));
  });
});

async function eventsOutcome(raw: RawClients, sessionId: string): Promise<void> {
  const { error } = await streamOutcome(raw.session.Events({ session_id: sessionId }));
  if (error !== null) throw error;
}

async function readStreamOp(raw: RawClients, op: { id: number; ino: number; offset: number | string; length: number | string }): Promise<void> {
  const stream = raw.files.ReadStream();
  const outcome = streamOutcome(stream);
  stream.write({ ops: [op] });
  stream.end();
  const { messages, error } = await outcome;
  assert.equal(error, null, 'a failed op does not end the stream');
  const result = messages.flatMap((m) => m.results).find((r) => r.id === op.id);
  assert.ok(result, 'the op is answered');
  if (result.error) throw DaxClientError.fromOpError(result.error);
}

async function oversizedBatch(raw: RawClients): Promise<void> {
  const stream = raw.files.ReadStream();
  const outcome = streamOutcome(stream);
  stream.write({ ops: Array.from({ length: 1025 }, (_, id) => ({ id, ino: 0, offset: 0, length: 1 })) });
  stream.end();
  const { error } = await outcome;
  if (error !== null) throw error;
}

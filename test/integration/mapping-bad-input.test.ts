/**
 * The bad-input table of the Mapping service: each row sends one malformed, out-of-range
 * or unauthorised request to a real daxd child process and asserts the exact gRPC status
 * and daxd-reason. Rows whose failure is per op (inside FaultBatch / AccessBatch, where
 * the call itself succeeds) throw that op's error. Boundary rows that must succeed sit
 * among them. Afterwards the victim file is unchanged and fsck finds the volume clean.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { DaxClientError } from '../../client';
import type { RawClients } from '../../client/raw-clients';
import type { FaultBatchResponse__Output } from '../../wire/generated/daxd/v1/FaultBatchResponse';
import type { OpError__Output } from '../../wire/generated/daxd/v1/OpError';
import { fsckVolume, openRawSession, RawMapping } from './mapping-fixture';
import { PAGE } from '../support/units';
import { badInputTable, type BadInputRow } from '../support/bad-input-table';
import { call, rawClients, streamOutcome } from '../support/raw-rpc';
import { startServer, tempDir, type StartedServer } from '../support/start-server';

const S = grpc.status;
const U64_MAX = '18446744073709551615';
const TWO_53 = '9007199254740992';
const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const NEVER_ISSUED = '0123456789abcdef0123456789abcdef';

/** Throws the first op error of a batch answer; nothing when every op succeeded. */
function opErrors(response: { results: Array<{ error: OpError__Output | null }> }): void {
  const failed = response.results.find((r) => r.error !== null);
  if (failed?.error) throw DaxClientError.fromOpError(failed.error);
}

describe('Mapping bad input: exact status and reason for every malformed request', function () {
  let tmp: ReturnType<typeof tempDir>;
  let server: StartedServer;
  let raw: RawClients;
  let ino: number;
  let s: RawMapping;
  let other: RawMapping;
  let expired: RawMapping;
  let closed: RawMapping;
  let token: string;
  let readOnlyToken: string;
  let unmappedToken: string;

  before(async function () {
    tmp = tempDir();
    server = await startServer({ volumePath: path.join(tmp.dir, 'mapping-bad-input.vol') });
    raw = rawClients(server.address);
    ino = Number((await call<{ ino: string }>((cb) => raw.files.Create({ name: 'victim' }, cb))).ino);
    await call((cb) => raw.files.Write({ ino, offset: 0, data: Buffer.alloc(3 * PAGE, 7) }, cb));
    s = await openRawSession(raw, 0, 'bad-input');
    other = await openRawSession(raw, 0, 'other');
    token = await s.token(ino, 0, 'WRITE');
    readOnlyToken = await s.token(ino, 1, 'READ');
    unmappedToken = await s.token(ino, 2, 'READ');
    await s.unmap(ino, 2, 2);
    // A session whose 100 ms lease runs out: its Events stream says when.
    expired = await openRawSession(raw, 100, 'expiring');
    const ended = await streamOutcome(raw.session.Events({ session_id: expired.sessionId }));
    assert.equal(ended.error?.reason, 'SESSION_EXPIRED');
    closed = await openRawSession(raw, 0, 'closing');
    await call((cb) => raw.session.Close({ session_id: closed.sessionId }, cb));
  });

  after(async function () {
    raw?.close();
    if (server) {
      assert.deepEqual(await server.stop(), { code: 0, signal: null });
      assert.deepEqual(await fsckVolume(server.volumePath), [], 'fsck after the bad-input table');
    }
    tmp?.remove();
  });

  const m = () => raw.mapping;
  const fault = (req: Record<string, unknown>) => call((cb) => m().Fault({ session_id: s.sessionId, ino, pgoff: 0, kind: 'READ', ...req }, cb));
  const load = (req: Record<string, unknown>) => call((cb) => m().Load({ session_id: s.sessionId, token, offset: 0, length: 1, ...req }, cb));
  const store = (req: Record<string, unknown>) => call((cb) => m().Store({ session_id: s.sessionId, token, offset: 0, data: Buffer.from('x'), ...req }, cb));
  const range = (method: 'Msync' | 'Unmap', first: number | string, last: number | string, fileIno: number = ino) =>
    call((cb) => m()[method]({ session_id: s.sessionId, ino: fileIno, first_pgoff: first, last_pgoff: last }, cb));
  const faultOps = (n: number) => Array.from({ length: n }, (_, i) => ({ pgoff: i % 3, kind: 'READ' as const }));
  const loadOps = (n: number) => Array.from({ length: n }, () => ({ token, offset: 0, length: 1 }));

  const rows: BadInputRow[] = [
    // ---- sessions
    { name: 'Fault with a session never issued', run: () => fault({ session_id: NEVER_ISSUED }), code: S.UNAUTHENTICATED, reason: 'SESSION_UNKNOWN' },
    { name: 'Fault with a malformed session id', run: () => fault({ session_id: 'not-a-session' }), code: S.UNAUTHENTICATED, reason: 'SESSION_UNKNOWN' },
    { name: 'Fault without a session id', run: () => fault({ session_id: '' }), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Fault with an expired session', run: () => fault({ session_id: expired.sessionId }), code: S.UNAUTHENTICATED, reason: 'SESSION_EXPIRED' },
    { name: 'Fault with a closed session', run: () => fault({ session_id: closed.sessionId }), code: S.UNAUTHENTICATED, reason: 'SESSION_EXPIRED' },
    { name: 'FaultBatch with a session never issued', run: () => call((cb) => m().FaultBatch({ session_id: NEVER_ISSUED, ino, ops: faultOps(1) }, cb)), code: S.UNAUTHENTICATED, reason: 'SESSION_UNKNOWN' },
    { name: 'AccessBatch with an expired session', run: () => call((cb) => m().AccessBatch({ session_id: expired.sessionId, ops: loadOps(1) }, cb)), code: S.UNAUTHENTICATED, reason: 'SESSION_EXPIRED' },
    { name: 'Msync with an expired session', run: () => call((cb) => m().Msync({ session_id: expired.sessionId, ino, first_pgoff: 0, last_pgoff: 0 }, cb)), code: S.UNAUTHENTICATED, reason: 'SESSION_EXPIRED' },
    // ---- tokens
    // Another session's token answers as a token never issued: the caller learns nothing.
    { name: 'Load with the token of another session', run: () => load({ session_id: other.sessionId }), code: S.ABORTED, reason: 'PTE_STALE' },
    { name: 'Store with the token of another session', run: () => store({ session_id: other.sessionId }), code: S.ABORTED, reason: 'PTE_STALE' },
    { name: 'Load with an empty token', run: () => load({ token: '' }), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Store with an empty token', run: () => store({ token: '' }), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Load with a token never issued', run: () => load({ token: 'AAAAAAAAAAAAAAAAAAAAAA' }), code: S.ABORTED, reason: 'PTE_STALE' },
    { name: 'Load with a token of an unmapped page', run: () => load({ token: unmappedToken }), code: S.ABORTED, reason: 'PTE_STALE' },
    { name: 'Store through a read-only token', run: () => store({ token: readOnlyToken }), code: S.ABORTED, reason: 'PTE_STALE' },
    // ---- offsets and lengths inside the page
    { name: 'Load crossing the end of the page (4000 + 200)', run: () => load({ offset: 4000, length: 200 }), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Store crossing the end of the page (4095 + 2 bytes)', run: () => store({ offset: 4095, data: Buffer.from('xy') }), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Store of 4097 bytes', run: () => store({ offset: 0, data: Buffer.alloc(PAGE + 1) }), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Load at offset 4096', run: () => load({ offset: PAGE, length: 0 }), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Store at offset 4096', run: () => store({ offset: PAGE }), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Load at offset 2^64-1', run: () => load({ offset: U64_MAX }), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Load of length 2^64-1', run: () => load({ length: U64_MAX }), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Load of the whole page at offset 0 (boundary: OK)', run: () => load({ offset: 0, length: PAGE }), code: S.OK, reason: null },
    { name: 'Load of the last byte of the page (boundary: OK)', run: () => load({ offset: PAGE - 1, length: 1 }), code: S.OK, reason: null },
    // ---- pages and kinds
    { name: 'Fault at pgoff 2^64-1', run: () => fault({ pgoff: U64_MAX }), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Fault at pgoff 2^53', run: () => fault({ pgoff: TWO_53 }), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Fault at pgoff 2^53-1 (past EOF)', run: () => fault({ pgoff: MAX_SAFE }), code: S.OUT_OF_RANGE, reason: 'SIGBUS' },
    { name: 'Fault at the first page past EOF', run: () => fault({ pgoff: 3 }), code: S.OUT_OF_RANGE, reason: 'SIGBUS' },
    { name: 'WRITE fault past EOF (no allocation)', run: () => fault({ pgoff: 3, kind: 'WRITE' }), code: S.OUT_OF_RANGE, reason: 'SIGBUS' },
    { name: 'COW fault past EOF', run: () => fault({ pgoff: 3, kind: 'COW' }), code: S.OUT_OF_RANGE, reason: 'SIGBUS' },
    { name: 'Fault at the last page (boundary: OK)', run: () => fault({ pgoff: 2 }), code: S.OK, reason: null },
    { name: 'Fault with kind unspecified', run: () => fault({ kind: 'KIND_UNSPECIFIED' }), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Fault with an unknown kind (7)', run: () => fault({ kind: 7 }), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Fault of an unknown inode', run: () => fault({ ino: 4000 }), code: S.NOT_FOUND, reason: 'ENOENT' },
    { name: 'Fault of inode 2^64-1', run: () => fault({ ino: U64_MAX }), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    // ---- batches
    { name: 'FaultBatch of 1025 ops', run: () => call((cb) => m().FaultBatch({ session_id: s.sessionId, ino, ops: faultOps(1025) }, cb)), code: S.RESOURCE_EXHAUSTED, reason: 'ELIMIT' },
    { name: 'FaultBatch of 1024 ops (boundary: OK)', run: () => call((cb) => m().FaultBatch({ session_id: s.sessionId, ino, ops: faultOps(1024) }, cb)), code: S.OK, reason: null },
    { name: 'AccessBatch of 1025 ops', run: () => call((cb) => m().AccessBatch({ session_id: s.sessionId, ops: loadOps(1025) }, cb)), code: S.RESOURCE_EXHAUSTED, reason: 'ELIMIT' },
    { name: 'FaultBatch of an unknown inode', run: () => call<FaultBatchResponse__Output>((cb) => m().FaultBatch({ session_id: s.sessionId, ino: 4001, ops: faultOps(1) }, cb)).then(opErrors), code: S.NOT_FOUND, reason: 'ENOENT' },
    { name: 'FaultBatch op with kind unspecified (fails alone)', run: () => s.faultBatch(ino, [{ pgoff: 0, kind: 'KIND_UNSPECIFIED' }]).then(opErrors), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'FaultBatch op past EOF (fails alone)', run: () => s.faultBatch(ino, [{ pgoff: 0, kind: 'READ' }, { pgoff: 9, kind: 'READ' }]).then(opErrors), code: S.OUT_OF_RANGE, reason: 'SIGBUS' },
    { name: 'FaultBatch op at pgoff 2^64-1 (fails alone)', run: () => s.faultBatch(ino, [{ pgoff: U64_MAX, kind: 'READ' }]).then(opErrors), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'AccessBatch op with an empty token (fails alone)', run: () => s.accessBatch([{ token: '', offset: 0, length: 1 }]).then(opErrors), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'AccessBatch store crossing the page (fails alone)', run: () => s.accessBatch([{ token, offset: 4090, data: Buffer.alloc(7), store: true }]).then(opErrors), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'AccessBatch op with the token of another session', run: () => other.accessBatch([{ token, offset: 0, length: 1 }]).then(opErrors), code: S.ABORTED, reason: 'PTE_STALE' },
    // ---- ranges
    { name: 'Msync with last_pgoff < first_pgoff', run: () => range('Msync', 2, 1), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Unmap with last_pgoff < first_pgoff', run: () => range('Unmap', 5, 0), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Msync with last_pgoff 2^64-1', run: () => range('Msync', 0, U64_MAX), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Msync of an unknown inode', run: () => range('Msync', 0, 0, 4002), code: S.NOT_FOUND, reason: 'ENOENT' },
    { name: 'Unmap of an unknown inode', run: () => range('Unmap', 0, 0, 4003), code: S.NOT_FOUND, reason: 'ENOENT' },
    { name: 'Inspect of an unknown inode', run: () => call((cb) => m().Inspect({ ino: 4004, first_pgoff: 0, last_pgoff: 0 }, cb)), code: S.NOT_FOUND, reason: 'ENOENT' },
    { name: 'Inspect with last_pgoff < first_pgoff', run: () => call((cb) => m().Inspect({ ino, first_pgoff: 1, last_pgoff: 0 }, cb)), code: S.INVALID_ARGUMENT, reason: 'EINVAL' },
    { name: 'Msync of pages 0..2^53-1 (boundary: OK)', run: () => range('Msync', 0, MAX_SAFE), code: S.OK, reason: null },
  ];

  badInputTable(rows, 40);

  it('the victim file is unchanged by all of the above', async function () {
    const read = await call<{ data: Buffer }>((cb) => raw.files.Read({ ino, offset: 0, length: 4 * PAGE }, cb));
    assert.equal(read.data.length, 3 * PAGE);
    assert.ok(read.data.every((b) => b === 7));
  });
});

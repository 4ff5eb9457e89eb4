/**
 * Regression tests for issue 10, defects 4 and 6: ids and tokens of any size.
 *
 * Defect 4: a session id of >= 110 KB was echoed into the error message; the status
 * trailer then exceeded the HTTP/2 header limit, never reached the client (calls hung
 * until their deadline) and 60 such calls kept SIGTERM from ending the server. Now every
 * id and token is length-checked (ID_BYTES_MAX) before any lookup, no message echoes more
 * than a short excerpt of user input, and shutdown ends within its grace period plus
 * SHUTDOWN_FORCE_MS whatever the calls do.
 *
 * Defect 6: List with a 1 MiB page_token answered ENAMETOOLONG; a foreign token is EINVAL.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { RawClients } from '../../client/raw-clients';
import type { SessionInfo__Output } from '../../wire/generated/daxd/v1/SessionInfo';
import { SHUTDOWN_FORCE_MS, STATUS_DETAILS_BYTES_MAX } from '../../server/rpc/limits';
import { call, failure, rawClients, streamOutcome } from '../support/raw-rpc';
import { startServer, tempDir, type StartedServer } from '../support/start-server';
import { MiB } from '../support/units';

const S = grpc.status;
const HUGE = 'x'.repeat(110_000);
/** Every call here answers at once when correct; without a deadline a wedged one would hang the suite. */
const DEADLINE_MS = 5_000;
const deadline = () => ({ deadline: Date.now() + DEADLINE_MS });

describe('huge ids and tokens: EINVAL at once, short messages, bounded shutdown (issue 10, defects 4 and 6)', function () {
  let tmp: ReturnType<typeof tempDir>;
  let server: StartedServer;
  let raw: RawClients;
  let session: string;
  let ino: number;

  before(async function () {
    tmp = tempDir();
    server = await startServer({ volumePath: path.join(tmp.dir, 'huge-ids.vol') });
    raw = rawClients(server.address);
    session = (await call<SessionInfo__Output>((cb) => raw.session.Open({ client_name: 'huge-ids' }, cb))).session_id;
    ino = Number((await call<{ ino: string }>((cb) => raw.files.Create({ name: 'victim' }, cb))).ino);
    await call((cb) => raw.files.Write({ ino, offset: 0, data: Buffer.alloc(4096, 1) }, cb));
  });

  after(async function () {
    raw?.close();
    if (server) assert.deepEqual(await server.stop(), { code: 0, signal: null });
    tmp?.remove();
  });

  const rows: Array<{ name: string; run: () => Promise<unknown> }> = [
    { name: 'Session.KeepAlive with a 110 KB session id', run: () => call((cb) => raw.session.KeepAlive({ session_id: HUGE }, deadline(), cb)) },
    { name: 'Session.Close with a 110 KB session id', run: () => call((cb) => raw.session.Close({ session_id: HUGE }, deadline(), cb)) },
    { name: 'Session.Events with a 110 KB session id', run: () => events(raw, HUGE) },
    { name: 'Mapping.Fault with a 110 KB session id', run: () => call((cb) => raw.mapping.Fault({ session_id: HUGE, ino, pgoff: 0, kind: 'READ' }, deadline(), cb)) },
    { name: 'Mapping.Load with a 110 KB PTE token', run: () => call((cb) => raw.mapping.Load({ session_id: session, token: HUGE, offset: 0, length: 1 }, deadline(), cb)) },
    { name: 'Mapping.Store with a 110 KB PTE token', run: () => call((cb) => raw.mapping.Store({ session_id: session, token: HUGE, offset: 0, data: Buffer.from('x') }, deadline(), cb)) },
    { name: 'Mapping.Store with fault_if_stale and a 110 KB PTE token', run: () => call((cb) => raw.mapping.Store({ session_id: session, token: HUGE, offset: 0, data: Buffer.from('x'), fault_if_stale: true, ino, pgoff: 0 }, deadline(), cb)) },
    { name: 'Dma.Unpin with a 110 KB pin id', run: () => call((cb) => raw.dma.Unpin({ session_id: session, pin_id: HUGE }, deadline(), cb)) },
    { name: 'Dma.Renew with a 110 KB session id', run: () => call((cb) => raw.dma.Renew({ session_id: HUGE, pin_id: '0'.repeat(32) }, deadline(), cb)) },
    { name: 'Files.List with a 1 MiB page_token (defect 6)', run: () => call((cb) => raw.files.List({ page_token: 'A'.repeat(MiB) }, deadline(), cb)) },
    { name: 'Files.List with a 400-character page_token (decodes to a 300-byte name)', run: () => call((cb) => raw.files.List({ page_token: 'QUFB'.repeat(100) }, deadline(), cb)) },
    { name: 'a 1000-byte daxd-request-id', run: () => call((cb) => raw.files.StatVolume({}, withRequestId('r'.repeat(1000)), deadline(), cb)) },
  ];

  for (const row of rows) {
    it(`${row.name} -> INVALID_ARGUMENT / EINVAL, message of at most ${STATUS_DETAILS_BYTES_MAX} bytes`, async function () {
      const err = await failure(row.run());
      assert.equal(S[err.code], 'INVALID_ARGUMENT', err.message.slice(0, 200));
      assert.equal(err.reason, 'EINVAL', err.message.slice(0, 200));
      assert.ok(Buffer.byteLength(err.details) <= STATUS_DETAILS_BYTES_MAX, `details of ${err.details.length} characters`);
      assert.ok(!err.details.includes('x'.repeat(100)), 'the id is not echoed');
    });
  }

  it('an AccessBatch fault_if_stale store with a 110 KB PTE token: its op answers EINVAL, nothing stored', async function () {
    const before = await call<{ data: Buffer }>((cb) => raw.files.Read({ ino, offset: 0, length: 1 }, deadline(), cb));
    const r = await call<{ results: Array<{ error: { code: number; reason: string; message: string } | null }> }>((cb) =>
      raw.mapping.AccessBatch({ session_id: session, ops: [{ token: HUGE, offset: 0, store: true, data: Buffer.from([0x7e]), fault_if_stale: true, ino, pgoff: 0 }] }, deadline(), cb));
    assert.equal(r.results[0].error?.reason, 'EINVAL');
    assert.equal(r.results[0].error?.code, S.INVALID_ARGUMENT);
    assert.ok(!r.results[0].error?.message.includes('x'.repeat(100)), 'the token is not echoed');
    const after = await call<{ data: Buffer }>((cb) => raw.files.Read({ ino, offset: 0, length: 1 }, deadline(), cb));
    assert.deepEqual(after.data, before.data);
  });

  it('a 64-byte session id is still looked up (SESSION_UNKNOWN), a 65-byte one is refused (EINVAL)', async function () {
    const known = await failure(call((cb) => raw.session.KeepAlive({ session_id: 'a'.repeat(64) }, deadline(), cb)));
    assert.equal(known.reason, 'SESSION_UNKNOWN');
    const tooLong = await failure(call((cb) => raw.session.KeepAlive({ session_id: 'a'.repeat(65) }, deadline(), cb)));
    assert.equal(tooLong.reason, 'EINVAL');
    assert.match(tooLong.details, /ID_BYTES_MAX|65 vs\. max 64/);
  });
});

describe('shutdown with 60 calls in flight carrying a huge session id (issue 10, defect 4)', function () {
  const GRACE_MS = 1_000;
  /** Exit of an idle server after the network side let go: unmount and process teardown. */
  const EXIT_SLACK_MS = 3_000;

  it(`SIGTERM ends the server within --shutdown-grace-ms + SHUTDOWN_FORCE_MS (+ ${EXIT_SLACK_MS} ms to unmount)`, async function () {
    this.timeout(60_000);
    const tmp = tempDir();
    const server = await startServer({ volumePath: path.join(tmp.dir, 'shutdown.vol'), extraArgs: ['--shutdown-grace-ms', String(GRACE_MS)] });
    const raw = rawClients(server.address);
    try {
      // No deadline: a call that never hears its status stays in flight for good.
      const calls = Array.from({ length: 60 }, (_, i) => (i % 2 === 0
        ? call((cb) => raw.session.KeepAlive({ session_id: HUGE }, cb))
        : call((cb) => raw.mapping.Fault({ session_id: HUGE, ino: 0, pgoff: 0, kind: 'READ' }, cb))).then(() => null, (err: unknown) => err));
      // The server has received the calls once a later call on the same connection is answered.
      await call((cb) => raw.files.StatVolume({}, cb));
      const startMs = Date.now();
      process.kill(server.pid, 'SIGTERM');
      const exit = await Promise.race([server.exited, delay(GRACE_MS + SHUTDOWN_FORCE_MS + EXIT_SLACK_MS + 10_000).then(() => null)]);
      const tookMs = Date.now() - startMs;
      if (exit === null) server.kill('SIGKILL');
      assert.ok(exit !== null, `the server did not exit within ${tookMs} ms of SIGTERM`);
      assert.ok(tookMs <= GRACE_MS + SHUTDOWN_FORCE_MS + EXIT_SLACK_MS, `exit took ${tookMs} ms`);
      assert.deepEqual(exit, { code: 0, signal: null });
      // Every call was answered: with EINVAL (or, had it still been running, UNAVAILABLE).
      const outcomes = await Promise.all(calls);
      for (const err of outcomes) {
        assert.ok(err instanceof Error && 'reason' in err, String(err));
        assert.equal((err as { reason: string | null }).reason, 'EINVAL', (err as Error).message.slice(0, 200));
      }
    } finally {
      raw.close();
      tmp.remove();
    }
  });
});

function withRequestId(id: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('daxd-request-id', id);
  return md;
}

async function events(raw: RawClients, sessionId: string): Promise<void> {
  const { error } = await streamOutcome(raw.session.Events({ session_id: sessionId }, deadline()));
  if (error !== null) throw error;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

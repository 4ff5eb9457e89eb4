/**
 * The SDK against `daxd serve --auth FILE` (plaintext loopback): the token option reaches
 * the server on every kind of call (unary, the op streams, Session.Open / KeepAlive /
 * Events, mapping faults, DMA pins), refusals are typed (DaxAuthError with .reason,
 * DaxQuotaError), and the token never shows in an error, the client's toString() or
 * util.inspect.
 *
 * Every failed authentication here counts against 127.0.0.1 on this file's server: this
 * file makes fewer than AUTH_FAILURES_PER_WINDOW_MAX of them, and the rate limit itself is
 * tested on a server of its own.
 */
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { DaxAuthError, DaxClient, DaxClientError, DaxQuotaError } from '../../client';
import { AUTH_FAILURES_PER_WINDOW_MAX } from '../../server/auth/limits';
import { newToken, startAuthServer, type AuthServer } from '../support/auth-server';
import { failure } from '../support/raw-rpc';

function assertNoToken(text: string, token: string, what: string): void {
  assert.ok(!text.includes(token), `${what} shows the token`);
}

async function authFailure(promise: Promise<unknown>, reason: 'EAUTH' | 'EACCES' | 'AUTH_RATE_LIMITED'): Promise<DaxAuthError> {
  const err = await failure(promise);
  assert.ok(err instanceof DaxAuthError, `expected a DaxAuthError, got ${err.name}: ${err.message}`);
  assert.equal(err.reason, reason, err.message);
  return err;
}

describe('SDK with auth: tokens and typed refusals', function () {
  let auth: AuthServer;

  before(async function () {
    auth = await startAuthServer();
  });

  after(async function () {
    await auth?.stop();
  });

  it('the token goes with unary calls, op streams, sessions (Open, KeepAlive, Events), faults and pins', async function () {
    const alice = auth.as('alice');
    const file = await alice.create('alice/sdk-token');
    const data = Buffer.alloc(3 * 4096, 7);
    await alice.write(file.ino, 0, data); // WriteStream
    assert.deepEqual(await alice.read(file.ino, 0, data.length), data); // ReadStream
    const session = await alice.openSession({ clientName: 'auth-sdk' });
    await session.attached; // Events: the server sent its headers, so the stream was admitted
    await session.keepAlive();
    const mapped = session.mmap(file.ino, { shared: true });
    assert.deepEqual(await mapped.read(0, 4096), data.subarray(0, 4096)); // Mapping.Fault + Load
    const pin = await alice.pin(file.ino, 1, 1, { session });
    assert.deepEqual(await pin.dmaRead(0, 0, 4096), data.subarray(4096, 8192));
    await pin.unpin();
    await session.close();
  });

  it('no token: UNAUTHENTICATED / EAUTH as DaxAuthError, on a unary call and on a stream', async function () {
    const anonymous = auth.client();
    const unary = await authFailure(anonymous.lookup('alice/x'), 'EAUTH');
    assert.equal(unary.code, grpc.status.UNAUTHENTICATED);
    assert.ok(unary instanceof DaxClientError);
    const streamed = await authFailure(anonymous.read(1, 0, 10), 'EAUTH');
    assert.equal(streamed.code, grpc.status.UNAUTHENTICATED);
  });

  it('a wrong token: EAUTH, and neither the error, toString() nor util.inspect shows the token', async function () {
    const wrong = newToken();
    const client = auth.client({ token: wrong });
    const err = await authFailure(client.create('alice/x'), 'EAUTH');
    for (const [what, text] of [['message', err.message], ['stack', err.stack ?? ''], ['details', err.details], ['inspect(error)', inspect(err)]]) {
      assertNoToken(text, wrong, what);
    }
    assertNoToken(String(client), wrong, 'String(client)');
    assertNoToken(inspect(client, { depth: 8 }), wrong, 'inspect(client)');
    assertNoToken(JSON.stringify(Object.keys(client)), wrong, 'keys');
    // A good token of one client is not shown either.
    const good = auth.as('alice');
    await good.list();
    assertNoToken(inspect(good, { depth: 8 }), auth.tokens.alice, 'inspect(good client)');
  });

  it('a token that cannot be sent is refused at connect, without quoting it', function () {
    for (const bad of ['', 'has space-in-it-0123456789', 'new\nline-0123456789abcdef', 'caf\u00e9-0123456789abcdef']) {
      assert.throws(() => DaxClient.connect(auth.server.address, { token: bad }), (err: Error) => {
        assert.ok(err instanceof TypeError, String(err));
        if (bad !== '') assertNoToken(err.message, bad, 'message');
        return true;
      });
    }
  });

  it('a role violation is PERMISSION_DENIED / EACCES as DaxAuthError', async function () {
    const admin = auth.as('admin');
    await admin.create('shared-by-admin');
    const reader = auth.as('reader');
    const err = await authFailure(reader.create('reader-new'), 'EACCES');
    assert.equal(err.code, grpc.status.PERMISSION_DENIED);
    // Reading is allowed.
    assert.equal((await reader.lookup('shared-by-admin')).name, 'shared-by-admin');
  });

  it('over quota is RESOURCE_EXHAUSTED / EDQUOT as DaxQuotaError (not an auth error)', async function () {
    const q = auth.as('q-sessions');
    const open = [await q.openSession(), await q.openSession()];
    const err = await failure(q.openSession());
    assert.ok(err instanceof DaxQuotaError, `${err.name}: ${err.message}`);
    assert.ok(!(err instanceof DaxAuthError));
    assert.deepEqual([err.code, err.reason], [grpc.status.RESOURCE_EXHAUSTED, 'EDQUOT']);
    for (const s of open) await s.close();
  });
});

describe('SDK with auth: failed authentications are rate-limited per address', function () {
  let auth: AuthServer;

  before(async function () {
    auth = await startAuthServer({ principals: [{ name: 'admin', role: 'admin' }] });
  });

  after(async function () {
    await auth?.stop();
  });

  it('100 wrong tokens in a row: EAUTH, then AUTH_RATE_LIMITED; then even the good token is refused', async function () {
    const reasons: string[] = [];
    for (let i = 0; i < 100; i++) {
      const client = auth.client({ token: newToken() });
      const err = await failure(client.lookup('x'));
      assert.ok(err instanceof DaxAuthError, `${err.name}: ${err.message}`);
      reasons.push(String(err.reason));
      client.close();
    }
    const expected = Array.from({ length: 100 }, (_, i) => (i < AUTH_FAILURES_PER_WINDOW_MAX ? 'EAUTH' : 'AUTH_RATE_LIMITED'));
    assert.deepEqual(reasons, expected);
    const good = auth.as('admin');
    const err = await authFailure(good.list(), 'AUTH_RATE_LIMITED');
    assert.match(err.message, /retry in \d+ s/);
  });
});

/**
 * Two claims of docs/SECURITY.md that cross paths, against `daxd serve --auth FILE`:
 *   - failed authentications count per address over gRPC and HTTP together: wrong tokens
 *     sent to the HTTP side lock the address out of gRPC too, good token included;
 *   - a client certificate from the trusted CA that names no principal is UNAUTHENTICATED /
 *     EAUTH (the handshake succeeds: the certificate is valid, it just names nobody), while
 *     one that names a principal acts as it.
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { DaxAuthError } from '../../client';
import { AUTH_FAILURES_PER_WINDOW_MAX } from '../../server/auth/limits';
import { makeCerts, type CertSet } from '../support/certs';
import { startAuthServer, type AuthServer } from '../support/auth-server';
import { failure } from '../support/raw-rpc';

describe('auth across paths', function () {
  this.timeout(60_000);

  describe('failures count per address over gRPC and HTTP together', function () {
    let auth: AuthServer;
    before(async function () {
      auth = await startAuthServer({ principals: [{ name: 'admin', role: 'admin' }] });
    });
    after(async function () {
      await auth?.stop();
    });

    it(`${AUTH_FAILURES_PER_WINDOW_MAX} wrong tokens over HTTP, then the admin token over gRPC: AUTH_RATE_LIMITED`, async function () {
      const admin = auth.as('admin');
      await admin.statVolume(); // works before
      const statuses: number[] = [];
      for (let i = 0; i < AUTH_FAILURES_PER_WINDOW_MAX; i++) {
        const res = await fetch(`http://${auth.server.http}/api/v1/volume`, { headers: { authorization: `Bearer wrong-token-${i}-xxxxxxxxxxxxxxxx` } });
        statuses.push(res.status);
        await res.body?.cancel();
      }
      assert.deepEqual(statuses, Array(AUTH_FAILURES_PER_WINDOW_MAX).fill(401));
      const err = await failure(admin.statVolume());
      assert.ok(err instanceof DaxAuthError, err.message);
      assert.deepEqual([err.code, err.reason], [grpc.status.RESOURCE_EXHAUSTED, 'AUTH_RATE_LIMITED']);
    });
  });

  describe('a valid client certificate that names no principal', function () {
    let certs: CertSet;
    let auth: AuthServer;
    before(async function () {
      certs = makeCerts();
      auth = await startAuthServer({
        principals: [{ name: 'admin', role: 'admin' }, { name: 'alice', role: 'rw', prefix: 'alice/', cert_cn: 'alice' }],
        extraArgs: ['--tls-cert', certs.server.cert, '--tls-key', certs.server.key, '--tls-ca', certs.ca.cert, '--tls-client-auth', 'require'],
      });
    });
    after(async function () {
      await auth?.stop();
      certs?.remove();
    });

    it('bob\'s certificate (from the CA, CN bob: no principal has it) is EAUTH; alice\'s acts as alice', async function () {
      const bob = auth.client({ tls: { ca: certs.ca.certPem, cert: certs.bob.certPem, key: certs.bob.keyPem } });
      const err = await failure(bob.statVolume());
      assert.ok(err instanceof DaxAuthError, err.message);
      assert.deepEqual([err.code, err.reason], [grpc.status.UNAUTHENTICATED, 'EAUTH']);
      assert.match(err.message, /names no principal/);
      const alice = auth.client({ tls: { ca: certs.ca.certPem, cert: certs.alice.certPem, key: certs.alice.keyPem } });
      assert.equal((await alice.create('alice/x')).name, 'alice/x');
      const outside = await failure(alice.create('bob/x'));
      assert.equal(outside.reason, 'EACCES');
    });
  });
});

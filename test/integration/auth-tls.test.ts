/**
 * The SDK and the command-line tools over TLS against `daxd serve --tls-cert --tls-key
 * --tls-ca --tls-client-auth request --auth FILE`, with the test certificates
 * (test/support/certs.ts):
 *   - SDK `tls: { ca }` + a token: the token's principal (bob);
 *   - SDK `tls: { ca, cert, key }` with alice's client certificate and no token: alice
 *     (cert_cn), confined to her prefix;
 *   - a plaintext client, or one trusting a foreign CA, does not connect;
 *   - `daxd put/ls --tls-ca --tls-cert --tls-key` as alice; daxd-load with --tls-ca and
 *     --token.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { DaxAuthError, type DaxClientError } from '../../client';
import { startAuthServer, type AuthServer } from '../support/auth-server';
import { makeCerts, type CertSet } from '../support/certs';
import { failure } from '../support/raw-rpc';
import { runCli, tempDir } from '../support/start-server';
import { runBin } from '../loadtest/run-bin';

function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.DAXD_TOKEN;
  delete env.DAXD_SERVER;
  return env;
}

describe('auth over TLS: SDK and command line', function () {
  this.timeout(90_000);
  let certs: CertSet;
  let auth: AuthServer;
  let tmp: ReturnType<typeof tempDir>;

  before(async function () {
    certs = makeCerts();
    tmp = tempDir('daxd-auth-tls-');
    auth = await startAuthServer({
      extraArgs: ['--tls-cert', certs.server.cert, '--tls-key', certs.server.key, '--tls-ca', certs.ca.cert, '--tls-client-auth', 'request'],
    });
  });

  after(async function () {
    await auth?.stop();
    certs?.remove();
    tmp?.remove();
  });

  it('SDK tls: { ca } with a token acts as the token\'s principal', async function () {
    const bob = auth.client({ tls: { ca: certs.ca.certPem }, token: auth.tokens.bob });
    const file = await bob.create('bob/over-tls');
    await bob.write(file.ino, 0, Buffer.from('sealed'));
    assert.deepEqual(await bob.read(file.ino, 0, 6), Buffer.from('sealed'));
    const err = await failure(bob.create('alice/not-bobs'));
    assert.ok(err instanceof DaxAuthError && err.reason === 'EACCES', err.message);
  });

  it('SDK tls: { ca, cert, key } with alice\'s certificate and no token acts as alice', async function () {
    const alice = auth.client({ tls: { ca: certs.ca.certPem, cert: certs.alice.certPem, key: certs.alice.keyPem } });
    await alice.create('alice/by-cert');
    assert.deepEqual((await alice.list()).files.map((f) => f.name), ['alice/by-cert']);
    const err = await failure(alice.lookup('bob/over-tls'));
    assert.ok(err instanceof DaxAuthError && err.reason === 'EACCES', err.message);
    // Without a certificate or a token: no principal.
    const nobody = auth.client({ tls: { ca: certs.ca.certPem } });
    const anon = await failure(nobody.list());
    assert.ok(anon instanceof DaxAuthError && anon.reason === 'EAUTH', anon.message);
  });

  it('plaintext, or trusting a foreign CA: no connection (UNAVAILABLE), nothing served', async function () {
    const outcomes: DaxClientError[] = [
      await failure(auth.client({ token: auth.tokens.admin, retries: 0, deadlineMs: 5_000 }).list()),
      await failure(auth.client({ tls: { ca: certs.foreignCa.certPem }, token: auth.tokens.admin, retries: 0, deadlineMs: 5_000 }).list()),
    ];
    for (const err of outcomes) assert.equal(err.code, grpc.status.UNAVAILABLE, err.message);
  });

  it('daxd put / ls with --tls-ca --tls-cert --tls-key act as the certificate\'s principal', async function () {
    const local = path.join(tmp.dir, 'cli.bin');
    fs.writeFileSync(local, Buffer.alloc(5000, 9));
    const tls = ['--server', auth.server.address, '--tls-ca', certs.ca.cert, '--tls-cert', certs.alice.cert, '--tls-key', certs.alice.key];
    const put = await runCli(['put', local, 'alice/cli.bin', ...tls], { env: cleanEnv() });
    assert.equal(put.code, 0, put.stderr);
    const ls = await runCli(['ls', ...tls], { env: cleanEnv() });
    assert.equal(ls.code, 0, ls.stderr);
    assert.deepEqual(ls.stdout.trim().split('\n'), ['alice/by-cert', 'alice/cli.bin']);
    const foreign = await runCli(['ls', '--server', auth.server.address, '--tls-ca', certs.foreignCa.cert, '--token', auth.tokens.admin], { env: cleanEnv() });
    assert.equal(foreign.code, 1);
    assert.match(foreign.stderr, /UNAVAILABLE/);
  });

  it('daxd-load over TLS with --tls-ca and --token', async function () {
    const r = await runBin('daxd-load.js', ['--server', auth.server.address, '--tls-ca', certs.ca.cert, '--token', auth.tokens.bob,
      '-w', 'randread', '--ops', '100', '--size', '64k', '--prefix', 'bob/load', '--no-progress'], 60_000, cleanEnv());
    assert.equal(r.code, 0, r.stderr);
  });
});

/**
 * The SDK's TLS and token options against an in-process gRPC server speaking TLS with the
 * test certificates (test/support/certs.ts): the server's Files.Lookup answers with what it
 * saw of the caller (the authorization metadata, the client certificate's CN), so each
 * option is checked on the wire, not in the SDK's own state.
 *   - tls.ca: the server's CA is trusted; a foreign CA, or no tls at all, fails to connect;
 *   - tls.cert + tls.key: the server sees the client certificate (mTLS);
 *   - tls.servername: the certificate is checked against that name, not the address;
 *   - token: sent as `authorization: Bearer TOKEN` over TLS as on plaintext;
 *   - PEM as Buffer or as string.
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { DaxClient, DaxClientError, loadDaxdProto } from '../../client';
import type { LookupRequest__Output } from '../../wire/generated/daxd/v1/LookupRequest';
import type { FileInfo } from '../../wire/generated/daxd/v1/FileInfo';
import { makeCerts, type CertSet } from '../support/certs';

interface Seen {
  authorization: string | null;
  clientCn: string | null;
}

/** A gRPC server with only Files.Lookup, which reports (in FileInfo.name) what it saw. */
async function startEchoServer(certs: CertSet, requireClientCert: boolean): Promise<{ address: string; stop(): Promise<void> }> {
  const server = new grpc.Server();
  const proto = loadDaxdProto();
  server.addService(proto.daxd.v1.Files.service, {
    Lookup: (call: grpc.ServerUnaryCall<LookupRequest__Output, FileInfo>, callback: grpc.sendUnaryData<FileInfo>) => {
      const auth = call.metadata.get('authorization');
      const cert = call.getAuthContext().sslPeerCertificate;
      const seen: Seen = { authorization: auth.length > 0 ? String(auth[0]) : null, clientCn: cert?.subject?.CN === undefined ? null : String(cert.subject.CN) };
      callback(null, { name: JSON.stringify(seen) });
    },
  });
  const credentials = grpc.ServerCredentials.createSsl(certs.ca.certPem, [{ private_key: certs.server.keyPem, cert_chain: certs.server.certPem }], requireClientCert);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', credentials, (err, p) => (err ? reject(err) : resolve(p))));
  return {
    address: `127.0.0.1:${port}`,
    stop: () => new Promise((resolve) => server.tryShutdown(() => resolve())),
  };
}

async function seenBy(client: DaxClient): Promise<Seen> {
  try {
    return JSON.parse((await client.lookup('x')).name) as Seen;
  } finally {
    client.close();
  }
}

async function refused(client: DaxClient): Promise<DaxClientError> {
  try {
    await client.lookup('x');
  } catch (err) {
    assert.ok(err instanceof DaxClientError, String(err));
    return err;
  } finally {
    client.close();
  }
  assert.fail('the call went through');
}

describe('SDK TLS and token options (in-process TLS server)', function () {
  this.timeout(30_000);
  let certs: CertSet;
  let plainTls: { address: string; stop(): Promise<void> };
  let mtls: { address: string; stop(): Promise<void> };
  const opts = { deadlineMs: 5_000, retries: 0 };

  before(async function () {
    certs = makeCerts();
    plainTls = await startEchoServer(certs, false);
    mtls = await startEchoServer(certs, true);
  });

  after(async function () {
    await plainTls?.stop();
    await mtls?.stop();
    certs?.remove();
  });

  it('tls.ca: the server is trusted; token travels over TLS', async function () {
    const token = 'tls-token-0123456789abcdef';
    const seen = await seenBy(DaxClient.connect(plainTls.address, { ...opts, tls: { ca: certs.ca.certPem }, token }));
    assert.deepEqual(seen, { authorization: `Bearer ${token}`, clientCn: null });
  });

  it('PEM given as strings works the same', async function () {
    const seen = await seenBy(DaxClient.connect(mtls.address, {
      ...opts, tls: { ca: certs.ca.certPem.toString(), cert: certs.bob.certPem.toString(), key: certs.bob.keyPem.toString() },
    }));
    assert.deepEqual(seen, { authorization: null, clientCn: 'bob' });
  });

  it('tls.cert + tls.key: the server sees the client certificate', async function () {
    const seen = await seenBy(DaxClient.connect(mtls.address, { ...opts, tls: { ca: certs.ca.certPem, cert: certs.alice.certPem, key: certs.alice.keyPem } }));
    assert.equal(seen.clientCn, 'alice');
  });

  it('tls.servername: the certificate is checked against that name', async function () {
    // The server certificate names localhost: connecting by that name to 127.0.0.1 works...
    const byName = await seenBy(DaxClient.connect(plainTls.address, { ...opts, tls: { ca: certs.ca.certPem, servername: 'localhost' } }));
    assert.equal(byName.authorization, null);
    // ...and a name it does not carry is refused.
    const err = await refused(DaxClient.connect(plainTls.address, { ...opts, tls: { ca: certs.ca.certPem, servername: 'not-the-server.example' } }));
    assert.equal(err.code, grpc.status.UNAVAILABLE);
  });

  it('a foreign CA, or plaintext against TLS, does not connect (UNAVAILABLE)', async function () {
    const foreign = await refused(DaxClient.connect(plainTls.address, { ...opts, tls: { ca: certs.foreignCa.certPem } }));
    assert.equal(foreign.code, grpc.status.UNAVAILABLE);
    const plaintext = await refused(DaxClient.connect(plainTls.address, opts));
    assert.equal(plaintext.code, grpc.status.UNAVAILABLE);
  });

  it('mTLS server, no client certificate: refused', async function () {
    const err = await refused(DaxClient.connect(mtls.address, { ...opts, tls: { ca: certs.ca.certPem } }));
    assert.equal(err.code, grpc.status.UNAVAILABLE);
  });

  it('a token is never sent in plaintext beyond loopback: TypeError at connect unless tls (or allowPlaintextToken)', function () {
    const token = 'a-token-of-32-characters-or-so-00';
    for (const address of ['10.0.0.5:7070', '127.0.0.2:7070', 'daxd.example.com:7070', '[2001:db8::1]:7070']) {
      assert.throws(() => DaxClient.connect(address, { token }), (err: Error) => err instanceof TypeError && !err.message.includes(token) && /plaintext/.test(err.message), address);
    }
    for (const address of ['127.0.0.1:7070', 'localhost:7070', '[::1]:7070']) DaxClient.connect(address, { token }).close();
    DaxClient.connect('10.0.0.5:7070', { token, tls: { ca: certs.ca.certPem } }).close();
    DaxClient.connect('10.0.0.5:7070', { token, allowPlaintextToken: true }).close();
  });

  it('tls.cert without tls.key (or the reverse) is a TypeError at connect', function () {
    assert.throws(() => DaxClient.connect(mtls.address, { tls: { ca: certs.ca.certPem, cert: certs.alice.certPem } }), TypeError);
    assert.throws(() => DaxClient.connect(mtls.address, { tls: { ca: certs.ca.certPem, key: certs.alice.keyPem } }), TypeError);
  });
});

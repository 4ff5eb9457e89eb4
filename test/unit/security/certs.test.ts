/**
 * The test certificate fixture (test/support/certs.ts) makes what the TLS tests rely on:
 * a server certificate valid for 127.0.0.1 from the CA, an expired client certificate,
 * and a client certificate from a CA the server does not trust.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { makeCerts, type CertSet } from '../../support/certs';

describe('test certificates', function () {
  this.timeout(30_000);
  let certs: CertSet;
  before(() => {
    certs = makeCerts();
  });
  after(() => certs.remove());

  it('server certificate: signed by the CA, valid now, for 127.0.0.1 and localhost', () => {
    const ca = new X509Certificate(certs.ca.certPem);
    const server = new X509Certificate(certs.server.certPem);
    assert.ok(server.verify(ca.publicKey));
    assert.equal(server.checkIP('127.0.0.1'), '127.0.0.1');
    assert.equal(server.checkHost('localhost'), 'localhost');
    assert.ok(Date.parse(server.validTo) > Date.now());
  });

  it('expired client certificate: signed by the CA, validity in the past', () => {
    const expired = new X509Certificate(certs.expired.certPem);
    assert.ok(expired.verify(new X509Certificate(certs.ca.certPem).publicKey));
    assert.ok(Date.parse(expired.validTo) < Date.now());
  });

  it('foreign client certificate: not signed by the CA', () => {
    const foreign = new X509Certificate(certs.foreign.certPem);
    assert.equal(foreign.verify(new X509Certificate(certs.ca.certPem).publicKey), false);
    assert.match(foreign.subject, /CN=alice/);
  });
});

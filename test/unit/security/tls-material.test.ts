/**
 * TLS configuration (server/tls/config.ts, material.ts): the flag combinations refused
 * before any file is read, the files refused at load (each error names the flag and the
 * file, never key material), and reload(): a bad file keeps the old set, a good one swaps
 * it and notifies the listeners.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { TlsConfigError, tlsConfigFromFlags, type TlsConfig } from '../../../server/tls/config';
import { TlsMaterial } from '../../../server/tls/material';
import { makeCerts, type CertSet } from '../../support/certs';

function configError(run: () => unknown): TlsConfigError {
  try {
    run();
  } catch (err) {
    assert.ok(err instanceof TlsConfigError, `expected a TlsConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a TlsConfigError');
}

describe('TLS config and material', function () {
  this.timeout(30_000);
  let certs: CertSet;
  before(() => {
    certs = makeCerts();
  });
  after(() => certs?.remove());

  describe('flags', () => {
    it('no flag: plaintext', () => {
      assert.equal(tlsConfigFromFlags({}), null);
    });

    it('client-auth defaults: require with a CA, none without', () => {
      assert.equal(tlsConfigFromFlags({ cert: 'c', key: 'k' })?.clientAuth, 'none');
      assert.equal(tlsConfigFromFlags({ cert: 'c', key: 'k', ca: 'a' })?.clientAuth, 'require');
      assert.equal(tlsConfigFromFlags({ cert: 'c', key: 'k', ca: 'a', clientAuth: 'request' })?.clientAuth, 'request');
    });

    it('refuses each incomplete or unknown combination, naming the flag', () => {
      const cases: Array<[Parameters<typeof tlsConfigFromFlags>[0], string, RegExp]> = [
        [{ key: 'k' }, '--tls-key', /needs --tls-cert FILE/],
        [{ cert: 'c' }, '--tls-cert', /needs --tls-key FILE/],
        [{ ca: 'a' }, '--tls-ca', /needs --tls-cert FILE and --tls-key FILE/],
        [{ clientAuth: 'none' }, '--tls-client-auth', /needs --tls-cert FILE and --tls-key FILE/],
        [{ cert: 'c', key: 'k', clientAuth: 'require' }, '--tls-client-auth', /require needs --tls-ca FILE/],
        [{ cert: 'c', key: 'k', clientAuth: 'request' }, '--tls-client-auth', /request needs --tls-ca FILE/],
        [{ cert: 'c', key: 'k', ca: 'a', clientAuth: 'optional' }, '--tls-client-auth', /"optional" is not one of none, request, require/],
      ];
      for (const [flags, flag, message] of cases) {
        const err = configError(() => tlsConfigFromFlags(flags));
        assert.equal(err.flag, flag, JSON.stringify(flags));
        assert.match(err.message, message);
      }
    });
  });

  describe('files', () => {
    const good = (): TlsConfig => ({ certFile: certs.server.cert, keyFile: certs.server.key, caFile: certs.ca.cert, clientAuth: 'require' });

    it('loads a good set: server options per client-auth mode', () => {
      const material = TlsMaterial.load(good());
      assert.match(material.current.subject, /CN=localhost/);
      assert.deepEqual({ ...material.serverOptions(), cert: undefined, key: undefined, ca: undefined },
        { cert: undefined, key: undefined, ca: undefined, requestCert: true, rejectUnauthorized: true, handshakeTimeout: 10_000 });
      const request = TlsMaterial.load({ ...good(), clientAuth: 'request' }).serverOptions();
      assert.deepEqual([request.requestCert, request.rejectUnauthorized], [true, false]);
      const none = TlsMaterial.load({ ...good(), clientAuth: 'none' }).serverOptions();
      assert.deepEqual([none.requestCert, none.rejectUnauthorized], [false, false]);
    });

    it('refuses a missing file, a file that is not PEM, a key of another certificate', () => {
      const missing = path.join(certs.dir, 'missing.pem');
      const notPem = path.join(certs.dir, 'not-pem.txt');
      fs.writeFileSync(notPem, 'hello\n');
      const cases: Array<[Partial<TlsConfig>, string, string, RegExp]> = [
        [{ certFile: missing }, '--tls-cert', missing, /no such file/],
        [{ keyFile: missing }, '--tls-key', missing, /no such file/],
        [{ caFile: missing }, '--tls-ca', missing, /no such file/],
        [{ certFile: notPem }, '--tls-cert', notPem, /not a PEM certificate/],
        [{ keyFile: notPem }, '--tls-key', notPem, /not a PEM private key/],
        [{ caFile: notPem }, '--tls-ca', notPem, /not a PEM certificate/],
        [{ certFile: certs.server.key }, '--tls-cert', certs.server.key, /not a PEM certificate/],
        [{ keyFile: certs.server.cert }, '--tls-key', certs.server.cert, /not a PEM private key/],
        [{ keyFile: certs.alice.key }, '--tls-key', certs.alice.key, /does not match the certificate of --tls-cert/],
      ];
      for (const [override, flag, file, message] of cases) {
        const err = configError(() => TlsMaterial.load({ ...good(), ...override }));
        assert.deepEqual([err.flag, err.file], [flag, file], JSON.stringify(override));
        assert.match(err.message, message);
        assert.ok(!err.message.includes(certs.server.keyPem.toString('latin1').split('\n')[1]), 'no key material');
      }
    });

    it('reload: a bad file keeps the old set; a good one swaps it and tells the listeners', () => {
      const dir = path.join(certs.dir, 'reload');
      fs.mkdirSync(dir, { recursive: true });
      const config: TlsConfig = { certFile: path.join(dir, 'c.pem'), keyFile: path.join(dir, 'k.pem'), clientAuth: 'none' };
      fs.copyFileSync(certs.server.cert, config.certFile);
      fs.copyFileSync(certs.server.key, config.keyFile);
      const material = TlsMaterial.load(config);
      const first = material.current;
      const seen: string[] = [];
      material.onReload((s) => seen.push(s.options.cert.toString()));

      fs.copyFileSync(certs.foreignServer.cert, config.certFile); // the key still is the old one
      const bad = material.reload();
      assert.equal(bad.ok, false);
      assert.equal(!bad.ok && bad.error.flag, '--tls-key');
      assert.equal(material.current, first);
      assert.deepEqual(seen, []);

      fs.copyFileSync(certs.foreignServer.key, config.keyFile);
      const good2 = material.reload();
      assert.equal(good2.ok, true);
      assert.notEqual(material.current, first);
      assert.deepEqual(seen, [certs.foreignServer.certPem.toString()]);
      assert.equal(material.current.options.cert.equals(certs.foreignServer.certPem), true);
    });
  });
});

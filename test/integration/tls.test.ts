/**
 * TLS transport (issue 13): `daxd serve --tls-cert --tls-key --tls-ca --tls-client-auth`
 * for gRPC and HTTP, seen by raw clients (grpc-js Files.StatVolume, https GET /healthz)
 * with each identity of test/support/certs.ts. A handshake that must fail is seen by the
 * gRPC client as UNAVAILABLE (the call never reached the server).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { makeCerts, type CertSet } from '../support/certs';
import { seededRng } from '../support/rng';
import { startServer, tempDir, type StartedServer } from '../support/start-server';
import { httpsGet, statVolumeAs } from '../support/tls-client';

function tlsArgs(certs: CertSet, clientAuth: 'none' | 'request' | 'require'): string[] {
  return ['--tls-cert', certs.server.cert, '--tls-key', certs.server.key, '--tls-ca', certs.ca.cert, '--tls-client-auth', clientAuth];
}

/** Plain GET http://address/path: the status code, or the error code of a failed connection. */
function plainGet(address: string, urlPath: string): Promise<number | string> {
  return new Promise((resolve) => {
    const request = http.get(`http://${address}${urlPath}`, { agent: false, timeout: 5_000 }, (response) => {
      response.resume();
      response.on('end', () => resolve(response.statusCode ?? 0));
    });
    request.on('timeout', () => request.destroy(new Error('timeout')));
    request.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

/**
 * An HTTP request the server refused in (or right after) the TLS handshake: an error
 * string, and not one that says the server was never reached (ECONNREFUSED) or the
 * request timed out: those would pass for a refusal without TLS having said no.
 */
function refusedByTls(outcome: number | string): void {
  assert.equal(typeof outcome, 'string', `expected a refusal, got HTTP ${outcome}`);
  assert.ok(!['ECONNREFUSED', 'timeout'].includes(outcome as string), `not a TLS refusal: ${outcome}`);
}

describe('TLS transport: gRPC and HTTP', function () {
  this.timeout(30_000);
  let certs: CertSet;
  let tmp: ReturnType<typeof tempDir>;
  before(() => {
    certs = makeCerts();
    tmp = tempDir();
  });
  after(() => {
    certs?.remove();
    tmp?.remove();
  });

  describe('--tls-client-auth require', () => {
    let server: StartedServer;
    before(async () => {
      server = await startServer({ volumePath: path.join(tmp.dir, 'require.vol'), extraArgs: tlsArgs(certs, 'require') });
    });
    after(async () => {
      if (server) assert.deepEqual(await server.stop(), { code: 0, signal: null });
    });

    it('logs the TLS mode on the serving line', () => {
      const serving = server.logs.find((l) => l.msg === 'daxd serving');
      assert.deepEqual((serving?.tls as { clientAuth: string }).clientAuth, 'require');
    });

    it('the right CA and a client certificate from it: the call works', async () => {
      assert.equal(await statVolumeAs(server.address, { ca: certs.ca, client: certs.alice }), 'ok');
      assert.equal(await statVolumeAs(server.address, { ca: certs.ca, client: certs.bob }), 'ok');
    });

    it('fails the handshake for a plaintext client', async () => {
      assert.equal(await statVolumeAs(server.address, { ca: null }), 'UNAVAILABLE');
    });

    it('fails the handshake for a client that trusts another CA', async () => {
      assert.equal(await statVolumeAs(server.address, { ca: certs.foreignCa, client: certs.alice }), 'UNAVAILABLE');
    });

    it('fails the handshake for an expired client certificate', async () => {
      assert.equal(await statVolumeAs(server.address, { ca: certs.ca, client: certs.expired }), 'UNAVAILABLE');
    });

    it('fails the handshake for a client certificate from a foreign CA', async () => {
      assert.equal(await statVolumeAs(server.address, { ca: certs.ca, client: certs.foreign }), 'UNAVAILABLE');
    });

    it('fails the handshake without a client certificate', async () => {
      assert.equal(await statVolumeAs(server.address, { ca: certs.ca }), 'UNAVAILABLE');
    });

    it('HTTP: /healthz answers over https with the CA and a client certificate; not without one, not in plaintext', async () => {
      assert.equal(await httpsGet(server.http, '/healthz', { ca: certs.ca, client: certs.alice }), 200);
      refusedByTls(await httpsGet(server.http, '/healthz', { ca: certs.ca }));
      refusedByTls(await httpsGet(server.http, '/healthz', { ca: certs.ca, client: certs.foreign }));
      refusedByTls(await plainGet(server.http, '/healthz'));
    });

    it('garbage bytes instead of a TLS handshake (gRPC and HTTP ports) do not hurt the server', async () => {
      const rng = seededRng(13);
      for (const address of [server.address, server.http]) {
        for (let i = 0; i < 4; i++) {
          const port = Number(address.slice(address.lastIndexOf(':') + 1));
          const socket = net.connect(port, '127.0.0.1');
          socket.on('error', () => undefined);
          socket.resume(); // read the server's alert, so its FIN is seen
          await once(socket, 'connect');
          // Noise whose first byte is no TLS record type (the high bit clear: with it set,
          // OpenSSL reads an SSLv2 length and waits for that many bytes, which only
          // TLS_HANDSHAKE_TIMEOUT_MS ends); the first one is a TLS handshake record of noise.
          const noise = Buffer.from(Array.from({ length: 512 }, () => Math.floor(rng() * 256)));
          noise[0] = (noise[0] & 0x7f) === 0x16 ? 0x17 : noise[0] & 0x7f;
          if (i === 0) noise.set([0x16, 0x03, 0x03, 0x01, 0xfb]);
          socket.write(noise);
          await once(socket, 'close'); // the server hangs up: it did not wait for more
        }
      }
      assert.equal(await statVolumeAs(server.address, { ca: certs.ca, client: certs.alice }), 'ok');
      assert.equal(await httpsGet(server.http, '/healthz', { ca: certs.ca, client: certs.alice }), 200);
    });
  });

  describe('--tls-client-auth request', () => {
    let server: StartedServer;
    before(async () => {
      server = await startServer({ volumePath: path.join(tmp.dir, 'request.vol'), extraArgs: tlsArgs(certs, 'request') });
    });
    after(async () => {
      if (server) assert.deepEqual(await server.stop(), { code: 0, signal: null });
    });

    it('accepts a client without a certificate and one with a valid certificate', async () => {
      assert.equal(await statVolumeAs(server.address, { ca: certs.ca }), 'ok');
      assert.equal(await statVolumeAs(server.address, { ca: certs.ca, client: certs.alice }), 'ok');
    });

    it('refuses a certificate that does not verify (foreign CA, expired)', async () => {
      assert.equal(await statVolumeAs(server.address, { ca: certs.ca, client: certs.foreign }), 'UNAVAILABLE');
      assert.equal(await statVolumeAs(server.address, { ca: certs.ca, client: certs.expired }), 'UNAVAILABLE');
      assert.equal(await statVolumeAs(server.address, { ca: certs.ca }), 'ok');
    });

    it('HTTP: the same rules', async () => {
      assert.equal(await httpsGet(server.http, '/healthz', { ca: certs.ca }), 200);
      assert.equal(await httpsGet(server.http, '/healthz', { ca: certs.ca, client: certs.alice }), 200);
      refusedByTls(await httpsGet(server.http, '/healthz', { ca: certs.ca, client: certs.foreign }));
    });
  });

  describe('--tls-client-auth none', () => {
    let server: StartedServer;
    before(async () => {
      server = await startServer({ volumePath: path.join(tmp.dir, 'none.vol'), extraArgs: ['--tls-cert', certs.server.cert, '--tls-key', certs.server.key] });
    });
    after(async () => {
      if (server) assert.deepEqual(await server.stop(), { code: 0, signal: null });
    });

    it('server authentication only: any client trusting the CA works; plaintext and a wrong CA do not', async () => {
      assert.equal(await statVolumeAs(server.address, { ca: certs.ca }), 'ok');
      assert.equal(await statVolumeAs(server.address, { ca: certs.ca, client: certs.foreign }), 'ok'); // not asked, not checked
      assert.equal(await statVolumeAs(server.address, { ca: null }), 'UNAVAILABLE');
      assert.equal(await statVolumeAs(server.address, { ca: certs.foreignCa }), 'UNAVAILABLE');
      assert.equal(await httpsGet(server.http, '/healthz', { ca: certs.ca }), 200);
      refusedByTls(await plainGet(server.http, '/healthz'));
    });
  });
});

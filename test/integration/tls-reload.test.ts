/**
 * TLS certificates reload on SIGHUP (issue 13): the server re-reads --tls-cert/--tls-key/
 * --tls-ca; new connections get the new certificate, an open one keeps working, the volume
 * stays mounted. A reload with a bad file keeps the old certificates and logs a warning.
 * Synchronisation: the log lines of the reload ("tls reloaded" / "tls reload failed: ...").
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { makeCerts, type CertSet } from '../support/certs';
import { call } from '../support/raw-rpc';
import { startServer, tempDir, type StartedServer } from '../support/start-server';
import { httpsGet, statVolumeAs, tlsFiles } from '../support/tls-client';
import type { FileInfo__Output } from '../../wire/generated/daxd/v1/FileInfo';
import type { ReadResponse__Output } from '../../wire/generated/daxd/v1/ReadResponse';

describe('TLS reload on SIGHUP', function () {
  this.timeout(30_000);
  let certs: CertSet;
  let tmp: ReturnType<typeof tempDir>;
  let server: StartedServer;
  let certFile: string;
  let keyFile: string;
  let caFile: string;

  before(async () => {
    certs = makeCerts();
    tmp = tempDir();
    certFile = path.join(tmp.dir, 'server.crt');
    keyFile = path.join(tmp.dir, 'server.key');
    caFile = path.join(tmp.dir, 'clients-ca.crt');
    fs.copyFileSync(certs.server.cert, certFile);
    fs.copyFileSync(certs.server.key, keyFile);
    fs.copyFileSync(certs.ca.cert, caFile);
    server = await startServer({
      volumePath: path.join(tmp.dir, 'reload.vol'),
      extraArgs: ['--tls-cert', certFile, '--tls-key', keyFile, '--tls-ca', caFile, '--tls-client-auth', 'require'],
    });
  });
  after(async () => {
    if (server) assert.deepEqual(await server.stop(), { code: 0, signal: null });
    certs?.remove();
    tmp?.remove();
  });

  it('a bad key file keeps the old certificate and logs a warning naming the file', async () => {
    fs.writeFileSync(keyFile, 'garbage, not a key\n');
    process.kill(server.pid, 'SIGHUP');
    const warning = await server.logged('tls reload failed: kept the old certificates');
    assert.equal(warning.flag, '--tls-key');
    assert.equal(warning.file, keyFile);
    assert.equal(warning.level, 40);
    assert.equal(await statVolumeAs(server.address, { ca: certs.ca, client: certs.alice }), 'ok');
    fs.copyFileSync(certs.server.key, keyFile);
  });

  it('new connections get the new certificate; an open one and the volume carry on', async () => {
    // A file written before the reload, over a connection that stays open across it.
    const before = tlsFiles(server.address, { ca: certs.ca, client: certs.alice });
    const deadline = () => ({ deadline: Date.now() + 5_000 });
    try {
      const file = await call<FileInfo__Output>((cb) => before.Create({ name: 'kept', exclusive: true }, deadline(), cb));
      await call((cb) => before.Write({ ino: file.ino, offset: 0, data: Buffer.from('written before the reload'), sync: true }, deadline(), cb));

      // The foreign CA's server certificate replaces the file pair.
      fs.copyFileSync(certs.foreignServer.cert, certFile);
      fs.copyFileSync(certs.foreignServer.key, keyFile);
      process.kill(server.pid, 'SIGHUP');
      const reloaded = await server.logged('tls reloaded');
      assert.equal(reloaded.level, 30);

      assert.equal(await statVolumeAs(server.address, { ca: certs.foreignCa, client: certs.alice }), 'ok');
      assert.equal(await statVolumeAs(server.address, { ca: certs.ca, client: certs.alice }), 'UNAVAILABLE');

      // The open connection keeps its session (and certificate)...
      const again = await call<ReadResponse__Output>((cb) => before.Read({ ino: file.ino, offset: 0, length: 64 }, deadline(), cb));
      assert.equal(again.data.toString(), 'written before the reload');
      // ... and a new one reads the same file: the volume was not dropped.
      const after = tlsFiles(server.address, { ca: certs.foreignCa, client: certs.alice });
      try {
        const found = await call<FileInfo__Output>((cb) => after.Lookup({ name: 'kept' }, deadline(), cb));
        const read = await call<ReadResponse__Output>((cb) => after.Read({ ino: found.ino, offset: 0, length: 64 }, deadline(), cb));
        assert.equal(read.data.toString(), 'written before the reload');
      } finally {
        after.close();
      }
    } finally {
      before.close();
    }
    // HTTP follows the same reload (and the server never restarted).
    assert.equal(await httpsGet(server.http, '/healthz', { ca: certs.foreignCa, client: certs.alice }), 200);
    assert.equal(typeof await httpsGet(server.http, '/healthz', { ca: certs.ca, client: certs.alice }), 'string');
    assert.equal(server.logs.filter((l) => l.msg === 'daxd serving').length, 1);
  });
});

/**
 * NBD over TLS with libnbd's own tools (nbdinfo, nbdcopy from Debian's libnbd-bin): an in-process NbdServer with STARTTLS and principals from client
 * certificates (alice: rw, confined to "alice/"; bob: ro), certificates made at test time.
 * libnbd's `nbds://` URIs upgrade with NBD_OPT_STARTTLS and present the client pair of
 * the `tls-certificates` directory (certs.nbdCertDir).
 *   - nbdinfo over TLS shows alice's export and its size; without a client certificate the
 *     export is refused; `nbdinfo --list` shows only alice's files; she cannot open bob/x,
 *     and the refusal reads as for a file that does not exist;
 *   - bob (ro) reads with nbdcopy; his writes fail and the file is unchanged.
 * Every tool is a child process with a timeout, killed by PID if it overruns.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { Authenticator } from '../../server/auth/authenticator';
import { Principal } from '../../server/auth/principal';
import { makeCerts, type CertSet } from '../support/certs';
import { nbdFixture, type NbdFixture } from '../support/raw-nbd';
import { MiB } from '../support/units';
import { runTool, sha256, succeed } from './real-clients';

const FILE_BYTES = 1 * MiB;

describe('NBD over TLS: libnbd clients', function () {
  this.timeout(60_000);
  let certs: CertSet;
  let f: NbdFixture;
  const content = Buffer.alloc(FILE_BYTES);

  before(async function () {
    certs = makeCerts();
    for (let i = 0; i < content.length; i++) content[i] = (i * 31 + 7) & 0xff;
    f = await nbdFixture({
      tls: {
        mode: 'require', requestCert: true, rejectUnauthorized: false,
        secureContext: () => tls.createSecureContext({ cert: certs.server.certPem, key: certs.server.keyPem, ca: certs.ca.certPem }),
      },
      auth: new Authenticator([
        new Principal('alice', 'rw', 'alice/', {}, { certCn: 'alice' }),
        new Principal('bob', 'ro', '', {}, { certCn: 'bob' }),
      ], () => [new X509Certificate(certs.ca.certPem)]),
    });
    for (const name of ['alice/disk', 'alice/two', 'bob/x']) {
      const { ino } = await f.fs.create(name, true);
      await f.fs.write(ino, 0, content, true);
    }
  });

  after(async function () {
    await f.stop();
    certs.remove();
  });

  /** nbds://HOST:PORT/NAME?tls-certificates=DIR (the name percent-encoded). */
  function uri(name: string, who: Parameters<CertSet['nbdCertDir']>[0]): string {
    return `nbds://${f.nbd.address}/${encodeURIComponent(name)}?tls-certificates=${encodeURIComponent(certs.nbdCertDir(who))}`;
  }

  it('nbdinfo over TLS with alice\'s certificate shows her export and its size', async function () {
    const out = JSON.parse(await succeed('nbdinfo', ['--json', uri('alice/disk', 'alice')])) as { exports: Array<{ 'export-size': number; is_read_only: boolean }> };
    assert.equal(out.exports[0]['export-size'], FILE_BYTES);
    assert.equal(out.exports[0].is_read_only, false);
  });

  it('nbdinfo over TLS without a client certificate is refused', async function () {
    const r = await runTool('nbdinfo', ['--size', uri('alice/disk', 'none')]);
    assert.notEqual(r.code, 0, r.stdout);
    assert.match(r.stderr, /no export named 'alice\/disk'/);
  });

  it('nbdinfo in plaintext is refused (--nbd-tls require)', async function () {
    const r = await runTool('nbdinfo', ['--size', `nbd://${f.nbd.address}/${encodeURIComponent('alice/disk')}`]);
    assert.notEqual(r.code, 0, r.stdout);
    assert.match(r.stderr, /TLS/);
  });

  it('nbdinfo --list shows only alice\'s files', async function () {
    const out = JSON.parse(await succeed('nbdinfo', ['--list', '--json', uri('', 'alice')])) as { exports: Array<{ 'export-name': string }> };
    assert.deepEqual(out.exports.map((e) => e['export-name']).sort(), ['alice/disk', 'alice/two']);
  });

  it('alice cannot open bob/x: the same refusal as a file that does not exist', async function () {
    const other = await runTool('nbdinfo', ['--size', uri('bob/x', 'alice')]);
    const missing = await runTool('nbdinfo', ['--size', uri('bob/nothing', 'alice')]);
    assert.notEqual(other.code, 0, other.stdout);
    assert.equal(other.code, missing.code);
    assert.equal(other.stderr.replaceAll('bob/x', 'NAME'), missing.stderr.replaceAll('bob/nothing', 'NAME'));
  });

  it('bob (ro) reads bob/x with nbdcopy; his write fails and the file is unchanged', async function () {
    const dir = fs.mkdtempSync(path.join(certs.dir, 'copy-'));
    const out = path.join(dir, 'out.img');
    await succeed('nbdcopy', [uri('bob/x', 'bob'), out]);
    assert.equal(sha256(fs.readFileSync(out)), sha256(content));
    const src = path.join(dir, 'ones.img');
    fs.writeFileSync(src, Buffer.alloc(FILE_BYTES, 1));
    const w = await runTool('nbdcopy', [src, uri('bob/x', 'bob')]);
    assert.notEqual(w.code, 0, 'nbdcopy to a read-only export must fail');
    assert.match(w.stderr, /read-only|Operation not permitted/i);
    const back = Buffer.alloc(FILE_BYTES);
    f.fs.readInto(f.fs.lookup('bob/x').ino, 0, FILE_BYTES, back, 0);
    assert.equal(sha256(back), sha256(content));
  });
});

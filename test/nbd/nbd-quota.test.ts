/**
 * NBD writes count toward the principal's allocated-bytes quota, as gRPC writes do
 * (server/auth/quota.ts, shared by both through the Daxd): a WRITE or a NO_HOLE
 * WRITE_ZEROES that would fill holes past the quota fails NBD_ENOSPC (the spec's value for
 * EDQUOT) and changes nothing; overwriting allocated blocks needs no quota.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { Authenticator } from '../../server/auth/authenticator';
import { Principal } from '../../server/auth/principal';
import { makeCerts, type CertSet } from '../support/certs';
import { RawNbd, W } from '../support/raw-nbd';
import { KiB } from '../support/units';
import { startHttpDaxd, type HttpDaxd } from '../http/fixture';

describe('NBD and the allocated-bytes quota', function () {
  this.timeout(60_000);
  let certs: CertSet;
  let s: HttpDaxd;

  before(async function () {
    certs = makeCerts();
    s = await startHttpDaxd('nbd-quota', {
      daxd: {
        nbdTls: 'require',
        nbdTlsContext: () => tls.createSecureContext({ cert: certs.server.certPem, key: certs.server.keyPem, ca: certs.ca.certPem }),
        auth: new Authenticator([new Principal('alice', 'rw', 'alice/', { allocatedBytes: 8 * KiB }, { certCn: 'alice' })], () => [new X509Certificate(certs.ca.certPem)]),
      },
    });
  });

  after(async function () {
    await s?.stop();
    certs?.remove();
  });

  /** An NBD connection upgraded to TLS with alice's certificate, transmitting `name`. */
  async function openAsAlice(name: string): Promise<RawNbd> {
    const nbd = await RawNbd.connect(s.nbd);
    await nbd.greet();
    await nbd.startTls({ ca: certs.ca.certPem, cert: certs.alice.certPem, key: certs.alice.keyPem });
    await nbd.go(name, { structured: true });
    return nbd;
  }

  it('a write past the quota fails ENOSPC with nothing written; overwrites within it succeed', async function () {
    const info = await s.daxd.fs.create('alice/disk', true);
    await s.daxd.fs.truncate(info.ino, 64 * KiB);
    const nbd = await openAsAlice('alice/disk');
    assert.equal((await nbd.command(W.NBD_CMD_WRITE, { offset: 0, length: 8 * KiB, data: Buffer.alloc(8 * KiB, 0xaa) })).error, 0);
    const over = await nbd.command(W.NBD_CMD_WRITE, { offset: 16 * KiB, length: 4 * KiB, data: Buffer.alloc(4 * KiB, 0xbb) });
    assert.equal(over.error, W.NBD_ENOSPC);
    assert.match(over.message, /EDQUOT/);
    const zero = await nbd.command(W.NBD_CMD_WRITE_ZEROES, { flags: W.NBD_CMD_FLAG_NO_HOLE, offset: 32 * KiB, length: 4 * KiB });
    assert.equal(zero.error, W.NBD_ENOSPC);
    assert.equal(s.daxd.fs.stat(info.ino).blocks, 2, 'only the 8 KiB within the quota is allocated');
    assert.deepEqual(await nbd.read(16 * KiB, 4 * KiB), Buffer.alloc(4 * KiB));
    assert.equal((await nbd.command(W.NBD_CMD_WRITE, { offset: 100, length: 1000, data: Buffer.alloc(1000, 0xcc) })).error, 0, 'an overwrite needs no quota');
    // At the quota, zeroing that punches (FAST_ZERO without NO_HOLE) frees, so it is no
    // quota matter, even over a range with holes (which an allocating zero would fill).
    assert.equal((await nbd.command(W.NBD_CMD_WRITE_ZEROES, { flags: W.NBD_CMD_FLAG_FAST_ZERO, offset: 0, length: 16 * KiB })).error, 0);
    assert.equal(s.daxd.fs.stat(info.ino).blocks, 0);
    nbd.end();
  });

  it('an unlinked file the connection still holds allocates nothing more: its blocks would count in no prefix', async function () {
    const info = await s.daxd.fs.create('alice/orphan', true);
    await s.daxd.fs.truncate(info.ino, 64 * KiB);
    const nbd = await openAsAlice('alice/orphan');
    assert.equal((await nbd.command(W.NBD_CMD_WRITE, { offset: 0, length: 4 * KiB, data: Buffer.alloc(4 * KiB, 0xaa) })).error, 0);
    await s.daxd.fs.unlink('alice/orphan');
    const refused = [];
    for (let i = 1; i <= 16; i++) refused.push((await nbd.command(W.NBD_CMD_WRITE, { offset: i * 4 * KiB, length: 4 * KiB, data: Buffer.alloc(4 * KiB, 0xbb) })).error);
    assert.deepEqual(refused, Array(16).fill(W.NBD_ENOSPC));
    assert.equal(s.daxd.fs.stat(info.ino).blocks, 1);
    assert.equal((await nbd.command(W.NBD_CMD_WRITE, { offset: 10, length: 10, data: Buffer.alloc(10, 0xcc) })).error, 0, 'its allocated block can still be overwritten');
    nbd.end();
  });
});

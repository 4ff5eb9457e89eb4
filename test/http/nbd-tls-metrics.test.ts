/**
 * NBD TLS through a whole Daxd (server/server.ts passes --nbd-tls, its certificate and
 * --auth to the NBD server): daxd_nbd_tls_handshakes_total{outcome} counts one upgrade
 * that succeeded and one that failed (garbage instead of a ClientHello), and the principal
 * of the client certificate confines NBD_OPT_LIST to its prefix.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { Authenticator } from '../../server/auth/authenticator';
import { Principal } from '../../server/auth/principal';
import { makeCerts, type CertSet } from '../support/certs';
import { RawNbd, W } from '../support/raw-nbd';
import { until } from '../support/until';
import { scrape, startHttpDaxd, type HttpDaxd } from './fixture';

describe('NBD TLS in a Daxd: handshake metrics and principals', function () {
  this.timeout(60_000);
  let certs: CertSet;
  let s: HttpDaxd;

  before(async function () {
    certs = makeCerts();
    s = await startHttpDaxd('nbd-tls', {
      daxd: {
        nbdTls: 'on',
        nbdTlsContext: () => tls.createSecureContext({ cert: certs.server.certPem, key: certs.server.keyPem, ca: certs.ca.certPem }),
        auth: new Authenticator([new Principal('alice', 'admin', 'alice/', {}, { certCn: 'alice' })], () => [new X509Certificate(certs.ca.certPem)]),
      },
    });
  });

  after(async function () {
    await s?.stop();
    certs?.remove();
  });

  it('daxd_nbd_tls_handshakes_total{outcome}: ok and failed; alice lists only alice/', async function () {
    for (const name of ['alice/a', 'bob/b']) await s.daxd.fs.create(name, true);
    const before = await scrape(s.base);
    const ok = await RawNbd.connect(s.nbd);
    await ok.greet();
    await ok.startTls({ ca: certs.ca.certPem, cert: certs.alice.certPem, key: certs.alice.keyPem });
    ok.sendOption(W.NBD_OPT_LIST);
    const listed = (await ok.optionReplies()).filter((r) => r.type === W.NBD_REP_SERVER).map((r) => r.data.subarray(4).toString());
    assert.deepEqual(listed, ['alice/a']);
    ok.end();
    const bad = await RawNbd.connect(s.nbd);
    await bad.greet();
    bad.sendOption(W.NBD_OPT_STARTTLS);
    assert.equal((await bad.optionReply()).type, W.NBD_REP_ACK);
    bad.write(Buffer.alloc(256, 0x55));
    await bad.closed;
    const delta = async (outcome: string) => (await scrape(s.base)).value('daxd_nbd_tls_handshakes_total', { outcome }) - before.value('daxd_nbd_tls_handshakes_total', { outcome });
    await until(async () => (await delta('failed')) === 1, 'one failed handshake counted');
    assert.equal(await delta('ok'), 1);
  });
});

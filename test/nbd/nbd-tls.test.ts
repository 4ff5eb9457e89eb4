/**
 * NBD over TLS at the byte level (test/support/raw-nbd.ts), against an in-process engine
 * with certificates made at test time (test/support/certs.ts):
 *   - the modes: off answers STARTTLS POLICY; require answers every other option
 *     TLS_REQD (EXPORT_NAME: closed) until STARTTLS; on serves loopback in plaintext;
 *   - a peer that is not loopback (connecting from 127.0.0.2) gets TLS_REQD until STARTTLS;
 *   - STARTTLS after TLS is INVALID; bytes pipelined after STARTTLS, garbage instead of a
 *     ClientHello, a client that never starts the handshake: the connection is closed and
 *     the next client is served; nothing negotiated in plaintext survives the upgrade;
 *   - with --auth: the principal comes from the client certificate; LIST shows only the
 *     files under its prefix, another principal's file answers as a missing one, an ro
 *     principal's export is READ_ONLY and its changes fail EPERM; no certificate, an
 *     unknown one, or no TLS: no principal, nothing listed, nothing opens.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { Authenticator } from '../../server/auth/authenticator';
import { Principal } from '../../server/auth/principal';
import type { NbdTlsOptions } from '../../server/nbd/starttls';
import { makeCerts, type CertPair, type CertSet } from '../support/certs';
import { ClosedError, goData, nbdFixture, RawNbd, W, type NbdFixture, type OptionReply } from '../support/raw-nbd';
import { MiB } from '../support/units';
import { until } from '../support/until';

const FILE_BYTES = 1 * MiB;

describe('NBD server: TLS and principals', function () {
  let certs: CertSet;
  let f: NbdFixture | null = null;

  before(function () {
    certs = makeCerts();
  });

  after(function () {
    certs.remove();
  });

  afterEach(async function () {
    await f?.stop();
    f = null;
  });

  function tlsOptions(mode: NbdTlsOptions['mode'], extra: Partial<NbdTlsOptions> = {}): NbdTlsOptions {
    return {
      mode, requestCert: true, rejectUnauthorized: false,
      secureContext: () => tls.createSecureContext({ cert: certs.server.certPem, key: certs.server.keyPem, ca: certs.ca.certPem }),
      ...extra,
    };
  }

  function authenticator(): Authenticator {
    return new Authenticator([
      new Principal('alice', 'rw', 'alice/', {}, { certCn: 'alice' }),
      new Principal('bob', 'ro', '', {}, { certCn: 'bob' }),
    ], () => [new X509Certificate(certs.ca.certPem)]);
  }

  /** The client side of TLS: trusts the test CA, presents `who`'s certificate (none: no certificate). */
  function clientTls(who: CertPair | null): tls.ConnectionOptions {
    return { ca: certs.ca.certPem, ...(who === null ? {} : { cert: who.certPem, key: who.keyPem }) };
  }

  async function start(options: Parameters<typeof nbdFixture>[0], files: string[] = ['disk']): Promise<NbdFixture> {
    f = await nbdFixture(options);
    for (const name of files) {
      const { ino } = await f.fs.create(name, true);
      await f.fs.truncate(ino, FILE_BYTES);
    }
    return f;
  }

  async function listNames(c: RawNbd): Promise<{ names: string[]; last: OptionReply }> {
    c.sendOption(W.NBD_OPT_LIST);
    const replies = await c.optionReplies();
    const names = replies.filter((r) => r.type === W.NBD_REP_SERVER).map((r) => r.data.subarray(4, 4 + r.data.readUInt32BE(0)).toString());
    return { names: names.sort(), last: replies[replies.length - 1] };
  }

  /** GO without structured replies: the final reply (ACK or the error) and the transmission flags if it went. */
  async function go(c: RawNbd, name: string): Promise<{ last: OptionReply; flags: number | null }> {
    c.sendOption(W.NBD_OPT_GO, goData(name));
    const replies = await c.optionReplies();
    const exp = replies.find((r) => r.type === W.NBD_REP_INFO && r.data.readUInt16BE(0) === W.NBD_INFO_EXPORT);
    return { last: replies[replies.length - 1], flags: exp === undefined ? null : exp.data.readUInt16BE(10) };
  }

  async function greeted(fx: NbdFixture, localAddress?: string): Promise<RawNbd> {
    const c = localAddress === undefined ? await fx.connect() : await RawNbd.connect(fx.nbd.address, { localAddress });
    await c.greet();
    return c;
  }

  describe('modes', function () {
    it('off: STARTTLS is refused NBD_REP_ERR_POLICY and plaintext goes on', async function () {
      const fx = await start({ tls: tlsOptions('off') });
      const c = await greeted(fx);
      const r = await c.startTls(clientTls(null));
      assert.equal(r.type, W.NBD_REP_ERR_POLICY);
      assert.match(r.data.toString(), /--nbd-tls off/);
      assert.equal((await go(c, 'disk')).last.type, W.NBD_REP_ACK);
    });

    it('require: every option before STARTTLS but ABORT is NBD_REP_ERR_TLS_REQD; after it the export opens', async function () {
      const fx = await start({ tls: tlsOptions('require') });
      const c = await greeted(fx);
      for (const option of [W.NBD_OPT_LIST, W.NBD_OPT_STRUCTURED_REPLY, W.NBD_OPT_INFO, W.NBD_OPT_GO, 99]) {
        c.sendOption(option, option === W.NBD_OPT_GO || option === W.NBD_OPT_INFO ? goData('disk') : Buffer.alloc(0));
        const r = await c.optionReply();
        assert.equal(r.type, W.NBD_REP_ERR_TLS_REQD, `option ${option}: 0x${r.type.toString(16)}`);
        assert.match(r.data.toString(), /--nbd-tls require/);
      }
      assert.equal((await c.startTls(clientTls(null))).type, W.NBD_REP_ACK);
      assert.deepEqual((await listNames(c)).names, ['disk']);
      const opened = await go(c, 'disk');
      assert.equal(opened.last.type, W.NBD_REP_ACK);
      c.request(W.NBD_CMD_WRITE, { offset: 0, data: Buffer.alloc(4096, 7) });
      assert.equal((await c.reply()).error, 0);
      assert.deepEqual(await c.read(0, 4096), Buffer.alloc(4096, 7));
    });

    it('require: NBD_OPT_EXPORT_NAME before STARTTLS closes the connection (it cannot be answered)', async function () {
      const fx = await start({ tls: tlsOptions('require') });
      const c = await greeted(fx);
      c.sendOption(W.NBD_OPT_EXPORT_NAME, Buffer.from('disk'));
      await c.closed;
    });

    it('require: ABORT before STARTTLS is acknowledged', async function () {
      const fx = await start({ tls: tlsOptions('require') });
      const c = await greeted(fx);
      c.sendOption(W.NBD_OPT_ABORT);
      assert.equal((await c.optionReply()).type, W.NBD_REP_ACK);
    });

    it('on: a loopback client may stay in plaintext', async function () {
      const fx = await start({ tls: tlsOptions('on') });
      const c = await greeted(fx);
      assert.equal((await go(c, 'disk')).last.type, W.NBD_REP_ACK);
    });
  });

  describe('peers that are not loopback', function () {
    for (const mode of ['on', 'off'] as const) {
      it(`mode ${mode}: a client from 127.0.0.2 gets NBD_REP_ERR_TLS_REQD for LIST, INFO and GO, and EXPORT_NAME closes`, async function () {
        const fx = await start({ tls: tlsOptions(mode) });
        const c = await greeted(fx, '127.0.0.2');
        assert.equal((await listNames(c)).last.type, W.NBD_REP_ERR_TLS_REQD);
        for (const option of [W.NBD_OPT_INFO, W.NBD_OPT_GO]) {
          c.sendOption(option, goData('disk'));
          const r = await c.optionReply();
          assert.equal(r.type, W.NBD_REP_ERR_TLS_REQD);
          assert.match(r.data.toString(), /only to loopback/);
        }
        c.sendOption(W.NBD_OPT_EXPORT_NAME, Buffer.from('disk'));
        await c.closed;
      });
    }

    it('mode on: after STARTTLS a client from 127.0.0.2 is served', async function () {
      const fx = await start({ tls: tlsOptions('on') });
      const c = await greeted(fx, '127.0.0.2');
      assert.equal((await c.startTls(clientTls(null))).type, W.NBD_REP_ACK);
      assert.equal((await go(c, 'disk')).last.type, W.NBD_REP_ACK);
      assert.deepEqual(await c.read(0, 512), Buffer.alloc(512));
      c.end();
    });

    it('no tls options at all: a client from 127.0.0.2 is refused as with mode off', async function () {
      const fx = await start({});
      const c = await greeted(fx, '127.0.0.2');
      assert.equal((await go(c, 'disk')).last.type, W.NBD_REP_ERR_TLS_REQD);
    });
  });

  describe('the upgrade', function () {
    it('STARTTLS after TLS is NBD_REP_ERR_INVALID, and the connection goes on', async function () {
      const fx = await start({ tls: tlsOptions('on') });
      const c = await greeted(fx);
      assert.equal((await c.startTls(clientTls(null))).type, W.NBD_REP_ACK);
      c.sendOption(W.NBD_OPT_STARTTLS);
      const r = await c.optionReply();
      assert.equal(r.type, W.NBD_REP_ERR_INVALID);
      assert.match(r.data.toString(), /already/);
      assert.equal((await go(c, 'disk')).last.type, W.NBD_REP_ACK);
    });

    it('STARTTLS with data is NBD_REP_ERR_INVALID, still in plaintext', async function () {
      const fx = await start({ tls: tlsOptions('on') });
      const c = await greeted(fx);
      c.sendOption(W.NBD_OPT_STARTTLS, Buffer.from('x'));
      assert.equal((await c.optionReply()).type, W.NBD_REP_ERR_INVALID);
      assert.equal((await go(c, 'disk')).last.type, W.NBD_REP_ACK);
    });

    it('an option pipelined after STARTTLS (plaintext the client sent before the ACK) closes the connection unanswered', async function () {
      const fx = await start({ tls: tlsOptions('on') });
      const c = await greeted(fx);
      // One write: the server has STARTTLS and the LIST behind it in hand at once.
      const header = (option: number) => {
        const h = Buffer.alloc(16);
        h.writeBigUInt64BE(W.IHAVEOPT, 0);
        h.writeUInt32BE(option, 8);
        return h;
      };
      c.write(Buffer.concat([header(W.NBD_OPT_STARTTLS), header(W.NBD_OPT_LIST)]));
      await c.closed;
      // Nothing was answered: neither an ACK for STARTTLS nor anything for the LIST.
      await assert.rejects(c.bytes(1));
    });

    it('garbage instead of a ClientHello closes the connection, and the next client is served', async function () {
      const fx = await start({ tls: tlsOptions('on') });
      const c = await greeted(fx);
      c.sendOption(W.NBD_OPT_STARTTLS);
      assert.equal((await c.optionReply()).type, W.NBD_REP_ACK);
      c.write(Buffer.alloc(512, 0x41));
      await c.closed;
      const next = await greeted(fx);
      assert.equal((await next.startTls(clientTls(null))).type, W.NBD_REP_ACK);
      assert.equal((await go(next, 'disk')).last.type, W.NBD_REP_ACK);
    });

    it('a client that never starts the TLS handshake is closed after NBD_HANDSHAKE_MS_MAX', async function () {
      const fx = await start({ tls: tlsOptions('on'), limits: { handshakeMsMax: 300 } });
      const c = await greeted(fx);
      c.sendOption(W.NBD_OPT_STARTTLS);
      assert.equal((await c.optionReply()).type, W.NBD_REP_ACK);
      const t0 = Date.now();
      await c.closed;
      assert.ok(Date.now() - t0 < 5_000, 'closed by the handshake bound, not by the test timeout');
      await until(() => fx.nbd.connectionCount === 0, () => `${fx.nbd.connectionCount} connections still open`);
    });

    it('STRUCTURED_REPLY negotiated in plaintext does not survive STARTTLS (GO then advertises no SEND_DF)', async function () {
      const fx = await start({ tls: tlsOptions('on') });
      const c = await greeted(fx);
      c.sendOption(W.NBD_OPT_STRUCTURED_REPLY);
      assert.equal((await c.optionReply()).type, W.NBD_REP_ACK);
      assert.equal((await c.startTls(clientTls(null))).type, W.NBD_REP_ACK);
      const opened = await go(c, 'disk');
      assert.equal(opened.last.type, W.NBD_REP_ACK);
      assert.equal((opened.flags as number) & W.NBD_FLAG_SEND_DF, 0);
      // And replies are simple: a READ answers with the simple reply magic.
      c.request(W.NBD_CMD_READ, { offset: 0, length: 512 });
      const reply = await c.reply();
      assert.equal(reply.structured, false);
    });

    /**
     * Refused by the server after the client's side of the handshake: with TLS 1.3 the client
     * may count the handshake done before the server has checked its certificate, so the
     * refusal shows as a connection closed with no answer to the next option.
     */
    async function refused(c: RawNbd, who: CertPair | null): Promise<void> {
      try {
        await c.startTls(clientTls(who));
        c.sendOption(W.NBD_OPT_LIST);
        await assert.rejects(c.optionReply(), ClosedError);
      } catch (err) {
        if (!(err instanceof ClosedError) && !(err instanceof Error && /alert|certificate|socket/i.test(err.message))) throw err;
      }
      await c.closed;
    }

    it('rejectUnauthorized: a client certificate from a foreign CA fails the handshake', async function () {
      const fx = await start({ tls: tlsOptions('on', { rejectUnauthorized: true }) });
      await refused(await greeted(fx), certs.foreign);
    });

    it('request (requestCert without rejectUnauthorized): a certificate that does not verify (foreign CA, expired) closes the connection, as on gRPC and HTTP; none is allowed', async function () {
      const fx = await start({ tls: tlsOptions('on') });
      await refused(await greeted(fx), certs.foreign);
      await refused(await greeted(fx), certs.expired);
      const none = await greeted(fx);
      assert.equal((await none.startTls(clientTls(null))).type, W.NBD_REP_ACK);
      assert.equal((await go(none, 'disk')).last.type, W.NBD_REP_ACK);
    });

    it('rejectUnauthorized: no client certificate fails the handshake; the CA\'s own client certificate passes', async function () {
      const fx = await start({ tls: tlsOptions('on', { rejectUnauthorized: true }) });
      await refused(await greeted(fx), null);
      const ok = await greeted(fx);
      assert.equal((await ok.startTls(clientTls(certs.alice))).type, W.NBD_REP_ACK);
      assert.equal((await go(ok, 'disk')).last.type, W.NBD_REP_ACK);
    });

    it('the certificate is read at each STARTTLS: a reload serves the next upgrade', async function () {
      let current = certs.server;
      const fx = await start({ tls: tlsOptions('on', { secureContext: () => tls.createSecureContext({ cert: current.certPem, key: current.keyPem }) }) });
      const first = await greeted(fx);
      assert.equal((await first.startTls(clientTls(null))).type, W.NBD_REP_ACK);
      current = certs.foreignServer;
      const second = await greeted(fx);
      // The old CA no longer vouches for the server; the foreign CA does.
      await assert.rejects(second.startTls(clientTls(null)), /self-signed|unable to verify|certificate/i);
      const third = await greeted(fx);
      assert.equal((await third.startTls({ ca: certs.foreignCa.certPem })).type, W.NBD_REP_ACK);
      assert.equal((await go(third, 'disk')).last.type, W.NBD_REP_ACK);
      // The first connection keeps the certificate it was upgraded with.
      assert.equal((await go(first, 'disk')).last.type, W.NBD_REP_ACK);
    });

    it('counts TLS handshakes by outcome', async function () {
      const outcomes: string[] = [];
      const fx = await start({ tls: tlsOptions('on'), observer: { tlsHandshake: (o) => outcomes.push(o) } });
      const ok = await greeted(fx);
      await ok.startTls(clientTls(null));
      const bad = await greeted(fx);
      bad.sendOption(W.NBD_OPT_STARTTLS);
      await bad.optionReply();
      bad.write(Buffer.alloc(64, 1));
      await bad.closed;
      assert.deepEqual(outcomes.sort(), ['failed', 'ok']);
    });
  });

  describe('principals (--auth)', function () {
    const FILES = ['alice/disk', 'alice/two', 'bob/x', 'top'];

    it('alice (rw, prefix alice/) lists only her files, opens hers, and another file answers exactly as a missing one', async function () {
      const fx = await start({ tls: tlsOptions('on'), auth: authenticator() }, FILES);
      const c = await greeted(fx);
      assert.equal((await c.startTls(clientTls(certs.alice))).type, W.NBD_REP_ACK);
      assert.deepEqual((await listNames(c)).names, ['alice/disk', 'alice/two']);
      for (const option of [W.NBD_OPT_INFO, W.NBD_OPT_GO]) {
        c.sendOption(option, goData('bob/x'));
        const other = await c.optionReply();
        c.sendOption(option, goData('bob/y'));
        const missing = await c.optionReply();
        assert.equal(other.type, W.NBD_REP_ERR_UNKNOWN);
        assert.equal(missing.type, W.NBD_REP_ERR_UNKNOWN);
        assert.equal(other.data.toString().replace('bob/x', 'NAME'), missing.data.toString().replace('bob/y', 'NAME'));
      }
      const opened = await go(c, 'alice/disk');
      assert.equal(opened.last.type, W.NBD_REP_ACK);
      assert.equal((opened.flags as number) & W.NBD_FLAG_READ_ONLY, 0);
      c.request(W.NBD_CMD_WRITE, { offset: 0, data: Buffer.alloc(4096, 9) });
      assert.equal((await c.reply()).error, 0);
    });

    it('alice cannot open another file with NBD_OPT_EXPORT_NAME either: the connection closes', async function () {
      const fx = await start({ tls: tlsOptions('on'), auth: authenticator() }, FILES);
      const c = await greeted(fx);
      await c.startTls(clientTls(certs.alice));
      c.sendOption(W.NBD_OPT_EXPORT_NAME, Buffer.from('top'));
      await c.closed;
      assert.equal(fx.fs.lookup('top').sizeBytes, FILE_BYTES);
    });

    it('bob (ro) gets the export READ_ONLY; WRITE, TRIM and WRITE_ZEROES fail NBD_EPERM and change nothing; READ works', async function () {
      const fx = await start({ tls: tlsOptions('on'), auth: authenticator() }, FILES);
      const ino = fx.fs.lookup('bob/x').ino;
      await fx.fs.write(ino, 0, Buffer.alloc(8192, 5), false);
      const c = await greeted(fx);
      await c.startTls(clientTls(certs.bob));
      assert.deepEqual((await listNames(c)).names, FILES);
      const opened = await go(c, 'bob/x');
      assert.equal(opened.last.type, W.NBD_REP_ACK);
      assert.equal((opened.flags as number) & W.NBD_FLAG_READ_ONLY, W.NBD_FLAG_READ_ONLY);
      c.request(W.NBD_CMD_WRITE, { offset: 0, data: Buffer.alloc(4096, 1) });
      assert.equal((await c.reply()).error, W.NBD_EPERM);
      c.request(W.NBD_CMD_TRIM, { offset: 0, length: 8192 });
      assert.equal((await c.reply()).error, W.NBD_EPERM);
      c.request(W.NBD_CMD_WRITE_ZEROES, { offset: 0, length: 8192 });
      assert.equal((await c.reply()).error, W.NBD_EPERM);
      assert.deepEqual(await c.read(0, 8192), Buffer.alloc(8192, 5));
      const back = Buffer.alloc(8192);
      fx.fs.readInto(ino, 0, back.length, back, 0);
      assert.deepEqual(back, Buffer.alloc(8192, 5));
    });

    const nobody: Array<{ name: string; connect(fx: NbdFixture, c: RawNbd): Promise<void> }> = [
      { name: 'no TLS (loopback plaintext)', connect: async () => undefined },
      { name: 'TLS without a client certificate', connect: async (_fx, c) => void (await c.startTls(clientTls(null))) },
    ];
    for (const who of nobody) {
      it(`${who.name}: no principal, LIST shows nothing and every export answers NBD_REP_ERR_UNKNOWN`, async function () {
        const fx = await start({ tls: tlsOptions('on'), auth: authenticator() }, FILES);
        const c = await greeted(fx);
        await who.connect(fx, c);
        const listed = await listNames(c);
        assert.deepEqual(listed.names, []);
        assert.equal(listed.last.type, W.NBD_REP_ACK);
        for (const name of FILES) {
          const r = await go(c, name);
          assert.equal(r.last.type, W.NBD_REP_ERR_UNKNOWN, name);
          assert.equal(r.last.data.toString(), `ENOENT: no file named "${name}"`);
        }
      });
    }
  });
});

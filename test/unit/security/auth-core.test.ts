/**
 * The auth core without the network: the --auth file's validation, the authenticator
 * (tokens by hash, certificates checked against the CA, failures limited per address),
 * the per-method role table, and session ownership in the session table.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { AuthFileError, parsePrincipals } from '../../../server/auth/auth-file';
import { Authenticator, sha256 } from '../../../server/auth/authenticator';
import { admitCall } from '../../../server/auth/call-principal';
import { peerAddress } from '../../../server/auth/failure-limiter';
import { AUTH_FAILURES_PER_WINDOW_MAX } from '../../../server/auth/limits';
import { METHOD_ACTIONS } from '../../../server/auth/method-actions';
import { DaxError } from '../../../server/errors';
import { SessionTable } from '../../../server/session/session-table';
import { loadDaxdProto } from '../../../wire/proto';
import { methodLabel } from '../../../server/rpc/instrument';
import { makeCerts, type CertSet } from '../../support/certs';

const ALICE_TOKEN = 'alice-token-0123456789abcdef';
const READER_TOKEN = 'reader-token-0123456789abcdef';

function principalsYaml(): string {
  return `principals:
  - name: alice
    role: rw
    prefix: alice/
    token_sha256: ${sha256(ALICE_TOKEN).toString('hex')}
    cert_cn: alice
    quotas: { sessions: 2, pinned_blocks: 64 }
  - name: reader
    role: ro
    token_sha256: ${sha256(READER_TOKEN).toString('hex')}
  - name: bob
    role: admin
    cert_san: "DNS:bob.clients.daxd.test"
`;
}

function reason(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof DaxError) return err.code;
    throw err;
  }
  return 'OK';
}

function peerCert(pem: Buffer): PeerCertificate {
  const x = new X509Certificate(pem);
  const cn = /CN=([^\n]+)/.exec(x.subject)?.[1];
  return { raw: x.raw, subject: { CN: cn }, subjectaltname: x.subjectAltName } as unknown as PeerCertificate;
}

describe('auth core', function () {
  this.timeout(30_000);

  describe('the --auth file', () => {
    it('parses YAML and JSON into principals with roles, prefixes, quotas and credentials', () => {
      const yaml = parsePrincipals('a.yaml', principalsYaml());
      assert.deepEqual(yaml.map((p) => [p.name, p.role, p.prefix]), [['alice', 'rw', 'alice/'], ['reader', 'ro', ''], ['bob', 'admin', '']]);
      assert.deepEqual(yaml[0].quotas, { sessions: 2, pinnedBlocks: 64 });
      assert.ok(yaml[0].credentials.tokenSha256?.equals(sha256(ALICE_TOKEN)));
      const json = parsePrincipals('a.json', JSON.stringify({ principals: [{ name: 'x', role: 'ro', cert_cn: 'x' }] }));
      assert.equal(json[0].credentials.certCn, 'x');
    });

    const bad: Array<[string, string, RegExp]> = [
      ['a plaintext token', '{"principals":[{"name":"a","role":"rw","token":"secret-secret-secret"}]}', /plaintext token: store its SHA-256/],
      ['an unknown role', '{"principals":[{"name":"a","role":"root","cert_cn":"a"}]}', /role must be one of admin, rw, ro/],
      ['no credential', '{"principals":[{"name":"a","role":"rw"}]}', /credentials are missing/],
      ['a short hash', '{"principals":[{"name":"a","role":"rw","token_sha256":"abcd"}]}', /64 hex digits/],
      ['a duplicate name', '{"principals":[{"name":"a","role":"rw","cert_cn":"x"},{"name":"a","role":"ro","cert_cn":"y"}]}', /share name "a"/],
      ['one token for two principals', `{"principals":[{"name":"a","role":"rw","token_sha256":"${'a'.repeat(64)}"},{"name":"b","role":"ro","token_sha256":"${'a'.repeat(64)}"}]}`, /share token_sha256/],
      ['an unknown quota', '{"principals":[{"name":"a","role":"rw","cert_cn":"a","quotas":{"inodes":1}}]}', /quotas.inodes is not a quota/],
      ['a negative quota', '{"principals":[{"name":"a","role":"rw","cert_cn":"a","quotas":{"pins":-1}}]}', /quotas.pins must be a non-negative integer/],
      ['an unknown field', '{"principals":[{"name":"a","role":"rw","cert_cn":"a","admin":true}]}', /admin is not a field/],
      ['no principals', '{"principals":[]}', /is empty/],
      ['not a document', ': : :', /neither JSON nor YAML|expected an object/],
    ];
    for (const [what, text, message] of bad) {
      it(`refuses ${what}, naming the problem`, () => {
        assert.throws(() => parsePrincipals('auth.json', text), (err: Error) => err instanceof AuthFileError && message.test(err.message) && err.message.startsWith('--auth auth.json:'));
      });
    }
  });

  describe('the authenticator', () => {
    let certs: CertSet;
    before(() => {
      certs = makeCerts();
    });
    after(() => certs.remove());

    const make = (nowMs = () => 0) => new Authenticator(parsePrincipals('a.yaml', principalsYaml()), () => [new X509Certificate(certs.ca.certPem)], {}, nowMs);

    it('a token names its principal; a wrong, malformed or missing one is EAUTH', () => {
      const auth = make();
      assert.equal(auth.authenticate({ authorization: `Bearer ${ALICE_TOKEN}`, peer: '127.0.0.1' }).name, 'alice');
      assert.equal(auth.authenticate({ authorization: `Bearer ${READER_TOKEN}`, peer: '127.0.0.1' }).name, 'reader');
      assert.equal(reason(() => auth.authenticate({ authorization: `Bearer ${ALICE_TOKEN}x`, peer: '127.0.0.1' })), 'EAUTH');
      assert.equal(reason(() => auth.authenticate({ authorization: ALICE_TOKEN, peer: '127.0.0.1' })), 'EAUTH');
      assert.equal(reason(() => auth.authenticate({ authorization: `Bearer ${'x'.repeat(100_000)}`, peer: '127.0.0.1' })), 'EAUTH');
      assert.equal(reason(() => auth.authenticate({ peer: '127.0.0.1' })), 'EAUTH');
    });

    it('a client certificate from the CA names its principal by CN or SAN; expired or foreign ones are EAUTH', () => {
      const auth = make();
      assert.equal(auth.authenticate({ certificate: peerCert(certs.alice.certPem), peer: '127.0.0.1' }).name, 'alice');
      assert.equal(auth.authenticate({ certificate: peerCert(certs.bob.certPem), peer: '127.0.0.1' }).name, 'bob');
      assert.equal(reason(() => auth.authenticate({ certificate: peerCert(certs.expired.certPem), peer: '127.0.0.1' })), 'EAUTH');
      assert.equal(reason(() => auth.authenticate({ certificate: peerCert(certs.foreign.certPem), peer: '127.0.0.1' })), 'EAUTH');
    });

    it(`after ${AUTH_FAILURES_PER_WINDOW_MAX} failures an address is refused, even with a good token, until the window ends; other addresses are not`, () => {
      let nowMs = 1_000;
      const auth = make(() => nowMs);
      const outcomes: string[] = [];
      for (let i = 0; i < 100; i++) outcomes.push(reason(() => auth.authenticate({ authorization: `Bearer wrong-token-${i}-padding`, peer: 'ipv4:127.0.0.1:4000' })));
      assert.deepEqual(outcomes.slice(0, AUTH_FAILURES_PER_WINDOW_MAX), Array(AUTH_FAILURES_PER_WINDOW_MAX).fill('EAUTH'));
      assert.deepEqual(outcomes.slice(AUTH_FAILURES_PER_WINDOW_MAX), Array(100 - AUTH_FAILURES_PER_WINDOW_MAX).fill('AUTH_RATE_LIMITED'));
      // Another port of the same address is the same peer; another address is not.
      assert.equal(reason(() => auth.authenticate({ authorization: `Bearer ${ALICE_TOKEN}`, peer: 'ipv4:127.0.0.1:4001' })), 'AUTH_RATE_LIMITED');
      assert.equal(auth.authenticate({ authorization: `Bearer ${ALICE_TOKEN}`, peer: 'ipv4:127.0.0.3:4001' }).name, 'alice');
      nowMs += 60_000;
      assert.equal(auth.authenticate({ authorization: `Bearer ${ALICE_TOKEN}`, peer: 'ipv4:127.0.0.1:4000' }).name, 'alice');
    });

    it('no credentials at all is EAUTH but not counted: it guesses nothing (an NBD probe without a certificate cannot lock an address out)', () => {
      const auth = make();
      for (let i = 0; i < 100; i++) assert.equal(reason(() => auth.authenticate({ peer: '127.0.0.1:1' })), 'EAUTH');
      for (let i = 0; i < 100; i++) assert.equal(reason(() => auth.authenticate({ certificate: {} as PeerCertificate, peer: '127.0.0.1:1' })), 'EAUTH');
      assert.equal(auth.authenticate({ authorization: `Bearer ${ALICE_TOKEN}`, peer: '127.0.0.1:1' }).name, 'alice');
    });

    it('peer addresses: grpc-js and socket forms', () => {
      assert.equal(peerAddress('ipv4:127.0.0.1:5000'), '127.0.0.1');
      assert.equal(peerAddress('ipv6:[::1]:5000'), '::1');
      assert.equal(peerAddress('127.0.0.1:5000'), '127.0.0.1');
      assert.equal(peerAddress('::ffff:127.0.0.1'), '127.0.0.1', 'an IPv4-mapped address is its IPv4 address');
      assert.equal(peerAddress('ipv6:[::ffff:127.0.0.1]:5000'), '127.0.0.1');
    });
  });

  describe('roles per method', () => {
    it('every RPC of the services has a rule', () => {
      const proto = loadDaxdProto().daxd.v1;
      const methods = [proto.Session, proto.Files, proto.Mapping, proto.Dma, proto.Cluster].flatMap((s) => Object.values(s.service).map((d) => methodLabel(d.path)));
      assert.deepEqual(methods.filter((m) => METHOD_ACTIONS[m] === undefined), []);
      assert.equal(methods.length, Object.keys(METHOD_ACTIONS).length);
    });

    it('ro may read, READ-fault and pin read-only; not write, write-fault, pin writable or store', () => {
      const auth = new Authenticator(parsePrincipals('a.yaml', principalsYaml()));
      const call = { metadata: { get: () => [`Bearer ${READER_TOKEN}`] }, getPeer: () => '127.0.0.1:1' } as unknown as Parameters<typeof admitCall>[0];
      const admit = (method: string, request: unknown) => reason(() => admitCall(call, method, request, auth));
      assert.equal(admit('Files.Read', {}), 'OK');
      assert.equal(admit('Mapping.Fault', { kind: 'READ' }), 'OK');
      assert.equal(admit('Dma.Pin', { writable: false }), 'OK');
      assert.equal(admit('Mapping.FaultBatch', { ops: [{ kind: 'READ' }, { kind: 'READ' }] }), 'OK');
      assert.equal(admit('Files.Write', {}), 'EACCES');
      assert.equal(admit('Files.WriteStream', undefined), 'EACCES');
      assert.equal(admit('Files.Create', {}), 'EACCES');
      assert.equal(admit('Mapping.Fault', { kind: 'WRITE' }), 'EACCES');
      assert.equal(admit('Mapping.Fault', { kind: 'KIND_UNSPECIFIED' }), 'EACCES');
      assert.equal(admit('Mapping.FaultBatch', { ops: [{ kind: 'READ' }, { kind: 'COW' }] }), 'EACCES');
      assert.equal(admit('Mapping.AccessBatch', { ops: [{ store: false }, { store: true }] }), 'EACCES');
      assert.equal(admit('Dma.Pin', { writable: true }), 'EACCES');
    });
  });

  describe('session ownership', () => {
    it("another principal's id, open or ended, answers SESSION_UNKNOWN, and changes nothing", async () => {
      const [alice, , bob] = parsePrincipals('a.yaml', principalsYaml());
      const table = new SessionTable({ log: { info: () => undefined, error: () => undefined } });
      const s = table.open('alice-client', 30_000, alice);
      const before = s.expiresAtMs;
      assert.equal(reason(() => table.get(s.id, bob)), 'SESSION_UNKNOWN');
      assert.equal(reason(() => table.keepAlive(s.id, bob)), 'SESSION_UNKNOWN');
      await assert.rejects(table.close(s.id, bob), (err: DaxError) => err.code === 'SESSION_UNKNOWN');
      assert.equal(table.get(s.id, alice), s);
      assert.equal(s.state, 'open');
      assert.ok(s.expiresAtMs >= before);
      assert.equal(table.countOf(alice), 1);
      assert.equal(table.countOf(bob), 0);
      await table.close(s.id, alice);
      assert.equal(reason(() => table.get(s.id, alice)), 'SESSION_EXPIRED');
      assert.equal(reason(() => table.get(s.id, bob)), 'SESSION_UNKNOWN');
      s.events.end('closed');
    });
  });
});

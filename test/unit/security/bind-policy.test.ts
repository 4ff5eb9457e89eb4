/**
 * Secure by default (server/bind-policy.ts): the loopback definition (exactly 127.0.0.1,
 * ::1, localhost; the rest of 127/8 is remote) and the verdict for each combination of
 * TLS, auth and --insecure-allow-remote.
 */
import assert from 'node:assert/strict';
import { BindPolicyError, checkBindPolicy, hostOf, isLoopbackHost, isRemoteAddress } from '../../../server/bind-policy';

const PLAIN = { grpc: false, http: false, nbd: false };
const TLS = { grpc: true, http: true, nbd: true };

describe('bind policy', () => {
  it('loopback is exactly 127.0.0.1, ::1 and localhost', () => {
    for (const host of ['127.0.0.1', '::1', 'localhost', 'LOCALHOST']) assert.equal(isLoopbackHost(host), true, host);
    for (const host of ['127.0.0.2', '127.1.2.3', '127.255.255.255', '0.0.0.0', '::', '10.0.0.1', '192.168.1.10', 'example.com', 'localhost.example.com', '::ffff:127.0.0.1', '']) {
      assert.equal(isLoopbackHost(host), false, host);
    }
  });

  it('reads the host of every address form', () => {
    assert.equal(hostOf('127.0.0.1:7070'), '127.0.0.1');
    assert.equal(hostOf('[::1]:0'), '::1');
    assert.equal(hostOf('[::]:7070'), '::');
    assert.equal(hostOf('localhost:7071'), 'localhost');
    assert.equal(hostOf('::1'), '::1');
    assert.equal(hostOf('0.0.0.0:10809'), '0.0.0.0');
    assert.equal(hostOf('unix:/run/daxd.sock'), null);
    assert.equal(isRemoteAddress('unix:/run/daxd.sock'), false);
    assert.equal(isRemoteAddress('127.0.0.2:0'), true);
    assert.equal(isRemoteAddress('[::1]:7070'), false);
    assert.equal(isRemoteAddress('dns:///127.0.0.1:7070'), true); // unknown forms are remote
  });

  const loopback = { grpc: '127.0.0.1:0', http: '127.0.0.1:0', nbd: '[::1]:0' };
  it('loopback binds need nothing', () => {
    assert.deepEqual(checkBindPolicy({ binds: loopback, tls: PLAIN, authEnabled: false, insecureAllowRemote: false }), { remote: [], insecure: false });
  });

  it('a remote bind without TLS and auth is refused, naming the listener and what to add', () => {
    for (const listener of ['grpc', 'http', 'nbd'] as const) {
      const binds = { ...loopback, [listener]: '127.0.0.2:0' };
      assert.throws(() => checkBindPolicy({ binds, tls: PLAIN, authEnabled: false, insecureAllowRemote: false }), (err: unknown) => {
        assert.ok(err instanceof BindPolicyError);
        assert.deepEqual(err.remote, [`--${listener} 127.0.0.2:0`]);
        assert.deepEqual(err.missing, ['TLS', 'authentication']);
        assert.match(err.message, /--tls-cert FILE --tls-key FILE and --auth FILE/);
        assert.match(err.message, /--insecure-allow-remote/);
        return true;
      });
    }
  });

  it('a malformed HTTP or NBD address is left to its listener (it binds nothing); a bare gRPC host is judged', () => {
    const open = { tls: PLAIN, authEnabled: false, insecureAllowRemote: false };
    assert.deepEqual(checkBindPolicy({ binds: { http: 'nonsense', nbd: '0.0.0.0' }, ...open }).remote, []);
    assert.throws(() => checkBindPolicy({ binds: { grpc: 'nonsense' }, ...open }), BindPolicyError);
    assert.throws(() => checkBindPolicy({ binds: { grpc: '0.0.0.0' }, ...open }), BindPolicyError);
  });

  it('TLS alone or auth alone is not enough', () => {
    const binds = { grpc: '0.0.0.0:7070' };
    assert.throws(() => checkBindPolicy({ binds, tls: TLS, authEnabled: false, insecureAllowRemote: false }), (err: unknown) => err instanceof BindPolicyError && err.missing.join() === 'authentication');
    assert.throws(() => checkBindPolicy({ binds, tls: PLAIN, authEnabled: true, insecureAllowRemote: false }), (err: unknown) => err instanceof BindPolicyError && err.missing.join() === 'TLS');
  });

  it('TLS counts per listener: a plaintext NBD listener beyond loopback needs TLS even when gRPC has it', () => {
    const binds = { grpc: '0.0.0.0:7070', nbd: '0.0.0.0:10809' };
    assert.throws(() => checkBindPolicy({ binds, tls: { ...TLS, nbd: false }, authEnabled: true, insecureAllowRemote: false }), (err: unknown) => err instanceof BindPolicyError && err.missing.join() === 'TLS');
    assert.deepEqual(checkBindPolicy({ binds: { grpc: '0.0.0.0:7070', nbd: '127.0.0.1:10809' }, tls: { ...TLS, nbd: false }, authEnabled: true, insecureAllowRemote: false }).insecure, false);
  });

  it('TLS and auth allow a remote bind; --insecure-allow-remote allows it with a warning', () => {
    const binds = { grpc: '[::]:7070', http: '127.0.0.1:0' };
    assert.deepEqual(checkBindPolicy({ binds, tls: TLS, authEnabled: true, insecureAllowRemote: false }), { remote: ['--grpc [::]:7070'], insecure: false });
    assert.deepEqual(checkBindPolicy({ binds, tls: PLAIN, authEnabled: false, insecureAllowRemote: true }), { remote: ['--grpc [::]:7070'], insecure: true });
  });
});

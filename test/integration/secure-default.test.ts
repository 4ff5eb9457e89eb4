/**
 * Secure by default (issue 13): `daxd serve` refuses to bind gRPC, HTTP or NBD beyond
 * loopback without TLS and auth (usage exit code, a message saying what to add, the volume
 * untouched), starts with --insecure-allow-remote and logs the warning; bad TLS flags or
 * files refuse the start the same way. 127.0.0.2 is remote for this policy, so the tests
 * never leave loopback.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { EXIT_USAGE } from '../../cli/args';
import { makeCerts, type CertSet } from '../support/certs';
import { DAXD_BIN, startServer, tempDir } from '../support/start-server';

/** A serve that must be refused: its exit code and stderr (killed by PID if it serves after all). */
async function refusedServe(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [DAXD_BIN, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  child.stdout.setEncoding('utf8').on('data', (s: string) => {
    if (s.includes('"daxd serving"') && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
  });
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  return { code, stderr };
}

describe('secure by default: binds and TLS flags of daxd serve', function () {
  this.timeout(30_000);
  let tmp: ReturnType<typeof tempDir>;
  let certs: CertSet;
  let volume: string;
  before(() => {
    tmp = tempDir();
    certs = makeCerts();
    volume = path.join(tmp.dir, 'never.vol');
  });
  after(() => {
    certs?.remove();
    tmp?.remove();
  });

  const loopback = ['--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--nbd', '127.0.0.1:0'];
  for (const flag of ['--grpc', '--http', '--nbd']) {
    it(`${flag} 127.0.0.2:0 without TLS and auth: refused with the usage exit code, the volume untouched`, async () => {
      const result = await refusedServe(['--volume', volume, '--size', '16M', ...loopback, flag, '127.0.0.2:0']);
      assert.equal(result.code, EXIT_USAGE, result.stderr);
      assert.match(result.stderr, new RegExp(`refusing to serve ${flag} 127\\.0\\.0\\.2:0 beyond loopback`));
      assert.match(result.stderr, /add --tls-cert FILE --tls-key FILE and --auth FILE/);
      assert.match(result.stderr, /--insecure-allow-remote/);
      assert.equal(fs.existsSync(volume), false);
    });
  }

  it('TLS without auth is not enough for a remote bind', async () => {
    const result = await refusedServe(['--volume', volume, ...loopback, '--grpc', '127.0.0.2:0', '--tls-cert', certs.server.cert, '--tls-key', certs.server.key]);
    assert.equal(result.code, EXIT_USAGE, result.stderr);
    assert.match(result.stderr, /without authentication:/);
  });

  it('--insecure-allow-remote: serves on 127.0.0.2 and logs the warning', async () => {
    const server = await startServer({ volumePath: path.join(tmp.dir, 'remote.vol'), extraArgs: ['--grpc', '127.0.0.2:0', '--insecure-allow-remote'] });
    try {
      assert.match(server.address, /^127\.0\.0\.2:\d+$/);
      const warning = await server.logged('serving beyond loopback without TLS and authentication (--insecure-allow-remote): anyone who reaches these ports can read, overwrite and delete every file');
      assert.equal(warning.level, 40);
      assert.deepEqual(warning.remote, [`--grpc 127.0.0.2:0`]);
    } finally {
      assert.deepEqual(await server.stop(), { code: 0, signal: null });
    }
  });

  it('loopback binds start with no warning (the zero-config default)', async () => {
    const server = await startServer({ volumePath: path.join(tmp.dir, 'local.vol') });
    try {
      assert.equal(server.logs.some((l) => typeof l.msg === 'string' && l.msg.startsWith('serving beyond loopback')), false);
    } finally {
      assert.deepEqual(await server.stop(), { code: 0, signal: null });
    }
  });

  it('bad TLS flags and files refuse the start, naming the flag and the file', async () => {
    const missing = path.join(tmp.dir, 'missing.pem');
    const cases: Array<[string[], RegExp]> = [
      [['--tls-key', certs.server.key], /--tls-key: needs --tls-cert FILE/],
      [['--tls-cert', certs.server.cert, '--tls-key', certs.server.key, '--tls-client-auth', 'require'], /--tls-client-auth: require needs --tls-ca FILE/],
      [['--tls-cert', missing, '--tls-key', certs.server.key], new RegExp(`--tls-cert ${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: no such file`)],
      [['--tls-cert', certs.server.cert, '--tls-key', certs.bob.key], /--tls-key \S+bob\.key: does not match the certificate of --tls-cert/],
      [['--tls-cert', certs.server.cert, '--tls-key', certs.server.key, '--tls-ca', certs.server.key], /--tls-ca \S+server\.key: not a PEM certificate/],
    ];
    for (const [args, message] of cases) {
      const result = await refusedServe(['--volume', volume, ...loopback, ...args]);
      assert.equal(result.code, EXIT_USAGE, result.stderr);
      assert.match(result.stderr, message);
      assert.equal(fs.existsSync(volume), false);
    }
  });
});

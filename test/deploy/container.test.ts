/**
 * bin/daxd-container.js (cli/container.ts), the image's entry point: `daxd serve` flags
 * from DAXD_* variables, and the probes the Dockerfile's HEALTHCHECK and the Kubernetes
 * manifests run.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { envVariableOf, probeTarget, serveArgsFromEnv, serveVariables } from '../../cli/container';
import { UsageError } from '../../cli/args';
import { serveCommand } from '../../cli/serve-command';
import { REPO_ROOT, tempDir } from '../support/start-server';
import { CONTAINER_BIN, DEPLOY_DIR, cleanEnv, makeSecrets, run, startServing } from './support';

/** A grpc.health.v1.Health whose Check answers `status` (1 SERVING, 2 NOT_SERVING), raw bytes. */
async function fakeHealth(status: number, credentials = grpc.ServerCredentials.createInsecure()): Promise<{ port: number; close(): void }> {
  const server = new grpc.Server();
  const raw = (b: Buffer) => b;
  const definition = {
    Check: { path: '/grpc.health.v1.Health/Check', requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw },
  } as unknown as grpc.ServiceDefinition;
  server.addService(definition, { Check: (_call: unknown, callback: (err: null, response: Buffer) => void) => callback(null, Buffer.from([0x08, status])) });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', credentials, (err, p) => (err ? reject(err) : resolve(p))));
  return { port, close: () => server.forceShutdown() };
}

const probe = (kind: string, env: Record<string, string>) => run(process.execPath, [CONTAINER_BIN, 'probe', kind], { env: cleanEnv(env) });

describe('deploy: daxd-container (flags from the environment, probes)', function () {
  this.timeout(60_000);

  it('maps every daxd serve flag to DAXD_<FLAG> and nothing else', function () {
    const variables = serveVariables();
    assert.deepEqual(variables.map((v) => v.flag), Object.keys(serveCommand.options));
    assert.equal(envVariableOf('tls-cert'), 'DAXD_TLS_CERT');
    assert.equal(envVariableOf('nbd-layout-break-timeout-ms'), 'DAXD_NBD_LAYOUT_BREAK_TIMEOUT_MS');
    assert.deepEqual(serveArgsFromEnv({
      DAXD_VOLUME: '/data/v.vol', DAXD_GRPC: '0.0.0.0:7070', DAXD_TLS_CERT: '/s/c', DAXD_INSECURE_ALLOW_REMOTE: 'true', DAXD_SIZE: '', PATH: '/bin', DAXD_TOKEN: 't',
    }), ['--volume', '/data/v.vol', '--grpc', '0.0.0.0:7070', '--tls-cert', '/s/c', '--insecure-allow-remote']);
    assert.deepEqual(serveArgsFromEnv({ DAXD_INSECURE_ALLOW_REMOTE: '0' }), [], '0 leaves a boolean flag off');
  });

  it('refuses a DAXD_ variable that names no flag, and a boolean that is not one', function () {
    assert.throws(() => serveArgsFromEnv({ DAXD_TLS_CRT: '/s/c' }), (err: unknown) => err instanceof UsageError && /DAXD_TLS_CRT: not a daxd serve variable/.test(err.message));
    assert.throws(() => serveArgsFromEnv({ DAXD_INSECURE_ALLOW_REMOTE: 'maybe' }), (err: unknown) => err instanceof UsageError && /DAXD_INSECURE_ALLOW_REMOTE="maybe": not one of/.test(err.message));
  });

  it('deploy/README.md documents every variable', function () {
    const readme = fs.readFileSync(path.join(DEPLOY_DIR, 'README.md'), 'utf8');
    const missing = serveVariables().map((v) => v.variable).filter((v) => !readme.includes(`\`${v}\``));
    assert.deepEqual(missing, []);
  });

  it('probes dial the loopback address of a wildcard bind', function () {
    assert.deepEqual(probeTarget('0.0.0.0:7071'), { host: '127.0.0.1', port: 7071 });
    assert.deepEqual(probeTarget('[::]:7070'), { host: '::1', port: 7070 });
    assert.deepEqual(probeTarget('127.0.0.1:9'), { host: '127.0.0.1', port: 9 });
    assert.throws(() => probeTarget('0.0.0.0:0'), /port 0 cannot be probed/);
  });

  it('serves from the environment alone, flags given on the command line win, probes pass while it serves and fail after', async function () {
    const tmp = tempDir('daxd-container-');
    try {
      // DAXD_GRPC names port 1; the flag's port 0 must replace it (the bound port shows which won).
      const env = cleanEnv({ DAXD_VOLUME: path.join(tmp.dir, 'v.vol'), DAXD_SIZE: '64M', DAXD_GRPC: '127.0.0.1:1', DAXD_HTTP: '127.0.0.1:0', DAXD_NBD: 'off' });
      const args = await run(process.execPath, [CONTAINER_BIN, 'args', '--grpc', '127.0.0.1:0'], { env });
      assert.equal(args.code, 0, args.stderr);
      assert.deepEqual(JSON.parse(args.stdout), [
        'daxd', 'serve', '--volume', path.join(tmp.dir, 'v.vol'), '--size', '64M', '--grpc', '127.0.0.1:1', '--http', '127.0.0.1:0', '--nbd', 'off', '--grpc', '127.0.0.1:0',
      ]);
      const server = await startServing(CONTAINER_BIN, ['serve', '--grpc', '127.0.0.1:0'], { cwd: tmp.dir, env });
      try {
        assert.notEqual(server.grpc, '127.0.0.1:1');
        assert.match(server.grpc, /^127\.0\.0\.1:\d+$/);
        const http = await probe('http', { DAXD_HTTP: server.http });
        assert.equal(http.code, 0, http.stderr);
        const live = await probe('grpc', { DAXD_GRPC: server.grpc });
        assert.equal(live.code, 0, live.stderr);
      } finally {
        assert.equal((await server.stop()).code, 0, server.stderr());
      }
      const httpDown = await probe('http', { DAXD_HTTP: server.http });
      assert.equal(httpDown.code, 1);
      assert.match(httpDown.stderr, /probe http: GET http:\/\/127\.0\.0\.1:\d+\/healthz: .*ECONNREFUSED/);
      const grpcDown = await probe('grpc', { DAXD_GRPC: server.grpc });
      assert.equal(grpcDown.code, 1);
      assert.match(grpcDown.stderr, /probe grpc: Health\/Check at 127\.0\.0\.1:\d+: UNAVAILABLE/);
    } finally {
      tmp.remove();
    }
  });

  it('keeps the secure default: a wildcard bind from the environment without TLS and auth is refused (exit 2)', async function () {
    const tmp = tempDir('daxd-container-');
    try {
      const env = cleanEnv({ DAXD_VOLUME: path.join(tmp.dir, 'v.vol'), DAXD_GRPC: '0.0.0.0:0', DAXD_HTTP: '127.0.0.1:0', DAXD_NBD: 'off' });
      const result = await run(process.execPath, [CONTAINER_BIN], { env, cwd: tmp.dir });
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, /--grpc 0\.0\.0\.0:0/);
      assert.equal(fs.existsSync(path.join(tmp.dir, 'v.vol')), false, 'the refused start touched no volume');
    } finally {
      tmp.remove();
    }
  });

  it('probe grpc passes on any Health answer, probe grpc-ready only on SERVING', async function () {
    const serving = await fakeHealth(1);
    const draining = await fakeHealth(2);
    try {
      assert.equal((await probe('grpc', { DAXD_GRPC: `127.0.0.1:${serving.port}` })).code, 0);
      assert.equal((await probe('grpc-ready', { DAXD_GRPC: `127.0.0.1:${serving.port}` })).code, 0);
      assert.equal((await probe('grpc', { DAXD_GRPC: `0.0.0.0:${draining.port}` })).code, 0, 'a NOT_SERVING node is alive');
      const notReady = await probe('grpc-ready', { DAXD_GRPC: `0.0.0.0:${draining.port}` });
      assert.equal(notReady.code, 1);
      assert.match(notReady.stderr, /Health\/Check at 127\.0\.0\.1:\d+: NOT_SERVING/);
    } finally {
      serving.close();
      draining.close();
    }
  });

  it('probes speak TLS when DAXD_TLS_CERT is set (the certificate names other hosts than 127.0.0.1: not verified)', async function () {
    const tmp = tempDir('daxd-container-tls-');
    try {
      const secrets = await makeSecrets(path.join(tmp.dir, 'secrets'));
      const read = (name: string) => fs.readFileSync(path.join(secrets.dir, name));
      const credentials = grpc.ServerCredentials.createSsl(null, [{ cert_chain: read('server.crt'), private_key: read('server.key') }], false);
      const health = await fakeHealth(1, credentials);
      try {
        const tls = await probe('grpc-ready', { DAXD_GRPC: `0.0.0.0:${health.port}`, DAXD_TLS_CERT: path.join(secrets.dir, 'server.crt') });
        assert.equal(tls.code, 0, tls.stderr);
        assert.equal(tls.stderr, '', 'nothing on stderr (no SNI warning for an IP address)');
        const plain = await probe('grpc', { DAXD_GRPC: `0.0.0.0:${health.port}` });
        assert.equal(plain.code, 1, 'a plaintext probe of a TLS port fails: the TLS switch is what made it pass');
      } finally {
        health.close();
      }
    } finally {
      tmp.remove();
    }
  });

  it('usage errors exit 2', async function () {
    const result = await run(process.execPath, [CONTAINER_BIN, 'probe', 'tcp'], { env: cleanEnv({}), cwd: REPO_ROOT });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /unknown command "probe tcp"/);
  });
});

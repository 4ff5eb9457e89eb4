/**
 * The NBD flags of `daxd serve` and `daxd create`, through the real CLI: the "daxd serving"
 * line names the NBD address (or null with --nbd off), bad flag values are usage errors
 * (exit 2) or one-line listen failures (exit 1), --nbd-tls on/require needs --tls-cert, and `daxd create NAME --size N` makes a
 * sparse file an NBD client then sees at that size.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { clientFor, runCli, startServer, tempDir } from '../support/start-server';
import { RawNbd, W } from '../support/raw-nbd';

describe('daxd serve --nbd (CLI)', function () {
  let tmp: ReturnType<typeof tempDir>;

  before(function () {
    tmp = tempDir();
  });

  after(function () {
    tmp.remove();
  });

  it('names the NBD address; daxd create makes a sparse file that is an export of that size', async function () {
    const server = await startServer({ volumePath: path.join(tmp.dir, 'a.vol') });
    try {
      assert.match(server.nbd, /^127\.0\.0\.1:\d+$/);
      assert.notEqual(server.nbd, '127.0.0.1:0');
      const created = await runCli(['create', 'disk', '--size', '8M', '--server', server.address]);
      assert.equal(created.code, 0, created.stderr);
      const again = await runCli(['create', 'disk', '--size', '8M', '--server', server.address]);
      assert.equal(again.code, 1);
      assert.match(again.stderr, /EEXIST/);
      const client = clientFor(server);
      try {
        const info = await client.lookup('disk');
        assert.equal(info.size, 8 * 1024 * 1024);
        assert.equal(info.blocks, 0, 'sparse');
      } finally {
        client.close();
      }
      const c = await RawNbd.connect(server.nbd);
      await c.greet();
      assert.equal((await c.go('disk')).size, 8 * 1024 * 1024);
      c.end();
      const missingSize = await runCli(['create', 'x', '--server', server.address]);
      assert.equal(missingSize.code, 2);
    } finally {
      await server.stop();
    }
  });

  it('--nbd off: no NBD listener ("nbd": null)', async function () {
    const server = await startServer({ volumePath: path.join(tmp.dir, 'b.vol'), extraArgs: ['--nbd', 'off'] });
    try {
      assert.equal(server.nbd, 'null');
    } finally {
      await server.stop();
    }
  });

  it('bad values: --nbd-layout-break is a usage error (2); an --nbd address without a port is a usage error (2)', async function () {
    const base = ['serve', '--volume', path.join(tmp.dir, 'c.vol'), '--size', '32M', '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0'];
    const policy = await runCli([...base, '--nbd', '127.0.0.1:0', '--nbd-layout-break', 'SOMETIMES']);
    assert.equal(policy.code, 2);
    assert.match(policy.stderr, /--nbd-layout-break/);
    const noPort = await runCli([...base, '--nbd', 'localhost']);
    assert.equal(noPort.code, 2, noPort.stderr);
    assert.match(noPort.stderr, /--nbd "localhost": not HOST:PORT/);
    const timeout = await runCli([...base, '--nbd', '127.0.0.1:0', '--nbd-layout-break-timeout-ms', 'soon']);
    assert.equal(timeout.code, 2);
  });

  it('--nbd-tls: a value not off/on/require, or on/require without --tls-cert, is a usage error (2); off serves', async function () {
    const base = ['serve', '--volume', path.join(tmp.dir, 'd.vol'), '--size', '32M', '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--nbd', '127.0.0.1:0'];
    const bad = await runCli([...base, '--nbd-tls', 'sometimes']);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /--nbd-tls: "sometimes" is not one of off, on, require/);
    for (const mode of ['on', 'require']) {
      const noCert = await runCli([...base, '--nbd-tls', mode]);
      assert.equal(noCert.code, 2, noCert.stderr);
      assert.match(noCert.stderr, /--nbd-tls (on|require) needs --tls-cert/);
    }
    const server = await startServer({ volumePath: path.join(tmp.dir, 'e.vol'), extraArgs: ['--nbd-tls', 'off'] });
    try {
      const c = await RawNbd.connect(server.nbd);
      await c.greet();
      c.sendOption(W.NBD_OPT_STARTTLS);
      assert.equal((await c.optionReply()).type, W.NBD_REP_ERR_POLICY);
      c.end();
    } finally {
      await server.stop();
    }
  });
});

/**
 * `daxd serve --http`: the real CLI in a child process. The "daxd serving" line names the
 * bound HTTP address (port 0 picks one), every endpoint answers over it, --log-level
 * debug logs each RPC with its request id, and a bad --http or --log-level is a usage
 * error or a one-line failure.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { DaxClient } from '../../client';
import { runCli, startServer, tempDir, type StartedServer } from '../support/start-server';
import { getJson, Prom } from './fixture';

describe('daxd serve --http (live, CLI)', function () {
  this.timeout(60_000);
  const tmp = tempDir('daxd-http-cli-');
  let server: StartedServer;

  before(async function () {
    server = await startServer({ volumePath: path.join(tmp.dir, 'cli-http.vol'), extraArgs: ['--log-level', 'debug'] });
  });

  after(async function () {
    if (server) await server.stop();
    tmp.remove();
  });

  it('the serving line names the bound HTTP address, and every endpoint answers there', async function () {
    const serving = await server.logged('daxd serving');
    assert.match(String(serving.http), /^127\.0\.0\.1:[1-9]\d*$/);
    const base = `http://${server.http}`;
    for (const url of ['/healthz', '/readyz', '/api/v1/volume', '/api/v1/files', '/api/v1/sessions', '/api/v1/pins', '/api/v1/locks']) {
      const { status } = await getJson(base, url);
      assert.equal(status, 200, url);
    }
    assert.equal((await getJson<{ server: { httpAddress: string; grpcAddress: string } }>(base, '/api/v1/volume')).body.server.httpAddress, server.http);
    const page = await fetch(`${base}/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<title>daxd dashboard<\/title>/);
  });

  it('--log-level debug: each RPC is logged with a request id, method, status and duration', async function () {
    const client = DaxClient.connect(server.address, { deadlineMs: 10_000 });
    try {
      await client.create('logged');
      await client.statVolume();
    } finally {
      client.close();
    }
    const line = await server.logged('rpc');
    assert.equal(line.level, 20);
    assert.match(String(line.reqId), /^[0-9a-f]{8}-[0-9a-z]+$/);
    assert.ok(typeof line.method === 'string' && typeof line.durationMs === 'number' && line.code === 'OK', JSON.stringify(line));
    const ids = server.logs.filter((l) => l.msg === 'rpc').map((l) => l.reqId);
    assert.equal(new Set(ids).size, ids.length, 'request ids are unique');
    const prom = new Prom(await (await fetch(`http://${server.http}/metrics`)).text());
    assert.equal(prom.value('daxd_rpc_duration_seconds_count', { method: 'Files.Create', code: 'OK' }), 1);
  });

  it('usage: --log-level must be a level; --http must be HOST:PORT and bindable', async function () {
    const badLevel = await runCli(['serve', '--volume', path.join(tmp.dir, 'x.vol'), '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--log-level', 'loud']);
    assert.equal(badLevel.code, 2);
    assert.match(badLevel.stderr, /--log-level: "loud" is not one of/);
    const noPort = await runCli(['serve', '--volume', path.join(tmp.dir, 'y.vol'), '--size', '32M', '--grpc', '127.0.0.1:0', '--http', 'localhost', '--nbd', 'off']);
    assert.equal(noPort.code, 2, noPort.stderr);
    assert.match(noPort.stderr, /--http "localhost": not HOST:PORT/);
    const busy = await runCli(['serve', '--volume', path.join(tmp.dir, 'z.vol'), '--size', '32M', '--grpc', '127.0.0.1:0', '--http', server.http, '--nbd', 'off']);
    assert.equal(busy.code, 1);
    assert.match(busy.stderr, /cannot listen on 127\.0\.0\.1:\d+ \(http\)/);
  });

  it('--help names the default HTTP address', async function () {
    const help = await runCli(['serve', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--http HOST:PORT .*default 127\.0\.0\.1:7071/);
  });
});

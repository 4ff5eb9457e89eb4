/**
 * `daxd serve --auth FILE --metrics-auth none|token`, the real CLI in a child process: the
 * HTTP side of a served volume wants the file's tokens (admin for /api/v1/*, any principal
 * for /metrics under `token`), the probes stay open, and `--metrics-auth` is checked
 * before anything starts (a bad value, or `token` without `--auth`: usage errors, exit 2).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { sha256 } from '../../server/auth/authenticator';
import { runCli, startServer, tempDir, type StartedServer } from '../support/start-server';

describe('daxd serve --auth --metrics-auth (live, CLI)', function () {
  this.timeout(60_000);
  const tmp = tempDir('daxd-http-auth-cli-');
  const tokens = { admin: randomBytes(24).toString('base64url'), ro: randomBytes(24).toString('base64url') };
  const authFile = path.join(tmp.dir, 'principals.yaml');
  let server: StartedServer | undefined;

  before(async function () {
    fs.writeFileSync(authFile, [
      'principals:',
      `  - { name: operator, role: admin, token_sha256: ${sha256(tokens.admin).toString('hex')} }`,
      `  - { name: prometheus, role: ro, token_sha256: ${sha256(tokens.ro).toString('hex')} }`,
      '',
    ].join('\n'));
    server = await startServer({ volumePath: path.join(tmp.dir, 'auth-cli.vol'), extraArgs: ['--auth', authFile, '--metrics-auth', 'token', '--nbd', 'off'] });
  });

  after(async function () {
    if (server) await server.stop();
    tmp.remove();
  });

  it('/metrics wants any principal\'s token, /api/v1/* an admin\'s; /healthz and /readyz stay open', async function () {
    const base = `http://${server!.http}`;
    const get = (url: string, token?: string) => fetch(base + url, { headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
    assert.equal((await get('/metrics')).status, 401);
    const metrics = await get('/metrics', tokens.ro);
    assert.equal(metrics.status, 200);
    assert.match(await metrics.text(), /^# HELP /m);
    assert.equal((await get('/api/v1/volume')).status, 401);
    assert.equal((await get('/api/v1/volume', tokens.ro)).status, 403);
    assert.equal((await get('/api/v1/volume', tokens.admin)).status, 200);
    for (const url of ['/healthz', '/readyz', '/']) assert.equal((await get(url)).status, 200, url);
    assert.deepEqual(await (await get('/api/v1/auth')).json(), { required: true, metrics: 'token' });
    const logged = server!.logs.map((l) => JSON.stringify(l)).join('\n');
    for (const t of Object.values(tokens)) assert.ok(!logged.includes(t), 'a token reached the log');
  });

  it('usage: --metrics-auth must be none or token, and token needs --auth', async function () {
    const base = ['serve', '--volume', path.join(tmp.dir, 'never.vol'), '--size', '32M', '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--nbd', 'off'];
    const bad = await runCli([...base, '--metrics-auth', 'sometimes']);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /--metrics-auth: "sometimes" is not one of none, token/);
    const alone = await runCli([...base, '--metrics-auth', 'token']);
    assert.equal(alone.code, 2, alone.stderr);
    assert.match(alone.stderr, /--metrics-auth token needs --auth FILE/);
    assert.ok(!fs.existsSync(path.join(tmp.dir, 'never.vol')), 'nothing started: no volume was created');
  });

  it('--help names --metrics-auth', async function () {
    const help = await runCli(['serve', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--metrics-auth none\|token/);
  });
});

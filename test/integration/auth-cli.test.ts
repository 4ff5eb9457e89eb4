/**
 * The command-line tools with auth: `daxd token` (a fresh token, its SHA-256, a principal
 * entry the --auth file accepts), and the connection flags of the client commands,
 * daxd-load and daxd-fsx (--token, else $DAXD_TOKEN; --tls-ca / --tls-cert / --tls-key)
 * against `daxd serve --auth FILE`: the token gets in, its absence is a one-line EAUTH,
 * it is never printed nor written to a report, and a flag naming an unreadable file is a
 * usage error naming the flag.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parsePrincipals } from '../../server/auth/auth-file';
import { newToken, startAuthServer, type AuthServer } from '../support/auth-server';
import { runCli, tempDir } from '../support/start-server';
import { runBin } from '../loadtest/run-bin';

/** The environment without DAXD_TOKEN (and DAXD_SERVER): the flags under test decide. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  if (!('DAXD_TOKEN' in extra)) delete env.DAXD_TOKEN;
  delete env.DAXD_SERVER;
  return env;
}

describe('daxd token', function () {
  it('prints daxd_ and a 32-byte base64url token, and its SHA-256; two tokens differ', async function () {
    const runs = [await runCli(['token'], { env: cleanEnv() }), await runCli(['token'], { env: cleanEnv() })];
    const tokens = runs.map((r) => {
      assert.equal(r.code, 0, r.stderr);
      const token = /^token: +(\S+)$/m.exec(r.stdout)?.[1];
      const hash = /^token_sha256: +([0-9a-f]{64})$/m.exec(r.stdout)?.[1];
      assert.ok(token !== undefined && hash !== undefined, r.stdout);
      assert.match(token, /^daxd_[A-Za-z0-9_-]{43}$/);
      assert.equal(Buffer.from(token.slice('daxd_'.length), 'base64url').length, 32);
      assert.equal(createHash('sha256').update(token).digest('hex'), hash);
      return token;
    });
    assert.notEqual(tokens[0], tokens[1]);
  });

  it('the principal entry it prints is accepted by the --auth file (and holds only the hash)', async function () {
    const r = await runCli(['token', '--name', 'carol', '--role', 'ro', '--prefix', 'carol/'], { env: cleanEnv() });
    assert.equal(r.code, 0, r.stderr);
    const token = /^token: +(\S+)$/m.exec(r.stdout)?.[1] ?? '';
    const entry = r.stdout.slice(r.stdout.indexOf('  - name:'));
    assert.ok(!entry.includes(token), 'the entry must not hold the token');
    const [p] = parsePrincipals('pasted', `principals:\n${entry}`);
    assert.deepEqual([p.name, p.role, p.prefix], ['carol', 'ro', 'carol/']);
    assert.equal(p.credentials.tokenSha256?.toString('hex'), createHash('sha256').update(token).digest('hex'));
    const json = await runCli(['token', '--json', '--name', 'dave'], { env: cleanEnv() });
    const made = JSON.parse(json.stdout) as { token: string; token_sha256: string; principal: { name: string; role: string } };
    assert.equal(createHash('sha256').update(made.token).digest('hex'), made.token_sha256);
    assert.deepEqual(made.principal, { name: 'dave', role: 'rw', token_sha256: made.token_sha256 });
    assert.equal((await runCli(['token', '--role', 'root'], { env: cleanEnv() })).code, 2);
  });
});

describe('client tools with --token / DAXD_TOKEN against serve --auth', function () {
  this.timeout(90_000);
  let auth: AuthServer;
  let tmp: ReturnType<typeof tempDir>;
  let local: string;

  before(async function () {
    tmp = tempDir('daxd-auth-cli-');
    local = path.join(tmp.dir, 'local.bin');
    fs.writeFileSync(local, Buffer.alloc(10_000, 3));
    auth = await startAuthServer();
  });

  after(async function () {
    await auth?.stop();
    tmp?.remove();
  });

  it('--token and DAXD_TOKEN both authenticate the client commands', async function () {
    const put = await runCli(['put', local, 'alice/put.bin', '--server', auth.server.address, '--token', auth.tokens.alice], { env: cleanEnv() });
    assert.equal(put.code, 0, put.stderr);
    const ls = await runCli(['ls', '--server', auth.server.address], { env: cleanEnv({ DAXD_TOKEN: auth.tokens.alice }) });
    assert.equal(ls.code, 0, ls.stderr);
    assert.deepEqual(ls.stdout.trim().split('\n'), ['alice/put.bin']);
    // --token wins over the environment.
    const stat = await runCli(['stat', 'alice/put.bin', '--server', auth.server.address, '--token', auth.tokens.alice], { env: cleanEnv({ DAXD_TOKEN: auth.tokens.bob }) });
    assert.equal(stat.code, 0, stat.stderr);
  });

  it('no token: exit 1 with one EAUTH line; a wrong token is not echoed', async function () {
    const none = await runCli(['ls', '--server', auth.server.address], { env: cleanEnv() });
    assert.equal(none.code, 1);
    assert.match(none.stderr, /^daxd ls: UNAUTHENTICATED: EAUTH: .*\n$/);
    const wrong = newToken();
    const bad = await runCli(['ls', '--server', auth.server.address, '--token', wrong], { env: cleanEnv() });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /EAUTH/);
    assert.ok(!bad.stderr.includes(wrong) && !bad.stdout.includes(wrong), 'the token is printed');
  });

  it('role and prefix refusals are one line: PERMISSION_DENIED / EACCES', async function () {
    const r = await runCli(['put', local, 'bob/not-alices', '--server', auth.server.address], { env: cleanEnv({ DAXD_TOKEN: auth.tokens.alice }) });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^daxd put: PERMISSION_DENIED: EACCES/);
  });

  it('unreadable --tls-ca / --tls-cert / --tls-key, or a token that cannot be sent: usage error naming the flag', async function () {
    const missing = path.join(tmp.dir, 'no-such.pem');
    const cases: Array<[string[], RegExp]> = [
      [['--tls-ca', missing], /--tls-ca: cannot read .*ENOENT/],
      [['--tls-cert', missing, '--tls-key', local], /--tls-cert: cannot read/],
      [['--tls-cert', local, '--tls-key', missing], /--tls-key: cannot read/],
      [['--tls-cert', local], /--tls-cert needs --tls-key/],
      [['--token', 'has space 0123456789abcdef'], /--token: not a token/],
    ];
    for (const [flags, expected] of cases) {
      const r = await runCli(['ls', '--server', auth.server.address, ...flags], { env: cleanEnv() });
      assert.equal(r.code, 2, flags.join(' '));
      assert.match(r.stderr, expected);
      assert.ok(!r.stderr.includes('0123456789abcdef'), 'the token is printed');
    }
    const env = await runCli(['ls', '--server', auth.server.address], { env: cleanEnv({ DAXD_TOKEN: 'bad token 0123456789abcdef' }) });
    assert.equal(env.code, 2);
    assert.match(env.stderr, /\$DAXD_TOKEN: not a token/);
  });

  it('daxd-load: --token gets in (files under the principal\'s prefix); the JSON report does not hold the token', async function () {
    const json = path.join(tmp.dir, 'load.json');
    const args = ['--server', auth.server.address, '-w', 'randrw', '--ops', '200', '--size', '256k', '--prefix', 'alice/load', '--no-progress', '--json', json];
    const ok = await runBin('daxd-load.js', [...args, '--token', auth.tokens.alice], 60_000, cleanEnv());
    assert.equal(ok.code, 0, ok.stderr);
    const report = fs.readFileSync(json, 'utf8');
    assert.ok(!report.includes(auth.tokens.alice), 'the report holds the token');
    assert.ok(!ok.stdout.includes(auth.tokens.alice) && !ok.stderr.includes(auth.tokens.alice));
    const refused = await runBin('daxd-load.js', args, 60_000, cleanEnv());
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /EAUTH/);
    const usage = await runBin('daxd-load.js', ['--token', auth.tokens.alice, '--ops', '10'], 60_000, cleanEnv());
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--server/);
  });

  it('daxd-fsx: DAXD_TOKEN gets in; --json does not hold the token; unreadable --tls-ca is a usage error', async function () {
    const json = path.join(tmp.dir, 'fsx.json');
    const args = ['--server', auth.server.address, '--seed', '7', '--ops', '100', '--file', 'bob/fsx', '--json', json];
    const ok = await runBin('daxd-fsx.js', args, 60_000, cleanEnv({ DAXD_TOKEN: auth.tokens.bob }));
    assert.equal(ok.code, 0, `${ok.stdout}\n${ok.stderr}`);
    assert.ok(!fs.readFileSync(json, 'utf8').includes(auth.tokens.bob), 'the report holds the token');
    const usage = await runBin('daxd-fsx.js', [...args, '--tls-ca', path.join(tmp.dir, 'none.pem')], 60_000, cleanEnv());
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--tls-ca: cannot read/);
  });
});

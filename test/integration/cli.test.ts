/**
 * The daxd command line as a user runs it: help for every command, usage errors, the
 * offline tools (mkfs, fsck), `serve` on its default volume, and the client commands
 * (put, get, ls, stat, truncate, df, inspect, rm) against a real server.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { clientFor, runCli, startServer, tempDir, type StartedServer } from '../support/start-server';

const COMMANDS = ['serve', 'mkfs', 'fsck', 'token', 'ls', 'stat', 'create', 'put', 'get', 'rm', 'truncate', 'df', 'inspect'];

describe('daxd command line', function () {
  let tmp: ReturnType<typeof tempDir>;

  before(function () {
    tmp = tempDir();
  });

  after(function () {
    tmp.remove();
  });

  it('daxd --help lists every command; each has its own --help', async function () {
    const overview = await runCli(['--help']);
    assert.equal(overview.code, 0);
    for (const name of COMMANDS) assert.match(overview.stdout, new RegExp(`^  ${name} `, 'm'));
    for (const name of COMMANDS) {
      const help = await runCli([name, '--help']);
      assert.equal(help.code, 0, name);
      assert.match(help.stdout, new RegExp(`^usage: daxd ${name}`), name);
    }
  });

  it('usage errors exit 2: unknown command, unknown option, missing argument', async function () {
    assert.equal((await runCli(['frobnicate'])).code, 2);
    const badOption = await runCli(['ls', '--bogus']);
    assert.equal(badOption.code, 2);
    assert.match(badOption.stderr, /bogus/);
    assert.equal((await runCli(['put', 'only-one'])).code, 2);
    assert.equal((await runCli(['mkfs', path.join(tmp.dir, 'x.vol'), '--size', 'lots'])).code, 2);
  });

  it('mkfs creates a sparse volume, refuses to overwrite without --force; fsck says clean (text and JSON)', async function () {
    const volume = path.join(tmp.dir, 'made.vol');
    const made = await runCli(['mkfs', volume, '--size', '32M']);
    assert.equal(made.code, 0, made.stderr);
    assert.equal(fs.statSync(volume).size, 32 * 1024 * 1024);
    assert.ok(fs.statSync(volume).blocks * 512 < 32 * 1024 * 1024, 'sparse');
    assert.equal((await runCli(['mkfs', volume, '--size', '32M'])).code, 2);
    assert.equal((await runCli(['mkfs', volume, '--force'])).code, 0);
    const text = await runCli(['fsck', volume]);
    assert.equal(text.code, 0);
    assert.match(text.stdout, /fsck: clean/);
    const json = JSON.parse((await runCli(['fsck', volume, '--json'])).stdout) as { clean: boolean; findings: unknown[] };
    assert.deepEqual([json.clean, json.findings], [true, []]);
  });

  it('mkfs size errors name the one rule broken: a multiple of the block size, or the bounds', async function () {
    const volume = path.join(tmp.dir, 'bad-size.vol');
    const unaligned = await runCli(['mkfs', volume, '--size', '20000000']);
    assert.notEqual(unaligned.code, 0);
    assert.match(unaligned.stderr, /size 20000000 bytes is not a multiple of the 4096-byte block \(19996672 or 20000768 is\)/, unaligned.stderr);
    assert.doesNotMatch(unaligned.stderr, /between|VOLUME_BYTES_M/, 'no bound is mentioned when only the alignment is wrong');
    const small = await runCli(['mkfs', volume, '--size', '8M']);
    assert.notEqual(small.code, 0);
    assert.match(small.stderr, /size 8388608 bytes is below VOLUME_BYTES_MIN \(16777216 bytes\)/, small.stderr);
    assert.doesNotMatch(small.stderr, /multiple/, 'no alignment rule is mentioned when only the size is out of bounds');
    const big = await runCli(['mkfs', volume, '--size', '2T']);
    assert.notEqual(big.code, 0);
    assert.match(big.stderr, /size 2199023255552 bytes is above VOLUME_BYTES_MAX \(1099511627776 bytes\)/, big.stderr);
    assert.equal(fs.existsSync(volume), false, 'no file is left behind');
  });

  it('a client command with nothing listening: UNAVAILABLE with the socket error, and no empty "Resolution note:"', async function () {
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as net.AddressInfo;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const r = await runCli(['ls', '--server', `127.0.0.1:${port}`]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /UNAVAILABLE: .*ECONNREFUSED/, r.stderr);
    assert.doesNotMatch(r.stderr, /Resolution note:\s*$/m, 'no note without a text');
  });

  it('fsck of a missing file fails with exit 1 and one line', async function () {
    const result = await runCli(['fsck', path.join(tmp.dir, 'missing.vol')]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^daxd fsck: ENOENT/);
  });

  it('serve without --volume creates ./data/daxd.vol (1 GiB, sparse) under its working directory', async function () {
    const cwd = path.join(tmp.dir, 'default-cwd');
    fs.mkdirSync(cwd);
    const server = await startServer({ cwd });
    try {
      const volume = path.join(cwd, 'data', 'daxd.vol');
      assert.equal(server.volumePath, volume);
      assert.equal(fs.statSync(volume).size, 1024 ** 3);
      assert.ok(fs.statSync(volume).blocks * 512 < 64 * 1024 * 1024, 'sparse');
      assert.match(server.address, /^127\.0\.0\.1:\d+$/);
    } finally {
      assert.deepEqual(await server.stop(), { code: 0, signal: null });
    }
  });

  describe('client commands against a server', function () {
    let server: StartedServer;
    const cli = (...args: string[]) => runCli([...args, '--server', server.address]);

    before(async function () {
      server = await startServer({ volumePath: path.join(tmp.dir, 'cli.vol') });
    });

    after(async function () {
      if (server) assert.deepEqual(await server.stop(), { code: 0, signal: null });
    });

    it('put, ls, stat, get round-trip a 3 MiB file', async function () {
      const local = path.join(tmp.dir, 'in.bin');
      const data = randomBytes(3 * 1024 * 1024 + 17);
      fs.writeFileSync(local, data);
      const put = await cli('put', local, 'docs/in.bin');
      assert.equal(put.code, 0, put.stderr);
      assert.equal((await cli('ls')).stdout, 'docs/in.bin\n');
      assert.equal((await cli('ls', 'nothing-like-it')).stdout, '');
      assert.match((await cli('ls', '-l', 'docs/')).stdout, new RegExp(`\\s${data.length}\\s.*docs/in\\.bin`));
      const stat = JSON.parse((await cli('stat', 'docs/in.bin', '--json')).stdout) as { size: number };
      assert.equal(stat.size, data.length);
      const out = path.join(tmp.dir, 'out.bin');
      const get = await cli('get', 'docs/in.bin', out);
      assert.equal(get.code, 0, get.stderr);
      assert.ok(fs.readFileSync(out).equals(data));
    });

    it('put over an existing file replaces its content and size', async function () {
      const local = path.join(tmp.dir, 'small.txt');
      fs.writeFileSync(local, 'short now');
      assert.equal((await cli('put', local, 'docs/in.bin')).code, 0);
      const out = path.join(tmp.dir, 'small-back.txt');
      assert.equal((await cli('get', 'docs/in.bin', out)).code, 0);
      assert.equal(fs.readFileSync(out, 'utf8'), 'short now');
    });

    it('truncate sets the size; df reports the volume', async function () {
      assert.equal((await cli('truncate', 'docs/in.bin', '1M')).code, 0);
      const stat = JSON.parse((await cli('stat', 'docs/in.bin', '--json')).stdout) as { size: number };
      assert.equal(stat.size, 1024 * 1024);
      const df = JSON.parse((await cli('df', '--json')).stdout) as { files: number; size: number };
      assert.deepEqual([df.files, df.size], [1, 64 * 1024 * 1024]);
      // 64 MiB volume: 4096 inode slots, slot 0 reserved (inode numbers start at 1).
      assert.match((await cli('df')).stdout, / 1\/4095\n$/);
    });

    it('inspect shows each mapping entry with its size: a 2 MiB PMD zero entry as one row, a 4 KiB one; --json; bad pages are usage errors', async function () {
      const client = clientFor(server);
      try {
        const file = await client.create('mapped/sparse');
        await client.truncate(file.ino, 4 * 1024 * 1024);
        const session = await client.openSession({ clientName: 'cli-inspect' });
        const huge = session.mmap(file.ino, { shared: true, huge: true });
        const small = session.mmap(file.ino, { shared: true });
        await huge.read(0, 4096);
        await small.read(600 * 4096, 8);
        const text = await cli('inspect', 'mapped/sparse');
        assert.equal(text.code, 0, text.stderr);
        const rows = text.stdout.trim().split('\n').slice(1).map((line) => line.trim().split(/\s+/).slice(0, 5));
        assert.deepEqual(rows, [['0', '512', 'PMD', 'ZERO', '0'], ['600', '1', 'PTE', 'ZERO', '0']]);
        const json = (await cli('inspect', 'mapped/sparse', '512', '1023', '--json')).stdout.trim().split('\n').map((l) => JSON.parse(l) as { pgoff: number; order: number; state: string });
        assert.deepEqual(json.map((e) => [e.pgoff, e.order, e.state]), [[600, 0, 'ZERO']]);
        assert.equal((await cli('inspect', 'mapped/sparse', '10', '2')).code, 2);
        assert.equal((await cli('inspect', 'mapped/sparse', '-1')).code, 2);
        await session.close();
        await client.unlink('mapped/sparse');
      } finally {
        client.close();
      }
    });

    it('serve on an address in use fails with one line (exit 1) and leaves its volume unlocked', async function () {
      const volume = path.join(tmp.dir, 'second.vol');
      const busy = await runCli(['serve', '--volume', volume, '--size', '32M', '--grpc', server.address]);
      assert.equal(busy.code, 1);
      assert.match(busy.stderr, /^daxd serve: cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/m);
      assert.equal(busy.stderr.trim().split('\n').length, 1, `one line, no raw grpc-js line before it: ${busy.stderr}`);
      assert.equal((await runCli(['fsck', volume])).code, 0, 'fsck can take the lock: the failed serve released it');
    });

    it('serve --grpc with no port is a usage error (grpc-js would bind :443), exit 2', async function () {
      for (const value of ['localhost', '127.0.0.1', '[::1]', 'localhost:99999']) {
        const r = await runCli(['serve', '--volume', path.join(tmp.dir, 'noport.vol'), '--size', '32M', '--grpc', value, '--http', '127.0.0.1:0', '--nbd', 'off']);
        assert.equal(r.code, 2, `${value}: ${r.stderr}`);
        assert.match(r.stderr, /^daxd serve: --grpc "[^"]+": (not HOST:PORT|port \d+ is past 65535)/m, value);
      }
      assert.equal(fs.existsSync(path.join(tmp.dir, 'noport.vol')), false, 'nothing was created');
    });

    it('rm removes; errors are one line with status and reason, exit 1', async function () {
      assert.equal((await cli('rm', 'docs/in.bin')).code, 0);
      const missing = await cli('stat', 'docs/in.bin');
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /^daxd stat: NOT_FOUND: ENOENT: no file named "docs\/in\.bin"\n$/);
      const unreachable = await runCli(['ls', '--server', '127.0.0.1:1']);
      assert.equal(unreachable.code, 1);
      assert.match(unreachable.stderr, /UNAVAILABLE/);
    });
  });
});

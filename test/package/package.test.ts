/**
 * The SDK as a package, as a consumer gets it: `npm pack` of this repository (its
 * current build), the tarball installed into a scratch project (the addon built by the
 * package's install script), a TypeScript program type-checked against the package with
 * `tsc --strict` (this repository's TypeScript), then run against a daxd started from
 * the installed copy: create, write, read, close.
 *
 * Every child process is bounded in time and killed by its process group (run-bounded.ts);
 * the server by its PID (start-server.ts). The install prefers npm's cache (--prefer-offline:
 * `npm ci` has put every dependency there) and asks the registry only for what is missing.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT, startServer, tempDir, type StartedServer } from '../support/start-server';
import { describeRun, runBounded } from './run-bounded';

const PACK_MS_MAX = 60_000;
const INSTALL_MS_MAX = 180_000;
const TSC_MS_MAX = 60_000;
const RUN_MS_MAX = 30_000;

const TSC = path.join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const NPM = 'npm';

/**
 * The environment of the nested npm: ours minus what an outer `npm test` exported about
 * this project (npm_package_*, npm_lifecycle_*, its prefix), which would point the
 * nested npm back at the repository. The addon builds against the machine's own Node
 * headers when it has them (as .ci/run does), so node-gyp downloads nothing.
 */
function npmEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_/i.test(k) && !/^npm_config_(cache|registry|nodedir|userconfig)$/i.test(k)) continue;
    env[k] = v;
  }
  if (env.npm_config_nodedir === undefined && fs.existsSync('/usr/include/node')) env.npm_config_nodedir = '/usr';
  env.npm_config_audit = 'false';
  env.npm_config_fund = 'false';
  env.npm_config_update_notifier = 'false';
  return env;
}

/** The version of a package in this repository's node_modules (so the cache has it). */
function localVersion(name: string): string {
  return (JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
}

/** The consumer: only the package's public surface, with types the checker must know. */
const CONSUMER_TS = `
import { DaxClient, DaxClientError, type FileInfo, type VolumeInfo } from 'daxd';

async function main(address: string): Promise<void> {
  const client = DaxClient.connect(address, { deadlineMs: 10_000 });
  try {
    const file: FileInfo = await client.create('from-the-package.txt');
    const written = Buffer.from('hello from the package');
    await client.write(file.ino, 0, written, { sync: true });
    const read: Buffer = await client.read(file.ino, 0, 100);
    const session = await client.openSession();
    await session.close();
    const volume: VolumeInfo = await client.statVolume();
    let reason: string | null = null;
    try {
      await client.lookup('no-such-file');
    } catch (err) {
      if (!(err instanceof DaxClientError)) throw err;
      reason = err.reason;
    }
    console.log(JSON.stringify({ ino: file.ino, text: read.toString('utf8'), blockSize: volume.blockSize, missing: reason }));
  } finally {
    client.close();
  }
}

main(process.argv[2] ?? '').catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
`;

/** A misuse the checker must refuse: proves the types are real (not \`any\` from a missing declaration). */
const MISUSE_TS = `
import { DaxClient } from 'daxd';
const client = DaxClient.connect('127.0.0.1:1');
const n: number = client.address;
void n;
`;

describe('package: npm pack → install in a scratch project → tsc --strict → run against a live server', function () {
  this.timeout(PACK_MS_MAX + INSTALL_MS_MAX + 60_000);
  let tmp: ReturnType<typeof tempDir>;
  let consumer: string;
  let tarball: string;
  let packed: { size: number; unpackedSize: number; files: Array<{ path: string }> };

  before(async function () {
    tmp = tempDir('daxd-package-');
    consumer = path.join(tmp.dir, 'consumer');
    fs.mkdirSync(consumer);
    // --ignore-scripts: the package's prepare (a build) already ran: tests run from dist/.
    const pack = await runBounded(NPM, ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp.dir], { cwd: REPO_ROOT, timeoutMs: PACK_MS_MAX, env: npmEnv() });
    assert.equal(pack.code, 0, describeRun('npm pack', pack));
    const [report] = JSON.parse(pack.stdout) as Array<typeof packed & { filename: string }>;
    packed = report;
    tarball = path.join(tmp.dir, report.filename);
    assert.ok(fs.existsSync(tarball), `npm pack said ${tarball}`);

    fs.writeFileSync(path.join(consumer, 'package.json'), JSON.stringify({ name: 'daxd-consumer', version: '1.0.0', private: true }));
    const install = await runBounded(NPM, ['install', '--prefer-offline', '--no-save', tarball, `@types/node@${localVersion('@types/node')}`], { cwd: consumer, timeoutMs: INSTALL_MS_MAX, env: npmEnv() });
    assert.equal(install.code, 0, describeRun('npm install of the tarball', install));
    console.log(`      package: ${path.basename(tarball)} ${(packed.size / 1024).toFixed(0)} KiB packed, ${(packed.unpackedSize / 1024).toFixed(0)} KiB unpacked, ${packed.files.length} files; install ${(install.ms / 1000).toFixed(1)} s (addon built)`);
  });

  after(() => tmp?.remove());

  it('ships no tests and a declaration next to every module (the generated wire types included)', () => {
    const files = new Set(packed.files.map((f) => f.path));
    const tests = [...files].filter((f) => f.startsWith('dist/test/') || f.startsWith('test/'));
    assert.deepEqual(tests, [], 'tests are left out of the package');
    const js = [...files].filter((f) => f.startsWith('dist/') && f.endsWith('.js'));
    assert.ok(js.length > 50, `${js.length} modules packed`);
    const undeclared = js.filter((f) => !files.has(f.replace(/\.js$/, '.d.ts')));
    assert.deepEqual(undeclared, [], 'every packed module has its .d.ts');
    for (const f of ['dist/client/index.d.ts', 'dist/wire/generated/daxd.d.ts', 'dist/wire/generated/daxd/v1/VolumeInfo.d.ts', 'proto/daxd/v1/daxd.proto', 'binding.gyp', 'server/native/daxd_native.cc', 'bin/daxd.js']) {
      assert.ok(files.has(f), `${f} is packed`);
    }
    // The install built the addon (the package's install script) in the consumer's copy.
    assert.ok(fs.existsSync(path.join(consumer, 'node_modules', 'daxd', 'build', 'Release', 'daxd_native.node')), 'addon built by the install');
  });

  it("require('daxd') from the consumer resolves the SDK (was MODULE_NOT_FOUND)", async () => {
    const r = await runBounded(process.execPath, ['-e', "const d = require('daxd'); console.log(JSON.stringify({ connect: typeof d.DaxClient.connect, error: typeof d.DaxClientError, proto: require('node:fs').existsSync(d.PROTO_PATH), version: require('daxd/package.json').version }))"], { cwd: consumer, timeoutMs: RUN_MS_MAX });
    assert.equal(r.code, 0, describeRun("require('daxd')", r));
    assert.deepEqual(JSON.parse(r.stdout.trim()), { connect: 'function', error: 'function', proto: true, version: (JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version });
  });

  it('tsc --strict type-checks a consumer against the package by "exports" (node16) and "types" (node10) (was TS7016); a misuse fails with TS2322', async () => {
    fs.writeFileSync(path.join(consumer, 'consumer.ts'), CONSUMER_TS);
    fs.writeFileSync(path.join(consumer, 'misuse.ts'), MISUSE_TS);
    const common = ['--strict', '--target', 'ES2022', '--types', 'node'];
    // One full check (the package's .d.ts included: no skipLibCheck) of both programs: the
    // consumer must be clean and the misuse refused, so the types are real and not `any`.
    const node16 = await runBounded(process.execPath, [TSC, ...common, '--module', 'node16', '--moduleResolution', 'node16', '--outDir', 'out', 'consumer.ts', 'misuse.ts'], { cwd: consumer, timeoutMs: TSC_MS_MAX });
    const errors = node16.stdout.split('\n').filter((l) => /error TS\d+/.test(l));
    assert.deepEqual(errors, ["misuse.ts(4,7): error TS2322: Type 'string' is not assignable to type 'number'."], describeRun('tsc --strict (moduleResolution node16)', node16));
    assert.ok(fs.existsSync(path.join(consumer, 'out', 'consumer.js')));
    // A CommonJS consumer with the classic resolution finds the types by "types".
    const node10 = await runBounded(process.execPath, [TSC, ...common, '--module', 'commonjs', '--moduleResolution', 'node10', '--skipLibCheck', '--noEmit', 'consumer.ts'], { cwd: consumer, timeoutMs: TSC_MS_MAX });
    assert.equal(node10.code, 0, describeRun('tsc --strict (moduleResolution node10)', node10));
  });

  it('the compiled consumer runs against a daxd started from the installed package: create, write, read, close', async () => {
    const program = path.join(consumer, 'out', 'consumer.js');
    assert.ok(fs.existsSync(program), 'compiled by the tsc test above');
    let server: StartedServer | null = null;
    try {
      server = await startServer({ volumePath: path.join(tmp.dir, 'package.vol'), cwd: consumer, bin: path.join(consumer, 'node_modules', 'daxd', 'bin', 'daxd.js') });
      const r = await runBounded(process.execPath, [program, server.address], { cwd: consumer, timeoutMs: RUN_MS_MAX });
      assert.equal(r.code, 0, describeRun('consumer program', r));
      const out = JSON.parse(r.stdout.trim()) as Record<string, unknown>;
      assert.equal(out.text, 'hello from the package');
      assert.equal(out.blockSize, 4096);
      assert.equal(out.missing, 'ENOENT');
      assert.equal(typeof out.ino, 'number');
      // The server that answered is the installed copy, running the addon its install built.
      const maps = fs.readFileSync(`/proc/${server.pid}/maps`, 'utf8');
      assert.ok(maps.includes(path.join(fs.realpathSync(consumer), 'node_modules', 'daxd', 'build', 'Release', 'daxd_native.node')), 'the installed addon is loaded');
    } finally {
      if (server !== null) {
        const status = await server.stop();
        assert.equal(status.code, 0, `daxd exit ${JSON.stringify(status)}: ${server.stderr()}`);
      }
    }
  });
});

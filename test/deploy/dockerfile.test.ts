/**
 * deploy/Dockerfile, mirrored: no base image can be pulled here, so the test runs the
 * Dockerfile's own steps in a temp dir instead of building the image. It reads the
 * Dockerfile (so it follows every change to it), maps each stage's WORKDIR to a
 * directory, copies what COPY copies (the build context as .dockerignore leaves it),
 * runs each RUN command as written (npm gets --prefer-offline from its environment), then
 * starts the ENTRYPOINT from the runtime stage's tree with the image's ENV and checks
 * /healthz, the HEALTHCHECK command, a gRPC round trip through the tree's own SDK, and a
 * graceful stop.
 *
 * This is also the production-install test: the runtime tree has `npm ci --omit=dev`'s
 * node_modules, no devDependency, no compiled tests, and the server runs from it alone.
 *
 * A few commands only make sense inside an image; they are recognised by name, and
 * anything else is run: installing Debian packages (here the test checks the tools are
 * there instead), emptying npm's cache (here it is the machine's shared cache), making
 * the image's user and /data.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type * as Sdk from '../../client';
import { REPO_ROOT } from '../support/start-server';
import { envOfStage, readDockerfile, type Instruction } from './dockerfile';
import { cleanEnv, run, startServing } from './support';

/** One RUN of the build (npm ci of every dependency, node-gyp, tsc) may take this long. */
const RUN_MS_MAX = 6 * 60_000;

/** Commands that change the image itself, not the tree it ships: not run here. */
const IMAGE_ONLY: Array<{ pattern: RegExp; why: string }> = [
  { pattern: /^apt-get update$/, why: 'Debian package lists' },
  { pattern: /^apt-get install -y --no-install-recommends ([\w+.\- ]+)$/, why: 'Debian packages: checked present instead' },
  { pattern: /^rm -rf \/var\/lib\/apt\/lists\/\*$/, why: 'Debian package lists' },
  { pattern: /^npm cache clean --force$/, why: "the image layer's npm cache (here: the machine's shared one)" },
  { pattern: /^groupadd --system --gid \d+ daxd$/, why: "the image's group" },
  { pattern: /^useradd --system .* daxd$/, why: "the image's user" },
  { pattern: /^mkdir -p \/data$/, why: "the image's data directory" },
  { pattern: /^chown \d+:\d+ \/data$/, why: "the image's data directory" },
];

/** The build context: the repository's files (tracked and new, not git-ignored) less .dockerignore's patterns. */
function contextFiles(): string[] {
  const patterns = fs.readFileSync(path.join(REPO_ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  const ignored = (file: string) => patterns.some((p) => (p.includes('*')
    ? new RegExp(`^${p.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}(/|$)`).test(file)
    : file === p || file.startsWith(`${p}/`)));
  const listed = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: REPO_ROOT, encoding: 'utf8' }).split('\0');
  return listed.filter((f) => f !== '' && !ignored(f) && fs.existsSync(path.join(REPO_ROOT, f)));
}

/** COPY [--from=STAGE] SRC... DEST (JSON form not used by our Dockerfile). */
function copy(step: Instruction, context: string[], dirOf: (stage: string) => string, workdir: string, stageDirs: Map<string, string>): void {
  const words = step.args.split(/\s+/);
  const from = /^--from=(\S+)$/.exec(words[0])?.[1];
  const [dest, ...sourcesReversed] = (from === undefined ? words : words.slice(1)).reverse();
  const sources = sourcesReversed.reverse();
  const target = path.resolve(workdir, dest);
  assert.ok(target.startsWith(workdir), `line ${step.line}: COPY stays in its WORKDIR`);
  if (from === undefined) {
    for (const source of sources) {
      const files = source === '.' ? context : context.filter((f) => f === source);
      assert.ok(files.length > 0, `line ${step.line}: ${source} is in the build context`);
      for (const f of files) fs.cpSync(path.join(REPO_ROOT, f), source === '.' ? path.join(target, f) : dest.endsWith('/') ? path.join(target, path.basename(f)) : target, { recursive: true });
    }
    return;
  }
  const fromRoot = stageDirs.get(from);
  assert.ok(fromRoot, `line ${step.line}: stage ${from} comes first`);
  for (const source of sources) {
    const m = /^(\/[^/]+)\/(.+)$/.exec(source);
    assert.ok(m, `line ${step.line}: ${source} is an absolute path in stage ${from}`);
    const real = path.join(dirOf(from), m[2]);
    assert.ok(fs.existsSync(real), `line ${step.line}: stage ${from} made ${source}`);
    fs.cpSync(real, target, { recursive: true });
  }
}

describe('deploy: the Dockerfile\'s steps, run in a temp dir (production install)', function () {
  this.timeout(2 * RUN_MS_MAX);
  let root = '';
  const steps = readDockerfile();
  const stageDirs = new Map<string, string>(); // stage -> its WORKDIR inside the image
  const dirOf = (stage: string) => path.join(root, 'stage', stage);
  let runtime = '';

  before(async function () {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'daxd-dockerfile-'));
    const context = contextFiles();
    assert.ok(context.includes('package.json') && !context.some((f) => f.startsWith('node_modules/')));
    let workdir = '';
    for (const step of steps) {
      const env = cleanEnv({ ...envOfStage(steps.filter((s) => s.line < step.line), step.stage), npm_config_prefer_offline: 'true', npm_config_update_notifier: 'false' });
      if (step.op === 'FROM') workdir = '';
      if (step.op === 'WORKDIR') {
        assert.match(step.args, /^\/\w+$/, `line ${step.line}: WORKDIR is one absolute directory`);
        stageDirs.set(step.stage, step.args);
        workdir = dirOf(step.stage);
        fs.mkdirSync(workdir, { recursive: true });
      }
      if (step.op === 'COPY') copy(step, context, dirOf, workdir, stageDirs);
      if (step.op !== 'RUN') continue;
      const commands = step.args.split(' && ');
      const runHere: string[] = [];
      for (const command of commands) {
        const imageOnly = IMAGE_ONLY.find((i) => i.pattern.test(command));
        if (imageOnly === undefined) {
          assert.doesNotMatch(command, /(^|\s)\//, `line ${step.line}: "${command}" names an absolute path: add it to IMAGE_ONLY or make it relative`);
          runHere.push(command);
          continue;
        }
        const packages = imageOnly.pattern.exec(command)?.[1];
        for (const tool of packages?.split(' ') ?? []) {
          assert.equal((await run('sh', ['-c', `command -v ${tool}`])).code, 0, `line ${step.line}: ${tool} (the build stage's toolchain) is installed here`);
        }
      }
      if (runHere.length === 0) continue;
      assert.ok(workdir !== '', `line ${step.line}: RUN after WORKDIR`);
      const result = await run('bash', ['-c', runHere.join(' && ')], { cwd: workdir, env, timeoutMs: RUN_MS_MAX });
      assert.equal(result.code, 0, `line ${step.line}: RUN ${runHere.join(' && ')}\n${result.stderr.slice(-4000)}`);
    }
    const last = [...stageDirs.keys()].pop();
    assert.equal(last, 'runtime');
    runtime = dirOf('runtime');
  });

  after(function () {
    if (root !== '') fs.rmSync(root, { recursive: true, force: true });
  });

  it('the runtime tree has the runtime dependencies only, the addon and no tests', function () {
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
    const installed = (name: string) => fs.existsSync(path.join(runtime, 'node_modules', name, 'package.json'));
    assert.deepEqual(Object.keys(pkg.dependencies).filter((d) => !installed(d)), [], 'every dependency');
    // A devDependency may also be a runtime dependency's dependency (ajv, @types/node):
    // what must be absent is every package the lockfile marks dev-only.
    const lock = JSON.parse(fs.readFileSync(path.join(runtime, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
    const devOnly = Object.entries(lock.packages).filter(([where, p]) => p.dev === true && where.startsWith('node_modules/')).map(([where]) => where.slice('node_modules/'.length));
    assert.ok(devOnly.length > 50 && Object.keys(pkg.devDependencies).some((d) => devOnly.includes(d)), 'the lockfile marks dev-only packages');
    assert.deepEqual(devOnly.filter(installed), [], 'no dev-only package');
    for (const tool of ['typescript', 'mocha', 'protobufjs-cli']) assert.ok(!installed(tool), `${tool} is not there, even as a dependency's`);
    assert.ok(fs.existsSync(path.join(runtime, 'build', 'Release', 'daxd_native.node')));
    assert.ok(!fs.existsSync(path.join(runtime, 'dist', 'test')), 'no compiled tests');
    assert.ok(fs.existsSync(path.join(runtime, 'dist', 'wire', 'generated')), 'the generated wire enums (compiled; no generator at run time)');
    const sources = fs.readdirSync(runtime, { recursive: true, encoding: 'utf8' }).filter((f) => !f.startsWith('node_modules') && f.endsWith('.ts') && !f.endsWith('.d.ts'));
    assert.deepEqual(sources, [], 'no TypeScript sources');
  });

  it('the ENTRYPOINT serves from the runtime tree with the image\'s ENV: /healthz, the HEALTHCHECK, a gRPC round trip, a graceful stop', async function () {
    const image = stageDirs.get('runtime') ?? '';
    const inTree = (file: string) => (file.startsWith(`${image}/`) ? path.join(runtime, file.slice(image.length + 1)) : file);
    const json = (op: string) => JSON.parse(steps.find((s) => s.stage === 'runtime' && s.op === op)?.args ?? 'null') as string[];
    const [node, entry, ...entryArgs] = json('ENTRYPOINT');
    assert.equal(node, 'node');
    const volumeDir = json('VOLUME')[0];
    const env = envOfStage(steps, 'runtime');
    assert.ok(env.DAXD_VOLUME.startsWith(`${volumeDir}/`), 'the volume file is on the VOLUME');
    const data = path.join(root, 'data');
    fs.mkdirSync(data);
    // The image's ENV, with the volume in the temp dir and the listeners on loopback.
    const serveEnv = cleanEnv({
      ...env, DAXD_VOLUME: path.join(data, path.basename(env.DAXD_VOLUME)), DAXD_SIZE: '64M', DAXD_GRPC: '127.0.0.1:0', DAXD_HTTP: '127.0.0.1:0', DAXD_NBD: '127.0.0.1:0',
    });
    delete serveEnv.NODE_PATH;
    const server = await startServing(inTree(entry), [...entryArgs, ...json('CMD')], { cwd: runtime, env: serveEnv });
    try {
      const health = await fetch(`http://${server.http}/healthz`);
      assert.equal(health.status, 200);
      const healthcheck = /\bCMD (\[.*\])$/.exec(steps.find((s) => s.stage === 'runtime' && s.op === 'HEALTHCHECK')?.args ?? '')?.[1];
      assert.ok(healthcheck);
      const [hcNode, ...hcArgs] = JSON.parse(healthcheck) as string[];
      assert.equal(hcNode, 'node');
      const check = await run(process.execPath, hcArgs.map(inTree), { cwd: runtime, env: { ...serveEnv, DAXD_HTTP: server.http } });
      assert.equal(check.code, 0, check.stderr);
      // The runtime tree's own SDK, so the client side needs nothing more either.
      const sdk = (await import(path.join(runtime, 'dist', 'client'))) as typeof Sdk;
      const client = sdk.DaxClient.connect(server.grpc, { deadlineMs: 10_000 });
      try {
        const file = await client.create('hello.txt');
        await client.write(file.ino, 0, Buffer.from('from the runtime tree'));
        assert.equal((await client.read(file.ino, 0, 21)).toString(), 'from the runtime tree');
      } finally {
        client.close();
      }
    } finally {
      const status = await server.stop();
      assert.deepEqual(status, { code: 0, signal: null }, server.stderr());
    }
    assert.ok(fs.existsSync(path.join(data, path.basename(env.DAXD_VOLUME))), 'the volume was made on the data directory');
  });
});

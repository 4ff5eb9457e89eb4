/**
 * README "A minimal client": the two fenced `js` blocks, run as a new user would (the
 * first block, with the mapped-access block placed where its `client` and `file` are in
 * scope), against a live server on a fresh volume. Only the server address and the path of
 * `./dist/client` are rewritten; the code is the README's.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT, startServer, tempDir, type StartedServer } from '../support/start-server';

/** The README section's fenced `js` blocks, in order. */
export function readmeJsBlocks(section: string): string[] {
  const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf(`\n## ${section}\n`);
  assert.ok(start >= 0, `README has no "## ${section}" section`);
  const next = readme.indexOf('\n## ', start + 1);
  const body = readme.slice(start, next < 0 ? undefined : next);
  return [...body.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]);
}

describe('README: the minimal client and mapped-access examples', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  let server: StartedServer;

  before(async function () {
    tmp = tempDir('daxd-readme-');
    server = await startServer({ volumePath: path.join(tmp.dir, 'v.vol') });
  });

  after(async function () {
    await server?.stop();
    tmp?.remove();
  });

  /** Runs `script` with node in the temp dir: exit code, stdout, stderr. */
  async function runScript(name: string, script: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const file = path.join(tmp.dir, name);
    fs.writeFileSync(file, script);
    const child = spawn(process.execPath, [file], { cwd: tmp.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    return { code, stdout, stderr };
  }

  /** The first block, its require and address pointed at this checkout and server, with `inner` run before it closes. */
  function clientScript(inner?: (clientBlock: string) => string): string {
    const [client] = readmeJsBlocks('A minimal client');
    assert.ok(client?.includes('client.close();'), 'the first block closes its client');
    const pointed = client
      .replace("require('./dist/client')", `require(${JSON.stringify(path.join(REPO_ROOT, 'dist', 'client'))})`)
      .replace("'127.0.0.1:7070'", JSON.stringify(server.address));
    return inner ? inner(pointed) : pointed;
  }

  function mappedBlock(): string {
    const mapped = readmeJsBlocks('A minimal client')[1];
    assert.ok(mapped !== undefined, 'a second js block: mapped access');
    return mapped.replace(/^/gm, '  ');
  }

  it('runs both blocks to completion: the mapped read prints what the mapped write stored', async function () {
    const script = clientScript((c) => c.replace('  client.close();', `${mappedBlock()}\n  client.close();`));
    const { code, stdout, stderr } = await runScript('example.js', script);
    assert.equal(stderr, '', 'the example writes nothing to stderr (no unhandled rejection)');
    assert.equal(code, 0);
    const lines = stdout.split('\n');
    assert.equal(lines[0], 'hello, pmem');
    assert.ok(lines.includes('through the mapping'), `the mapped read prints what the mapped write stored: ${stdout}`);
  });

  it('the mapped block alone works on a new empty file (no SigbusError)', async function () {
    // The first block with its body replaced: connect, create a new (empty) file, then the
    // mapped block exactly as the README has it.
    const script = clientScript((c) => {
      const head = c.slice(0, c.indexOf('  const file = '));
      return `${head}  const file = await client.create('mapped-new.bin');\n${mappedBlock()}\n  client.close();\n})();\n`;
    });
    const { code, stdout, stderr } = await runScript('mapped-alone.js', script);
    assert.equal(stderr, '', 'the example writes nothing to stderr (no unhandled rejection)');
    assert.equal(code, 0);
    assert.ok(stdout.split('\n').includes('through the mapping'), stdout);
  });
});

describe('README: how it opens', function () {
  it('leads with the two commands, then points to every docs/ page and to deploy/README.md', function () {
    const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
    const firstSection = readme.indexOf('\n## ');
    const lead = readme.slice(0, firstSection);
    const commands = /^# daxd\n\n```sh\n(.*)\n(.*)\n```\n/.exec(lead);
    assert.ok(commands, 'the title, then the commands block');
    assert.match(commands[1], /^npm install && npm start\b/);
    assert.match(commands[2], /^npm install && npm test\b/);
    const links = [...lead.slice(commands[0].length).matchAll(/\]\(([^)#]+)\)/g)].map((m) => m[1]);
    const docs = fs.readdirSync(path.join(REPO_ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`);
    for (const doc of docs) assert.ok(links.includes(doc), `the lead links ${doc}: ${JSON.stringify(links)}`);
    assert.ok(links.includes('deploy/README.md'), 'the lead links deploy/README.md');
    for (const link of links.filter((l) => l.startsWith('docs/'))) assert.ok(fs.existsSync(path.join(REPO_ROOT, link)), `${link} exists`);
  });
});

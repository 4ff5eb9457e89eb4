/**
 * `promtool check metrics` (Debian `prometheus`, installed by .ci/run) on /metrics of a live
 * daxd that has served some traffic (files, a session, a mapping, a pin, an NBD-free
 * volume stat): exit 0 and no lint output. promtool's lint rules are what a Prometheus user
 * meets first: counters end in _total, gauges do not, units are base units.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { clientFor, startServer, tempDir, type StartedServer } from '../support/start-server';
import { PAGE } from '../support/units';

export const PROMTOOL = ['/usr/bin/promtool', '/usr/local/bin/promtool'].find((p) => fs.existsSync(p)) ?? 'promtool';

/** Runs `promtool check metrics` with `text` on stdin. */
export function promtoolCheck(text: string): Promise<{ code: number | null; output: string }> {
  const child = spawn(PROMTOOL, ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (output += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (output += s));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => resolve(code));
  });
  child.stdin.end(text);
  return exited.then((code) => ({ code, output }));
}

describe('promtool check metrics on a live server', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  let server: StartedServer;

  before(async function () {
    tmp = tempDir('daxd-promtool-');
    server = await startServer({ volumePath: path.join(tmp.dir, 'v.vol') });
  });

  after(async function () {
    await server?.stop();
    tmp?.remove();
  });

  it('is clean after traffic: exit 0, no lint output', async function () {
    const client = clientFor(server);
    try {
      const file = await client.create('promtool.bin');
      await client.write(file.ino, 0, Buffer.alloc(4 * PAGE, 7), { sync: true });
      await client.read(file.ino, 0, 4 * PAGE);
      await client.read(file.ino, 1 << 30, 1).catch(() => undefined); // a failed call: a code label
      const session = await client.openSession();
      const map = session.mmap(file.ino, { shared: true, writable: true });
      await map.write(0, Buffer.from('promtool'));
      await map.msync();
      await map.unmap();
      await session.close();
      await client.statVolume();
    } finally {
      client.close();
    }
    const response = await fetch(`http://${server.http}/metrics`);
    assert.equal(response.status, 200);
    const text = await response.text();
    assert.match(text, /^daxd_io_bytes_total\{/m, 'the traffic shows in the scrape');
    const { code, output } = await promtoolCheck(text);
    assert.equal(output, '', 'promtool prints no lint findings');
    assert.equal(code, 0);
  });
});

/**
 * S7 for pins: a client process killed (SIGKILL) while it holds pins never blocks a
 * truncate for longer than its lease. The holder is a child process using the SDK
 * (pin-holder-child.ts) against a real daxd on 127.0.0.1:0 in this process; the truncate
 * (WAIT) is already waiting on its pins when the child dies, and completes once the
 * child's session lease runs out (no Close was ever sent).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { PAGE } from '../support/units';
import { startDmaServer, type DmaServer } from './fixture';
import { track } from '../support/track';
import { until } from '../support/until';

const LEASE_MS = 1_000;
const CHILD = path.join(__dirname, 'pin-holder-child.js');

describe('dma: a pin holder killed with SIGKILL', function () {
  this.timeout(60_000);
  let server: DmaServer;

  before(async function () {
    server = await startDmaServer('killed-holder');
  });

  after(async function () {
    if (server) assert.deepEqual(await server.stopAndFsck(), []);
  });

  it(`truncate waiting on its pins completes once its ${LEASE_MS} ms lease expires`, async function () {
    const client = server.client();
    const f = await client.create('held-by-doomed', { exclusive: true });
    await client.write(f.ino, 0, Buffer.alloc(4 * PAGE, 0x3c));
    const child = spawn(process.execPath, [CHILD, JSON.stringify({ address: server.address, ino: f.ino, npages: 4, leaseMs: LEASE_MS })], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    try {
      const lines = createInterface({ input: child.stdout! });
      const first = await new Promise<string>((resolve, reject) => {
        lines.once('line', resolve);
        child.once('exit', (code) => reject(new Error(`child exited (${code}) before pinning`)));
      });
      const said = JSON.parse(first) as { pinned?: string; fatal?: string };
      assert.ok(said.pinned, `child: ${first}`);
      assert.ok(server.dax.hasPin(said.pinned), 'the server has the child\'s pin');
      assert.deepEqual(await client.read(f.ino, 0, 16), Buffer.from('child pin page 0'));

      const waitsBefore = server.dax.counters().layoutBreakWaits.done;
      const truncating = track(client.truncate(f.ino, 0));
      await until(() => (server.dax.spaceStats(f.ino)?.layoutBreaksWaiting ?? 0) > 0, 'truncate waiting on the child\'s pins');
      assert.equal(truncating.done, false);

      const killedAt = Date.now();
      process.kill(child.pid!, 'SIGKILL');
      assert.equal(await exited, 'SIGKILL');
      await truncating.promise;
      const tookMs = Date.now() - killedAt;
      // Released by the lease (the child's last keep-alive was at most lease/3 before the
      // kill), not by anything sooner, and not much later.
      assert.ok(tookMs >= LEASE_MS / 2, `released ${tookMs} ms after the kill: before the lease could expire`);
      assert.ok(tookMs <= LEASE_MS + 2_000, `released ${tookMs} ms after the kill (lease ${LEASE_MS} ms)`);
      assert.equal(server.dax.counters().layoutBreakWaits.done, waitsBefore + 1);
      assert.equal(server.dax.hasPin(said.pinned), false);
      assert.equal(server.dax.pinStats().pinnedBlocks, 0);
      assert.equal((await client.stat(f.ino)).size, 0);
    } finally {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL');
      await exited;
    }
  });
});

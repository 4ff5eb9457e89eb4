/**
 * Regression test for issue 10, defect 4 (shutdown part): SIGTERM ends daxd within
 * --shutdown-grace-ms + SHUTDOWN_FORCE_MS (plus the unmount) even when a peer never reads
 * again. The peer here is a client process SIGSTOPped in the middle of a large ReadStream
 * (stalled-reader-child.ts): its socket is never drained, so the server's writes and its
 * HTTP/2 session close can never complete on their own. After the grace period the server
 * cancels the calls and, SHUTDOWN_FORCE_MS later, destroys the sockets still open.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { SHUTDOWN_FORCE_MS } from '../../server/rpc/limits';
import { call, rawClients } from '../support/raw-rpc';
import { startServer, tempDir } from '../support/start-server';

const CHILD = path.join(__dirname, 'stalled-reader-child.js');
const GRACE_MS = 1_000;
/** Unmounting an idle 64 MiB volume and process teardown. */
const EXIT_SLACK_MS = 3_000;
const FILE_BYTES = 4 * 1024 * 1024;

describe('shutdown is bounded even when a peer stops reading (issue 10, defect 4)', function () {
  it(`a SIGSTOPped client mid-ReadStream: SIGTERM ends the server within --shutdown-grace-ms + SHUTDOWN_FORCE_MS (+ ${EXIT_SLACK_MS} ms)`, async function () {
    this.timeout(60_000);
    const tmp = tempDir();
    const server = await startServer({ volumePath: path.join(tmp.dir, 'stalled.vol'), extraArgs: ['--shutdown-grace-ms', String(GRACE_MS)] });
    const raw = rawClients(server.address);
    const ino = (await call<{ ino: string }>((cb) => raw.files.Create({ name: 'big' }, cb))).ino;
    await call((cb) => raw.files.Write({ ino, offset: 0, data: Buffer.alloc(FILE_BYTES, 0x42) }, cb));
    raw.close();
    const child = spawn(process.execPath, [CHILD, JSON.stringify({ address: server.address, ino: Number(ino), bytes: FILE_BYTES })], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const line = await new Promise<string>((resolve) => child.stdout.setEncoding('utf8').once('data', (s: string) => resolve(s)));
      assert.deepEqual(JSON.parse(line), { reading: true });
      process.kill(child.pid!, 'SIGSTOP');
      const startMs = Date.now();
      process.kill(server.pid, 'SIGTERM');
      const bound = GRACE_MS + SHUTDOWN_FORCE_MS + EXIT_SLACK_MS;
      const exit = await Promise.race([server.exited, new Promise<null>((resolve) => setTimeout(() => resolve(null), bound + 10_000).unref())]);
      const tookMs = Date.now() - startMs;
      if (exit === null) await server.kill('SIGKILL');
      assert.ok(exit !== null, `the server did not exit within ${tookMs} ms of SIGTERM`);
      assert.ok(tookMs <= bound, `exit took ${tookMs} ms (bound ${bound} ms)`);
      assert.deepEqual(exit, { code: 0, signal: null });
    } finally {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        process.kill(child.pid!, 'SIGKILL');
        await exited;
      }
      tmp.remove();
    }
  });
});

/**
 * The load tools' private daxd (client/loadtest/private-server.ts), as a new user hit it:
 * - it bound HTTP on 127.0.0.1:7071, so daxd-load failed while `npm start` ran and two
 *   private runs collided: every listener is on port 0 now;
 * - SIGINT or SIGTERM to daxd-load left the private daxd running and its temporary volume
 *   on disk: both go now, and the tool exits 128 + the signal's number.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { REPO_ROOT, tempDir } from '../support/start-server';
import { until } from '../support/until';
import { runBin } from './run-bin';

const RUN_MS_MAX = 60_000;
const SHORT_RUN = ['--workload', 'randread', '--clients', '1', '--qd', '2', '--size', '4M', '--files', '1', '--duration', '1s', '--no-progress'];

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('loadtest: the private daxd', function () {
  this.timeout(120_000);

  it('binds every listener on port 0: two private runs at once, while 127.0.0.1:7071 is taken, both pass', async function () {
    const holder = net.createServer();
    // Taken by us, or already by someone else: either way the private servers must not need it.
    await new Promise<void>((resolve) => {
      holder.once('error', () => resolve());
      holder.listen(7071, '127.0.0.1', () => resolve());
    });
    try {
      const [a, b] = await Promise.all([runBin('daxd-load.js', SHORT_RUN, RUN_MS_MAX), runBin('daxd-load.js', SHORT_RUN, RUN_MS_MAX)]);
      for (const r of [a, b]) {
        assert.equal(r.timedOut, false);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stderr, /started a private daxd \(pid \d+\)/);
      }
    } finally {
      await new Promise<void>((resolve) => holder.close(() => resolve()));
    }
  });

  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    it(`${signal} to daxd-load stops its private daxd and removes the temporary volume (exit ${code})`, async function () {
      const tmp = tempDir('daxd-private-');
      try {
        const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin', 'daxd-load.js'), ...SHORT_RUN.slice(0, -3), '--duration', '60s', '--no-progress'], {
          stdio: ['ignore', 'ignore', 'pipe'], cwd: REPO_ROOT, env: { ...process.env, TMPDIR: tmp.dir },
        });
        const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
        let stderr = '';
        child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
        try {
          await until(() => /started a private daxd \(pid (\d+)\)/.test(stderr), 'the private daxd started', RUN_MS_MAX);
          const serverPid = Number(/started a private daxd \(pid (\d+)\)/.exec(stderr)![1]);
          assert.ok(alive(serverPid));
          assert.equal(fs.readdirSync(tmp.dir).filter((n) => n.startsWith('daxd-load-')).length, 1, 'its volume directory');
          process.kill(child.pid!, signal);
          assert.equal(await exited, code, stderr);
          assert.equal(alive(serverPid), false, `the private daxd (pid ${serverPid}) was stopped`);
          assert.deepEqual(fs.readdirSync(tmp.dir).filter((n) => n.startsWith('daxd-load-')), [], 'its volume directory was removed');
        } finally {
          if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
        }
      } finally {
        tmp.remove();
      }
    });
  }
});

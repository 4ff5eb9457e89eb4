/**
 * Restarts on the same volume file: a crash (SIGKILL) after write + fsync loses nothing;
 * a graceful stop (SIGTERM) with writes in flight loses no acknowledged write; a second
 * signal exits at once and the journal still brings the volume back clean; a second
 * server on a served volume refuses to start. fsck checks the volume after each.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http2 from 'node:http2';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { DaxClientError, type DaxClient } from '../../client';
import { clientFor, fsckFindings, runCli, startServer, tempDir, type StartedServer } from '../support/start-server';
import { PAGE } from '../support/units';

function pattern(seed: number, length: number): Buffer {
  const data = Buffer.alloc(length);
  for (let i = 0; i < length; i++) data[i] = (seed * 31 + i * 7) & 0xff;
  return data;
}

describe('restarts on the same volume', function () {
  let tmp: ReturnType<typeof tempDir>;
  const running = new Set<StartedServer>();

  async function start(volume: string, extraArgs: string[] = []): Promise<StartedServer> {
    const server = await startServer({ volumePath: path.join(tmp.dir, volume), extraArgs });
    running.add(server);
    void server.exited.then(() => running.delete(server));
    return server;
  }

  beforeEach(function () {
    tmp = tempDir();
  });

  afterEach(async function () {
    for (const server of running) await server.kill('SIGKILL');
    tmp.remove();
  });

  it('write + fsync, SIGKILL, restart: the data is intact and fsck is clean', async function () {
    const first = await start('crash.vol');
    let client = clientFor(first);
    const files = [] as Array<{ ino: number; data: Buffer }>;
    for (let i = 0; i < 5; i++) {
      const file = await client.create(`crash-${i}`);
      const data = pattern(i, 1000 + i * 700_000); // up to ~2.8 MiB: several pipelined chunks
      await client.write(file.ino, i * 100, data);
      await client.fsync(file.ino);
      files.push({ ino: file.ino, data });
    }
    client.close();
    assert.deepEqual(await first.kill('SIGKILL'), { code: null, signal: 'SIGKILL' });

    const second = await start('crash.vol');
    assert.equal(second.logs.find((l) => l.msg === 'daxd serving')?.wasClean, false, 'the crash left the volume unclean');
    client = clientFor(second);
    for (const [i, { ino, data }] of files.entries()) {
      const file = await client.lookup(`crash-${i}`);
      assert.equal(file.ino, ino);
      assert.equal(file.size, i * 100 + data.length);
      assert.ok((await client.read(ino, i * 100, data.length)).equals(data), `file ${i} intact`);
    }
    client.close();
    assert.deepEqual(await second.stop(), { code: 0, signal: null });
    assert.deepEqual(await fsckFindings(second.volumePath), []);
  });

  it('a clean stop, restart: the serving line says the journal was clean; after SIGKILL it says replayed', async function () {
    const first = await start('clean.vol');
    const client = clientFor(first);
    const file = await client.create('journalled');
    await client.write(file.ino, 0, Buffer.from('committed'), { sync: true });
    client.close();
    assert.deepEqual(await first.stop(), { code: 0, signal: null });
    const second = await start('clean.vol');
    const clean = second.logs.find((l) => l.msg === 'daxd serving');
    assert.equal(clean?.wasClean, true);
    assert.equal(clean?.replayed, undefined, 'no "replayed" key: nothing was recovered');
    assert.deepEqual((clean?.journal as { state?: string } | undefined)?.state, 'clean', JSON.stringify(clean));
    assert.deepEqual(await second.kill('SIGKILL'), { code: null, signal: 'SIGKILL' });
    const third = await start('clean.vol');
    const crashed = third.logs.find((l) => l.msg === 'daxd serving');
    assert.equal(crashed?.wasClean, false);
    assert.equal((crashed?.journal as { state?: string } | undefined)?.state, 'replayed', JSON.stringify(crashed));
    await third.stop();
  });

  it('SIGTERM with writes in flight: every acknowledged write survives, in-flight calls end cleanly', async function () {
    const server = await start('term.vol');
    const client = clientFor(server, { retries: 0 });
    const session = await client.openSession({ clientName: 'watcher' });
    await session.attached;
    const sessionEnded = once(session, 'ended');
    const file = await client.create('inflight');
    const acked = new Map<number, Buffer>();
    const failures: DaxClientError[] = [];
    let page = 0;
    let signalled = false;
    let markSignalled: () => void = () => undefined;
    const enoughAcked = new Promise<void>((resolve) => (markSignalled = resolve));
    // 32 writers, each writing distinct pages until the server refuses.
    const writer = async () => {
      for (;;) {
        const at = page++;
        const data = pattern(at, PAGE);
        try {
          await client.write(file.ino, at * PAGE, data);
          acked.set(at, data);
          if (acked.size >= 300 && !signalled) markSignalled();
        } catch (err) {
          assert.ok(err instanceof DaxClientError, String(err));
          failures.push(err);
          return;
        }
      }
    };
    const writers = Array.from({ length: 32 }, () => writer());
    await enoughAcked;
    signalled = true;
    process.kill(server.pid, 'SIGTERM');
    await Promise.all(writers);
    assert.deepEqual(await server.exited, { code: 0, signal: null });
    for (const err of failures) {
      assert.ok([grpc.status.UNAVAILABLE, grpc.status.CANCELLED].includes(err.code), `refused with ${err.message}`);
    }
    const [endErr] = (await sessionEnded) as [DaxClientError];
    assert.equal(endErr.code, grpc.status.UNAVAILABLE);
    assert.equal(endErr.reason, 'ESHUTDOWN');
    assert.ok(server.logs.some((l) => l.msg === 'daxd stopped: volume clean and unlocked'));
    client.close();

    const again = await start('term.vol');
    assert.equal(again.logs.find((l) => l.msg === 'daxd serving')?.wasClean, true, 'the graceful stop left the volume clean');
    const reader: DaxClient = clientFor(again);
    for (const [at, data] of acked) assert.ok((await reader.read(file.ino, at * PAGE, PAGE)).equals(data), `acknowledged page ${at}`);
    reader.close();
    assert.deepEqual(await again.stop(), { code: 0, signal: null });
    assert.deepEqual(await fsckFindings(again.volumePath), []);
  });

  it('a second signal exits at once (130); the next mount replays and fsck is clean', async function () {
    const server = await start('twice.vol');
    const client = clientFor(server);
    const file = await client.create('kept');
    await client.write(file.ino, 0, Buffer.from('kept across a forced exit'));
    await client.fsync(file.ino);
    client.close();
    // A call whose request never finishes arriving keeps the graceful stop waiting.
    const stuck = await halfSentCall(server.address);
    process.kill(server.pid, 'SIGTERM');
    await server.logged('daxd stopping: draining calls');
    process.kill(server.pid, 'SIGINT');
    assert.deepEqual(await server.exited, { code: 130, signal: null });
    stuck.close();
    const again = await start('twice.vol');
    assert.equal(again.logs.find((l) => l.msg === 'daxd serving')?.wasClean, false, 'the forced exit left the volume unclean');
    const reader = clientFor(again);
    assert.equal((await reader.read(file.ino, 0, 100)).toString(), 'kept across a forced exit');
    reader.close();
    await again.stop();
    assert.deepEqual(await fsckFindings(again.volumePath), []);
  });

  it('a call that never completes delays a graceful stop only up to the grace period', async function () {
    const server = await start('grace.vol', ['--shutdown-grace-ms', '300']);
    const stuck = await halfSentCall(server.address);
    process.kill(server.pid, 'SIGTERM');
    assert.deepEqual(await server.exited, { code: 0, signal: null });
    assert.ok(server.logs.some((l) => l.msg === 'calls still open after the shutdown grace period: cancelling them'));
    assert.ok(server.logs.some((l) => l.msg === 'daxd stopped: volume clean and unlocked'));
    stuck.close();
    assert.deepEqual(await fsckFindings(server.volumePath), []);
  });

  it('regression: SIGTERM right after the serving line is a graceful stop (handlers are set before it)', async function () {
    for (let i = 0; i < 3; i++) {
      const server = await start('prompt.vol');
      assert.deepEqual(await server.stop(), { code: 0, signal: null }, `attempt ${i}`);
    }
  });

  it('two servers on one volume: the second refuses with EBUSY and the first keeps serving', async function () {
    const first = await start('shared.vol');
    const second = await runCli(['serve', '--volume', first.volumePath, '--grpc', '127.0.0.1:0']);
    assert.equal(second.code, 1);
    assert.match(second.stderr, /EBUSY: volume .*shared\.vol is in use by another daxd process/);
    const client = clientFor(first);
    assert.equal((await client.statVolume()).files, 0);
    client.close();
    assert.deepEqual(await first.stop(), { code: 0, signal: null });
  });
});

/**
 * An HTTP/2 gRPC request that sends 5 of the 15 bytes its frame header announces and
 * waits: the server holds the call open until the rest arrives or the session closes.
 * A complete StatVolume call behind it on the same connection proves the server has
 * read the stuck one (frames of one connection are processed in order).
 */
async function halfSentCall(address: string): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(`http://${address}`);
  session.on('error', () => undefined);
  const headers = (method: string) => ({ ':method': 'POST', ':path': method, 'content-type': 'application/grpc', te: 'trailers' });
  const stuck = session.request(headers('/daxd.v1.Files/Stat'));
  stuck.on('error', () => undefined);
  stuck.write(Buffer.from([0, 0, 0, 0, 15, 0x08, 0x01, 0x08, 0x01, 0x08]));
  const probe = session.request(headers('/daxd.v1.Files/StatVolume'));
  probe.end(Buffer.from([0, 0, 0, 0, 0]));
  probe.resume();
  await once(probe, 'end');
  return session;
}

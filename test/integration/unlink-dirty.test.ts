/**
 * Unlinked dirty files are freed when their last mapper or pin goes away (issue 10,
 * defect 2). A file written through a mapping (WRITE fault + Store) or a writable DMA pin
 * is DIRTY until writeback; unlinking it with no Msync/Fsync and then closing the session
 * left its blocks, its inode and its address space behind until a restart (StatVolume
 * said 0 files while the blocks stayed used). A dead file needs no writeback: its dirty
 * entries are dropped and the file is freed through the journal.
 *
 * Over gRPC against a real daxd in this process: StatVolume's free blocks and file count
 * return to their values before the test, Stat of every unlinked inode answers NOT_FOUND
 * (the inode is free), and the dax layer keeps no address space (Dax.stats()). Then a
 * crash check against a daxd child: SIGKILL after such frees (and with one unlinked file
 * still mapped), restart: the volume is back to its free blocks and fsck-clean.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { DaxClient, DaxSession } from '../../client';
import { openRawSession, pattern, startInProcess, type InProcessServer } from './mapping-fixture';
import { PAGE } from '../support/units';
import { until } from '../support/until';
import { call, failure, rawClients } from '../support/raw-rpc';
import { clientFor, fsckFindings, startServer, tempDir, type StartedServer } from '../support/start-server';
import type { RawClients } from '../../client/raw-clients';

const FILES = 10;
const PAGES = 4;

describe('unlinked dirty files are freed when the last mapper or pin goes away', function () {
  this.timeout(60_000);
  let server: InProcessServer;
  let client: DaxClient;
  let raw: RawClients;
  let anchor: number;
  let fileNo = 0;

  // A server per test: a leak in one must not fail the next one's baseline.
  beforeEach(async function () {
    server = await startInProcess('unlink-dirty');
    client = clientFor(server);
    raw = rawClients(server.address);
    // Fsync of this file commits the journal: frees pending in it become free blocks.
    anchor = (await client.create('anchor', { exclusive: true })).ino;
  });

  afterEach(async function () {
    client?.close();
    raw?.close();
    if (server) assert.deepEqual(await server.stopAndFsck(), []);
  });

  async function baseline(): Promise<{ blocksFree: number; files: number }> {
    await client.fsync(anchor);
    const v = await client.statVolume();
    assert.equal(server.daxd.dax.stats().addressSpaces, 0, 'address spaces before the test');
    return { blocksFree: v.blocksFree, files: v.files };
  }

  /** A file of PAGES pages: the first two written with write(2), the rest holes. */
  async function newFile(): Promise<{ ino: number; name: string }> {
    const name = `dirty-${fileNo++}`;
    const { ino } = await client.create(name, { exclusive: true });
    await client.write(ino, 0, pattern(ino, 2 * PAGE));
    await client.truncate(ino, PAGES * PAGE);
    return { ino, name };
  }

  /** Everything the files held came back: inodes, blocks, address spaces. */
  async function assertFreed(inos: number[], before: { blocksFree: number; files: number }): Promise<void> {
    for (const ino of inos) {
      await until(async () => {
        try {
          await client.stat(ino);
          return false;
        } catch (err) {
          return (err as { code?: number }).code === grpc.status.NOT_FOUND;
        }
      }, `inode ${ino} freed`);
    }
    await client.fsync(anchor);
    const v = await client.statVolume();
    assert.equal(v.files, before.files, 'files');
    assert.equal(v.blocksFree, before.blocksFree, `free blocks (${v.blocksPendingFree} pending free)`);
    assert.equal(server.daxd.dax.stats().addressSpaces, 0, 'address spaces left behind');
  }

  it('store path: WRITE fault + store, unlink, close the session (no msync): blocks, inodes and address spaces are freed', async function () {
    const before = await baseline();
    const inos: number[] = [];
    const session: DaxSession = await client.openSession({ clientName: 'store-unlink' });
    await session.attached;
    for (let i = 0; i < FILES; i++) {
      const { ino, name } = await newFile();
      inos.push(ino);
      const map = session.mmap(ino, { shared: true, writable: true });
      await map.write(100, pattern(ino + 1, PAGES * PAGE - 200));
      await client.unlink(name);
      assert.equal((await client.stat(ino)).blocks, PAGES, 'the mapped file lives on while mapped');
    }
    await session.close();
    await assertFreed(inos, before);
  });

  it('writable-pin path: pin + DMA write, unlink, close the session (no fsync): blocks, inodes and address spaces are freed', async function () {
    const before = await baseline();
    const inos: number[] = [];
    const session: DaxSession = await client.openSession({ clientName: 'pin-unlink' });
    await session.attached;
    for (let i = 0; i < FILES; i++) {
      const { ino, name } = await newFile();
      inos.push(ino);
      const pin = await client.pin(ino, 0, PAGES, { writable: true, session });
      await pin.dmaWrite(3, 0, pattern(ino + 2, PAGE));
      await client.unlink(name);
    }
    await session.close();
    await assertFreed(inos, before);
  });

  it('a pin and a mapping in two sessions: freed only after both go, whichever goes last', async function () {
    const before = await baseline();
    const a = await openRawSession(raw, 0, 'mapper');
    const b = await client.openSession({ clientName: 'pinner' });
    await b.attached;
    const { ino, name } = await newFile();
    const token = await a.token(ino, 2, 'WRITE');
    await a.store(token, 0, pattern(7));
    const pin = await client.pin(ino, 0, PAGES, { writable: true, session: b });
    await pin.dmaWrite(1, 0, pattern(8));
    await client.unlink(name);
    await b.close();
    assert.equal((await client.stat(ino)).blocks, PAGES, 'freed while still mapped');
    assert.deepEqual(await a.load(token, 0, 8), pattern(7).subarray(0, 8));
    await call((cb) => raw.session.Close({ session_id: a.sessionId }, cb));
    await assertFreed([ino], before);
  });

  it('the last mapper or pin went before the unlink (dirty entries, no user left): the unlink frees the file', async function () {
    const before = await baseline();
    const mapped = await newFile();
    const session = await openRawSession(raw, 0, 'gone-first');
    const token = await session.token(mapped.ino, 3, 'WRITE');
    await session.store(token, 0, pattern(9));
    await call((cb) => raw.session.Close({ session_id: session.sessionId }, cb));
    const pinned = await newFile();
    const pin = await client.pin(pinned.ino, 1, 3, { writable: true });
    await pin.dmaWrite(2, 0, pattern(10));
    await pin.unpin();
    for (const { ino } of [mapped, pinned]) assert.ok((await client.stat(ino)).blocks >= 3, 'a linked file keeps its blocks');
    await client.unlink(mapped.name);
    await client.unlink(pinned.name);
    await assertFreed([mapped.ino, pinned.ino], before);
  });
});

describe('unlinked dirty files: SIGKILL after the frees, restart', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  const running = new Set<StartedServer>();

  beforeEach(function () {
    tmp = tempDir('daxd-unlink-dirty-');
  });

  afterEach(async function () {
    for (const s of running) await s.kill('SIGKILL');
    tmp.remove();
  });

  async function start(): Promise<StartedServer> {
    const s = await startServer({ volumePath: path.join(tmp.dir, 'v.vol') });
    running.add(s);
    void s.exited.then(() => running.delete(s));
    return s;
  }

  it('freed files stay freed, a still-mapped orphan is freed at mount, fsck is clean', async function () {
    const first = await start();
    let client = clientFor(first);
    const anchor = (await client.create('anchor', { exclusive: true })).ino;
    await client.fsync(anchor);
    const before = await client.statVolume();
    const session = await client.openSession({ clientName: 'crash' });
    await session.attached;
    const freed: number[] = [];
    for (let i = 0; i < 6; i++) {
      const { ino } = await client.create(`c-${i}`, { exclusive: true });
      await client.truncate(ino, PAGES * PAGE);
      if (i % 2 === 0) await session.mmap(ino, { shared: true, writable: true }).write(0, pattern(i, PAGES * PAGE));
      else await (await client.pin(ino, 0, PAGES, { writable: true, session })).dmaWrite(0, 0, pattern(i));
      await client.unlink(`c-${i}`);
      freed.push(ino);
    }
    await session.close();
    for (const ino of freed) {
      await until(() => client.stat(ino).then(() => false, (err: { code?: number }) => err.code === grpc.status.NOT_FOUND), `inode ${ino} freed`);
    }
    // One more, unlinked while mapped and never unmapped: an orphan at the crash.
    const keeper = await client.openSession({ clientName: 'keeper' });
    await keeper.attached;
    const orphan = (await client.create('orphan', { exclusive: true })).ino;
    await client.truncate(orphan, PAGES * PAGE);
    await keeper.mmap(orphan, { shared: true, writable: true }).write(0, pattern(99, 2 * PAGE));
    await client.unlink('orphan');
    await client.fsync(anchor); // commits the frees and the unlink
    const live = await client.statVolume();
    assert.equal(live.files, before.files);
    // Only the mapped orphan holds blocks: its 2 data blocks and its block-map block(s).
    assert.ok(live.blocksFree < before.blocksFree && live.blocksFree >= before.blocksFree - 4, `free blocks ${live.blocksFree} vs. ${before.blocksFree}`);
    client.close();
    assert.deepEqual(await first.kill('SIGKILL'), { code: null, signal: 'SIGKILL' });

    const second = await start();
    client = clientFor(second);
    const after = await client.statVolume();
    assert.equal(after.files, before.files);
    assert.equal(after.blocksFree, before.blocksFree, `free blocks after restart (${after.blocksPendingFree} pending)`);
    for (const ino of [...freed, orphan]) assert.equal((await failure(client.stat(ino))).code, grpc.status.NOT_FOUND);
    client.close();
    assert.deepEqual(await second.stop(), { code: 0, signal: null });
    assert.deepEqual(await fsckFindings(second.volumePath), []);
  });
});

/**
 * The DAX rules across protocols: an NBD request is the same engine call as its gRPC twin,
 * under the same locks, so what a gRPC client holds (a zero-page PTE, a DMA pin) constrains
 * what an NBD client can do, and NBD's durability points are Fsync's. The NBD side is
 * qemu-io (qemu-utils), a client nobody here wrote, run as a child process; the gRPC side
 * is the SDK and raw Mapping calls against the same in-process daxd.
 * - S3: an NBD WRITE into a hole a gRPC client read-faulted revokes the zero-page PTE
 *   (HOLE_FILLED); the old token is refused and a re-fault shows the data (raw Mapping),
 *   and a MappedFile drops the page on the Invalidate and reads the data.
 * - S4: TRIM (and WRITE_ZEROES that may punch) over a page pinned over gRPC, with
 *   --nbd-layout-break FAIL (error at once, file unchanged, pin intact), WAIT (the TRIM
 *   waits for the unpin, then runs) and RECALL (PinRecall sent; the SDK's handler unpins,
 *   or a holder that ignores it is revoked after the grace). No pinned block is ever
 *   freed (guardPinnedFrees).
 * - S6: `daxd serve` killed with SIGKILL right after an NBD FLUSH was acknowledged loses
 *   none of the acknowledged writes (they allocated blocks: metadata only a journal commit
 *   makes durable).
 * Waits are on server state (until) and process exits, never on timers.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import type { DaxClient, DaxSession } from '../../client';
import type { LayoutBreakPolicy } from '../../server/fs/types';
import { FileSystem } from '../../server/fs/filesystem';
import { fsck } from '../../server/fsck/fsck';
import { MmapStorage } from '../../server/media/mmap-storage';
import { Daxd } from '../../server/server';
import { guardPinnedFrees, type PinGuard } from '../dma/fixture';
import { fsckVolume, openRawSession } from '../integration/mapping-fixture';
import { failure, rawClients } from '../support/raw-rpc';
import { clientFor, fsckFindings, startServer, tempDir, type StartedServer } from '../support/start-server';
import { nextInvalidate } from '../support/session-events';
import { MiB, PAGE } from '../support/units';
import { until } from '../support/until';
import { nbdUri, startTool, type ToolResult } from './real-clients';

const RECALL_GRACE_MS = 300;

/** qemu-io commands (`-c`) against an NBD URI; raw format, so nothing is probed. */
function qemuIo(uri: string, commands: string[]) {
  return startTool('qemu-io', ['-f', 'raw', ...commands.flatMap((c) => ['-c', c]), uri]);
}

function assertOk(r: ToolResult): void {
  assert.equal(r.code, 0, `${r.command} exited ${r.code ?? r.signal}:\n${r.stdout}${r.stderr}`);
}

interface NbdDaxd {
  daxd: Daxd;
  nbd: string;
  client: DaxClient;
  stop(): Promise<void>;
}

async function startNbdDaxd(name: string, layoutBreak: LayoutBreakPolicy): Promise<NbdDaxd> {
  const tmp = tempDir(`daxd-${name}-`);
  const volumePath = path.join(tmp.dir, `${name}.vol`);
  const daxd = await Daxd.start({
    volumePath, sizeBytes: 64 * MiB, grpcAddress: '127.0.0.1:0', nbdAddress: '127.0.0.1:0', nbdLayoutBreak: layoutBreak,
    log: pino({ level: 'silent' }), failpoints: true, shutdownGraceMs: 2_000, recallGraceMs: RECALL_GRACE_MS,
  });
  const client = clientFor({ address: daxd.grpcAddress });
  return {
    daxd, nbd: daxd.nbdAddress!, client,
    async stop() {
      client.close();
      try {
        daxd.dax.failpoints.releaseAll();
        await daxd.stop();
        assert.deepEqual(await fsckVolume(volumePath), [], 'fsck after the test');
      } finally {
        tmp.remove();
      }
    },
  };
}

/**
 * What survives a power cut of the volume: a copy of the volume taken after a full sync,
 * updated with the bytes of every range the engine flushes (msync) from then on.
 * imageAtNextFsync() is that copy at the moment the next dax fsync (an NBD FLUSH) starts;
 * cut() writes an image to a file, fscks it, mounts it (journal replay) and reads a file.
 */
interface DurableImage {
  /** Arms the capture; the returned function gives the image (and fails if no fsync started since). */
  imageAtNextFsync(): () => Buffer;
  cut(file: string, name: string, lengthBytes: number, image?: Buffer): Promise<Buffer>;
  restore(): void;
}

async function durableImage(daxd: Daxd): Promise<DurableImage> {
  await daxd.dax.sync();
  const storage = daxd.fs.storage;
  assert.ok(storage.sizeBytes <= storage.chunkBytes, 'the model copies one chunk');
  const durable = Buffer.from(storage.view(0, storage.sizeBytes));
  const copyIn = (offsetBytes: number, lengthBytes: number) => durable.set(storage.view(offsetBytes, lengthBytes), offsetBytes);
  const { flush, flushSync } = storage;
  // The bytes of the range as they are when the flush starts: what msync writes out.
  storage.flush = (offsetBytes, lengthBytes) => {
    copyIn(offsetBytes, lengthBytes);
    return flush.call(storage, offsetBytes, lengthBytes);
  };
  storage.flushSync = (offsetBytes, lengthBytes) => {
    copyIn(offsetBytes, lengthBytes);
    flushSync.call(storage, offsetBytes, lengthBytes);
  };
  const dax = daxd.dax;
  const fsync = dax.fsync;
  return {
    imageAtNextFsync() {
      let image: Buffer | null = null;
      dax.fsync = (ino, datasync) => {
        dax.fsync = fsync;
        image = Buffer.from(durable);
        return fsync.call(dax, ino, datasync);
      };
      return () => {
        dax.fsync = fsync;
        assert.ok(image !== null, 'no fsync started: the NBD FLUSH never reached the engine');
        return image;
      };
    },
    async cut(file, name, lengthBytes, image = durable) {
      fs.writeFileSync(file, image);
      try {
        const crashed = MmapStorage.open(file);
        let mounted: FileSystem;
        try {
          assert.deepEqual((await fsck(crashed)).findings, [], 'fsck of the medium after the power cut');
          mounted = await FileSystem.mount(crashed);
        } catch (err) {
          crashed.close();
          throw err;
        }
        try {
          return await mounted.read(mounted.lookup(name).ino, 0, lengthBytes);
        } finally {
          await mounted.unmount(); // closes the storage
        }
      } finally {
        fs.rmSync(file, { force: true });
      }
    },
    restore() {
      storage.flush = flush;
      storage.flushSync = flushSync;
      dax.fsync = fsync;
    },
  };
}


describe('NBD and gRPC on one engine: S3, S4, S6 across protocols (qemu-io as the NBD client)', function () {
  this.timeout(60_000);

  describe('S3: an NBD WRITE into a hole a gRPC client has read-mapped', function () {
    let s: NbdDaxd;
    let session: DaxSession;
    before(async function () {
      s = await startNbdDaxd('nbd-s3', 'WAIT');
      session = await s.client.openSession({ clientName: 'nbd-s3' });
      await session.attached;
    });
    after(async function () {
      await session?.close();
      await s?.stop();
    });

    it('raw Mapping: the zero-page PTE is revoked (HOLE_FILLED), the old token refused, a re-fault reads the NBD data', async function () {
      const { ino } = await s.client.create('s3-raw.img', { exclusive: true });
      await s.client.truncate(ino, 4 * PAGE);
      const raw = rawClients(s.daxd.grpcAddress);
      try {
        const m = await openRawSession(raw, 0, 'nbd-s3-raw');
        const zero = await m.token(ino, 2, 'READ');
        assert.deepEqual(await m.load(zero, 0, PAGE), Buffer.alloc(PAGE), 'a hole reads zeroes');
        const filledBefore = s.daxd.dax.counters().invalidations.HOLE_FILLED ?? 0;
        assertOk(await qemuIo(nbdUri(s.nbd, 's3-raw.img'), [`write -P 0x5a ${2 * PAGE} ${PAGE}`]).done);
        assert.equal(s.daxd.dax.counters().invalidations.HOLE_FILLED ?? 0, filledBefore + 1, 'one HOLE_FILLED invalidation');
        assert.equal((await failure(m.load(zero, 0, 1))).reason, 'PTE_STALE', 'the zero-page PTE still served reads');
        const fresh = await m.token(ino, 2, 'READ');
        assert.deepEqual(await m.load(fresh, 0, PAGE), Buffer.alloc(PAGE, 0x5a), 're-faulted: the NBD data');
        assert.equal((await s.client.stat(ino)).blocks, 1, 'one block allocated');
      } finally {
        raw.close();
      }
    });

    it('MappedFile: the Invalidate names the page, the mapper reads the NBD data after its re-fault', async function () {
      const { ino } = await s.client.create('s3-sdk.img', { exclusive: true });
      await s.client.truncate(ino, 4 * PAGE);
      const map = session.mmap(ino, { shared: true });
      assert.deepEqual(await map.read(0, 4 * PAGE), Buffer.alloc(4 * PAGE));
      const event = nextInvalidate(session, ino);
      assertOk(await qemuIo(nbdUri(s.nbd, 's3-sdk.img'), [`write -P 0xa7 ${PAGE} ${PAGE}`]).done);
      assert.deepEqual(await event, { ino, firstPgoff: 1, lastPgoff: 1, reason: 'HOLE_FILLED' });
      assert.deepEqual(await map.read(0, 4 * PAGE), Buffer.concat([Buffer.alloc(PAGE), Buffer.alloc(PAGE, 0xa7), Buffer.alloc(2 * PAGE)]));
      assert.equal(map.stats.staleRetries, 0, 'no access went through the revoked PTE');
      await map.unmap();
    });
  });

  describe('S4: TRIM over a range pinned over gRPC', function () {
    /** A 4-page file, page i filled with 0x40 + i, written over gRPC. */
    async function file4(s: NbdDaxd, name: string): Promise<{ ino: number; bytes: Buffer }> {
      const { ino } = await s.client.create(name, { exclusive: true });
      const bytes = Buffer.alloc(4 * PAGE);
      for (let pg = 0; pg < 4; pg++) bytes.fill(0x40 + pg, pg * PAGE, (pg + 1) * PAGE);
      await s.client.write(ino, 0, bytes);
      return { ino, bytes };
    }

    async function assertUnchanged(s: NbdDaxd, ino: number, bytes: Buffer, what: string): Promise<void> {
      const st = await s.client.stat(ino);
      assert.equal(st.size, bytes.length, `${what}: size changed`);
      assert.equal(st.blocks, bytes.length / PAGE, `${what}: blocks changed`);
      assert.deepEqual(await s.client.read(ino, 0, bytes.length), bytes, `${what}: content changed`);
    }

    const waiting = (s: NbdDaxd, ino: number): boolean => (s.daxd.dax.spaceStats(ino)?.layoutBreaksWaiting ?? 0) > 0;

    describe('--nbd-layout-break FAIL', function () {
      let s: NbdDaxd;
      let guard: PinGuard;
      before(async function () {
        s = await startNbdDaxd('nbd-s4-fail', 'FAIL');
        guard = guardPinnedFrees(s.daxd.dax);
      });
      after(async function () {
        guard?.restore();
        if (s) assert.deepEqual(guard.violations, []);
        await s?.stop();
      });

      it('TRIM and punching WRITE_ZEROES over a pinned page fail at once (EIO), the file unchanged, the pin intact; outside the pin they run', async function () {
        const { ino, bytes } = await file4(s, 'fail.img');
        const uri = nbdUri(s.nbd, 'fail.img');
        const pin = await s.client.pin(ino, 1, 2, { writable: true });
        const failedBefore = s.daxd.dax.counters().layoutBreakWaits.failed;
        for (const command of [`discard 0 ${4 * PAGE}`, `discard ${2 * PAGE} ${PAGE}`, `write -z -u ${PAGE} ${PAGE}`]) {
          const r = await qemuIo(uri, [command]).done;
          assert.equal(r.code, 1, `${command}: ${r.stdout}${r.stderr}`);
          assert.match(r.stdout + r.stderr, /failed: Input\/output error/, command);
        }
        assert.equal(s.daxd.dax.counters().layoutBreakWaits.failed, failedBefore + 3, 'each refusal went through the layout break (FAIL)');
        assert.equal(pin.state, 'active');
        await assertUnchanged(s, ino, bytes, 'after refused TRIMs');
        assert.deepEqual(await pin.dmaRead(0, 0, 3), Buffer.from([0x41, 0x41, 0x41]), 'the pinned block still holds the data');
        // Page 3 is not pinned: FAIL lets that TRIM through.
        assertOk(await qemuIo(uri, [`discard ${3 * PAGE} ${PAGE}`]).done);
        assert.equal((await s.client.stat(ino)).blocks, 3);
        await pin.unpin();
        assertOk(await qemuIo(uri, [`discard 0 ${4 * PAGE}`]).done);
        const st = await s.client.stat(ino);
        assert.deepEqual([st.size, st.blocks], [4 * PAGE, 0], 'TRIM punched holes and kept the size');
        assert.deepEqual(await s.client.read(ino, 0, 4 * PAGE), Buffer.alloc(4 * PAGE));
      });
    });

    describe('--nbd-layout-break WAIT', function () {
      let s: NbdDaxd;
      let guard: PinGuard;
      before(async function () {
        s = await startNbdDaxd('nbd-s4-wait', 'WAIT');
        guard = guardPinnedFrees(s.daxd.dax);
      });
      after(async function () {
        guard?.restore();
        if (s) assert.deepEqual(guard.violations, []);
        await s?.stop();
      });

      it('the TRIM waits while the pin stands (file unchanged), then punches once the pin is dropped', async function () {
        const { ino, bytes } = await file4(s, 'wait.img');
        const pin = await s.client.pin(ino, 1, 2, { writable: true });
        const doneBefore = s.daxd.dax.counters().layoutBreakWaits.done;
        const trim = qemuIo(nbdUri(s.nbd, 'wait.img'), [`discard 0 ${4 * PAGE}`]);
        let exited = false;
        void trim.done.then(() => { exited = true; });
        await until(() => waiting(s, ino), 'the TRIM waiting for the pin');
        assert.equal(exited, false, 'the TRIM finished while the pin stood');
        await assertUnchanged(s, ino, bytes, 'while the TRIM waits');
        await pin.dmaWrite(0, 0, Buffer.from('dma while waiting'));
        await pin.unpin();
        assertOk(await trim.done);
        assert.equal(s.daxd.dax.counters().layoutBreakWaits.done, doneBefore + 1);
        const st = await s.client.stat(ino);
        assert.deepEqual([st.size, st.blocks], [4 * PAGE, 0]);
        assert.deepEqual(await s.client.read(ino, 0, 4 * PAGE), Buffer.alloc(4 * PAGE));
      });
    });

    describe('--nbd-layout-break RECALL', function () {
      let s: NbdDaxd;
      let guard: PinGuard;
      before(async function () {
        s = await startNbdDaxd('nbd-s4-recall', 'RECALL');
        guard = guardPinnedFrees(s.daxd.dax);
      });
      after(async function () {
        guard?.restore();
        if (s) assert.deepEqual(guard.violations, []);
        await s?.stop();
      });

      it('the SDK\'s default recall handler unpins: the TRIM runs, nothing revoked', async function () {
        const { ino } = await file4(s, 'recall-ok.img');
        const pin = await s.client.pin(ino, 0, 4, { writable: true });
        const { recalls, revocations } = s.daxd.dax.pinStats();
        assertOk(await qemuIo(nbdUri(s.nbd, 'recall-ok.img'), [`discard 0 ${4 * PAGE}`]).done);
        assert.equal(s.daxd.dax.pinStats().recalls, recalls + 1, 'one PinRecall');
        assert.equal(s.daxd.dax.pinStats().revocations, revocations, 'the pin was revoked: the handler did not unpin in time');
        assert.notEqual(pin.state, 'active');
        assert.equal((await s.client.stat(ino)).blocks, 0);
      });

      it('a holder that ignores the recall is revoked after the grace; the TRIM then runs and DMA on the pin is refused', async function () {
        const { ino } = await file4(s, 'recall-ignored.img');
        const holder: DaxSession = await s.client.openSession({ clientName: 'ignorer' });
        await holder.attached;
        try {
          const pin = await s.client.pin(ino, 2, 1, { writable: true, session: holder, onRecall: () => undefined });
          const recalled = once(pin, 'recall');
          const revocations = s.daxd.dax.pinStats().revocations;
          const t0 = Date.now();
          const trim = qemuIo(nbdUri(s.nbd, 'recall-ignored.img'), [`discard 0 ${4 * PAGE}`]);
          await recalled;
          // Within the grace the pin still works and the file is untouched.
          await pin.dmaWrite(0, 0, Buffer.from('in grace'));
          assertOk(await trim.done);
          assert.ok(Date.now() - t0 >= RECALL_GRACE_MS - 5, `the TRIM ran ${Date.now() - t0} ms after it was sent, before the grace ended`);
          assert.equal(s.daxd.dax.pinStats().revocations, revocations + 1);
          assert.equal((await failure(pin.dmaRead(0, 0, 1))).reason, 'PIN_REVOKED');
          await pin.unpin();
          assert.equal((await s.client.stat(ino)).blocks, 0);
        } finally {
          await holder.close();
        }
      });
    });
  });

  describe('S6: power cut at an NBD FLUSH (a model of the medium: only flushed bytes survive)', function () {
    let s: NbdDaxd;
    let medium: DurableImage;
    let tmp: ReturnType<typeof tempDir>;
    before(async function () {
      tmp = tempDir('daxd-nbd-cut-');
      s = await startNbdDaxd('nbd-s6-cut', 'WAIT');
      medium = await durableImage(s.daxd);
    });
    after(async function () {
      medium?.restore();
      await s?.stop();
      tmp?.remove();
    });

    /** A file of `sizeBytes`, its first MiB written with 0x01 and durable (Fsync). */
    async function durableFile(name: string, sizeBytes: number): Promise<Buffer> {
      const { ino } = await s.client.create(name, { exclusive: true });
      await s.client.truncate(ino, sizeBytes);
      await s.client.write(ino, 0, Buffer.alloc(MiB, 0x01));
      await s.client.fsync(ino);
      const expected = Buffer.alloc(sizeBytes);
      expected.fill(0x01, 0, MiB);
      return expected;
    }

    function assertSame(actual: Buffer, expected: Buffer, what: string): void {
      const first = actual.findIndex((b, i) => b !== expected[i]);
      assert.equal(first, -1, `${what}: byte ${first} on the medium is ${actual[first]}, expected ${expected[first]}`);
    }

    it('a WRITE is on the medium once the FLUSH after it is acknowledged, not before (overwrite, then allocation)', async function () {
      const expected = await durableFile('cut.img', 2 * MiB);
      const uri = nbdUri(s.nbd, 'cut.img');
      // cache=writeback: no FUA on the write; the FLUSH is qemu-io's `flush`.
      const atFlush = medium.imageAtNextFsync();
      assertOk(await startTool('qemu-io', ['-f', 'raw', '-t', 'writeback', '-c', 'write -P 0x77 4096 8192', '-c', 'flush', uri]).done);
      // The model is not vacuous: when the FLUSH arrived the overwrite was acknowledged but not on the medium.
      assertSame(await medium.cut(path.join(tmp.dir, 'at-flush.vol'), 'cut.img', 2 * MiB, atFlush()), expected, 'when the FLUSH arrived');
      expected.fill(0x77, 4096, 4096 + 8192);
      assertSame(await medium.cut(path.join(tmp.dir, 'flushed.vol'), 'cut.img', 2 * MiB), expected, 'after the FLUSH');
      // An allocating write into a hole (block map, bitmap: journaled metadata), then FLUSH.
      assertOk(await startTool('qemu-io', ['-f', 'raw', '-t', 'writeback', '-c', `write -P 0x78 ${MiB + 3 * PAGE} ${PAGE}`, '-c', 'flush', uri]).done);
      expected.fill(0x78, MiB + 3 * PAGE, MiB + 4 * PAGE);
      assertSame(await medium.cut(path.join(tmp.dir, 'allocated.vol'), 'cut.img', 2 * MiB), expected, 'after the allocating write and FLUSH');
    });

    it('a WRITE with FUA is on the medium when acknowledged, before any FLUSH', async function () {
      const expected = await durableFile('fua.img', MiB);
      // qemu-io flushes when it closes the image: the medium is taken when that FLUSH arrives.
      const atFlush = medium.imageAtNextFsync();
      assertOk(await startTool('qemu-io', ['-f', 'raw', '-t', 'writeback', '-c', `write -f -P 0x55 ${PAGE} ${2 * PAGE}`, nbdUri(s.nbd, 'fua.img')]).done);
      expected.fill(0x55, PAGE, 3 * PAGE);
      assertSame(await medium.cut(path.join(tmp.dir, 'fua.vol'), 'fua.img', MiB, atFlush()), expected, 'after the FUA write, before the FLUSH');
    });
  });

  describe('S6: SIGKILL right after an acknowledged FLUSH', function () {
    let tmp: ReturnType<typeof tempDir>;
    let server: StartedServer | null = null;
    before(function () {
      tmp = tempDir('daxd-nbd-s6-');
    });
    after(async function () {
      if (server) await server.kill('SIGKILL');
      tmp?.remove();
    });

    it('every write acknowledged before the FLUSH is there after the restart, and fsck is clean', async function () {
      const volumePath = path.join(tmp.dir, 's6.vol');
      const start = () => startServer({ volumePath, size: '64M' });
      server = await start();
      let client = clientFor(server);
      const { ino } = await client.create('s6.img', { exclusive: true });
      await client.truncate(ino, 4 * MiB);
      await client.fsync(ino);
      client.close();
      // Each round allocates blocks in holes (block maps, bitmap: journaled metadata), then
      // FLUSHes; the kill comes as soon as qemu-io has exited 0 (FLUSH acknowledged).
      const rounds = [
        { byte: 0x11, writes: [[0, 64 * 1024], [MiB, PAGE]] },
        { byte: 0x22, writes: [[2 * MiB + 512, 3 * PAGE], [4 * MiB - PAGE, PAGE], [64 * 1024, 256 * 1024], [3 * MiB, 1]] },
      ] as const;
      const expected = Buffer.alloc(4 * MiB);
      for (const round of rounds) {
        const uri = nbdUri(server.nbd, 's6.img');
        const commands = [...round.writes.map(([at, len]) => `write -P ${round.byte} ${at} ${len}`), 'flush'];
        assertOk(await qemuIo(uri, commands).done);
        const status = await server.kill('SIGKILL');
        assert.equal(status.signal, 'SIGKILL');
        server = null;
        for (const [at, len] of round.writes) expected.fill(round.byte, at, at + len);
        assert.deepEqual(await fsckFindings(volumePath), [], 'fsck of the crashed volume');
        server = await start();
        client = clientFor(server);
        try {
          const now = await client.read((await client.lookup('s6.img')).ino, 0, 4 * MiB);
          const first = now.findIndex((b, i) => b !== expected[i]);
          assert.equal(first, -1, `after the kill: byte ${first} is ${now[first]}, acknowledged ${expected[first]}`);
        } finally {
          client.close();
        }
      }
      const status = await server.stop();
      server = null;
      assert.equal(status.code, 0);
      assert.deepEqual(await fsckFindings(volumePath), []);
    });
  });
});

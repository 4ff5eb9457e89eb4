/**
 * fstests generic/503 (src/t_mmap_collision.c), ported (S4).
 *
 * A 16 KiB fallocated file. Worker A loops { pin all 4 pages writable -> DMA-write all of
 * them -> unpin }. Worker B, PHASE_MS per phase, loops: (1) punch hole 0..16K (punch keeps
 * the size), (2) zero range 0..16K (inside the size: keeps it), (3) truncate to 0 then
 * fallocate 16K, (4) fallocate 16K, collapse 0..4K, fallocate 16K. In phases 3 and 4 A's
 * pins may find the file short (SIGBUS): tolerated, as the original tolerates A's errors
 * there; nothing else is. Meanwhile client C keeps allocating blocks in another file and
 * checks its bytes are exactly what it wrote (A writes 0xA5, C never does).
 *
 * Pass: every layout call succeeds; no layout call runs entirely inside a pin interval
 * (Timeline); no pinned block is freed (allocator guard, server side); no entry deleted
 * while pinned (server counter); C's file intact; fsck clean. The race is shown to have
 * happened: some layout calls had to wait for an unpin.
 *
 * Run twice: over gRPC (SDK clients, real daxd on 127.0.0.1:0) and in-process (Dax on
 * MemoryStorage, more iterations per second). Phase length: 1 s each
 * over gRPC; 500 ms in-process.
 */
import assert from 'node:assert/strict';
import { DaxClientError, type DaxSession } from '../../client';
import { DaxError } from '../../server/errors';
import type { Dax } from '../../server/dax/dax';
import type { FallocateMode } from '../../server/fs/types';
import { assertFsckClean, freshDax, type DaxVolume } from '../support/dax-volume';
import { TestOwner } from '../support/test-owner';
import { guardPinnedFrees, startDmaServer, Timeline, type DmaServer, type PinGuard } from './fixture';
import { KiB, PAGE } from '../support/units';

const FILE_BYTES = 16 * KiB;
const PAGES = FILE_BYTES / PAGE;
const A_BYTE = 0xa5;
/** C's file grows to this, then starts over (truncate 0): its blocks keep being recycled. */
const C_SPAN_BYTES = 512 * KiB;
const C_CHUNK_BYTES = 16 * KiB;

interface HeldPin {
  write(page: number, data: Buffer): Promise<void>;
  unpin(): Promise<void>;
}

/** What the scenario needs of a daxd, over gRPC or in-process. */
interface Target {
  pinAll(): Promise<HeldPin>;
  truncate(ino: number, size: number): Promise<void>;
  fallocate(ino: number, mode: FallocateMode, offset: number, length: number): Promise<void>;
  write(ino: number, offset: number, data: Buffer): Promise<void>;
  read(ino: number, offset: number, length: number): Promise<Buffer>;
  /** Commits the journal: freed blocks become reusable only then. */
  fsync(ino: number): Promise<void>;
  dax: Dax;
  aIno: number;
  cIno: number;
}

function isSigbus(err: unknown): boolean {
  return (err instanceof DaxClientError && err.reason === 'SIGBUS') || (err instanceof DaxError && err.code === 'SIGBUS');
}

interface Outcome {
  pins: number;
  layoutCalls: number;
  sigbusTolerated: number;
  cWrites: number;
}

async function collide(t: Target, phaseMs: number): Promise<Outcome> {
  const tl = new Timeline();
  let phase = 1;
  let stop = false;
  let pins = 0;
  let sigbusTolerated = 0;
  let cWrites = 0;
  const aData = Buffer.alloc(PAGE, A_BYTE);

  const workerA = async (): Promise<void> => {
    while (!stop) {
      let held: HeldPin;
      try {
        held = await t.pinAll();
      } catch (err) {
        if ((phase === 3 || phase === 4) && isSigbus(err)) {
          sigbusTolerated++;
          // In-process the refusal is all microtasks: let B's pending I/O run.
          await new Promise((r) => setImmediate(r));
          continue;
        }
        throw err;
      }
      const from = tl.now();
      await Promise.all(Array.from({ length: PAGES }, (_, pg) => held.write(pg, aData)));
      const to = tl.now();
      await held.unpin();
      tl.pin(from, to, 0, PAGES - 1);
      pins++;
    }
  };

  const layout = async (what: string, first: number, last: number, run: () => Promise<void>): Promise<void> => {
    const from = tl.now();
    await run();
    tl.layout(what, from, tl.now(), first, last);
  };

  const workerB = async (): Promise<void> => {
    const ino = t.aIno;
    let calls = 0;
    for (phase = 1; phase <= 4; phase++) {
      const endAt = Date.now() + phaseMs;
      while (Date.now() < endAt) {
        // Freed blocks are reusable only once the journal commits: commit now and then.
        if (++calls % 64 === 0) await t.fsync(ino);
        switch (phase) {
          case 1:
            await layout('punch', 0, PAGES - 1, () => t.fallocate(ino, 'PUNCH_HOLE', 0, FILE_BYTES));
            break;
          case 2:
            await layout('zero', 0, PAGES - 1, () => t.fallocate(ino, 'ZERO_RANGE', 0, FILE_BYTES));
            break;
          case 3:
            await layout('truncate', 0, Number.MAX_SAFE_INTEGER, () => t.truncate(ino, 0));
            await t.fallocate(ino, 'ALLOCATE', 0, FILE_BYTES);
            break;
          case 4:
            await t.fallocate(ino, 'ALLOCATE', 0, FILE_BYTES);
            await layout('collapse', 0, Number.MAX_SAFE_INTEGER, () => t.fallocate(ino, 'COLLAPSE_RANGE', 0, PAGE));
            await t.fallocate(ino, 'ALLOCATE', 0, FILE_BYTES);
            break;
        }
      }
    }
    stop = true;
  };

  const workerC = async (): Promise<void> => {
    let k = 0;
    while (!stop) {
      const offset = k * C_CHUNK_BYTES;
      const chunk = Buffer.alloc(C_CHUNK_BYTES, 1 + (k % 100));
      await t.write(t.cIno, offset, chunk);
      cWrites++;
      assert.deepEqual(await t.read(t.cIno, offset, C_CHUNK_BYTES), chunk, `C's chunk ${k} changed right after its write`);
      k++;
      if (offset + C_CHUNK_BYTES >= C_SPAN_BYTES) {
        await verifyC(t, k);
        await t.truncate(t.cIno, 0);
        await t.fsync(t.cIno);
        k = 0;
      }
    }
    await verifyC(t, k);
  };

  // A failure of any worker fails the test; the others are stopped.
  const all = [workerA(), workerB(), workerC()].map((p) => p.catch((err: unknown) => { stop = true; throw err; }));
  await Promise.all(all);
  assert.deepEqual(tl.violations(), [], 'a layout change ran while a pin over its range stood');
  return { pins, layoutCalls: tl.layoutCount, sigbusTolerated, cWrites };
}

async function verifyC(t: Target, chunks: number): Promise<void> {
  const all = await t.read(t.cIno, 0, chunks * C_CHUNK_BYTES);
  assert.equal(all.length, chunks * C_CHUNK_BYTES);
  for (let k = 0; k < chunks; k++) {
    const want = 1 + (k % 100);
    const got = all.subarray(k * C_CHUNK_BYTES, (k + 1) * C_CHUNK_BYTES);
    const bad = got.findIndex((b) => b !== want);
    assert.equal(bad, -1, `C's byte ${k * C_CHUNK_BYTES + bad} is 0x${got[bad]?.toString(16)} (wrote 0x${want.toString(16)})${got[bad] === A_BYTE ? ': A\'s DMA landed in C' : ''}`);
  }
}

function checkServer(dax: Dax, guard: PinGuard, outcome: Outcome, waitsBefore: number): void {
  assert.deepEqual(guard.violations, [], 'a pinned block was freed');
  assert.equal(dax.pinStats().active, 0);
  assert.equal(dax.pinStats().pinnedBlocks, 0);
  assert.ok(outcome.pins > 10, `only ${outcome.pins} pin rounds`);
  assert.ok(outcome.layoutCalls > 10, `only ${outcome.layoutCalls} layout calls`);
  assert.ok(outcome.cWrites > 0);
  const waited = dax.counters().layoutBreakWaits.done - waitsBefore;
  assert.ok(waited > 0, 'no layout call ever had to wait for an unpin: the race was not exercised');
}

describe('dma: generic/503 collision (pin + DMA vs punch / zero / truncate / collapse)', function () {
  this.timeout(120_000);

  describe('over gRPC (SDK, three clients)', function () {
    let server: DmaServer;

    before(async function () {
      server = await startDmaServer('collision');
    });

    after(async function () {
      if (server) assert.deepEqual(await server.stopAndFsck(), [], 'fsck findings');
    });

    it('1 s per phase: no layout change completes while its blocks are pinned; C intact; fsck clean', async function () {
      const a = server.client();
      const b = server.client();
      const c = server.client();
      const aFile = await b.create('collision-a', { exclusive: true });
      await b.fallocate(aFile.ino, 'ALLOCATE', 0, FILE_BYTES);
      const cFile = await c.create('collision-c', { exclusive: true });
      const session: DaxSession = await a.openSession({ clientName: 'worker-a' });
      await session.attached;
      const guard = guardPinnedFrees(server.dax);
      const waitsBefore = server.dax.counters().layoutBreakWaits.done;
      try {
        const t: Target = {
          dax: server.dax, aIno: aFile.ino, cIno: cFile.ino,
          pinAll: async () => {
            const p = await a.pin(aFile.ino, 0, PAGES, { writable: true, session });
            return { write: (pg, data) => p.dmaWrite(pg, 0, data), unpin: () => p.unpin() };
          },
          truncate: (ino, size) => (ino === cFile.ino ? c : b).truncate(ino, size),
          fallocate: (ino, mode, off, len) => b.fallocate(ino, mode, off, len),
          write: async (ino, off, data) => { await c.write(ino, off, data); },
          read: (ino, off, len) => c.read(ino, off, len),
          fsync: (ino) => c.fsync(ino),
        };
        const outcome = await collide(t, 1_000);
        checkServer(server.dax, guard, outcome, waitsBefore);
        process.stdout.write(`      gRPC: ${JSON.stringify(outcome)}, waits ${server.dax.counters().layoutBreakWaits.done - waitsBefore}\n`);
      } finally {
        guard.restore();
      }
      await session.close();
    });
  });

  describe('in-process (Dax on MemoryStorage)', function () {
    let v: DaxVolume;

    before(async function () {
      v = await freshDax(64 * 1024 * 1024);
    });

    it('500 ms per phase: same assertions, fsck clean', async function () {
      const aFile = await v.fs.create('collision-a', true);
      await v.fs.fallocate(aFile.ino, 'ALLOCATE', 0, FILE_BYTES);
      const cFile = await v.fs.create('collision-c', true);
      const owner = new TestOwner('worker-a');
      const guard = guardPinnedFrees(v.dax);
      try {
        const t: Target = {
          dax: v.dax, aIno: aFile.ino, cIno: cFile.ino,
          pinAll: async () => {
            const p = await v.dax.pin(owner, { ino: aFile.ino, firstPgoff: 0, npages: PAGES, writable: true, leaseMs: 0 });
            return {
              write: (pg, data) => v.dax.dmaWrite(owner, p.id, pg, 0, data),
              // A pin's unpin goes over the network in real life: let the others run first.
              unpin: async () => { await new Promise((r) => setImmediate(r)); v.dax.unpin(owner, p.id); },
            };
          },
          truncate: (ino, size) => v.fs.truncate(ino, size),
          fallocate: (ino, mode, off, len) => v.fs.fallocate(ino, mode, off, len),
          write: async (ino, off, data) => { await v.fs.write(ino, off, data, false); },
          read: (ino, off, len) => v.fs.read(ino, off, len),
          fsync: (ino) => v.dax.fsync(ino, false),
        };
        const outcome = await collide(t, 500);
        checkServer(v.dax, guard, outcome, 0);
        process.stdout.write(`      in-process: ${JSON.stringify(outcome)}, waits ${v.dax.counters().layoutBreakWaits.done}\n`);
      } finally {
        guard.restore();
      }
      assert.ok(await assertFsckClean(v, 'after the collision run'), 'fsck did not run');
    });
  });
});

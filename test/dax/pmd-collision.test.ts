/**
 * fstests generic/503 (src/t_mmap_collision.c) with the pins inside PMD (2 MiB) entries,
 * in-process (S4). The 4 KiB port is test/dma/collision.test.ts.
 *
 * A 4 MiB file preallocated in aligned extents. Mapper M keeps taking PMD WRITE faults on
 * both 2 MiB ranges and storing through them (and now and then an fsync: writeback of
 * pinned PMD entries), so worker A's pins usually land inside MAPPED PMD entries. A loops
 * { pin pages 504..519 writable (the last 8 pages of the first PMD, the first 8 of the
 * second) -> DMA-write all of them -> unpin }. Worker B, PHASE_MS per phase: (1) punch the
 * whole file, (2) zero range, (3) truncate to 0 then preallocate, (4) preallocate,
 * collapse the first 2 MiB, preallocate, (5) punch the first 1 MiB and preallocate it
 * again: a range outside the pin, inside a pinned PMD entry, which is split so the punch
 * need not wait. In phases 3 and 4 the file may be short (SIGBUS): tolerated there. C
 * keeps writing another file and checks its bytes (A writes 0xA5, C never does).
 *
 * Pass: no layout call over the pinned pages ran entirely inside a pin interval
 * (Timeline); no pinned block freed (allocator guard); C intact; the punches of phase 5
 * never waited for an unpin; fsck clean. The race happened: pins inside PMD entries, and
 * layout calls that waited for an unpin.
 */
import assert from 'node:assert/strict';
import { DaxError } from '../../server/errors';
import { PMD_PAGES } from '../../server/limits';
import { assertFsckClean, freshDax, isCode } from '../support/dax-volume';
import { KiB, MiB, PAGE } from '../support/units';
import { TestOwner } from '../support/test-owner';
import { guardPinnedFrees, Timeline } from '../dma/fixture';

const FILE_BYTES = 4 * MiB;
const PMD_BYTES = PMD_PAGES * PAGE;
const PIN_FIRST = PMD_PAGES - 8;
const PIN_PAGES = 16;
const A_BYTE = 0xa5;
const PHASE_MS = 400;
const C_SPAN_BYTES = 512 * KiB;
const C_CHUNK_BYTES = 16 * KiB;

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('dax PMD entries: generic/503 with pins inside PMD entries (in-process, S4)', function () {
  this.timeout(120_000);

  it(`${PHASE_MS} ms per phase: no layout change frees a pinned block; pins inside PMD entries; C intact; fsck clean`, async function () {
    const v = await freshDax(64 * MiB);
    const { ino } = await v.fs.create('collision-a', true);
    await v.fs.fallocate(ino, 'ALLOCATE', 0, FILE_BYTES);
    const { ino: cIno } = await v.fs.create('collision-c', true);
    const a = new TestOwner('worker-a');
    const m = new TestOwner('mapper');
    const guard = guardPinnedFrees(v.dax);
    const tl = new Timeline();
    let stop = false;
    let phase = 1;
    const seen = { pins: 0, pinsInPmd: 0, pmdFaults: 0, sigbus: 0, layoutCalls: 0, phase5: 0, cWrites: 0 };
    const aData = Buffer.alloc(PAGE, A_BYTE);
    const tolerated = (err: unknown): boolean => (phase === 3 || phase === 4) && isCode(err, 'SIGBUS');

    const workerA = async (): Promise<void> => {
      // A's own PMD PTEs are never used: it only wants the entries there.
      while (!stop) {
        let pin;
        try {
          // Touch both ranges through PMD write faults first, as an application maps and
          // writes its buffer before registering it: the pin then lands in PMD entries.
          for (const pg of [PIN_FIRST, PIN_FIRST + PIN_PAGES - 1]) {
            if ((await v.dax.fault(a, ino, pg, 'WRITE', false, 'PMD')).fallback === undefined) seen.pmdFaults++;
          }
          pin = await v.dax.pin(a, { ino, firstPgoff: PIN_FIRST, npages: PIN_PAGES, writable: true, leaseMs: 0 });
        } catch (err) {
          if (!tolerated(err)) throw err;
          seen.sigbus++;
          await turn();
          continue;
        }
        const from = tl.now();
        if (v.dax.inspect(ino, PIN_FIRST, PIN_FIRST).some((e) => e.order === 9)) seen.pinsInPmd++;
        await Promise.all(Array.from({ length: PIN_PAGES }, (_, pg) => v.dax.dmaWrite(a, pin.id, pg, 0, aData)));
        const to = tl.now();
        await turn(); // an unpin goes over the network in real life: let the others run first
        v.dax.unpin(a, pin.id);
        tl.pin(from, to, PIN_FIRST, PIN_FIRST + PIN_PAGES - 1);
        seen.pins++;
      }
    };

    const workerM = async (): Promise<void> => {
      for (let k = 0; !stop; k++) {
        const base = (k % 2) * PMD_PAGES;
        try {
          const r = await v.dax.fault(m, ino, base + (k % 97), 'WRITE', false, 'PMD');
          if (r.fallback === undefined) seen.pmdFaults++;
          const span = r.pte!.order === 9 ? PMD_BYTES : PAGE;
          v.dax.store(m, r.pte!.token, (k * 4099) % (span - 8), Buffer.from('mapper!!'));
          if (k % 16 === 0) await v.dax.fsync(ino, false);
        } catch (err) {
          // The file may be short (phases 3, 4) or the PTE revoked by a layout change already.
          if (!(err instanceof DaxError && (err.code === 'SIGBUS' || err.code === 'PTE_STALE'))) throw err;
        }
        await turn();
      }
    };

    const layout = async (what: string, first: number, last: number, run: () => Promise<void>): Promise<void> => {
      const from = tl.now();
      await run();
      tl.layout(what, from, tl.now(), first, last);
      seen.layoutCalls++;
    };

    const workerB = async (): Promise<void> => {
      const lastPage = FILE_BYTES / PAGE - 1;
      let calls = 0;
      for (phase = 1; phase <= 5; phase++) {
        const endAt = Date.now() + PHASE_MS;
        while (Date.now() < endAt) {
          if (++calls % 64 === 0) await v.dax.fsync(ino, false);
          switch (phase) {
            case 1:
              await layout('punch', 0, lastPage, () => v.fs.fallocate(ino, 'PUNCH_HOLE', 0, FILE_BYTES));
              await v.fs.fallocate(ino, 'KEEP_SIZE', 0, FILE_BYTES);
              break;
            case 2:
              await layout('zero', 0, lastPage, () => v.fs.fallocate(ino, 'ZERO_RANGE', 0, FILE_BYTES));
              break;
            case 3:
              await layout('truncate', 0, Number.MAX_SAFE_INTEGER, () => v.fs.truncate(ino, 0));
              await v.fs.fallocate(ino, 'ALLOCATE', 0, FILE_BYTES);
              break;
            case 4:
              await v.fs.fallocate(ino, 'ALLOCATE', 0, FILE_BYTES);
              await layout('collapse', 0, Number.MAX_SAFE_INTEGER, () => v.fs.fallocate(ino, 'COLLAPSE_RANGE', 0, PMD_BYTES));
              await v.fs.fallocate(ino, 'ALLOCATE', 0, FILE_BYTES);
              break;
            case 5: {
              // Outside the pinned pages: FAIL policy, as it must never need to wait.
              await layout('punch-head', 0, MiB / PAGE - 1, () => v.fs.fallocate(ino, 'PUNCH_HOLE', 0, MiB, { policy: 'FAIL' }));
              await v.fs.fallocate(ino, 'KEEP_SIZE', 0, MiB);
              seen.phase5++;
              break;
            }
          }
          await turn();
        }
      }
      stop = true;
    };

    const workerC = async (): Promise<void> => {
      let k = 0;
      const verify = async (chunks: number): Promise<void> => {
        const all = await v.fs.read(cIno, 0, chunks * C_CHUNK_BYTES);
        for (let j = 0; j < chunks; j++) {
          const got = all.subarray(j * C_CHUNK_BYTES, (j + 1) * C_CHUNK_BYTES);
          const bad = got.findIndex((b) => b !== 1 + (j % 100));
          assert.equal(bad, -1, `C's byte ${j * C_CHUNK_BYTES + bad} is 0x${got[bad]?.toString(16)}${got[bad] === A_BYTE ? ': A\'s DMA landed in C' : ''}`);
        }
      };
      while (!stop) {
        const offset = k * C_CHUNK_BYTES;
        await v.fs.write(cIno, offset, Buffer.alloc(C_CHUNK_BYTES, 1 + (k % 100)), false);
        seen.cWrites++;
        k++;
        if (offset + C_CHUNK_BYTES >= C_SPAN_BYTES) {
          await verify(k);
          await v.fs.truncate(cIno, 0);
          await v.dax.fsync(cIno, false);
          k = 0;
        }
        await turn();
      }
      await verify(k);
    };

    try {
      const all = [workerA(), workerB(), workerM(), workerC()].map((p) => p.catch((err: unknown) => { stop = true; throw err; }));
      await Promise.all(all);
    } finally {
      guard.restore();
    }
    assert.deepEqual(tl.violations(), [], 'a layout change ran while a pin over its range stood');
    assert.deepEqual(guard.violations, [], 'a pinned block was freed');
    assert.equal(v.dax.pinStats().active, 0);
    assert.equal(v.dax.pinStats().pinnedBlocks, 0);
    assert.ok(seen.pins > 10 && seen.layoutCalls > 10 && seen.cWrites > 0, JSON.stringify(seen));
    assert.ok(seen.pinsInPmd > 0, `no pin landed inside a PMD entry: ${JSON.stringify(seen)}`);
    assert.ok(seen.phase5 > 0, 'phase 5 never ran');
    assert.ok(v.dax.counters().layoutBreakWaits.done > 0, 'no layout call had to wait for an unpin: the race was not exercised');
    const rows = v.dax.inspect(ino, 0, Number.MAX_SAFE_INTEGER);
    assert.ok(rows.every((e) => e.pinCount === 0 && !e.locked && e.waiters === 0), 'entries left pinned, locked or waited on');
    await v.dax.fsync(ino, false);
    assert.ok(await assertFsckClean(v, 'after the PMD collision run'), 'fsck did not run');
    if (process.env.DAXD_VERBOSE) process.stdout.write(`      ${JSON.stringify(seen)}\n`);
  });
});

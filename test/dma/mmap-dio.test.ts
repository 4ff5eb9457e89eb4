/**
 * fstests generic/413 (src/t_mmap_dio.c), ported (DMA between a mapping and
 * another file, S2, S4). The source is a fallocated file (unwritten extents) "mapped
 * shared": its pages are reached through pins, as O_DIRECT reaches a mapping through
 * get_user_pages. For each length:
 *   1. write the destination from the mapped source: read-only pins fault the unwritten
 *      pages in (zero page, nothing allocated), DMA-read them, Files.Write them; fsync.
 *   2. the destination gets a pattern (Files.Write), then is read back into the mapping:
 *      writable pins allocate and convert the unwritten blocks (pre-zeroed, S2), DMA-write
 *      the destination's bytes; Fsync of the source (msync).
 *   3. counts exact and contents equal: Files.Read of both, and the source through fresh
 *      read-only pins.
 * Sizes: 1 KiB, 4 KiB, 1 MiB and 16 MiB (the scenario's 64 MiB would take ~4x as long
 * over unary DMA calls of one page each; 16 MiB is the suite's budget). The source is
 * 16 MiB fallocated (scaled down from 128 MiB for the same reason).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { DaxClient, DaxSession } from '../../client';
import { PIN_PAGES_MAX } from '../../server/limits';
import { KiB, MiB, PAGE } from '../support/units';
import { startDmaServer, type DmaServer } from './fixture';

const SIZES = [1 * KiB, 4 * KiB, 1 * MiB, 16 * MiB];
const SOURCE_BYTES = 16 * MiB;
/** DMA calls in flight at once per copy. */
const DMA_IN_FLIGHT = 64;

async function inBatches(n: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(DMA_IN_FLIGHT, n) }, async () => {
    while (next < n) await fn(next++);
  });
  await Promise.all(lanes);
}

/** Bytes [0, length) of `ino` through pins of at most PIN_PAGES_MAX pages (DMA read). */
async function readThroughPins(client: DaxClient, session: DaxSession, ino: number, length: number): Promise<Buffer> {
  const out = Buffer.alloc(length);
  const pages = Math.ceil(length / PAGE);
  for (let first = 0; first < pages; first += PIN_PAGES_MAX) {
    const n = Math.min(PIN_PAGES_MAX, pages - first);
    const pin = await client.pin(ino, first, n, { writable: false, session });
    await inBatches(n, async (i) => {
      const at = (first + i) * PAGE;
      const len = Math.min(PAGE, length - at);
      out.set(await pin.dmaRead(i, 0, len), at);
    });
    await pin.unpin();
  }
  return out;
}

/** `data` into [0, data.length) of `ino` through writable pins (DMA write). */
async function writeThroughPins(client: DaxClient, session: DaxSession, ino: number, data: Buffer): Promise<void> {
  const pages = Math.ceil(data.length / PAGE);
  for (let first = 0; first < pages; first += PIN_PAGES_MAX) {
    const n = Math.min(PIN_PAGES_MAX, pages - first);
    const pin = await client.pin(ino, first, n, { writable: true, session });
    await inBatches(n, async (i) => {
      const at = (first + i) * PAGE;
      await pin.dmaWrite(i, 0, data.subarray(at, Math.min(at + PAGE, data.length)));
    });
    await pin.unpin();
  }
}

const sha = (b: Buffer): string => createHash('sha1').update(b).digest('hex');

describe('dma: generic/413 DMA between a mapped fallocated file and another file', function () {
  this.timeout(120_000);
  let server: DmaServer;
  let client: DaxClient;
  let session: DaxSession;

  before(async function () {
    server = await startDmaServer('mmap-dio', { sizeBytes: 256 * MiB });
    client = server.client({ deadlineMs: 30_000 });
    session = await client.openSession({ clientName: 'generic-413' });
    await session.attached;
  });

  after(async function () {
    await session?.close();
    if (server) assert.deepEqual(await server.stopAndFsck(), []);
  });

  for (const length of SIZES) {
    it(`${length >= MiB ? `${length / MiB} MiB` : `${length / KiB} KiB`}: counts exact, contents equal both ways`, async function () {
      const src = await client.create(`src-${length}`, { exclusive: true });
      await client.fallocate(src.ino, 'ALLOCATE', 0, SOURCE_BYTES);
      const dst = await client.create(`dst-${length}`, { exclusive: true });
      const freeBefore = (await client.statVolume()).blocksFree;

      // 1. write(dst, mmap(src), length): unwritten pages read as zeros, nothing allocated.
      const fromMap = await readThroughPins(client, session, src.ino, length);
      assert.equal(fromMap.length, length);
      assert.equal(fromMap.findIndex((b) => b !== 0), -1, 'an unwritten page read non-zero');
      assert.equal((await client.write(dst.ino, 0, fromMap)).written, length);
      await client.fsync(dst.ino);
      assert.equal((await client.stat(dst.ino)).size, length);
      assert.deepEqual(await client.read(dst.ino, 0, length), fromMap);

      // 2. read(dst, mmap(src), length) after the destination got a pattern.
      const pattern = Buffer.alloc(length);
      for (let i = 0; i < length; i += 8) pattern.writeUInt32LE((i * 2654435761) >>> 0, i);
      await client.write(dst.ino, 0, pattern);
      await client.fsync(dst.ino);
      const back = await client.read(dst.ino, 0, length);
      assert.equal(back.length, length);
      await writeThroughPins(client, session, src.ino, back);
      await client.fsync(src.ino); // msync

      // 3. Counts and contents.
      const srcInfo = await client.stat(src.ino);
      assert.equal(srcInfo.size, SOURCE_BYTES, 'the source changed size');
      const srcNow = await client.read(src.ino, 0, length);
      assert.equal(sha(srcNow), sha(pattern), 'source (Files.Read) differs from the destination');
      assert.equal(sha(await readThroughPins(client, session, src.ino, length)), sha(pattern), 'source (pins) differs');
      const tail = await client.read(src.ino, length, Math.min(PAGE, SOURCE_BYTES - length));
      if (length % PAGE !== 0) assert.equal(tail.findIndex((b) => b !== 0), -1, 'bytes past the copy in the last page are not zero (S2)');
      assert.ok((await client.statVolume()).blocksFree <= freeBefore, 'converting fallocated blocks freed something');
      assert.equal(server.dax.pinCountOf(session.id), 0);
    });
  }
});

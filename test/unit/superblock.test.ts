import assert from 'node:assert/strict';
import { BLOCK_SIZE } from '../../server/limits';
import { DaxError } from '../../server/errors';
import { crc32 } from '../../server/media/checksum';
import { computeLayout, FORMAT_VERSION, SUPERBLOCK_PFNS } from '../../server/media/layout';
import { MemoryStorage } from '../../server/media/memory-storage';
import { SimulatedCrash } from '../../server/media/storage';
import { decodeSuperblock, encodeSuperblock, readSuperblock, Superblock, SUPERBLOCK_MAGIC, writeSuperblock } from '../../server/media/superblock';
import { mkfs } from '../../server/fs/mkfs';
import { MiB } from '../support/units';

const CRC_OFF = BLOCK_SIZE - 4;

function isCode(code: string): (err: unknown) => boolean {
  return (err) => err instanceof DaxError && err.code === code;
}

function sample(sizeBytes = 64 * MiB): Superblock {
  const layout = computeLayout(sizeBytes);
  return {
    version: FORMAT_VERSION, volumeBlocks: layout.volumeBlocks, uuid: Uint8Array.from({ length: 16 }, (_, i) => i * 7 + 1),
    generation: 0x1_2345_6789, clean: true, maxFiles: layout.maxFiles, layout,
  };
}

/** Re-seals a hand-edited copy, so only the edit (not the checksum) is wrong. */
function reseal(buf: Uint8Array): Uint8Array {
  new DataView(buf.buffer, buf.byteOffset, buf.byteLength).setUint32(CRC_OFF, crc32(buf.subarray(0, CRC_OFF)), true);
  return buf;
}

function setU32(buf: Uint8Array, off: number, value: number): void {
  new DataView(buf.buffer, buf.byteOffset, buf.byteLength).setUint32(off, value, true);
}

function copyAt(storage: MemoryStorage, pfn: number): Uint8Array {
  return storage.view(pfn * BLOCK_SIZE, BLOCK_SIZE).slice();
}

/** Persists the first differing sector of a torn flush, drops the rest. */
function firstSectorOnly(): () => number {
  let calls = 0;
  return () => (calls++ === 0 ? 0 : 0.99);
}

describe('superblock', () => {
  it('encode/decode round trip keeps every field (generation above 2^32, clean flag both ways)', () => {
    for (const clean of [true, false]) {
      const sb = { ...sample(), clean };
      const decoded = decodeSuperblock(encodeSuperblock(sb), 'test');
      assert.equal(decoded.version, sb.version);
      assert.equal(decoded.volumeBlocks, sb.volumeBlocks);
      assert.deepEqual([...decoded.uuid], [...sb.uuid]);
      assert.equal(decoded.generation, sb.generation);
      assert.equal(decoded.clean, clean);
      assert.equal(decoded.maxFiles, sb.maxFiles);
      assert.deepEqual(decoded.layout, sb.layout);
    }
  });

  it('the encoding starts with the magic and ends with the crc of the rest', () => {
    const buf = encodeSuperblock(sample());
    const dv = new DataView(buf.buffer);
    assert.equal(dv.getUint32(0, true), SUPERBLOCK_MAGIC);
    assert.equal(dv.getUint32(CRC_OFF, true), crc32(buf.subarray(0, CRC_OFF)));
  });

  it('bad magic is ECORRUPT', () => {
    const buf = encodeSuperblock(sample());
    buf[0] ^= 0xff;
    assert.throws(() => decodeSuperblock(reseal(buf), 'test'), (err: unknown) => isCode('ECORRUPT')(err) && /bad magic/.test((err as Error).message));
  });

  it('a flipped byte anywhere (payload, reserved, crc) is ECORRUPT checksum mismatch', () => {
    for (const off of [5, 16, 30, 44, 60, 200, 4000, CRC_OFF + 1]) {
      const buf = encodeSuperblock(sample());
      buf[off] ^= 0x10;
      assert.throws(() => decodeSuperblock(buf, 'test'), (err: unknown) => isCode('ECORRUPT')(err) && /checksum mismatch/.test((err as Error).message), `offset ${off}`);
    }
  });

  it('an unknown version is EVERSION (and readSuperblock does not fall back to the other copy)', async () => {
    const buf = encodeSuperblock(sample());
    setU32(buf, 4, FORMAT_VERSION + 1);
    assert.throws(() => decodeSuperblock(reseal(buf), 'test'), isCode('EVERSION'));

    const storage = new MemoryStorage(16 * MiB);
    await mkfs(storage);
    const newest = copyAt(storage, SUPERBLOCK_PFNS[1]);
    setU32(newest, 4, 99);
    storage.view(SUPERBLOCK_PFNS[1] * BLOCK_SIZE, BLOCK_SIZE).set(reseal(newest));
    assert.throws(() => readSuperblock(storage), isCode('EVERSION'));
  });

  it('checksum-valid but impossible fields are ECORRUPT: geometry, zone table, reserved bytes, block size', () => {
    const cases: Array<[string, (buf: Uint8Array) => void]> = [
      ['block size', (b) => setU32(b, 8, 8192)],
      ['maxFiles', (b) => setU32(b, 48, 12345)],
      ['zone count', (b) => setU32(b, 52, 6)],
      ['zone start', (b) => setU32(b, 56 + 6 * 8, 4096)],
      ['reserved byte', (b) => { b[500] = 1; }],
      ['volume size below the minimum', (b) => { setU32(b, 16, 100); setU32(b, 20, 0); }],
      ['volume size above the maximum', (b) => { setU32(b, 16, 0); setU32(b, 20, 0x10); }],
    ];
    for (const [what, edit] of cases) {
      const buf = encodeSuperblock(sample());
      edit(buf);
      assert.throws(() => decodeSuperblock(reseal(buf), 'test'), isCode('ECORRUPT'), what);
    }
  });

  it('readSuperblock takes the valid copy with the highest generation and reports the bad one', async () => {
    const storage = new MemoryStorage(16 * MiB);
    const made = await mkfs(storage);
    let read = readSuperblock(storage);
    assert.equal(read.sb.generation, made.generation);
    assert.deepEqual(read.badCopies, []);

    storage.view(SUPERBLOCK_PFNS[1] * BLOCK_SIZE + 100, 1)[0] ^= 1;
    read = readSuperblock(storage);
    assert.equal(read.sb.generation, made.generation - 1);
    assert.equal(read.badCopies.length, 1);
    assert.match(read.badCopies[0], /block 2: checksum mismatch/);

    storage.view(SUPERBLOCK_PFNS[0] * BLOCK_SIZE, 4).fill(0);
    assert.throws(() => readSuperblock(storage), isCode('ECORRUPT'));
  });

  it('readSuperblock refuses a volume file smaller than the superblock says (ECORRUPT)', async () => {
    const big = new MemoryStorage(32 * MiB);
    await mkfs(big);
    const image = big.durableImage().subarray(0, 16 * MiB);
    assert.throws(() => readSuperblock(MemoryStorage.fromImage(image)), isCode('ECORRUPT'));
  });

  it('writeSuperblock alternates the copies, always overwriting the older one', async () => {
    const storage = new MemoryStorage(16 * MiB);
    const sb = await mkfs(storage);
    for (let i = 0; i < 4; i++) {
      const before = SUPERBLOCK_PFNS.map((pfn) => decodeSuperblock(copyAt(storage, pfn), `copy ${pfn}`).generation);
      const older = before[0] < before[1] ? 0 : 1;
      sb.clean = i % 2 === 0;
      await writeSuperblock(storage, sb);
      const after = SUPERBLOCK_PFNS.map((pfn) => decodeSuperblock(copyAt(storage, pfn), `copy ${pfn}`).generation);
      assert.equal(after[1 - older], before[1 - older], 'the newest copy is left alone');
      assert.equal(after[older], Math.max(...before) + 1, 'the older copy gets the next generation');
      // Durable: a reboot sees it.
      const rebooted = readSuperblock(storage.reboot());
      assert.equal(rebooted.sb.generation, Math.max(...before) + 1);
      assert.equal(rebooted.sb.clean, sb.clean);
    }
  });

  it('a torn write of the new copy leaves the old one valid and in use', async () => {
    const storage = new MemoryStorage(16 * MiB);
    const sb = await mkfs(storage);
    const oldGeneration = sb.generation;
    const untouched = SUPERBLOCK_PFNS.map((pfn) => copyAt(storage, pfn));
    sb.clean = false;
    storage.crashAtFlush(1, firstSectorOnly(), 0.5);
    await assert.rejects(writeSuperblock(storage, sb), SimulatedCrash);

    const rebooted = storage.reboot();
    // The copy holding the newest generation (block 2 after mkfs) was not written at all.
    assert.deepEqual(copyAt(rebooted, SUPERBLOCK_PFNS[1]), untouched[1]);
    // The written copy is torn: its first sector is new, its crc sector is old.
    assert.notDeepEqual(copyAt(rebooted, SUPERBLOCK_PFNS[0]), untouched[0]);
    const read = readSuperblock(rebooted);
    assert.equal(read.sb.generation, oldGeneration);
    assert.equal(read.sb.clean, true);
    assert.equal(read.badCopies.length, 1);
    assert.match(read.badCopies[0], /block 1: checksum mismatch/);

    // The next write goes to the torn copy again (not over the only good one).
    await writeSuperblock(rebooted, read.sb);
    assert.deepEqual(copyAt(rebooted, SUPERBLOCK_PFNS[1]), untouched[1]);
    assert.equal(readSuperblock(rebooted.reboot()).sb.generation, oldGeneration + 1);
  });
});

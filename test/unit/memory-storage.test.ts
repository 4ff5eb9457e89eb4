import assert from 'node:assert/strict';
import { MemoryStorage, SECTOR_BYTES } from '../../server/media/memory-storage';
import { SimulatedCrash } from '../../server/media/storage';
import { seededRng } from '../support/rng';
import { MiB } from '../support/units';

/** The 512-byte sectors of [offsetBytes, +lengthBytes) of `image` that are all `value`. */
function sectorsEqualTo(image: Uint8Array, offsetBytes: number, lengthBytes: number, value: number): number {
  let count = 0;
  for (let s = offsetBytes; s < offsetBytes + lengthBytes; s += SECTOR_BYTES) {
    if (image.subarray(s, s + SECTOR_BYTES).every((b) => b === value)) count++;
  }
  return count;
}

describe('MemoryStorage', () => {
  it('flush makes data durable; unflushed data is only volatile', async () => {
    const storage = new MemoryStorage(16 * MiB);
    assert.equal(storage.chunkBytes, 16 * MiB);
    storage.view(4096, 4096).fill(9);
    storage.view(3 * MiB, 512).fill(4);
    assert.equal(storage.durableImage()[4096], 0);
    await storage.flush(4096, 4096);
    assert.equal(storage.flushCount, 1);
    const image = storage.durableImage();
    assert.equal(image[4096], 9);
    assert.equal(image[3 * MiB], 0);
    const rebooted = storage.reboot();
    assert.equal(rebooted.view(4096, 1)[0], 9);
    assert.equal(rebooted.view(3 * MiB, 1)[0], 0);
  });

  it('default chunk is the largest power of two <= size; views must not cross it', () => {
    const storage = new MemoryStorage(48 * MiB);
    assert.equal(storage.chunkBytes, 32 * MiB);
    storage.view(32 * MiB - 4096, 4096);
    assert.throws(() => storage.view(32 * MiB - 4096, 8192), /crosses a chunk boundary/);
    const small = new MemoryStorage(16 * MiB, { chunkBytes: 1 * MiB });
    assert.throws(() => small.view(MiB - 1, 2), assert.AssertionError);
  });

  it('crash at probability 0 drops unflushed data, at 1 keeps it; the storage is then dead', async () => {
    for (const [probability, expected] of [[0, 0], [1, 7]] as const) {
      const storage = new MemoryStorage(16 * MiB);
      storage.view(0, 4096).fill(1);
      await storage.flush(0, 4096);
      storage.view(0, 4096).fill(7);
      storage.view(10 * MiB, 4096).fill(7);
      storage.crash(seededRng(1), probability);
      const image = storage.durableImage();
      assert.equal(image[0], expected === 0 ? 1 : 7);
      assert.equal(image[10 * MiB], expected);
      assert.throws(() => storage.view(0, 4096), SimulatedCrash);
      assert.throws(() => storage.flush(0, 4096), SimulatedCrash);
      assert.throws(() => storage.flushSync(0, 4096), SimulatedCrash);
      storage.close();
    }
  });

  it('crash at probability 0.5 persists some dirty sectors and not others, reproducibly', () => {
    const images = [1, 2].map(() => {
      const storage = new MemoryStorage(16 * MiB);
      storage.view(MiB, 64 * SECTOR_BYTES).fill(3);
      storage.crash(seededRng(42));
      return storage.durableImage();
    });
    const persisted = sectorsEqualTo(images[0], MiB, 64 * SECTOR_BYTES, 3);
    assert.ok(persisted > 0 && persisted < 64, `persisted ${persisted} of 64 sectors`);
    assert.deepEqual(images[0], images[1]);
  });

  it('crashAtFlush tears the n-th flush and kills the storage', async () => {
    const storage = new MemoryStorage(16 * MiB);
    storage.crashAtFlush(2, seededRng(7), 0.5);
    storage.view(0, 4096).fill(5);
    await storage.flush(0, 4096);
    storage.view(MiB, 32 * SECTOR_BYTES).fill(6);
    storage.view(2 * MiB, 4096).fill(6); // dirty, outside the torn flush's range
    assert.throws(() => storage.flush(MiB, 32 * SECTOR_BYTES), SimulatedCrash);
    assert.equal(storage.flushCount, 2);
    assert.ok(storage.crashed);
    assert.throws(() => storage.view(0, 4096), SimulatedCrash);
    assert.throws(() => storage.flushSync(0, 4096), SimulatedCrash);

    const rebooted = storage.reboot();
    assert.equal(rebooted.view(0, 1)[0], 5);
    const persisted = sectorsEqualTo(rebooted.view(MiB, 32 * SECTOR_BYTES), 0, 32 * SECTOR_BYTES, 6);
    assert.ok(persisted > 0 && persisted < 32, `torn flush persisted ${persisted} of 32 sectors`);
    assert.equal(rebooted.view(2 * MiB, 1)[0], 0);
  });

  it('a flush still pending when the storage dies rejects', async () => {
    const storage = new MemoryStorage(16 * MiB);
    storage.view(0, 512).fill(1);
    const pending = storage.flush(0, 512);
    storage.crash(seededRng(3), 0);
    await assert.rejects(pending, SimulatedCrash);
    assert.equal(storage.durableImage()[0], 1); // it had reached the medium
  });

  it('close detaches views; fromImage copies the image', () => {
    const image = new Uint8Array(16 * MiB).fill(2);
    const storage = MemoryStorage.fromImage(image);
    image.fill(0);
    const view = storage.view(0, 4096);
    assert.equal(view[0], 2);
    storage.close();
    assert.equal(view.length, 0);
    assert.equal(storage.durableImage()[0], 2);
  });
});

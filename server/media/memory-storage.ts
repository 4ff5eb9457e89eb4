/**
 * BlockStorage in memory, for tests: the engine runs on it as on the mapped volume file,
 * and the test decides when the "machine" loses power.
 *
 * Two images model the medium: `volatile` is what views expose (the page cache), `durable`
 * is what survives a crash (the disk). flush() copies a range from volatile to durable.
 * Like the kernel, which may write back any dirty page at any time in 512-byte sectors,
 * a crash persists an arbitrary subset of the not-yet-flushed sectors:
 * - crashAtFlush(n, rng): the n-th flush from now persists a random subset of its range's
 *   differing sectors, then throws SimulatedCrash (a torn flush);
 * - crash(rng): power loss now, anywhere in the volume.
 * After either, the storage is dead: every view/flush throws SimulatedCrash, as if the
 * process had died at that point. reboot() then gives a fresh storage over the durable image.
 */
import assert from 'node:assert';
import { BLOCK_SIZE } from '../limits';
import { SimulatedCrash, type BlockStorage } from './storage';

export const SECTOR_BYTES = 512;
const CHUNK_BYTES_MAX = 1024 * 1024 * 1024;
/** Crash scans compare this much at once (memcmp) before looking at single sectors. */
const SCAN_BYTES = 64 * 1024;

export interface MemoryStorageOptions {
  /** A power of two, multiple of BLOCK_SIZE; default: the largest one <= min(sizeBytes, 1 GiB). */
  chunkBytes?: number;
}

interface PendingCrash {
  /** flushCount at which the torn flush happens. */
  atFlush: number;
  rng: () => number;
  tornProbability: number;
}

export class MemoryStorage implements BlockStorage {
  readonly sizeBytes: number;
  readonly chunkBytes: number;
  private volatile: Uint8Array<ArrayBuffer>;
  private readonly durable: Uint8Array<ArrayBuffer>;
  private flushes = 0;
  private pendingCrash: PendingCrash | undefined;
  private crashedAt: string | undefined;
  private closed = false;

  constructor(sizeBytes: number, options: MemoryStorageOptions = {}) {
    assert(Number.isSafeInteger(sizeBytes) && sizeBytes > 0 && sizeBytes % BLOCK_SIZE === 0, `sizeBytes ${sizeBytes}`);
    const chunkBytes = options.chunkBytes ?? largestPowerOfTwoAtMost(Math.min(sizeBytes, CHUNK_BYTES_MAX));
    assert(chunkBytes >= BLOCK_SIZE && chunkBytes % BLOCK_SIZE === 0 && isPowerOfTwo(chunkBytes), `chunkBytes ${chunkBytes}`);
    this.sizeBytes = sizeBytes;
    this.chunkBytes = chunkBytes;
    this.volatile = new Uint8Array(sizeBytes);
    this.durable = new Uint8Array(sizeBytes);
  }

  /** A storage whose medium holds `durable` (copied) and whose page cache is clean. */
  static fromImage(durable: Uint8Array, options: MemoryStorageOptions = {}): MemoryStorage {
    const storage = new MemoryStorage(durable.length, options);
    storage.durable.set(durable);
    storage.volatile.set(durable);
    return storage;
  }

  /** flush() and flushSync() calls so far, including the one that crashed. */
  get flushCount(): number {
    return this.flushes;
  }

  /** True once a simulated crash happened. */
  get crashed(): boolean {
    return this.crashedAt !== undefined;
  }

  view(offsetBytes: number, lengthBytes: number): Uint8Array {
    this.assertAlive('view');
    this.assertRange(offsetBytes, lengthBytes);
    const chunkStart = offsetBytes - (offsetBytes % this.chunkBytes);
    assert(offsetBytes + lengthBytes <= chunkStart + this.chunkBytes, `view [${offsetBytes}, +${lengthBytes}) crosses a chunk boundary`);
    return this.volatile.subarray(offsetBytes, offsetBytes + lengthBytes);
  }

  /**
   * Persists the range when called (as msync would by the time it returns) and resolves on
   * a later turn of the event loop. A torn flush throws SimulatedCrash synchronously: the
   * process dies inside the call. A flush still pending when the storage dies rejects.
   */
  flush(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.flushSync(offsetBytes, lengthBytes);
    return new Promise((resolve, reject) => {
      setImmediate(() => (this.crashedAt === undefined ? resolve() : reject(new SimulatedCrash(this.crashedAt))));
    });
  }

  flushSync(offsetBytes: number, lengthBytes: number): void {
    this.assertAlive('flush');
    this.assertRange(offsetBytes, lengthBytes);
    this.flushes++;
    const crash = this.pendingCrash;
    if (crash !== undefined && crash.atFlush === this.flushes) {
      this.persistSectors(offsetBytes, offsetBytes + lengthBytes, crash.rng, crash.tornProbability);
      this.die(`flush #${this.flushes} [${offsetBytes}, +${lengthBytes})`);
    }
    this.durable.set(this.volatile.subarray(offsetBytes, offsetBytes + lengthBytes), offsetBytes);
  }

  /**
   * The n-th flush from now (1-based) is torn: each sector of its range that differs from
   * the medium is persisted with probability tornProbability; then it throws SimulatedCrash.
   */
  crashAtFlush(n: number, rng: () => number, tornProbability = 0.5): void {
    assert(Number.isSafeInteger(n) && n >= 1, `n ${n}`);
    assert(tornProbability >= 0 && tornProbability <= 1, `tornProbability ${tornProbability}`);
    this.assertAlive('crashAtFlush');
    this.pendingCrash = { atFlush: this.flushes + n, rng, tornProbability };
  }

  /** Power loss now: each dirty sector anywhere is persisted with probability persistProbability. */
  crash(rng: () => number, persistProbability = 0.5): void {
    assert(persistProbability >= 0 && persistProbability <= 1, `persistProbability ${persistProbability}`);
    this.assertAlive('crash');
    this.persistSectors(0, this.sizeBytes, rng, persistProbability);
    this.crashedAt = 'crash()';
  }

  /** A copy of the medium. */
  durableImage(): Uint8Array {
    return this.durable.slice();
  }

  /** The machine restarted: a fresh storage over the medium, with the same chunking. */
  reboot(): MemoryStorage {
    return MemoryStorage.fromImage(this.durable, { chunkBytes: this.chunkBytes });
  }

  /** Detaches every view (as munmap does). Allowed on a dead storage, so tests can clean up. */
  close(): void {
    assert(!this.closed, 'close() twice');
    this.closed = true;
    // Transferring the buffer detaches it: views taken before now have length 0.
    structuredClone(this.volatile.buffer, { transfer: [this.volatile.buffer] });
    this.volatile = new Uint8Array(0);
  }

  private die(where: string): never {
    this.crashedAt = where;
    throw new SimulatedCrash(where);
  }

  private assertAlive(call: string): void {
    assert(!this.closed, `${call}() after close()`);
    if (this.crashedAt !== undefined) throw new SimulatedCrash(`${call}() after ${this.crashedAt}`);
  }

  private assertRange(offsetBytes: number, lengthBytes: number): void {
    assert(Number.isSafeInteger(offsetBytes) && offsetBytes >= 0, `offsetBytes ${offsetBytes}`);
    assert(Number.isSafeInteger(lengthBytes) && lengthBytes >= 0, `lengthBytes ${lengthBytes}`);
    assert(offsetBytes + lengthBytes <= this.sizeBytes, `range [${offsetBytes}, +${lengthBytes}) beyond ${this.sizeBytes}`);
  }

  /**
   * Copies each 512-byte sector of [startBytes, endBytes) that differs between volatile and
   * durable with probability `probability`, drawing rng() once per differing sector in
   * ascending order (so a seeded rng replays the same crash).
   */
  private persistSectors(startBytes: number, endBytes: number, rng: () => number, probability: number): void {
    for (let sector = startBytes - (startBytes % SECTOR_BYTES); sector < endBytes; sector += SECTOR_BYTES) {
      if (sector % SCAN_BYTES === 0 && sector + SCAN_BYTES <= endBytes && this.sameBytes(sector, SCAN_BYTES)) {
        sector += SCAN_BYTES - SECTOR_BYTES;
        continue;
      }
      if (this.sameBytes(sector, SECTOR_BYTES)) continue;
      if (rng() < probability) this.durable.set(this.volatile.subarray(sector, sector + SECTOR_BYTES), sector);
    }
  }

  private sameBytes(offsetBytes: number, lengthBytes: number): boolean {
    const end = Math.min(offsetBytes + lengthBytes, this.sizeBytes);
    return Buffer.from(this.volatile.buffer, offsetBytes, end - offsetBytes)
      .equals(Buffer.from(this.durable.buffer, offsetBytes, end - offsetBytes));
  }
}

function isPowerOfTwo(value: number): boolean {
  return Number.isSafeInteger(value) && value > 0 && 2 ** Math.round(Math.log2(value)) === value;
}

function largestPowerOfTwoAtMost(value: number): number {
  return 2 ** Math.floor(Math.log2(value));
}

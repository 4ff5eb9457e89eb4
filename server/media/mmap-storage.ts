/**
 * The real volume: the volume file mapped MAP_SHARED through the native addon.
 *
 * Lifecycle: open() opens the file (creating it sparse if asked), takes an exclusive flock
 * so that two daxd processes never map one volume, and maps chunk 0. The other chunks of
 * CHUNK_BYTES (the last one may be shorter) are mapped on first use: the first view() or
 * flush() that reaches them. Mapping reads and writes nothing: a 1 TiB sparse volume opens
 * without touching its pages. close() unmaps the chunks that were mapped (views detach) and
 * closes the descriptor, which releases the flock.
 *
 * Chunks exist because Node 20 caps an ArrayBuffer over foreign memory at 2^32 bytes and a
 * volume reaches 1 TiB; 1 GiB keeps every chunk well below that cap.
 *
 * Why lazily: V8 counts an external ArrayBuffer's length as external memory and answers
 * growth of it with full garbage collections ("external memory pressure"). Mapping all 1024
 * chunks of a 1 TiB volume at open cost ~2.2 s of such collections; a server touches the
 * few chunks its allocator works in. Chunk 0 is mapped at open because mount reads it first
 * (superblock, journal, inode table and bitmaps all lie in it for every volume size up to
 * VOLUME_BYTES_MAX), so a failing mmap still shows at open.
 *
 * A flush of a chunk never mapped is a no-op, not a mapping: nothing was written through it.
 */
import assert from 'node:assert';
import { BusyError, IoError } from '../errors';
import { validateVolumeSize } from './layout';
import { isSyscallError, native } from '../native';
import type { BlockStorage } from './storage';

/** 1 GiB: a power of two, a multiple of BLOCK_SIZE and of every page size. */
export const CHUNK_BYTES = 1024 * 1024 * 1024;

export interface MmapStorageOpenOptions {
  /** Create the file (it must not exist) with this size, sparse. */
  create?: { sizeBytes: number };
}

export class MmapStorage implements BlockStorage {
  readonly chunkBytes = CHUNK_BYTES;
  private closed = false;

  private constructor(
    readonly path: string,
    readonly sizeBytes: number,
    private readonly fd: number,
    /** Index i covers [i * CHUNK_BYTES, +CHUNK_BYTES); undefined until first used. */
    private readonly chunks: Array<ArrayBuffer | undefined>,
  ) {}

  /**
   * Opens the volume file at `path`. Throws BusyError if another process holds its flock,
   * InvalidArgumentError if the size is not a volume size, and the addon's SyscallError
   * (code, errno, syscall) if a system call fails, e.g. code 'ENOENT' for a missing file
   * or 'EEXIST' when creating over an existing one.
   */
  static open(path: string, options: MmapStorageOpenOptions = {}): MmapStorage {
    if (options.create !== undefined) checkVolumeSize(path, options.create.sizeBytes);
    const fd = options.create === undefined ? native.open(path, 'rw') : native.open(path, 'create', options.create.sizeBytes);
    try {
      lockVolume(path, fd);
      const sizeBytes = native.fstatSize(fd);
      checkVolumeSize(path, sizeBytes);
      const chunks = new Array<ArrayBuffer | undefined>(Math.ceil(sizeBytes / CHUNK_BYTES)).fill(undefined);
      chunks[0] = native.mmap(fd, 0, Math.min(CHUNK_BYTES, sizeBytes));
      return new MmapStorage(path, sizeBytes, fd, chunks);
    } catch (err) {
      native.close(fd);
      throw err;
    }
  }

  /** Maps the chunk on first use; a failing mmap throws the addon's SyscallError (e.g. ENOMEM). */
  view(offsetBytes: number, lengthBytes: number): Uint8Array {
    assert(!this.closed, 'view() after close()');
    this.assertRange(offsetBytes, lengthBytes);
    const chunkIndex = Math.floor(offsetBytes / CHUNK_BYTES);
    const offsetInChunk = offsetBytes - chunkIndex * CHUNK_BYTES;
    if (offsetInChunk + lengthBytes > CHUNK_BYTES) assert.fail(`view [${offsetBytes}, +${lengthBytes}) crosses a chunk boundary`);
    return new Uint8Array(this.chunks[chunkIndex] ?? this.mapChunk(chunkIndex), offsetInChunk, lengthBytes);
  }

  /** Chunks mapped so far (tests and benchmarks: lazy mapping keeps this small). */
  get mappedChunks(): number {
    let n = 0;
    for (const chunk of this.chunks) if (chunk !== undefined) n++;
    return n;
  }

  async flush(offsetBytes: number, lengthBytes: number): Promise<void> {
    assert(!this.closed, 'flush() after close()');
    this.assertRange(offsetBytes, lengthBytes);
    try {
      await Promise.all(this.pieces(offsetBytes, lengthBytes).map(([chunk, offset, length]) => native.msync(chunk, offset, length)));
    } catch (err) {
      throw this.ioError(err, offsetBytes, lengthBytes);
    }
  }

  flushSync(offsetBytes: number, lengthBytes: number): void {
    assert(!this.closed, 'flushSync() after close()');
    this.assertRange(offsetBytes, lengthBytes);
    try {
      for (const [chunk, offset, length] of this.pieces(offsetBytes, lengthBytes)) native.msyncSync(chunk, offset, length);
    } catch (err) {
      throw this.ioError(err, offsetBytes, lengthBytes);
    }
  }

  /**
   * madvise(MADV_DONTNEED) over the mapped chunks of the range: its pages leave this
   * process's RSS. Safe on a MAP_SHARED file mapping: dirty pages stay in the page cache and
   * reach the file, views stay valid, and the next access faults the same bytes back in.
   */
  dropResident(offsetBytes: number, lengthBytes: number): void {
    assert(!this.closed, 'dropResident() after close()');
    this.assertRange(offsetBytes, lengthBytes);
    for (const [chunk, offset, length] of this.pieces(offsetBytes, lengthBytes)) native.madvise(chunk, offset, length, 'dontneed');
  }

  /** Unmaps (views detach; an msync in flight still completes) and closes, releasing the flock. */
  close(): void {
    assert(!this.closed, 'close() twice');
    this.closed = true;
    for (const chunk of this.chunks) if (chunk !== undefined) native.munmap(chunk);
    native.close(this.fd);
  }

  private mapChunk(chunkIndex: number): ArrayBuffer {
    assert(this.chunks[chunkIndex] === undefined, `chunk ${chunkIndex} is already mapped`);
    const offsetBytes = chunkIndex * CHUNK_BYTES;
    const chunk = native.mmap(this.fd, offsetBytes, Math.min(CHUNK_BYTES, this.sizeBytes - offsetBytes));
    this.chunks[chunkIndex] = chunk;
    return chunk;
  }

  /**
   * [chunk, offsetInChunk, lengthBytes] for each mapped chunk that [offsetBytes, +lengthBytes)
   * touches. Unmapped chunks are skipped: no view of them ever existed, so nothing is dirty.
   */
  private pieces(offsetBytes: number, lengthBytes: number): Array<[ArrayBuffer, number, number]> {
    const pieces: Array<[ArrayBuffer, number, number]> = [];
    const end = offsetBytes + lengthBytes;
    for (let offset = offsetBytes; offset < end;) {
      const chunkIndex = Math.floor(offset / CHUNK_BYTES);
      const chunkEnd = Math.min((chunkIndex + 1) * CHUNK_BYTES, end);
      const chunk = this.chunks[chunkIndex];
      if (chunk !== undefined) pieces.push([chunk, offset - chunkIndex * CHUNK_BYTES, chunkEnd - offset]);
      offset = chunkEnd;
    }
    return pieces;
  }

  /** On the path of every block access: the messages are built only when an assertion fails. */
  private assertRange(offsetBytes: number, lengthBytes: number): void {
    if (!(Number.isSafeInteger(offsetBytes) && offsetBytes >= 0)) assert.fail(`offsetBytes ${offsetBytes}`);
    if (!(Number.isSafeInteger(lengthBytes) && lengthBytes >= 0)) assert.fail(`lengthBytes ${lengthBytes}`);
    if (offsetBytes + lengthBytes > this.sizeBytes) assert.fail(`range [${offsetBytes}, +${lengthBytes}) beyond ${this.sizeBytes}`);
  }

  private ioError(err: unknown, offsetBytes: number, lengthBytes: number): IoError {
    const reason = err instanceof Error ? err.message : String(err);
    const ioError = new IoError(`flush of volume ${this.path} [${offsetBytes}, +${lengthBytes}) failed: ${reason}`);
    ioError.cause = err;
    return ioError;
  }
}

/** flock, with "held by someone else" as BusyError (EBUSY); other failures stay SyscallErrors. */
function lockVolume(path: string, fd: number): void {
  try {
    native.flock(fd);
  } catch (err) {
    if (isSyscallError(err) && err.code === 'EWOULDBLOCK') {
      throw new BusyError(`volume ${path} is in use by another daxd process (flock held)`);
    }
    throw err;
  }
}

function checkVolumeSize(path: string, sizeBytes: number): void {
  validateVolumeSize(sizeBytes, `volume ${path}`);
}

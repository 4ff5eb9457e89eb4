/**
 * The real volume: the volume file mapped MAP_SHARED through the native addon.
 *
 * Lifecycle: open() opens the file (creating it sparse if asked), takes an exclusive flock
 * so that two daxd processes never map one volume, and maps it in chunks of CHUNK_BYTES
 * (the last one may be shorter). Mapping reads and writes nothing: a 1 TiB sparse volume
 * opens without touching its pages. close() unmaps every chunk (views detach) and closes the
 * descriptor, which releases the flock.
 *
 * Chunks exist because Node 20 caps an ArrayBuffer over foreign memory at 2^32 bytes and a
 * volume reaches 1 TiB; 1 GiB keeps every chunk well below that cap.
 */
import assert from 'node:assert';
import { BusyError, InvalidArgumentError, IoError } from '../errors';
import { BLOCK_SIZE, VOLUME_MAX_BYTES, VOLUME_MIN_BYTES } from '../limits';
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
    private readonly chunks: ArrayBuffer[],
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
    const chunks: ArrayBuffer[] = [];
    try {
      lockVolume(path, fd);
      const sizeBytes = native.fstatSize(fd);
      checkVolumeSize(path, sizeBytes);
      for (let offset = 0; offset < sizeBytes; offset += CHUNK_BYTES) {
        chunks.push(native.mmap(fd, offset, Math.min(CHUNK_BYTES, sizeBytes - offset)));
      }
      return new MmapStorage(path, sizeBytes, fd, chunks);
    } catch (err) {
      for (const chunk of chunks) native.munmap(chunk);
      native.close(fd);
      throw err;
    }
  }

  view(offsetBytes: number, lengthBytes: number): Uint8Array {
    assert(!this.closed, 'view() after close()');
    this.assertRange(offsetBytes, lengthBytes);
    const chunkIndex = Math.floor(offsetBytes / CHUNK_BYTES);
    const offsetInChunk = offsetBytes - chunkIndex * CHUNK_BYTES;
    assert(offsetInChunk + lengthBytes <= CHUNK_BYTES, `view [${offsetBytes}, +${lengthBytes}) crosses a chunk boundary`);
    return new Uint8Array(this.chunks[chunkIndex], offsetInChunk, lengthBytes);
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

  /** Unmaps (views detach; an msync in flight still completes) and closes, releasing the flock. */
  close(): void {
    assert(!this.closed, 'close() twice');
    this.closed = true;
    for (const chunk of this.chunks) native.munmap(chunk);
    native.close(this.fd);
  }

  /** [chunk, offsetInChunk, lengthBytes] for each chunk that [offsetBytes, +lengthBytes) touches. */
  private pieces(offsetBytes: number, lengthBytes: number): Array<[ArrayBuffer, number, number]> {
    const pieces: Array<[ArrayBuffer, number, number]> = [];
    const end = offsetBytes + lengthBytes;
    for (let offset = offsetBytes; offset < end;) {
      const chunkIndex = Math.floor(offset / CHUNK_BYTES);
      const chunkEnd = Math.min((chunkIndex + 1) * CHUNK_BYTES, end);
      pieces.push([this.chunks[chunkIndex], offset - chunkIndex * CHUNK_BYTES, chunkEnd - offset]);
      offset = chunkEnd;
    }
    return pieces;
  }

  private assertRange(offsetBytes: number, lengthBytes: number): void {
    assert(Number.isSafeInteger(offsetBytes) && offsetBytes >= 0, `offsetBytes ${offsetBytes}`);
    assert(Number.isSafeInteger(lengthBytes) && lengthBytes >= 0, `lengthBytes ${lengthBytes}`);
    assert(offsetBytes + lengthBytes <= this.sizeBytes, `range [${offsetBytes}, +${lengthBytes}) beyond ${this.sizeBytes}`);
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
  const ok = Number.isSafeInteger(sizeBytes) && sizeBytes % BLOCK_SIZE === 0
    && sizeBytes >= VOLUME_MIN_BYTES && sizeBytes <= VOLUME_MAX_BYTES;
  if (!ok) {
    throw new InvalidArgumentError(`volume ${path} size ${sizeBytes} bytes is not a multiple of ${BLOCK_SIZE} `
      + `between ${VOLUME_MIN_BYTES} and ${VOLUME_MAX_BYTES} bytes`);
  }
}

/**
 * The volume's storage, as the engine sees it: byte-addressable memory that is volatile
 * until flushed (exactly the contract of a MAP_SHARED mapping of a file on a page-cache
 * filesystem, or of persistent memory before a cache flush).
 *
 * Two implementations: MmapStorage (the real volume file, through the native addon) and
 * MemoryStorage (tests: injects torn writes and crashes at chosen flushes).
 *
 * Invariants every implementation keeps:
 * - sizeBytes is a multiple of BLOCK_SIZE; chunkBytes is a power of two, a multiple of
 *   BLOCK_SIZE, and divides sizeBytes' addressing: a view never crosses a chunk boundary,
 *   so a 4 KiB block is always one contiguous view.
 * - Bytes written through a view may reach the medium at any time, in any order, in
 *   512-byte sectors (the kernel writes back dirty pages whenever it likes); they are
 *   guaranteed on the medium only after flush() of a range covering them resolves.
 */
export interface BlockStorage {
  readonly sizeBytes: number;
  readonly chunkBytes: number;
  /** A live view of [offsetBytes, offsetBytes + lengthBytes); must not cross a chunk. */
  view(offsetBytes: number, lengthBytes: number): Uint8Array;
  /** Make [offsetBytes, +lengthBytes) durable (msync MS_SYNC, off the event loop). */
  flush(offsetBytes: number, lengthBytes: number): Promise<void>;
  /** Same, blocking the event loop: for shutdown and tools only. */
  flushSync(offsetBytes: number, lengthBytes: number): void;
  /**
   * Optional hint: the pages of [offsetBytes, +lengthBytes) need not stay resident in this
   * process (mount calls it for the metadata it scanned once). Content and durability are
   * unchanged: dirty bytes still reach the medium, the next access sees the same bytes.
   */
  dropResident?(offsetBytes: number, lengthBytes: number): void;
  /** Unmap. Views taken before become detached (length 0); using the storage after is a bug. */
  close(): void;
}

/** Thrown by MemoryStorage once a simulated crash happened: the process "died" here. */
export class SimulatedCrash extends Error {
  constructor(where: string) {
    super(`simulated crash at ${where}`);
    this.name = 'SimulatedCrash';
  }
}

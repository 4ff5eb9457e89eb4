/**
 * Requests as the edge checked them (server/rpc/validate.ts builds them; the NBD export
 * and tests reuse those validators). The engine takes these and asserts what they
 * promise, so an argument that breaks one is a bug (INTERNAL), not a user error; the
 * engine still answers for what depends on its state (end of file, a pin's length).
 * A leaf module: types only.
 */
import type { FallocateMode } from './fs/types';

/** Bytes [offset, offset + length) of one page: safe non-negative integers, offset + length <= BLOCK_SIZE. */
export interface CheckedRange {
  readonly offset: number;
  readonly length: number;
}

/** A DMA through a pin: a page index into the pin, and a range inside that page. */
export interface CheckedAccess extends CheckedRange {
  /** A safe non-negative integer; whether the pin has that many pages is the pin's answer (EINVAL). */
  readonly page: number;
}

/** 1..PIN_PAGES_MAX pages from firstPgoff; past EOF is the engine's SIGBUS. */
export interface CheckedPin {
  readonly ino: number;
  readonly firstPgoff: number;
  readonly npages: number;
  readonly writable: boolean;
}

/**
 * length > 0, offset + length <= FILE_BYTES_MAX, and offset and length multiples of
 * BLOCK_SIZE where the mode's rule says pageAligned (FALLOCATE_MODE_RULES).
 */
export interface CheckedFallocate {
  readonly mode: FallocateMode;
  readonly offset: number;
  readonly length: number;
}

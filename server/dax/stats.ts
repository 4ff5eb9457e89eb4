/**
 * What the dax layer shows of itself: the shapes its read-only API (Dax.stats() and the
 * others in dax.ts) returns. Every value is a frozen copy taken at one instant, never a
 * live map: metrics (server/metrics.ts) and the admin API (server/http/admin-views.ts)
 * read the layer only through these, and tests check through them that nothing is left
 * behind.
 */
import type { EntryState } from './address-space';
import type { PinState, PinStats } from './pin-table';

/** Sizes of the dax layer's tables (a frozen copy; tests check that nothing is left behind). */
export interface DaxStats {
  /** Files with a live address space (mapped, pinned, locked or dirty). */
  readonly addressSpaces: number;
  /** PTE tokens outstanding. */
  readonly ptes: number;
  /** DMA pins held (active or recalled). */
  readonly pins: number;
  /** Sessions the pin table keeps a per-session pin count for. */
  readonly pinOwners: number;
}

/** What is busy right now across all address spaces (a frozen copy; metrics gauges). */
export interface DaxOccupancy {
  /** Mapping entries in all address spaces. */
  readonly mappingEntries: number;
  /** Of those, PMD (order 9) entries: each covers PMD_PAGES pages. */
  readonly mappingEntriesPmd: number;
  /** Entry locks held now (the fault fast path's, never seen across an await, excluded). */
  readonly entryLocksHeld: number;
  /** Requests queued for an entry lock now. */
  readonly entryLockWaiters: number;
  /** Layout changes waiting for pins to drop now (S4). */
  readonly layoutBreaksWaiting: number;
}

/** One file's address space at one instant (frozen copy), or null from spaceStats: none. */
export interface SpaceStats {
  readonly ino: number;
  /** Mapping entries (pages with an entry: mapped, zero page, or a locked placeholder). */
  readonly entries: number;
  /** Entries whose block a DMA pin holds. */
  readonly pinnedPages: number;
  /** Sessions holding PTEs on the file. */
  readonly mappers: number;
  /** Entry locks held now, and requests queued for one. */
  readonly locksHeld: number;
  readonly lockWaiters: number;
  /** Layout changes waiting for an unpin here (S4). */
  readonly layoutBreaksWaiting: number;
  /** The mmap lock: held (shared or exclusive), and requests queued for it. */
  readonly mmapLockHeld: boolean;
  readonly mmapLockWaiters: number;
  /** Since the address space was created: waits for an entry lock, S3 invalidations. */
  readonly lockWaits: number;
  readonly invalidations: number;
}

/** One live pin (frozen copy). Ids are capabilities (S7): callers showing them cut them. */
export interface PinView {
  readonly id: string;
  readonly ownerId: string;
  readonly ino: number;
  readonly firstPgoff: number;
  readonly npages: number;
  /** Pages that hold a block reference (a read-only pin on a hole holds none). */
  readonly pinnedBlocks: number;
  readonly writable: boolean;
  readonly state: PinState;
  readonly createdAtMs: number;
  readonly leaseMs: number;
  readonly dmaInFlight: number;
}

/** The live pins, oldest first, at most `limit` of them, with the pin table's counts. */
export interface PinsSnapshot extends Readonly<PinStats> {
  /** Every live pin, not only the rows returned. */
  readonly total: number;
  readonly pins: readonly PinView[];
}

/** One held entry lock (frozen copy), with its queue. Times are performance.now() based. */
export interface HeldLockView {
  readonly ino: number;
  readonly pgoff: number;
  readonly state: EntryState;
  readonly heldMs: number;
  readonly waiters: number;
  /** How long the first waiter has waited (0 when nobody waits). */
  readonly longestWaitMs: number;
}

export type DeepReadonly<T> = { readonly [K in keyof T]: T[K] extends object ? DeepReadonly<T[K]> : T[K] };

/**
 * What every dax module shares: the file layer, the PTE table, failpoints, and the
 * address spaces of files that are mapped (created on first use, dropped when idle).
 */
import type { FileSystem } from '../fs/filesystem';
import { AddressSpace } from './address-space';
import type { Failpoints } from './failpoints';
import type { DaxObserver } from './observer';
import type { PteTable } from './pte';
import { PinTable } from './pin-table';

export interface DaxCounters {
  faults: Record<'hole' | 'allocate' | 'mapped' | 'cow' | 'sync', number>;
  invalidations: Record<string, number>;
  /** Every PTE revoked: invalidations of all reasons, unmaps and session ends. */
  revokedPtes: number;
  writebackFlushes: number;
  /** S4 violations caught by the server (must stay 0: a test asserts it). */
  entriesDeletedWhilePinned: number;
  /** Layout changes that had to wait for pins, by outcome. */
  layoutBreakWaits: Record<'done' | 'failed' | 'timedout' | 'cancelled', number>;
  layoutBreakWaitMs: number[];
}

export class DaxContext {
  readonly spaces = new Map<number, AddressSpace>();
  readonly pins = new PinTable();
  /** RECALL grace period (PIN_RECALL_GRACE_MS unless a test shortens it). */
  recallGraceMs: number;
  readonly counters: DaxCounters = {
    faults: { hole: 0, allocate: 0, mapped: 0, cow: 0, sync: 0 },
    invalidations: {},
    revokedPtes: 0,
    writebackFlushes: 0,
    entriesDeletedWhilePinned: 0,
    layoutBreakWaits: { done: 0, failed: 0, timedout: 0, cancelled: 0 },
    layoutBreakWaitMs: [],
  };

  constructor(
    readonly fs: FileSystem, readonly ptes: PteTable, readonly failpoints: Failpoints, recallGraceMs: number,
    /** Metrics and slow-operation logs (server/slow-ops.ts); NO_OBSERVER in tests and tools. */
    readonly observer: DaxObserver,
  ) {
    this.recallGraceMs = recallGraceMs;
  }

  /** The file's address space; holds a user reference on the inode while it exists. */
  space(ino: number): AddressSpace {
    let as = this.spaces.get(ino);
    if (!as) {
      this.fs.acquire(ino);
      as = new AddressSpace(ino, this.observer);
      this.spaces.set(ino, as);
    }
    return as;
  }

  /** Drops an address space nobody uses; an unlinked file is freed then. */
  maybeDrop(as: AddressSpace): void {
    if (!as.idle || this.spaces.get(as.ino) !== as) return;
    this.spaces.delete(as.ino);
    this.fs.release(as.ino).catch((err: unknown) => {
      // Freeing an orphan failed (EIO): the journal is aborted and the next mount frees it.
      process.emitWarning(`release of inode ${as.ino} failed: ${String(err)}`);
    });
  }

  countInvalidations(reason: string, n: number): void {
    if (n === 0) return;
    this.counters.revokedPtes += n;
    this.counters.invalidations[reason] = (this.counters.invalidations[reason] ?? 0) + n;
  }
}

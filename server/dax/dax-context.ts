/**
 * What every dax module shares: the file layer, the PTE table, failpoints, and the
 * address spaces of files that are mapped (created on first use, dropped when idle).
 */
import assert from 'node:assert';
import { DaxError } from '../errors';
import type { FileSystem } from '../fs/filesystem';
import { AddressSpace } from './address-space';
import type { Failpoints } from './failpoints';
import type { DaxObserver } from './observer';
import type { PteTable } from './pte';
import { PinTable } from './pin-table';
import { PMD_FALLBACK_REASONS, type PmdFallbackReason } from './pmd-reasons';

export interface DaxCounters {
  /**
   * Faults by outcome; pmd: PMD faults that installed a PMD PTE (also counted as hole,
   * allocate or mapped), pmd_fallback: PMD faults that fell back to a 4 KiB fault (counted
   * again by the outcome of that fault).
   */
  faults: Record<'hole' | 'allocate' | 'mapped' | 'cow' | 'sync' | 'pmd' | 'pmd_fallback', number>;
  /** PMD fallbacks by reason (pmd.ts). */
  pmdFallbacks: Record<PmdFallbackReason, number>;
  invalidations: Record<string, number>;
  /** Every PTE revoked: invalidations of all reasons, unmaps and session ends. */
  revokedPtes: number;
  writebackFlushes: number;
  /** Layout changes that had to wait for pins, by outcome (durations: the observer's histogram). */
  layoutBreakWaits: Record<'done' | 'failed' | 'timedout' | 'cancelled', number>;
}

export class DaxContext {
  readonly spaces = new Map<number, AddressSpace>();
  /** Address spaces created for a fault or a pin since start (any file): a drain's catch-up test (Dax.mappingEpoch). */
  spacesCreated = 0;
  readonly pins = new PinTable();
  /** RECALL grace period (PIN_RECALL_GRACE_MS unless a test shortens it). */
  recallGraceMs: number;
  readonly counters: DaxCounters = {
    faults: { hole: 0, allocate: 0, mapped: 0, cow: 0, sync: 0, pmd: 0, pmd_fallback: 0 },
    pmdFallbacks: Object.fromEntries(PMD_FALLBACK_REASONS.map((r) => [r, 0])) as Record<PmdFallbackReason, number>,
    invalidations: {},
    revokedPtes: 0,
    writebackFlushes: 0,
    layoutBreakWaits: { done: 0, failed: 0, timedout: 0, cancelled: 0 },
  };

  constructor(
    readonly fs: FileSystem, readonly ptes: PteTable, readonly failpoints: Failpoints, recallGraceMs: number,
    /** Metrics and slow-operation logs (server/slow-ops.ts); NO_OBSERVER in tests and tools. */
    readonly observer: DaxObserver,
  ) {
    this.recallGraceMs = recallGraceMs;
  }

  /**
   * The file's address space; holds a user reference on the inode while it exists.
   * `mapper`: created for a fault or a pin (counted in spacesCreated), not for a layout change.
   */
  space(ino: number, mapper = true): AddressSpace {
    let as = this.spaces.get(ino);
    if (!as) {
      this.fs.acquire(ino);
      as = new AddressSpace(ino, this.observer);
      this.spaces.set(ino, as);
      if (mapper) this.spacesCreated++;
    }
    return as;
  }

  /**
   * Drops an address space nobody uses; an unlinked file is freed then. Called after
   * every change that may leave it unused: a fault, an unmap or session end, an unpin,
   * a writeback, a layout change, an unlink (the file layer's `unlinked` hook).
   */
  maybeDrop(as: AddressSpace): void {
    if (this.spaces.get(as.ino) !== as) return;
    if (as.mappings.size === 0 && as.pinned.size === 0 && this.unlinked(as.ino)) forgetDirt(as);
    if (!as.idle) return;
    // Idle: no mapping, pin, waiter or held lock is left to reach it once it is gone.
    assert(as.held.size === 0 && as.waitQueues.size === 0 && as.pinned.size === 0, `dropping a busy address space of inode ${as.ino}`);
    this.spaces.delete(as.ino);
    this.fs.release(as.ino).catch((err: unknown) => {
      // Freeing an orphan failed (EIO): the journal is aborted and the next mount frees it.
      process.emitWarning(`release of inode ${as.ino} failed: ${String(err)}`);
    });
  }

  /** The file layer knows whether the name is gone (FileSystem.isUnlinked). */
  private unlinked(ino: number): boolean {
    try {
      return this.fs.isUnlinked(ino);
    } catch (err) {
      // Unmounted (shutdown ended sessions late): nothing is freed any more.
      if (err instanceof DaxError) return false;
      throw err;
    }
  }

  countInvalidations(reason: string, n: number): void {
    if (n === 0) return;
    this.counters.revokedPtes += n;
    this.counters.invalidations[reason] = (this.counters.invalidations[reason] ?? 0) + n;
  }
}

/**
 * The last mapper and pin of an unlinked file are gone: nobody can reach its pages again
 * (no name to open, no PTE, no pin), and its blocks are about to be freed, so its dirty
 * entries need no writeback (S5 is about data someone can read). They are forgotten, so
 * the address space becomes idle, is dropped, and its inode reference goes: the file
 * layer then frees the blocks and the inode through the journal. Entries locked by a
 * writeback or an invalidation in progress keep their flags; that path calls maybeDrop
 * again when it unlocks. TOWRITE goes too: a writeback that snapshotted the entry skips it.
 */
function forgetDirt(as: AddressSpace): void {
  for (const e of as.entries.values()) {
    if (e.locked || e.pins > 0 || e.pteCount > 0) continue;
    e.dirty = false;
    e.towrite = false;
  }
}

/**
 * The dax layer's front: what server/rpc calls for the Mapping service, and the layout
 * hooks it installs in the file layer (S3, S4). See entry-lock.ts for the lock order.
 */
import assert from 'node:assert';
import { BLOCK_SIZE, PIN_RECALL_GRACE_MS } from '../limits';
import type { FileSystem } from '../fs/filesystem';
import type { LayoutHooks } from '../fs/types';
import { load, store, storeFaultIfStale, type StoreTarget } from './access';
import { DaxContext, type DaxCounters } from './dax-context';
import type { DaxOccupancy, DaxStats, DeepReadonly, HeldLockView, PinsSnapshot, PinView, SpaceStats } from './stats';
import { dropMapping, fault, faultPmd, FaultKind, FaultResult, type FaultSize } from './fault';
import { Failpoints } from './failpoints';
import { breakLayout, invalidateAllocated } from './invalidate';
import { NO_OBSERVER, type DaxObserver } from './observer';
import type { AddressSpace, Pte } from './address-space';
import type { MappingOwner } from './owner';
import { PteTable } from './pte';
import { writeback } from './writeback';
import { dmaRead, dmaWrite, lookupPin, pin, type PinRequestArgs, renewLease, unpin } from './pin';
import type { Pin, PinStats } from './pin-table';

export type { FaultSize } from './fault';
export type { PmdFallbackReason } from './pmd-reasons';
export { PMD_FALLBACK_REASONS } from './pmd-reasons';

export interface InspectEntry {
  /** The entry's first page (a PMD entry's aligned base: one row covers its PMD_PAGES pages). */
  pgoff: number;
  /** 0: one page; 9: a PMD entry (ZERO: the huge zero page; MAPPED: 2 MiB of blocks from pfn). */
  order: 0 | 9;
  state: 'EMPTY' | 'ZERO' | 'MAPPED';
  pfn: number;
  locked: boolean;
  dirty: boolean;
  towrite: boolean;
  pinCount: number;
  mappers: number;
  waiters: number;
}

export type { DaxOccupancy, DaxStats, DeepReadonly, HeldLockView, PinsSnapshot, PinView, SpaceStats } from './stats';

export class Dax {
  /**
   * The dax layer's state. Private: the rest of the server reads it only through
   * stats(), counters(), pinStats(), occupancy(), spaceStats(), pinsSnapshot(),
   * heldLocks() and inspect(), which return frozen copies (stats.ts), so no caller can
   * hold a live map or change a table behind the locks.
   */
  readonly #ctx: DaxContext;

  constructor(readonly fs: FileSystem, opts: { failpoints?: boolean; recallGraceMs?: number; observer?: DaxObserver } = {}) {
    this.#ctx = new DaxContext(
      fs, new PteTable(), new Failpoints(opts.failpoints ?? false), opts.recallGraceMs ?? PIN_RECALL_GRACE_MS, opts.observer ?? NO_OBSERVER,
    );
    const hooks: LayoutHooks = {
      allocated: (ino, first, last) => invalidateAllocated(this.#ctx, ino, first, last),
      breakLayout: (ino, first, last, reason, opts) => breakLayout(this.#ctx, ino, first, last, reason, opts),
      unlinked: (ino) => {
        const as = this.#ctx.spaces.get(ino);
        if (as) this.#ctx.maybeDrop(as);
      },
    };
    fs.setHooks(hooks);
  }

  get failpoints(): Failpoints {
    return this.#ctx.failpoints;
  }

  /** A PAGE fault, or a PMD fault over the aligned 2 MiB holding `pgoff` (pmd.ts), which may fall back. */
  fault(owner: MappingOwner, ino: number, pgoff: number, kind: FaultKind, sync: boolean, size: FaultSize = 'PAGE'): Promise<FaultResult> {
    return size === 'PMD' ? faultPmd(this.#ctx, owner, ino, pgoff, kind, sync) : fault(this.#ctx, owner, ino, pgoff, kind, sync);
  }

  load(owner: MappingOwner, token: string, offset: number, length: number): Buffer {
    return load(this.#ctx, owner, token, offset, length);
  }

  store(owner: MappingOwner, token: string, offset: number, data: Uint8Array): void {
    store(this.#ctx, owner, token, offset, data);
  }

  /** Store with fault_if_stale: the new PTE when a WRITE fault was taken (access.ts). */
  storeFaultIfStale(owner: MappingOwner, token: string, offset: number, data: Uint8Array, target: StoreTarget): Promise<Pte | null> {
    return storeFaultIfStale(this.#ctx, owner, token, offset, data, target);
  }

  /**
   * msync: write back the dirty mapped pages of the range (S5), and the file's dirty
   * blocks a layout break handed over (fs.flushDirty), then commit: durable on return (S6). A write fault's allocation or UNWRITTEN conversion sits in the running
   * transaction; without the commit, flushed stores would come back as a hole or zeros.
   * `actor`, the session that asked, is not sent Invalidate(WRITEBACK) for its own PTEs:
   * its own action.
   */
  async msync(ino: number, first: number, last: number, actor?: MappingOwner): Promise<void> {
    this.fs.stat(ino);
    await writeback(this.#ctx, ino, first, last, actor);
    // Stores a layout break handed to the file (collapse shift, partial pages) are in no
    // dax entry any more: flush them too (the whole file's, as fsync does), then commit.
    await this.fs.flushDirty(ino);
    await this.fs.commit();
  }

  /** fsync = write back every dirty mapped page, then the file layer's fsync (S5, S6). */
  async fsync(ino: number, datasync: boolean): Promise<void> {
    await writeback(this.#ctx, ino, 0, Number.MAX_SAFE_INTEGER);
    await this.fs.fsync(ino, datasync);
  }

  // ---- DMA pins (S4) -------------------------------------------------------------

  pin(owner: MappingOwner, args: PinRequestArgs): Promise<Pin> {
    return pin(this.#ctx, this.#ctx.pins, owner, args);
  }

  unpin(owner: MappingOwner, pinId: string): void {
    unpin(this.#ctx, this.#ctx.pins, lookupPin(this.#ctx.pins, owner, pinId));
  }

  renewPin(owner: MappingOwner, pinId: string): Pin {
    const p = lookupPin(this.#ctx.pins, owner, pinId);
    renewLease(this.#ctx, this.#ctx.pins, p);
    return p;
  }

  dmaRead(owner: MappingOwner, pinId: string, page: number, offset: number, length: number): Promise<Buffer> {
    return dmaRead(this.#ctx, lookupPin(this.#ctx.pins, owner, pinId), page, offset, length);
  }

  dmaWrite(owner: MappingOwner, pinId: string, page: number, offset: number, data: Uint8Array): Promise<void> {
    return dmaWrite(this.#ctx, lookupPin(this.#ctx.pins, owner, pinId), page, offset, data);
  }

  /** Writes back every dirty mapped page of every file (shutdown, before unmount). */
  async sync(): Promise<void> {
    for (const ino of [...this.#ctx.spaces.keys()]) await writeback(this.#ctx, ino, 0, Number.MAX_SAFE_INTEGER);
  }

  /** Drops the caller's PTEs in the range (munmap). */
  unmap(owner: MappingOwner, ino: number, first: number, last: number): void {
    this.fs.stat(ino);
    const as = this.#ctx.spaces.get(ino);
    const m = as?.mappings.get(owner.id);
    if (!as || !m) return;
    this.#ctx.counters.revokedPtes += this.#ctx.ptes.revokeRange(m, first, last);
    if (m.table.size === 0) {
      owner.detach(m.handle);
      dropMapping(this.#ctx, m);
    }
  }

  /**
   * For a cluster drain's catch-up test: whether the file has an address space now
   * (mapped or pinned: stores and DMA writes may reach it without the file layer), and
   * how many address spaces faults and pins created so far (any file: a mapping made and
   * dropped in between is seen as a change of this count; a layout change's own address
   * space is not counted).
   */
  mappingEpoch(ino: number): { mapped: boolean; created: number } {
    return { mapped: this.#ctx.spaces.has(ino), created: this.#ctx.spacesCreated };
  }

  inspect(ino: number, first: number, last: number): InspectEntry[] {
    this.fs.stat(ino);
    const as = this.#ctx.spaces.get(ino);
    if (!as) return [];
    return as.entriesInRange(first, last).map((e) => ({
      pgoff: e.pgoff, order: e.order, state: e.state, pfn: e.pfn, locked: e.locked, dirty: e.dirty, towrite: e.towrite,
      pinCount: e.pins, mappers: e.pteCount, waiters: as.waitQueues.get(e.pgoff)?.length ?? 0,
    }));
  }

  /**
   * The read-only API below is what the rest of the server (metrics, the admin API) and
   * the tests see of the layer: each call returns a frozen copy, never a live map.
   */
  stats(): DaxStats {
    const ctx = this.#ctx;
    return Object.freeze({ addressSpaces: ctx.spaces.size, ptes: ctx.ptes.size, pins: ctx.pins.byId.size, pinOwners: ctx.pins.owners });
  }

  /** Event counters since the layer started (dax-context.ts), copied. */
  counters(): DeepReadonly<DaxCounters> {
    const c = this.#ctx.counters;
    return deepFreeze({
      faults: { ...c.faults }, pmdFallbacks: { ...c.pmdFallbacks }, invalidations: { ...c.invalidations }, revokedPtes: c.revokedPtes,
      writebackFlushes: c.writebackFlushes, layoutBreakWaits: { ...c.layoutBreakWaits },
    });
  }

  /** The pin table's counts: active pins, pinned blocks, revocations, recalls. */
  pinStats(): Readonly<PinStats> {
    return Object.freeze({ ...this.#ctx.pins.stats });
  }

  /** O(address spaces + lock queues): the sums are taken when asked, not kept. */
  occupancy(): DaxOccupancy {
    let mappingEntries = 0;
    let mappingEntriesPmd = 0;
    let entryLocksHeld = 0;
    let entryLockWaiters = 0;
    let layoutBreaksWaiting = 0;
    for (const as of this.#ctx.spaces.values()) {
      mappingEntries += as.entries.size;
      mappingEntriesPmd += as.pmdCount;
      entryLocksHeld += as.held.size;
      entryLockWaiters += waitersOf(as);
      layoutBreaksWaiting += as.pinWaiters.size;
    }
    return Object.freeze({ mappingEntries, mappingEntriesPmd, entryLocksHeld, entryLockWaiters, layoutBreaksWaiting });
  }

  /** The file's address space, or null when it has none (nothing maps, pins or locks it). */
  spaceStats(ino: number): SpaceStats | null {
    const as = this.#ctx.spaces.get(ino);
    if (!as) return null;
    return Object.freeze({
      ino, entries: as.entries.size, pinnedPages: as.pinned.size, mappers: as.mappings.size,
      locksHeld: as.held.size, lockWaiters: waitersOf(as), layoutBreaksWaiting: as.pinWaiters.size,
      mmapLockHeld: as.mmapLock.held, mmapLockWaiters: as.mmapLock.waiters,
      lockWaits: as.stats.lockWaits, invalidations: as.stats.invalidations,
    });
  }

  /** Pins held by a session (PINS_PER_SESSION_MAX counts these). */
  pinCountOf(ownerId: string): number {
    return this.#ctx.pins.countOf(ownerId);
  }

  /** True while the pin is in the table (active or recalled; revoked ones until released). */
  hasPin(pinId: string): boolean {
    return this.#ctx.pins.byId.has(pinId);
  }

  /** O(limit): the table keeps insertion order, so the oldest pins come first. */
  pinsSnapshot(limit: number): PinsSnapshot {
    assert(Number.isSafeInteger(limit) && limit >= 0, `pins snapshot limit ${limit}`);
    const { byId, stats } = this.#ctx.pins;
    const pins: PinView[] = [];
    for (const p of byId.values()) {
      if (pins.length === limit) break;
      pins.push(Object.freeze({
        id: p.id, ownerId: p.owner.id, ino: p.as.ino, firstPgoff: p.firstPgoff, npages: p.pfns.length,
        pinnedBlocks: p.entries.filter((e) => e !== null).length, writable: p.writable, state: p.state,
        createdAtMs: p.createdAtMs, leaseMs: p.leaseMs, dmaInFlight: p.inflight,
      }));
    }
    return Object.freeze({ ...stats, total: byId.size, pins: Object.freeze(pins) });
  }

  /** Every held entry lock (as.held: O(locks held), not O(entries)), unsorted. */
  heldLocks(nowMs: number = performance.now()): readonly HeldLockView[] {
    const rows: HeldLockView[] = [];
    for (const as of this.#ctx.spaces.values()) {
      for (const [e, sinceMs] of as.held) {
        const queue = as.waitQueues.get(e.pgoff) ?? [];
        rows.push(Object.freeze({
          ino: as.ino, pgoff: e.pgoff, state: e.state, heldMs: nowMs - sinceMs, waiters: queue.length,
          longestWaitMs: queue.length === 0 ? 0 : nowMs - queue[0].sinceMs,
        }));
      }
    }
    return Object.freeze(rows);
  }

  /**
   * Tests only: the live context, for white-box checks (reverse maps against the PTE
   * table, a placeholder taken by hand, a dax function called without its RPC). Server
   * code never calls it (eslint: no-restricted-syntax); it uses the copies above.
   */
  static contextForTests(dax: Dax): DaxContext {
    return dax.#ctx;
  }

  /** Pages of a byte range, for callers that speak bytes. */
  static pages(offsetBytes: number, lengthBytes: number): [number, number] {
    return [Math.floor(offsetBytes / BLOCK_SIZE), Math.floor((offsetBytes + Math.max(lengthBytes, 1) - 1) / BLOCK_SIZE)];
  }
}

function waitersOf(as: AddressSpace): number {
  let n = 0;
  for (const q of as.waitQueues.values()) n += q.length;
  return n;
}

function deepFreeze<T extends object>(o: T): T {
  for (const v of Object.values(o)) if (typeof v === 'object' && v !== null) deepFreeze(v as object);
  return Object.freeze(o);
}

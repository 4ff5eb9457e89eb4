/**
 * The address space of one file: its mapping entries (the kernel's per-inode XArray of
 * DAX entries), their wait queues, its mmap lock, and which sessions map it. Each
 * session's mapping of the file holds its own page table (page-table.ts); pte.ts issues,
 * resolves and revokes the PTEs in them.
 *
 * Entry states (S1): an index with no entry is EMPTY (absent). A locked EMPTY entry is a
 * placeholder held by a fault that has not decided yet. ZERO: a read fault mapped the
 * shared zero page (pfn 0). MAPPED: pfn of the file's block. Flags: locked, dirty (a
 * write fault installed a writable PTE since the last writeback), towrite (writeback
 * snapshot). Memory is O(entries in use): the table is a Map keyed by pgoff.
 *
 * Orders (PMD entries): an entry of order 0 covers its page; one of order PMD_ORDER (9)
 * covers the PMD_PAGES pages from its pgoff, which is a multiple of PMD_PAGES, and is
 * stored once, at that pgoff. Its lock and wait-queue key is that aligned pgoff. A PMD
 * entry and order-0 entries never overlap: lookup(pgoff) finds the one entry covering a
 * page. A ZERO PMD entry is the huge zero page; a MAPPED one maps PMD_PAGES contiguous,
 * aligned blocks from `pfn`.
 */
import assert from 'node:assert';
import { RwLock } from '../fs/rw-lock';
import { PMD_ORDER, PMD_PAGES } from '../limits';
import { NO_OBSERVER, type DaxObserver } from './observer';
import type { MappingOwner } from './owner';
import { PageTable } from './page-table';

export type EntryState = 'EMPTY' | 'ZERO' | 'MAPPED';

/**
 * Who holds an entry lock: a request makes one (entry-lock.ts) and passes it to lock,
 * unlock, remove and to every function documented "the caller holds the entry lock",
 * which assert it. An object compared by identity: O(1), no stack trace.
 */
export class EntryLockOwner {
  constructor(readonly what: string) {}
}

const STATE_BITS = 3; // bits 0-1: state; bit 2: locked; bit 3: dirty; bit 4: towrite
const LOCKED = 4;
const DIRTY = 8;
const TOWRITE = 16;
const STATES: readonly EntryState[] = ['EMPTY', 'ZERO', 'MAPPED'];

/**
 * One mapping entry. A class whose state and flags share one small integer behind
 * accessors: six fields instead of nine and no reverse-map array, so an entry costs
 * ~70 bytes of heap (bench:faults, memory per entry). Who maps the page is in the
 * sessions' page tables (pte.ts); `pteCount` counts their PTEs on it.
 */
export class Entry {
  pfn = 0;
  /** The lock's owner token while locked (entry-lock.ts keeps it next to `locked`), else null. */
  holder: EntryLockOwner | null = null;
  private bits = 0;
  /** PTEs pointing at this entry, over every session's page table (the reverse-map count). */
  pteCount = 0;
  /** Of those, the writable ones: writeback (S5) revokes only these, and skips an entry with none. */
  writablePteCount = 0;
  /** DMA references on the block (issue: pins); an entry with pins is never removed (S4). */
  pins = 0;

  constructor(readonly pgoff: number, readonly order: 0 | typeof PMD_ORDER = 0) {}

  /** Pages the entry covers: 1, or PMD_PAGES. */
  get pages(): number {
    return this.order === 0 ? 1 : PMD_PAGES;
  }

  /** The last page it covers. */
  get lastPgoff(): number {
    return this.pgoff + this.pages - 1;
  }

  get state(): EntryState {
    return STATES[this.bits & STATE_BITS];
  }

  set state(s: EntryState) {
    this.bits = (this.bits & ~STATE_BITS) | (s === 'EMPTY' ? 0 : s === 'ZERO' ? 1 : 2);
  }

  get locked(): boolean {
    return (this.bits & LOCKED) !== 0;
  }

  set locked(v: boolean) {
    this.bits = v ? this.bits | LOCKED : this.bits & ~LOCKED;
  }

  /** A write fault installed a writable PTE since the last writeback. */
  get dirty(): boolean {
    return (this.bits & DIRTY) !== 0;
  }

  set dirty(v: boolean) {
    this.bits = v ? this.bits | DIRTY : this.bits & ~DIRTY;
  }

  /** Writeback's snapshot flag. */
  get towrite(): boolean {
    return (this.bits & TOWRITE) !== 0;
  }

  set towrite(v: boolean) {
    this.bits = v ? this.bits | TOWRITE : this.bits & ~TOWRITE;
  }
}

/** What a fault hands out: a snapshot of one PTE (the table itself is in pte.ts). */
export interface Pte {
  readonly token: string;
  readonly ino: number;
  /** Order 0: the page. Order 9 (PMD): the first of its PMD_PAGES pages (aligned). */
  readonly pgoff: number;
  /** The block of `pgoff` (0: the zero page); a PMD's blocks follow it contiguously. */
  readonly pfn: number;
  readonly writable: boolean;
  /** 0: the token addresses one page (BLOCK_SIZE bytes); 9: the whole PMD (PMD_BYTES). */
  readonly order: 0 | typeof PMD_ORDER;
}

/**
 * One session's mapping of one file: its page table (page-table.ts), attached to the
 * session as one resource. `id` routes a token to it (pte.ts): ids are never reused.
 */
export class SessionMapping {
  readonly table = new PageTable();
  handle = 0;
  constructor(readonly id: number, readonly owner: MappingOwner, readonly as: AddressSpace) {}
}

/** A request queued for an entry lock: called with the entry (hand-off) or null (removed: look again). */
export interface LockWaiter {
  (granted: Entry | null): void;
  /** Who waits: the holder once the lock is handed to it. */
  readonly owner: EntryLockOwner;
  /** performance.now() when it started waiting (the admin API shows the longest waits). */
  readonly sinceMs: number;
}

export interface AddressSpaceStats {
  lockWaits: number;
  invalidations: number;
}

export class AddressSpace {
  readonly entries = new Map<number, Entry>();
  /** FIFO waiters per pgoff; a grant of null means "the entry was removed: look again". */
  readonly waitQueues = new Map<number, LockWaiter[]>();
  /**
   * Locked entries -> performance.now() when the current holder got the lock, in that
   * order (oldest first): the admin API lists held locks in O(locked), not O(entries).
   * Kept by entry-lock.ts next to every change of `locked`.
   */
  readonly held = new Map<Entry, number>();
  readonly mmapLock = new RwLock();
  /** Sessions that hold PTEs on this file. */
  readonly mappings = new Map<string, SessionMapping>();
  readonly stats: AddressSpaceStats = { lockWaits: 0, invalidations: 0 };
  /** Entries whose block has DMA references: busy-page scans are O(pinned), not O(file). */
  readonly pinned = new Set<Entry>();
  /** Layout changes waiting for a pin count to drop (S4); woken by every unpin. */
  readonly pinWaiters = new Set<() => void>();
  /** PMD entries in `entries`: while 0, lookup is one Map get. */
  pmdCount = 0;

  constructor(readonly ino: number, readonly observer: DaxObserver = NO_OBSERVER) {}

  /** The caller checked that the entry's pages hold no entry (lookup, pteEntriesIn). */
  insertPlaceholder(pgoff: number, owner: EntryLockOwner, order: 0 | typeof PMD_ORDER = 0): Entry {
    const e = new Entry(pgoff, order);
    assert(pgoff % e.pages === 0, `order-${order} entry at unaligned pgoff ${pgoff}`);
    e.locked = true;
    e.holder = owner;
    this.insert(e);
    this.held.set(e, performance.now());
    return e;
  }

  /** Puts an entry in the table (entry-lock.ts's remove takes it out with forget()). */
  insert(e: Entry): void {
    assert(!this.entries.has(e.pgoff), `a second entry at pgoff ${e.pgoff}`);
    this.entries.set(e.pgoff, e);
    if (e.order !== 0) this.pmdCount++;
  }

  forget(e: Entry): void {
    assert(this.entries.get(e.pgoff) === e, `forget of an entry not in the table (pgoff ${e.pgoff})`);
    this.entries.delete(e.pgoff);
    if (e.order !== 0) this.pmdCount--;
  }

  /** The entry covering page `pgoff`: its own, or the PMD entry over it. */
  lookup(pgoff: number): Entry | undefined {
    const e = this.entries.get(pgoff);
    if (e !== undefined || this.pmdCount === 0) return e;
    const pmd = this.entries.get(pgoff - (pgoff % PMD_PAGES));
    return pmd !== undefined && pmd.order !== 0 ? pmd : undefined;
  }

  /**
   * Entries covering any page of [first, last], ascending by pgoff: a PMD entry that
   * starts before `first` but covers it is included. O(min(range, entries) + k log k).
   */
  entriesInRange(first: number, last: number): Entry[] {
    const out: Entry[] = [];
    const head = this.lookup(first);
    if (head !== undefined && head.pgoff < first) out.push(head);
    if (last - first + 1 <= this.entries.size) {
      for (let pg = first; pg <= last; pg++) {
        const e = this.entries.get(pg);
        if (e) out.push(e);
      }
      return out;
    }
    for (const e of this.entries.values()) if (e.pgoff >= first && e.pgoff <= last) out.push(e);
    return out.sort((a, b) => a.pgoff - b.pgoff);
  }

  /** Order-0 entries in [base, base + PMD_PAGES): what stops a PMD entry there. */
  pteEntriesIn(base: number): Entry[] {
    return this.entriesInRange(base, base + PMD_PAGES - 1).filter((e) => e.order === 0);
  }

  /** Takes a DMA reference on a MAPPED entry's block. */
  pinEntry(e: Entry): void {
    e.pins++;
    this.pinned.add(e);
  }

  /** Drops a DMA reference; the last one wakes every layout change waiting here (S4). */
  unpinEntry(e: Entry): void {
    assert(e.pins > 0, `unpin of an unpinned entry at pgoff ${e.pgoff}`);
    e.pins--;
    if (e.pins > 0) return;
    this.pinned.delete(e);
    for (const wake of [...this.pinWaiters]) wake();
  }

  /** First pinned entry covering a page of [first, last], in O(pinned entries). */
  busyEntry(first: number, last: number): Entry | undefined {
    for (const e of this.pinned) if (e.pgoff <= last && e.lastPgoff >= first) return e;
    return undefined;
  }

  /** True when nothing refers to the address space any more (it can be dropped). */
  get idle(): boolean {
    if (this.mappings.size > 0 || this.pinned.size > 0 || this.pinWaiters.size > 0 || this.mmapLock.held || this.mmapLock.waiters > 0 || this.waitQueues.size > 0) return false;
    for (const e of this.entries.values()) if (e.locked || e.dirty || e.pins > 0 || e.pteCount > 0) return false;
    return true;
  }
}

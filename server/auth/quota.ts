/**
 * Per-principal quotas: sessions, pins, pinned blocks, allocated bytes (README "Security").
 *
 * Usage is counted when asked (not kept), from what the engine already holds: sessions from
 * the session table, pins from the pin table, allocated blocks from the inodes of the files
 * under the principal's prefix. What can change while a checked operation awaits is
 * reserved first and released when it ends, so concurrent calls of one principal cannot
 * both pass the same last unit: a reservation is counted by every later check until the
 * operation is over (and by then its effect is in the counted usage).
 *
 * The allocated-bytes quota is a project quota on the prefix: it counts the data blocks of
 * every file whose name starts with the principal's prefix (all files without a prefix),
 * whoever wrote them. An allocating call is checked against the blocks it can newly
 * allocate: the holes in its range (overwrites of allocated blocks need no quota). Block-map
 * blocks are the file system's overhead and are not charged.
 *
 * Checks cost O(files under the prefix) for allocated bytes and O(pins) for pins, paid only
 * by principals that have that quota.
 */
import { QuotaError } from '../errors';
import { BLOCK_SIZE } from '../limits';
import { entryState } from '../fs/block-map';
import type { FileSystem } from '../fs/filesystem';
import type { Dax } from '../dax/dax';
import type { SessionTable } from '../session/session-table';
import type { Principal } from './principal';

/** Pages scanned per mapRange call while counting holes (bounds the temporary array). */
const HOLE_SCAN_PAGES = 65536;
/** Files listed per page while summing a prefix's blocks. */
const USAGE_LIST_PAGE = 1000;

/**
 * What calls of one principal (pins) or one prefix (blocks, files) have reserved and not yet
 * finished. The with* methods are async: a refusal is a rejected promise, never a throw.
 */
class Reservations<K> {
  private readonly byKey = new Map<K, number>();

  of(key: K): number {
    return this.byKey.get(key) ?? 0;
  }

  /** Runs `fn` with `n` reserved under `key`; the entry goes when nothing is reserved (bounded by live keys). */
  async hold<T>(key: K, n: number, fn: () => Promise<T>): Promise<T> {
    this.byKey.set(key, this.of(key) + n);
    try {
      return await fn();
    } finally {
      const left = this.of(key) - n;
      if (left === 0) this.byKey.delete(key);
      else this.byKey.set(key, left);
    }
  }
}

export class QuotaLedger {
  /** Pins and pinned pages are the principal's; blocks and files belong to the prefix (two principals may share one). */
  private readonly pins = new Reservations<Principal>();
  private readonly pinnedPages = new Reservations<Principal>();
  private readonly blocks = new Reservations<string>();
  private readonly files = new Reservations<string>();

  constructor(private readonly fs: FileSystem, private readonly dax: Dax, private readonly sessions: SessionTable) {}

  /** Before Session.Open: EDQUOT if the principal already holds its quota of sessions. */
  checkSession(principal: Principal): void {
    const max = principal.quotas.sessions;
    if (max === undefined) return;
    const open = this.sessions.countOf(principal);
    if (open + 1 > max) throw new QuotaError('sessions', open + 1, max);
  }

  /** Runs `create` (of a name that does not exist yet) with one file reserved against the files quota. */
  async withNewFile<T>(principal: Principal, create: () => Promise<T>): Promise<T> {
    const max = principal.quotas.files;
    if (max === undefined) return create();
    const after = this.prefixUsage(principal).files + this.files.of(principal.prefix) + 1;
    if (after > max) throw new QuotaError('files', after, max);
    return this.files.hold(principal.prefix, 1, create);
  }

  /** Runs `pin` with a pin of `pages` pages reserved against the pins and pinned-blocks quotas. */
  async withPin<T>(principal: Principal, pages: number, pin: () => Promise<T>): Promise<T> {
    const { pins: pinsMax, pinnedBlocks: blocksMax } = principal.quotas;
    if (pinsMax === undefined && blocksMax === undefined) return pin();
    const held = this.pinUsage(principal);
    const pinsAfter = held.pins + this.pins.of(principal) + 1;
    if (pinsMax !== undefined && pinsAfter > pinsMax) throw new QuotaError('pins', pinsAfter, pinsMax);
    const blocksAfter = held.blocks + this.pinnedPages.of(principal) + pages;
    if (blocksMax !== undefined && blocksAfter > blocksMax) throw new QuotaError('pinned blocks', blocksAfter, blocksMax);
    return this.pins.hold(principal, 1, () => this.pinnedPages.hold(principal, pages, pin));
  }

  /**
   * Runs `change` with the blocks it can newly allocate in pages [first, last] of `ino`
   * (its holes) reserved against the allocated-bytes quota. An unlinked file (still held
   * by a mapping, pin or NBD connection) counts in no prefix any more, so under this
   * quota it may allocate nothing: its blocks could not be charged.
   */
  async withAllocation<T>(principal: Principal, ino: number, first: number, last: number, change: () => Promise<T>): Promise<T> {
    const maxBytes = principal.quotas.allocatedBytes;
    if (maxBytes === undefined || last < first) return change();
    const usedBlocks = this.allocatedBlocks(principal) + this.blocks.of(principal.prefix);
    const budget = Math.max(0, Math.floor(maxBytes / BLOCK_SIZE) - usedBlocks);
    // Counted only up to the budget + 1: a huge range over a small quota is refused
    // without scanning it all.
    const need = this.holes(ino, first, last, budget + 1);
    if (need === 0) return change();
    if (this.fs.isUnlinked(ino)) {
      throw new QuotaError('allocated bytes of an unlinked file (its blocks count in no prefix)', need * BLOCK_SIZE, 0);
    }
    if (need > budget) throw new QuotaError('allocated bytes', (usedBlocks + need) * BLOCK_SIZE, maxBytes);
    return this.blocks.hold(principal.prefix, need, change);
  }

  /** Data blocks of the files under the principal's prefix. */
  allocatedBlocks(principal: Principal): number {
    return this.prefixUsage(principal).blocks;
  }

  /** Files under the principal's prefix and their data blocks. */
  prefixUsage(principal: Principal): { files: number; blocks: number } {
    let files = 0;
    let blocks = 0;
    let token = '';
    // Bounded: each page advances past USAGE_LIST_PAGE names, and names are finite.
    do {
      const page = this.fs.list(principal.prefix, token, USAGE_LIST_PAGE);
      files += page.files.length;
      for (const f of page.files) blocks += f.blocks;
      token = page.nextPageToken;
    } while (token !== '');
    return { files, blocks };
  }

  private pinUsage(principal: Principal): { pins: number; blocks: number } {
    const owners = new Set(this.sessions.list().filter((s) => s.principal === principal).map((s) => s.id));
    let pins = 0;
    let blocks = 0;
    if (owners.size === 0) return { pins, blocks };
    for (const p of this.dax.pinsSnapshot(Number.MAX_SAFE_INTEGER).pins) {
      if (!owners.has(p.ownerId) || p.state === 'revoked' || p.state === 'released') continue;
      pins++;
      blocks += p.npages;
    }
    return { pins, blocks };
  }

  /** Holes (pages with no block) in [first, last], past EOF included, counted up to `cap`: what a write there allocates. */
  private holes(ino: number, first: number, last: number, cap: number): number {
    let holes = 0;
    // Bounded: at most (last - first + 1) / HOLE_SCAN_PAGES steps, fewer once `cap` is reached.
    for (let lo = first; lo <= last && holes < cap; lo += HOLE_SCAN_PAGES) {
      const entries = this.fs.mapRange(ino, lo, Math.min(HOLE_SCAN_PAGES, last - lo + 1));
      for (let i = 0; i < entries.length && holes < cap; i++) if (entryState(entries[i]) === 0) holes++;
    }
    return holes;
  }
}

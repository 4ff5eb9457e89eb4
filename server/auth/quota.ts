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

interface Reserved {
  pins: number;
  pinnedBlocks: number;
  blocks: number;
}

export class QuotaLedger {
  private readonly reserved = new Map<Principal, Reserved>();

  constructor(private readonly fs: FileSystem, private readonly dax: Dax, private readonly sessions: SessionTable) {}

  /** Before Session.Open: EDQUOT if the principal already holds its quota of sessions. */
  checkSession(principal: Principal): void {
    const max = principal.quotas.sessions;
    if (max === undefined) return;
    const open = this.sessions.countOf(principal);
    if (open + 1 > max) throw new QuotaError('sessions', open + 1, max);
  }

  /** Runs `pin` with a pin of `pages` pages reserved against the pins and pinned-blocks quotas. */
  async withPin<T>(principal: Principal, pages: number, pin: () => Promise<T>): Promise<T> {
    const { pins: pinsMax, pinnedBlocks: blocksMax } = principal.quotas;
    if (pinsMax === undefined && blocksMax === undefined) return pin();
    const r = this.reservedOf(principal);
    const held = this.pinUsage(principal);
    if (pinsMax !== undefined && held.pins + r.pins + 1 > pinsMax) throw new QuotaError('pins', held.pins + r.pins + 1, pinsMax);
    if (blocksMax !== undefined && held.blocks + r.pinnedBlocks + pages > blocksMax) {
      throw new QuotaError('pinned blocks', held.blocks + r.pinnedBlocks + pages, blocksMax);
    }
    r.pins++;
    r.pinnedBlocks += pages;
    try {
      return await pin();
    } finally {
      r.pins--;
      r.pinnedBlocks -= pages;
      this.forgetIfIdle(principal, r);
    }
  }

  /**
   * Runs `change` with the blocks it can newly allocate in pages [first, last] of `ino`
   * (its holes) reserved against the allocated-bytes quota.
   */
  async withAllocation<T>(principal: Principal, ino: number, first: number, last: number, change: () => Promise<T>): Promise<T> {
    const maxBytes = principal.quotas.allocatedBytes;
    if (maxBytes === undefined || last < first) return change();
    const need = this.holes(ino, first, last);
    if (need === 0) return change();
    const r = this.reservedOf(principal);
    const usedBlocks = this.allocatedBlocks(principal) + r.blocks;
    const afterBytes = (usedBlocks + need) * BLOCK_SIZE;
    if (afterBytes > maxBytes) throw new QuotaError('allocated bytes', afterBytes, maxBytes);
    r.blocks += need;
    try {
      return await change();
    } finally {
      r.blocks -= need;
      this.forgetIfIdle(principal, r);
    }
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

  /** Holes (pages with no block) in [first, last], past EOF included: what a write there allocates. */
  private holes(ino: number, first: number, last: number): number {
    let holes = 0;
    for (let lo = first; lo <= last; lo += HOLE_SCAN_PAGES) {
      const entries = this.fs.mapRange(ino, lo, Math.min(HOLE_SCAN_PAGES, last - lo + 1));
      for (let i = 0; i < entries.length; i++) if (entryState(entries[i]) === 0) holes++;
    }
    return holes;
  }

  private reservedOf(principal: Principal): Reserved {
    let r = this.reserved.get(principal);
    if (r === undefined) {
      r = { pins: 0, pinnedBlocks: 0, blocks: 0 };
      this.reserved.set(principal, r);
    }
    return r;
  }

  private forgetIfIdle(principal: Principal, r: Reserved): void {
    if (r.pins === 0 && r.pinnedBlocks === 0 && r.blocks === 0) this.reserved.delete(principal);
  }
}

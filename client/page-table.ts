/**
 * A MappedFile's page table: the PTE tokens it holds per page, and the private (COW)
 * copies of a private mapping.
 *
 * PTEs are hints. The server's token check is the fence (S7): a cached PTE may be stale
 * at any time (invalidated, downgraded by writeback, session gone), and an access through
 * it then fails with PTE_STALE and changes nothing; the caller drops it and faults again.
 * Invalidate events only let the client learn early. Dropping is by token: a stale
 * answer for an old token never drops the newer PTE a concurrent fault installed.
 *
 * Private pages are the client's own memory: no invalidation discards them (the kernel's
 * anonymous COW pages survive truncate and punch of the file); only unmap does.
 *
 * PMD PTEs (size PMD) are kept once, under their aligned base page, and cover its
 * PMD_PAGES pages: pte(pgoff) of any of them finds it, and an access takes its offset from
 * the base (accessOffset). A page's own PTE wins over a PMD PTE covering it (installing a
 * PMD PTE drops the page PTEs of its range: they are older). Invalidations, writeback and
 * stale answers drop a PMD PTE when they touch any of its pages. Each PTE, page or PMD,
 * counts one against maxPtes.
 */
import * as grpc from '@grpc/grpc-js';
import { DaxClientError } from './errors';
import { MAPPING_PRIVATE_PAGES_MAX, MAPPING_PTES_CACHED_MAX, PAGE_BYTES, PMD_PAGES } from './limits';
import type { ClientPte } from './mapping-rpc';

/** The first page of the PMD holding pgoff. */
export function pmdBase(pgoff: number): number {
  return pgoff - (pgoff % PMD_PAGES);
}

export class PageTable {
  private readonly ptes = new Map<number, ClientPte>();
  /** PMD PTEs by their base page. */
  private readonly pmds = new Map<number, ClientPte>();
  private readonly privatePages = new Map<number, Buffer>();
  /** PTEs dropped because an Invalidate event (or the session's end) named their page. */
  invalidatedPtes = 0;

  constructor(
    private readonly maxPtes = MAPPING_PTES_CACHED_MAX,
    private readonly maxPrivatePages = MAPPING_PRIVATE_PAGES_MAX,
  ) {}

  get pteCount(): number {
    return this.ptes.size + this.pmds.size;
  }

  /** PMD PTEs cached (a part of pteCount). */
  get pmdCount(): number {
    return this.pmds.size;
  }

  get privatePageCount(): number {
    return this.privatePages.size;
  }

  /** The PTE an access to page pgoff goes through: the page's own, else a PMD PTE covering it. */
  pte(pgoff: number): ClientPte | undefined {
    const own = this.ptes.get(pgoff);
    if (own !== undefined || this.pmds.size === 0) return own;
    return this.pmds.get(pmdBase(pgoff));
  }

  /** The byte offset in `pte`'s mapping of byte `inPage` of page pgoff (a PMD's from its base). */
  static accessOffset(pte: ClientPte, pgoff: number, inPage: number): number {
    return (pgoff - pte.pgoff) * PAGE_BYTES + inPage;
  }

  /** Keeps the newest PTE of a page, or of a PMD (a later fault replaces an earlier one). */
  install(pte: ClientPte): void {
    if (pte.size === 'PMD') {
      this.pmds.delete(pte.pgoff);
      // The page PTEs of its range are older: every page now goes through the PMD PTE.
      for (const [pg] of this.pagePtesInRange(pte.pgoff, pte.pgoff + PMD_PAGES - 1)) this.ptes.delete(pg);
      this.makeRoom();
      this.pmds.set(pte.pgoff, pte);
      return;
    }
    this.ptes.delete(pte.pgoff);
    this.makeRoom();
    this.ptes.set(pte.pgoff, pte);
  }

  /**
   * At maxPtes, forget the oldest page PTE (or, with none, PMD PTE): its pages fault again
   * on next access (the server keeps the PTE until unmap; the token stays valid, only this
   * cache lets go of it).
   */
  private makeRoom(): void {
    if (this.ptes.size + this.pmds.size < this.maxPtes) return;
    const oldest = this.ptes.keys().next();
    if (!oldest.done) this.ptes.delete(oldest.value);
    else {
      const oldestPmd = this.pmds.keys().next();
      if (!oldestPmd.done) this.pmds.delete(oldestPmd.value);
    }
  }

  /** Drops the PTE an access to pgoff used if it is still the one with this token (PTE_STALE answers). */
  dropToken(pgoff: number, token: string): void {
    if (this.ptes.get(pgoff)?.token === token) this.ptes.delete(pgoff);
    else if (this.pmds.get(pmdBase(pgoff))?.token === token) this.pmds.delete(pmdBase(pgoff));
  }

  /** Drops writable PTEs in the range (after Msync: writeback revoked them, S5), a PMD's if any of its pages is in it. */
  dropWritable(first: number, last: number): void {
    for (const [pg, pte] of this.pagePtesInRange(first, last)) if (pte.writable) this.ptes.delete(pg);
    for (const [base, pte] of this.pmdsTouching(first, last)) if (pte.writable) this.pmds.delete(base);
  }

  /** An Invalidate event: every PTE in [first, last] is stale, and every PMD PTE touching it. Private pages stay. */
  invalidate(first: number, last: number): number {
    let n = 0;
    for (const [pg] of this.pagePtesInRange(first, last)) {
      this.ptes.delete(pg);
      n++;
    }
    for (const [base] of this.pmdsTouching(first, last)) {
      this.pmds.delete(base);
      n++;
    }
    this.invalidatedPtes += n;
    return n;
  }

  /** Drops every PTE (session ended, unmap). Private pages stay unless `andPrivate`. */
  clear(andPrivate: boolean): void {
    this.invalidatedPtes += this.ptes.size + this.pmds.size;
    this.ptes.clear();
    this.pmds.clear();
    if (andPrivate) this.privatePages.clear();
  }

  privatePage(pgoff: number): Buffer | undefined {
    return this.privatePages.get(pgoff);
  }

  /**
   * Installs a private copy unless the page already has one (a concurrent COW fault got
   * there first and may hold writes already: the first copy wins). Returns the page's copy.
   */
  installPrivate(pgoff: number, copy: Buffer): Buffer {
    const existing = this.privatePages.get(pgoff);
    if (existing) return existing;
    if (this.privatePages.size >= this.maxPrivatePages) {
      throw new DaxClientError(grpc.status.RESOURCE_EXHAUSTED, 'ELIMIT',
        `private pages of one mapping exceeded (${this.privatePages.size + 1} vs. max ${this.maxPrivatePages})`);
    }
    if (copy.length !== PAGE_BYTES) throw new Error(`COW fault returned ${copy.length} bytes, not a page`);
    // A COW outcome's data is a view of its FaultBatch reply, which also carries the pages
    // of the batch's READ faults (up to MAPPING_BATCH_OPS_MAX of them): kept as a view, one
    // 4 KiB private page would keep the whole reply alive, uncounted by maxPrivatePages. So
    // a view is copied into a page of its own; a Buffer that is exactly its page is kept.
    const page = copy.byteOffset === 0 && copy.buffer.byteLength === PAGE_BYTES ? copy : Buffer.from(copy);
    this.privatePages.set(pgoff, page);
    // The shared PTE is no use any more: this page now reads from the copy (a PMD PTE
    // covering it stays, for the other pages: the copy is looked up first).
    this.ptes.delete(pgoff);
    return page;
  }

  /** The PMD PTEs (by base) with any page in [first, last]: O(min(PMDs in range, PMDs)). */
  private *pmdsTouching(first: number, last: number): Generator<[number, ClientPte]> {
    if (this.pmds.size === 0) return;
    const from = pmdBase(first);
    if ((last - from) / PMD_PAGES + 1 <= this.pmds.size) {
      for (let base = from; base <= last; base += PMD_PAGES) {
        const pte = this.pmds.get(base);
        if (pte) yield [base, pte];
      }
      return;
    }
    for (const entry of [...this.pmds]) if (entry[0] >= from && entry[0] <= last) yield entry;
  }

  private *pagePtesInRange(first: number, last: number): Generator<[number, ClientPte]> {
    if (last - first + 1 <= this.ptes.size) {
      for (let pg = first; pg <= last; pg++) {
        const pte = this.ptes.get(pg);
        if (pte) yield [pg, pte];
      }
      return;
    }
    for (const entry of [...this.ptes]) if (entry[0] >= first && entry[0] <= last) yield entry;
  }
}

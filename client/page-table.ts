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
 */
import * as grpc from '@grpc/grpc-js';
import { DaxClientError } from './errors';
import { MAPPING_PRIVATE_PAGES_MAX, MAPPING_PTES_CACHED_MAX, PAGE_BYTES } from './limits';
import type { ClientPte } from './mapping-rpc';

export class PageTable {
  private readonly ptes = new Map<number, ClientPte>();
  private readonly privatePages = new Map<number, Buffer>();
  /** PTEs dropped because an Invalidate event (or the session's end) named their page. */
  invalidatedPtes = 0;

  constructor(
    private readonly maxPtes = MAPPING_PTES_CACHED_MAX,
    private readonly maxPrivatePages = MAPPING_PRIVATE_PAGES_MAX,
  ) {}

  get pteCount(): number {
    return this.ptes.size;
  }

  get privatePageCount(): number {
    return this.privatePages.size;
  }

  pte(pgoff: number): ClientPte | undefined {
    return this.ptes.get(pgoff);
  }

  /** Keeps the newest PTE of a page (a later fault replaces an earlier one). */
  install(pte: ClientPte): void {
    this.ptes.delete(pte.pgoff);
    if (this.ptes.size >= this.maxPtes) {
      // Forget the oldest: its page faults again on next access (the server keeps the
      // PTE until unmap; the token stays valid, only this cache lets go of it).
      const oldest = this.ptes.keys().next();
      if (!oldest.done) this.ptes.delete(oldest.value);
    }
    this.ptes.set(pte.pgoff, pte);
  }

  /** Drops the page's PTE if it is still the one with this token (PTE_STALE answers). */
  dropToken(pgoff: number, token: string): void {
    if (this.ptes.get(pgoff)?.token === token) this.ptes.delete(pgoff);
  }

  /** Drops writable PTEs in the range (after Msync: writeback revoked them, S5). */
  dropWritable(first: number, last: number): void {
    for (const [pg, pte] of this.ptesInRange(first, last)) if (pte.writable) this.ptes.delete(pg);
  }

  /** An Invalidate event: every PTE in [first, last] is stale. Private pages stay. */
  invalidate(first: number, last: number): number {
    let n = 0;
    for (const [pg] of this.ptesInRange(first, last)) {
      this.ptes.delete(pg);
      n++;
    }
    this.invalidatedPtes += n;
    return n;
  }

  /** Drops every PTE (session ended, unmap). Private pages stay unless `andPrivate`. */
  clear(andPrivate: boolean): void {
    this.invalidatedPtes += this.ptes.size;
    this.ptes.clear();
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
    // The shared PTE is no use any more: this page now reads from the copy.
    this.ptes.delete(pgoff);
    return page;
  }

  private *ptesInRange(first: number, last: number): Generator<[number, ClientPte]> {
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

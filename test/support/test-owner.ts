/**
 * Clients of an in-process dax volume (./dax-volume):
 * - TestOwner: a MappingOwner that records Invalidate notices and can end like a
 *   server/session Session does (every attached release runs).
 * - TestClient: what the SDK's MappedFile will do, reduced to the rules the server relies
 *   on: cache PTE tokens per page, re-fault after PTE_STALE, take a write fault before a
 *   store through a read-only PTE. By default it ignores Invalidate notices, so every
 *   correctness check goes through the server's token fence alone (S7).
 */
import assert from 'node:assert/strict';
import type { Dax } from '../../server/dax/dax';
import type { FaultKind } from '../../server/dax/fault';
import type { InvalidateNotice, MappingOwner } from '../../server/dax/owner';
import { SessionExpiredError } from '../../server/errors';
import { isCode } from './dax-volume';
import { PAGE } from './units';

/** A MappingOwner like server/session's Session, recording what the server pushes. */
export class TestOwner implements MappingOwner {
  readonly events: InvalidateNotice[] = [];
  private readonly resources = new Map<number, { readonly kind: string; release(reason: string): void | Promise<void> }>();
  private nextHandle = 1;
  private ended = false;

  constructor(readonly id: string) {}

  notify(event: InvalidateNotice): void {
    if (!this.ended) this.events.push(event);
  }

  attach(resource: { readonly kind: string; release(reason: string): void | Promise<void> }): number {
    if (this.ended) throw new SessionExpiredError(this.id, 'is ending');
    const handle = this.nextHandle++;
    this.resources.set(handle, resource);
    return handle;
  }

  detach(handle: number): boolean {
    return this.resources.delete(handle);
  }

  get attached(): number {
    return this.resources.size;
  }

  /** Session close / lease expiry: release every attached resource, newest first. */
  async end(): Promise<void> {
    this.ended = true;
    const all = [...this.resources.values()].reverse();
    this.resources.clear();
    for (const r of all) await r.release('SESSION_EXPIRED');
  }
}

export interface CachedPte {
  token: string;
  writable: boolean;
  pfn: number;
}

/** A client of the dax layer (what MappedFile does, minus the network). */
export class TestClient {
  /** ino -> pgoff -> PTE. */
  readonly ptes = new Map<number, Map<number, CachedPte>>();
  staleRetries = 0;
  faults = 0;

  constructor(readonly dax: Dax, readonly owner: TestOwner, readonly dropOnNotice = false) {
    if (dropOnNotice) {
      const notify = owner.notify.bind(owner);
      owner.notify = (ev) => {
        notify(ev);
        const t = this.ptes.get(ev.ino);
        if (t) for (const pg of [...t.keys()]) if (pg >= ev.firstPgoff && pg <= ev.lastPgoff) t.delete(pg);
      };
    }
  }

  cached(ino: number, pgoff: number): CachedPte | undefined {
    return this.ptes.get(ino)?.get(pgoff);
  }

  forget(ino: number, pgoff: number): void {
    this.ptes.get(ino)?.delete(pgoff);
  }

  async fault(ino: number, pgoff: number, kind: Exclude<FaultKind, 'COW'>, sync = false): Promise<CachedPte> {
    this.faults++;
    const r = await this.dax.fault(this.owner, ino, pgoff, kind, sync);
    assert.ok(r.pte, `${kind} fault returned no PTE`);
    const pte = { token: r.pte.token, writable: r.pte.writable, pfn: r.pte.pfn };
    let t = this.ptes.get(ino);
    if (!t) this.ptes.set(ino, (t = new Map()));
    t.set(pgoff, pte);
    return pte;
  }

  /** Load inside one page; re-faults after PTE_STALE, as a client must. */
  async load(ino: number, offsetBytes: number, length: number): Promise<Buffer> {
    const pg = Math.floor(offsetBytes / PAGE);
    assert.ok(offsetBytes + length <= (pg + 1) * PAGE, 'load crosses a page');
    for (let attempt = 0; attempt < 64; attempt++) {
      const pte = this.cached(ino, pg) ?? (await this.fault(ino, pg, 'READ'));
      try {
        return this.dax.load(this.owner, pte.token, offsetBytes - pg * PAGE, length);
      } catch (err) {
        if (!isCode(err, 'PTE_STALE')) throw err;
        this.staleRetries++;
        this.forget(ino, pg);
      }
    }
    throw new Error(`load at ${offsetBytes} of inode ${ino}: PTE_STALE 64 times in a row`);
  }

  /** Store inside one page; write-faults when it has no writable PTE, re-faults after PTE_STALE. */
  async store(ino: number, offsetBytes: number, data: Uint8Array): Promise<void> {
    const pg = Math.floor(offsetBytes / PAGE);
    assert.ok(offsetBytes + data.length <= (pg + 1) * PAGE, 'store crosses a page');
    for (let attempt = 0; attempt < 64; attempt++) {
      let pte = this.cached(ino, pg);
      if (!pte || !pte.writable) pte = await this.fault(ino, pg, 'WRITE');
      try {
        this.dax.store(this.owner, pte.token, offsetBytes - pg * PAGE, data);
        return;
      } catch (err) {
        if (!isCode(err, 'PTE_STALE')) throw err;
        this.staleRetries++;
        this.forget(ino, pg);
      }
    }
    throw new Error(`store at ${offsetBytes} of inode ${ino}: PTE_STALE 64 times in a row`);
  }
}


/**
 * PTEs handed to sessions: opaque, unguessable tokens (128 random bits), each bound to
 * one session and one entry. The server checks the token on every Load and Store: that
 * check is the fence (S7), so correctness never depends on a client having received an
 * Invalidate event. Revoking a PTE makes its token stale at once. The Pte and
 * SessionMapping records are declared in address-space.ts, the owner types in owner.ts.
 */
import assert from 'node:assert';
import { randomFillSync } from 'node:crypto';
import type { Entry, Pte, SessionMapping } from './address-space';
import type { InvalidateReason, MappingOwner } from './owner';

const TOKEN_BYTES = 16;
const POOL_TOKENS = 4096;

/** Aggregates revocations per (session, file) so each gets one Invalidate per operation. */
export class InvalidationNotices {
  private readonly byMapping = new Map<SessionMapping, { first: number; last: number }>();

  constructor(readonly reason: InvalidateReason) {}

  add(mapping: SessionMapping, pgoff: number): void {
    const r = this.byMapping.get(mapping);
    if (!r) this.byMapping.set(mapping, { first: pgoff, last: pgoff });
    else {
      r.first = Math.min(r.first, pgoff);
      r.last = Math.max(r.last, pgoff);
    }
  }

  get count(): number {
    return this.byMapping.size;
  }

  /**
   * One Invalidate per (session, file). `actor`, the session whose own request revoked
   * the PTEs (its write fault, its msync), is not told: it knows, and a client that
   * relies on the token fence must not have its event stream filled by its own work.
   */
  send(actor?: MappingOwner): void {
    for (const [m, r] of this.byMapping) {
      if (actor !== undefined && m.owner.id === actor.id) continue;
      m.owner.notify({ kind: 'invalidate', ino: m.as.ino, firstPgoff: r.first, lastPgoff: r.last, reason: this.reason });
    }
    this.byMapping.clear();
  }
}

export class PteTable {
  private readonly byToken = new Map<string, Pte>();
  private pool = Buffer.alloc(TOKEN_BYTES * POOL_TOKENS);
  private poolNext = POOL_TOKENS;

  get size(): number {
    return this.byToken.size;
  }

  /** 128 random bits per token, drawn from a pool refilled by the CSPRNG. */
  private newToken(): string {
    if (this.poolNext === POOL_TOKENS) {
      randomFillSync(this.pool);
      this.poolNext = 0;
    }
    const off = this.poolNext++ * TOKEN_BYTES;
    return this.pool.toString('base64url', off, off + TOKEN_BYTES);
  }

  /** Installs a PTE on a locked entry (S1: every state change under the entry lock). */
  install(mapping: SessionMapping, entry: Entry, writable: boolean): Pte {
    assert(entry.locked, 'PTE install needs the entry lock');
    assert(entry.state !== 'EMPTY', 'PTE install on an EMPTY entry');
    assert(!writable || entry.state === 'MAPPED', 'writable PTE on the zero page');
    // A session faulting a page it already maps with the same permission gets that PTE
    // back (as a CPU re-fault finds the PTE present): a session holds at most a read-only
    // and a writable PTE per page, so PTEs are bounded by pages mapped, not by faults.
    for (const existing of entry.ptes) {
      if (existing.mapping === mapping && existing.valid && existing.pfn === entry.pfn && existing.writable === writable) return existing;
    }
    const pte: Pte = { token: this.newToken(), mapping, entry, pfn: entry.pfn, writable, valid: true, slot: entry.ptes.length };
    this.byToken.set(pte.token, pte);
    // The first PTE of an entry gets an exact-size array: a push onto [] reserves 17 slots,
    // ~130 bytes more per mapped page (bench:faults, memory per mapped entry).
    if (entry.ptes.length === 0) entry.ptes = [pte];
    else entry.ptes.push(pte);
    mapping.ptes.add(pte);
    return pte;
  }

  lookup(token: string): Pte | undefined {
    return this.byToken.get(token);
  }

  /** Makes the token stale and unlinks it everywhere. */
  revoke(pte: Pte, notices: InvalidationNotices | null): void {
    if (!pte.valid) return;
    pte.valid = false;
    pte.writable = false;
    this.byToken.delete(pte.token);
    // Swap-remove by slot, O(1): indexOf + splice made dropping n PTEs of one entry O(n^2)
    // (50k PTEs one session faulted on one page: a 5 s Unmap, event loop blocked).
    const list = pte.entry.ptes;
    assert(list[pte.slot] === pte, 'PTE missing from its entry');
    const last = list.pop() as Pte;
    if (last !== pte) {
      list[pte.slot] = last;
      last.slot = pte.slot;
    }
    pte.mapping.ptes.delete(pte);
    notices?.add(pte.mapping, pte.entry.pgoff);
  }

  /** Revokes every PTE on an entry (the caller holds its lock or the mmap lock exclusive). */
  revokeEntry(entry: Entry, notices: InvalidationNotices | null): number {
    const n = entry.ptes.length;
    // The entry's own lock, or (layout break) the mmap lock exclusive over its file.
    assert(n === 0 || entry.locked || entry.ptes[0].mapping.as.mmapLock.heldExclusive, `PTE revoke on entry at pgoff ${entry.pgoff}: neither its lock nor the mmap lock is held`);
    for (const pte of [...entry.ptes]) this.revoke(pte, notices);
    return n;
  }

  /**
   * S5: writeback write-protects an entry: writable PTEs become stale (the client must
   * take a write fault, which re-dirties under the entry lock). Read-only PTEs stay.
   */
  downgradeEntry(entry: Entry, notices: InvalidationNotices): number {
    assert(entry.locked, 'downgrade needs the entry lock');
    let n = 0;
    for (const pte of [...entry.ptes]) {
      if (!pte.writable) continue;
      this.revoke(pte, notices);
      n++;
    }
    return n;
  }
}

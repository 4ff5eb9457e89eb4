/**
 * The Pin record and the table of live pins (by id, and a count per session for
 * PINS_PER_SESSION_MAX). Kept out of pin.ts, which takes, uses and releases pins, so that
 * DaxContext can own the table without importing the pin logic (which imports DaxContext).
 */
import assert from 'node:assert';
import type { AddressSpace, Entry } from './address-space';
import type { MappingOwner } from './owner';

export type PinState = 'active' | 'recalled' | 'revoked' | 'released';

export interface Pin {
  readonly id: string;
  readonly owner: MappingOwner;
  readonly as: AddressSpace;
  readonly firstPgoff: number;
  readonly writable: boolean;
  /** Per page: the block (0 = zero page of a read-only pin on a hole) and its entry. */
  readonly pfns: number[];
  readonly entries: Array<Entry | null>;
  state: PinState;
  /** Date.now() at revocation, 0 if never revoked (a DMA in flight then is refused even after the unpin). */
  revokedAtMs: number;
  /** Date.now() when it was taken (admin API). */
  readonly createdAtMs: number;
  leaseMs: number;
  leaseTimer: NodeJS.Timeout | null;
  recallTimer: NodeJS.Timeout | null;
  /** DMA calls running on the pin; a revocation drops references only at 0. */
  inflight: number;
  drained: Array<() => void>;
  handle: number;
}

export interface PinStats {
  active: number;
  pinnedBlocks: number;
  revocations: number;
  recalls: number;
}

export class PinTable {
  readonly byId = new Map<string, Pin>();
  /**
   * Pins out of byId (unpinned, session ended) whose references wait for their DMA in
   * flight to end (pin.ts releasePin): splitPinnedPmd (pmd.ts) must repoint those too.
   */
  readonly draining = new Set<Pin>();
  /** Pins per session, for PINS_PER_SESSION_MAX; only sessions that hold pins have a key. */
  private readonly perOwner = new Map<string, number>();
  readonly stats: PinStats = { active: 0, pinnedBlocks: 0, revocations: 0, recalls: 0 };

  countOf(ownerId: string): number {
    return this.perOwner.get(ownerId) ?? 0;
  }

  /** Sessions with a per-owner count (tests: the map forgets an owner with no pins). */
  get owners(): number {
    return this.perOwner.size;
  }

  add(pin: Pin): void {
    this.byId.set(pin.id, pin);
    this.perOwner.set(pin.owner.id, this.countOf(pin.owner.id) + 1);
    this.stats.active++;
  }

  remove(pin: Pin): void {
    if (!this.byId.delete(pin.id)) return;
    // O(sessions holding pins): a session's count goes with its last pin.
    const left = this.countOf(pin.owner.id) - 1;
    assert(left >= 0, `pin count of session ${pin.owner.id} below 0`);
    if (left === 0) this.perOwner.delete(pin.owner.id);
    else this.perOwner.set(pin.owner.id, left);
    this.stats.active--;
  }
}

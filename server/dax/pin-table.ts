/**
 * The Pin record and the table of live pins (by id, and a count per session for
 * PINS_PER_SESSION_MAX). Kept out of pin.ts, which takes, uses and releases pins, so that
 * DaxContext can own the table without importing the pin logic (which imports DaxContext).
 */
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
  private readonly perOwner = new Map<string, number>();
  readonly stats: PinStats = { active: 0, pinnedBlocks: 0, revocations: 0, recalls: 0 };

  countOf(ownerId: string): number {
    return this.perOwner.get(ownerId) ?? 0;
  }

  add(pin: Pin): void {
    this.byId.set(pin.id, pin);
    this.perOwner.set(pin.owner.id, this.countOf(pin.owner.id) + 1);
    this.stats.active++;
  }

  remove(pin: Pin): void {
    if (!this.byId.delete(pin.id)) return;
    this.perOwner.set(pin.owner.id, this.countOf(pin.owner.id) - 1);
    this.stats.active--;
  }
}

/**
 * What the dax layer needs of a session, and what it tells one: the owner of PTEs and
 * pins (server/session's Session satisfies MappingOwner) and the events pushed to it.
 * A leaf module: types only, imported by the modules that hold or notify owners.
 */

/** Why PTEs were dropped (wire: Invalidate.Reason). */
export type InvalidateReason =
  | 'TRUNCATE' | 'PUNCH_HOLE' | 'ZERO_RANGE' | 'COLLAPSE_RANGE' | 'HOLE_FILLED'
  | 'WRITEBACK' | 'SESSION_EXPIRED' | 'UNLINK';

export interface InvalidateNotice {
  readonly kind: 'invalidate';
  readonly ino: number;
  readonly firstPgoff: number;
  readonly lastPgoff: number;
  readonly reason: InvalidateReason;
}

export type OwnerEvent =
  | InvalidateNotice
  | { readonly kind: 'pinRecall'; readonly pinId: string; readonly revokeAtMs: number }
  | { readonly kind: 'pinRevoked'; readonly pinId: string };

/** What the dax layer needs of a session (server/session's Session satisfies it). */
export interface MappingOwner {
  readonly id: string;
  notify(event: OwnerEvent): void;
  attach(resource: { readonly kind: string; release(reason: string): void | Promise<void> }): number;
  detach(handle: number): boolean;
}

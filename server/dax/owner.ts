/**
 * What the dax layer needs of a session, and what it tells one: the owner of PTEs and
 * pins (server/session's Session satisfies MappingOwner) and the events pushed to it.
 * A leaf module: types only, imported by the modules that hold or notify owners.
 */
import type { LayoutChange } from '../fs/types';

/**
 * Why PTEs were dropped: the one spelling of the invalidate reasons. Every layout change
 * (server/fs/types.ts LayoutChange: truncate and the layout-changing fallocate modes),
 * plus the reasons of the dax layer itself. The wire spelling is the proto's
 * Invalidate.Reason, with the same names (server/rpc/session-service.ts fails to compile
 * if the two lists differ).
 */
export type InvalidateReason = LayoutChange | 'HOLE_FILLED' | 'WRITEBACK' | 'SESSION_EXPIRED' | 'UNLINK';

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

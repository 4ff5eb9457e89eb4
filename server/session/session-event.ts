/**
 * What a session tells its client, and why a session ends. Plain data: server/rpc turns
 * these into the proto's Event and stream statuses.
 */

/** Why PTEs were dropped (proto Invalidate.Reason). */
export type InvalidateReason =
  | 'TRUNCATE' | 'PUNCH_HOLE' | 'ZERO_RANGE' | 'COLLAPSE_RANGE' | 'HOLE_FILLED'
  | 'WRITEBACK' | 'SESSION_EXPIRED' | 'UNLINK';

export type SessionEvent =
  | { readonly kind: 'invalidate'; readonly ino: number; readonly firstPgoff: number; readonly lastPgoff: number; readonly reason: InvalidateReason }
  | { readonly kind: 'pinRecall'; readonly pinId: string; readonly revokeAtMs: number }
  | { readonly kind: 'pinRevoked'; readonly pinId: string };

/**
 * closed: the client called Close. expired: the lease ran out. overflow: the event queue
 * overflowed. shutdown: the server is stopping. All four run the same cleanup (S7).
 */
export type SessionEndReason = 'closed' | 'expired' | 'overflow' | 'shutdown';

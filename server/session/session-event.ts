/**
 * What a session tells its client, and why a session ends. Plain data: server/rpc turns
 * these into the proto's Event and stream statuses.
 */

// Why PTEs were dropped: spelled once, in server/dax/owner.ts.
import type { InvalidateReason } from '../dax/owner';

export type SessionEvent =
  | { readonly kind: 'invalidate'; readonly ino: number; readonly firstPgoff: number; readonly lastPgoff: number; readonly reason: InvalidateReason }
  | { readonly kind: 'pinRecall'; readonly pinId: string; readonly revokeAtMs: number }
  | { readonly kind: 'pinRevoked'; readonly pinId: string }
  /** `count` events were dropped (no stream attached, or its reader fell behind): re-validate. */
  | { readonly kind: 'eventsLost'; readonly count: number };

/**
 * closed: the client called Close. expired: the lease ran out. shutdown: the server is
 * stopping. All three run the same cleanup (S7). Events never end a session
 * (event-queue.ts: lost events are reported, not fatal).
 */
export type SessionEndReason = 'closed' | 'expired' | 'shutdown';

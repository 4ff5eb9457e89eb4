/**
 * Failed authentications per peer address: after AUTH_FAILURES_PER_WINDOW_MAX failures
 * within AUTH_FAILURE_WINDOW_MS, every attempt from that address is refused (even with a
 * good token) until the window that began with its first counted failure has passed.
 * A refused attempt is not checked at all, so guessing gets no answer while limited.
 *
 * Memory is bounded: at most AUTH_FAILURE_PEERS_MAX addresses are remembered; the one
 * that failed least recently is forgotten first (a Map keeps insertion order, and a
 * failure re-inserts its address at the end).
 */
import { AUTH_FAILURE_PEERS_MAX, AUTH_FAILURE_WINDOW_MS, AUTH_FAILURES_PER_WINDOW_MAX } from './limits';

interface Window {
  startMs: number;
  failures: number;
}

export interface FailureLimits {
  failuresMax: number;
  windowMs: number;
  peersMax: number;
}

export class FailureLimiter {
  private readonly peers = new Map<string, Window>();
  private readonly limits: FailureLimits;

  constructor(limits: Partial<FailureLimits> = {}, private readonly now: () => number = Date.now) {
    this.limits = { failuresMax: AUTH_FAILURES_PER_WINDOW_MAX, windowMs: AUTH_FAILURE_WINDOW_MS, peersMax: AUTH_FAILURE_PEERS_MAX, ...limits };
  }

  /** Milliseconds until `peer` may try again, or 0 if it may try now. */
  retryAfterMs(peer: string): number {
    const w = this.current(peer);
    if (w === undefined || w.failures < this.limits.failuresMax) return 0;
    return w.startMs + this.limits.windowMs - this.now();
  }

  failed(peer: string): void {
    const w = this.current(peer) ?? { startMs: this.now(), failures: 0 };
    w.failures++;
    this.peers.delete(peer);
    this.peers.set(peer, w);
    if (this.peers.size > this.limits.peersMax) {
      const oldest = this.peers.keys().next();
      if (!oldest.done) this.peers.delete(oldest.value);
    }
  }

  /** Addresses remembered (metrics, tests). */
  get size(): number {
    return this.peers.size;
  }

  private current(peer: string): Window | undefined {
    const w = this.peers.get(peer);
    if (w !== undefined && this.now() - w.startMs >= this.limits.windowMs) {
      this.peers.delete(peer);
      return undefined;
    }
    return w;
  }
}

/**
 * The address part of a peer string: grpc-js gives "ipv4:127.0.0.1:5000", "ipv6:[::1]:5000"
 * or "127.0.0.1:5000"; NBD and HTTP give the socket's remoteAddress. Failures are counted
 * per address, not per connection: reconnecting does not reset them.
 */
export function peerAddress(peer: string): string {
  const bare = peer.replace(/^ipv[46]:/, '');
  let address: string;
  if (bare.startsWith('[')) address = bare.slice(1, bare.indexOf(']'));
  else {
    const colon = bare.lastIndexOf(':');
    address = colon > 0 && bare.indexOf(':') === colon ? bare.slice(0, colon) : bare;
  }
  // An IPv4 client of a dual-stack socket shows as ::ffff:a.b.c.d: the same address.
  return address.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, '$1');
}

/**
 * Large buffers of the NBD server (READ replies and WRITE payloads over the slab piece
 * size), kept for reuse once the socket or the engine is done with them: a 1 MiB read
 * otherwise allocates a 1 MiB ArrayBuffer per request, and the garbage collector runs
 * for the external memory (a fifth of the CPU at 1 MiB QD4 in a profile).
 *
 * Bounds: buffers of at most NBD_POOLED_BUFFER_BYTES_MAX are kept, at most
 * NBD_REPLY_POOL_BYTES_MAX in all (server-wide: one event loop, no locking). A buffer is
 * given back only when nothing reads it any more (the socket's write callback, the end
 * of the engine's write), so a reused buffer never overwrites bytes still on their way.
 */
import { NBD_POOLED_BUFFER_BYTES_MAX, NBD_REPLY_POOL_BYTES_MAX } from './limits';

/** Sizes are rounded up to this, so buffers of nearby sizes serve each other. */
const GRANULE_BYTES = 64 * 1024;

export class BufferPool {
  private readonly free: Buffer[] = [];
  private freeBytes = 0;

  constructor(readonly maxBytes = NBD_REPLY_POOL_BYTES_MAX, readonly maxBufferBytes = NBD_POOLED_BUFFER_BYTES_MAX) {}

  /** A buffer of at least n bytes (at most twice n when reused); give it back with give(). */
  take(n: number): Buffer {
    for (let i = this.free.length - 1; i >= 0; i--) {
      const b = this.free[i];
      if (b.length >= n && b.length <= 2 * n) {
        this.free[i] = this.free[this.free.length - 1];
        this.free.pop();
        this.freeBytes -= b.length;
        return b;
      }
    }
    return Buffer.allocUnsafeSlow(Math.ceil(n / GRANULE_BYTES) * GRANULE_BYTES);
  }

  give(b: Buffer): void {
    if (b.length > this.maxBufferBytes) return;
    // Full: drop the oldest rather than the newest (recent sizes are the likely next ones).
    while (this.freeBytes + b.length > this.maxBytes && this.free.length > 0) this.freeBytes -= (this.free.shift() as Buffer).length;
    if (this.freeBytes + b.length > this.maxBytes) return;
    this.free.push(b);
    this.freeBytes += b.length;
  }

  get idleBytes(): number {
    return this.freeBytes;
  }
}

/**
 * The bytes a connection received and has not parsed yet: the socket's chunks in order.
 * take(n) hands out a view when the n bytes lie in one chunk (the common case: no copy)
 * and one concatenated copy otherwise. skip(n) discards without keeping anything (a
 * refused WRITE's payload, an oversized option).
 *
 * Memory: the caller pauses the socket when it stops parsing, so the queue holds at most
 * what the parser admitted plus one socket chunk.
 */
export class ByteQueue {
  private chunks: Buffer[] = [];
  /** Read position inside chunks[0]. */
  private head = 0;
  length = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** The next n bytes (n <= length), consumed. */
  take(n: number): Buffer {
    if (n === 0) return EMPTY;
    if (this.contiguous(n)) {
      const out = this.chunks[0].subarray(this.head, this.head + n);
      this.advance(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    this.takeInto(n, out);
    return out;
  }

  /** True when the next n bytes (n <= length) lie in one chunk: take(n) is then a view. */
  contiguous(n: number): boolean {
    return n === 0 || (this.chunks.length > 0 && this.chunks[0].length - this.head >= n);
  }

  /** Copies the next n bytes (n <= length) to target[0, n), consumed. */
  takeInto(n: number, target: Buffer): void {
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0];
      const k = Math.min(n - filled, c.length - this.head);
      c.copy(target, filled, this.head, this.head + k);
      filled += k;
      this.advance(k);
    }
  }

  /** Discards up to n bytes; returns how many it discarded. */
  skip(n: number): number {
    let done = 0;
    while (done < n && this.length > 0) {
      const k = Math.min(n - done, this.chunks[0].length - this.head);
      this.advance(k);
      done += k;
    }
    return done;
  }

  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.length = 0;
  }

  /** Moves past k bytes of chunks[0] (k <= what is left of it). */
  private advance(k: number): void {
    this.head += k;
    this.length -= k;
    if (this.head === this.chunks[0].length) {
      this.chunks.shift();
      this.head = 0;
    }
  }
}

const EMPTY = Buffer.alloc(0);

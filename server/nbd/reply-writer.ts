/**
 * The output side of one NBD connection: replies are written in place into a slab, one
 * after another, and the new bytes of a turn of the event loop go to the socket together.
 *
 * Replies are written into a slab (SLAB_BYTES) one after another; at the flush the slab's
 * new bytes go to the socket as one buffer. The slab is never written below its flushed
 * mark, so the socket may hold those bytes as long as it likes; a full slab is replaced by
 * a new one. Replies larger than SLAB_PIECE_BYTES_MAX get a buffer of their own (from the
 * pool up to NBD_POOLED_BUFFER_BYTES_MAX, given back only once the socket wrote it).
 * `out` keeps the pieces in reply order.
 *
 * The flush runs on process.nextTick: that runs once the promise callbacks of the turn are
 * done, so a burst of requests from one socket read costs one write system call (one
 * write of the slab's bytes, or cork/uncork around several pieces).
 */
import type net from 'node:net';
import type { BufferPool } from './buffer-pool';
import type { ReplySink } from './commands';
import { NBD_POOLED_BUFFER_BYTES_MAX } from './limits';

/** The reply slab; replies above SLAB_PIECE_BYTES_MAX get their own buffer. */
const SLAB_BYTES = 256 * 1024;
const SLAB_PIECE_BYTES_MAX = 64 * 1024;

/** What the writer held at one moment (see mark / rollback). */
export interface OutputMark {
  pieces: number;
  slab: Buffer;
  slabStart: number;
  used: number;
  bytes: number;
}

export class ReplyWriter implements ReplySink {
  private slab: Buffer = Buffer.allocUnsafe(0);
  private slabUsed = 0;
  /** Start of the slab bytes not yet in `out`. */
  private slabStart = 0;
  /** The buffer of the last alloc when it was too large for the slab. */
  private ownPiece: Buffer | null = null;
  /** Pieces from the buffer pool -> the pooled buffer, given back after the socket wrote them. */
  private readonly pooled = new Map<Buffer, Buffer>();
  private out: Buffer[] = [];
  /** Bytes in `out` and the slab not yet handed to the socket. */
  private outBytes = 0;
  private flushScheduled = false;

  /** `closed()`: the connection is closed; a flush then drops what it holds. */
  constructor(private socket: net.Socket, private readonly pool: BufferPool, private readonly closed: () => boolean) {}

  /** Writes go to `socket` from now on (the TLS socket after STARTTLS; nothing is pending then). */
  retarget(socket: net.Socket): void {
    this.socket = socket;
  }

  /** Reply bytes made and not yet handed to the socket. */
  get pendingBytes(): number {
    return this.outBytes;
  }

  /** ReplySink: the buffer the last alloc() reserved in. */
  get buf(): Buffer {
    return this.ownPiece ?? this.slab;
  }

  /** ReplySink: reserves n bytes at buf[returned offset], in reply order. */
  alloc(n: number): number {
    this.outBytes += n;
    this.scheduleFlush();
    this.ownPiece = null;
    if (n > SLAB_PIECE_BYTES_MAX) {
      this.closeSegment();
      const base = n <= NBD_POOLED_BUFFER_BYTES_MAX ? this.pool.take(n) : Buffer.allocUnsafe(n);
      this.ownPiece = base.length === n ? base : base.subarray(0, n);
      if (n <= NBD_POOLED_BUFFER_BYTES_MAX) this.pooled.set(this.ownPiece, base);
      this.out.push(this.ownPiece);
      return 0;
    }
    if (this.slab.length - this.slabUsed < n) {
      this.closeSegment();
      this.slab = Buffer.allocUnsafe(SLAB_BYTES);
      this.slabUsed = this.slabStart = 0;
    }
    const at = this.slabUsed;
    this.slabUsed += n;
    return at;
  }

  private closeSegment(): void {
    if (this.slabUsed > this.slabStart) {
      this.out.push(this.slab.subarray(this.slabStart, this.slabUsed));
      this.slabStart = this.slabUsed;
    }
  }

  mark(): OutputMark {
    return { pieces: this.out.length, slab: this.slab, slabStart: this.slabStart, used: this.slabUsed, bytes: this.outBytes };
  }

  /** Forgets what was reserved since the mark (a READ that failed halfway); keeps what came before. */
  rollback(m: OutputMark): void {
    for (let i = m.pieces; i < this.out.length; i++) {
      const base = this.pooled.get(this.out[i]);
      if (base === undefined) continue;
      this.pooled.delete(this.out[i]);
      this.pool.give(base);
    }
    this.out.length = m.pieces;
    this.outBytes = m.bytes;
    this.ownPiece = null;
    if (this.slab === m.slab) {
      this.slabStart = m.slabStart;
      this.slabUsed = m.used;
    } else {
      if (m.used > m.slabStart) this.out.push(m.slab.subarray(m.slabStart, m.used));
      this.slabStart = this.slabUsed = 0;
    }
  }

  private scheduleFlush(): void {
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(() => this.flush());
    }
  }

  /** A buffer of its own as the next reply piece (the handshake's replies). */
  send(b: Buffer): void {
    this.closeSegment();
    this.out.push(b);
    this.outBytes += b.length;
    this.scheduleFlush();
  }

  /** Hands everything made so far to the socket (dropped when the connection is closed). */
  flush(): void {
    this.flushScheduled = false;
    this.closeSegment();
    const out = this.out;
    if (out.length === 0) return;
    this.out = [];
    this.outBytes = 0;
    if (this.closed() || this.socket.destroyed || this.socket.writableEnded) {
      this.pooled.clear();
      return;
    }
    if (out.length > 1) this.socket.cork();
    for (const b of out) {
      const base = this.pooled.size > 0 ? this.pooled.get(b) : undefined;
      if (base === undefined) this.socket.write(b);
      else {
        this.pooled.delete(b);
        // Back to the pool once the kernel has the bytes (or the write failed): not before.
        this.socket.write(b, () => this.pool.give(base));
      }
    }
    if (out.length > 1) this.socket.uncork();
  }

  /** Resolves once the socket's own buffer holds at most `bytesMax` (or the connection closed). */
  drained(bytesMax: number): Promise<void> {
    this.flush();
    if (this.socket.writableLength <= bytesMax || this.closed()) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  /** The connection closed: drop every reply not yet handed to the socket. */
  drop(): void {
    this.out = [];
    this.outBytes = 0;
  }
}

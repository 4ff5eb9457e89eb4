/**
 * An async reader-writer lock with FIFO fairness (a waiting writer blocks later readers),
 * used as the inode lock. Node runs one event loop: the lock only matters across awaits.
 */
type Waiter = { exclusive: boolean; wake: () => void };

export class RwLock {
  private readers = 0;
  private writer = false;
  private readonly queue: Waiter[] = [];

  get held(): boolean {
    return this.writer || this.readers > 0;
  }

  get heldExclusive(): boolean {
    return this.writer;
  }

  get waiters(): number {
    return this.queue.length;
  }

  async lockShared(): Promise<() => void> {
    if (!this.writer && this.queue.length === 0) {
      this.readers++;
    } else {
      await new Promise<void>((wake) => this.queue.push({ exclusive: false, wake }));
    }
    return once(() => { this.readers--; this.dispatch(); });
  }

  async lockExclusive(): Promise<() => void> {
    if (!this.writer && this.readers === 0 && this.queue.length === 0) {
      this.writer = true;
    } else {
      await new Promise<void>((wake) => this.queue.push({ exclusive: true, wake }));
    }
    return once(() => { this.writer = false; this.dispatch(); });
  }

  /** Grants the lock to the head of the queue (and every reader right behind it). */
  private dispatch(): void {
    while (this.queue.length > 0 && !this.writer) {
      const head = this.queue[0];
      if (head.exclusive) {
        if (this.readers > 0) return;
        this.queue.shift();
        this.writer = true;
        head.wake();
        return;
      }
      this.queue.shift();
      this.readers++;
      head.wake();
    }
  }
}

function once(fn: () => void): () => void {
  let done = false;
  return () => {
    if (done) throw new Error('lock released twice');
    done = true;
    fn();
  };
}

/**
 * An async reader-writer lock with FIFO fairness (a waiting writer blocks later readers),
 * used as the inode lock and the mmap lock. Node runs one event loop: the lock only
 * matters across awaits.
 *
 * Each grant returns a hold: calling it releases the lock, and it is the owner token a
 * function documented "the caller holds the lock" checks with assertHeld /
 * assertHeldExclusive. A token is one small object per grant, checked in O(1) (no stack
 * trace, no map), so the checks stay on in production: a broken lock contract is an
 * AssertionError at once, not a corrupted file later.
 */
import assert from 'node:assert';

/** What lockShared/lockExclusive return: call it once to release; pass it to prove ownership. */
export interface RwLockHold {
  (): void;
  readonly exclusive: boolean;
  /** True once released: the token proves nothing any more. */
  readonly released: boolean;
}

interface Hold extends RwLockHold {
  readonly lock: RwLock;
  released: boolean;
}

type Waiter = { exclusive: boolean; wake: () => void };

export class RwLock {
  private readers = 0;
  /** The exclusive hold, or null. */
  private writer: Hold | null = null;
  private readonly queue: Waiter[] = [];

  get held(): boolean {
    return this.writer !== null || this.readers > 0;
  }

  get heldExclusive(): boolean {
    return this.writer !== null;
  }

  get waiters(): number {
    return this.queue.length;
  }

  async lockShared(): Promise<RwLockHold> {
    if (this.writer === null && this.queue.length === 0) {
      this.readers++;
    } else {
      // dispatch() counts the reader before it wakes us.
      await new Promise<void>((wake) => this.queue.push({ exclusive: false, wake }));
    }
    return this.hold(false);
  }

  async lockExclusive(): Promise<RwLockHold> {
    const hold = this.hold(true);
    if (this.writer === null && this.readers === 0 && this.queue.length === 0) {
      this.writer = hold;
    } else {
      // dispatch() makes us the writer before it wakes us.
      await new Promise<void>((wake) => this.queue.push({ exclusive: true, wake: () => { this.writer = hold; wake(); } }));
    }
    assert(this.writer === hold && this.readers === 0, 'exclusive grant while the lock is shared or held by another');
    return hold;
  }

  /** The caller's token is a live hold of this lock (shared or exclusive). */
  assertHeld(hold: RwLockHold): void {
    assert((hold as Hold).lock === this, 'lock token of another lock');
    assert(!hold.released, 'lock token already released: the caller does not hold the lock');
  }

  /** The caller's token is this lock's exclusive hold. */
  assertHeldExclusive(hold: RwLockHold): void {
    this.assertHeld(hold);
    assert(hold.exclusive && this.writer === hold, 'the caller holds the lock shared, not exclusive');
  }

  private hold(exclusive: boolean): Hold {
    const release = (): void => {
      assert(!hold.released, 'lock released twice');
      hold.released = true;
      if (exclusive) {
        assert(this.writer === hold, 'exclusive release by a hold that is not the writer');
        this.writer = null;
      } else {
        assert(this.readers > 0, 'shared release with no reader counted');
        this.readers--;
      }
      this.dispatch();
    };
    const hold: Hold = Object.assign(release, { exclusive, released: false, lock: this as RwLock });
    return hold;
  }

  /** Grants the lock to the head of the queue (and every reader right behind it). */
  private dispatch(): void {
    while (this.queue.length > 0 && this.writer === null) {
      const head = this.queue[0];
      if (head.exclusive) {
        if (this.readers > 0) return;
        this.queue.shift();
        head.wake(); // sets this.writer synchronously
        return;
      }
      this.queue.shift();
      this.readers++;
      head.wake();
    }
  }
}

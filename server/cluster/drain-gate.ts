/**
 * The switch of a drained file (drain.ts steps c-h) as the node's other calls see it.
 *
 * While a file is blocked (from just before its switch hold until the switch is decided),
 * mutating calls on its inode (Write and each WriteStream op, Truncate, Fallocate, through
 * FencedFs) and calls by its name (Create, Lookup, Unlink, cluster-routing.ts) wait for
 * the decision, then look again: moved, they answer NOT_OWNER naming the new node (the
 * SDK follows it); abandoned, they go on here. The wait is bounded by the hold itself
 * (DRAIN_SWITCH_WAIT_MS).
 *
 * Invariant (no write lost in a switch): the drain blocks a file synchronously before it
 * asks for the inode lock. A call that passed the gate before that asked for the inode
 * lock in the same synchronous stretch (FileSystem.write/truncate/fallocate), so it is
 * ahead in the lock's FIFO queue and lands before the switch's final copy.
 *
 * `moved` remembers the names and inodes moved by the running drain, so calls that come
 * after the switch, before the watch cache has seen the new placement, are redirected too.
 * An inode number is redirected only while it is unlinked or gone here (a reused number
 * names a new file). Names are cleared when the drain ends (the cache has the placements
 * by then, and a local miss is confirmed in etcd); inode numbers stay (clearMoved).
 */
import { NotOwnerError } from '../errors';

export interface MovedTo {
  node: string;
  grpc: string;
}

interface Block {
  name: string;
  ino: number;
  settled: Promise<void>;
  settle: () => void;
}

export class DrainGate {
  private readonly byIno = new Map<number, Block>();
  private readonly byName = new Map<string, Block>();
  private readonly movedNames = new Map<string, MovedTo>();
  private readonly movedInos = new Map<number, { name: string; to: MovedTo }>();

  /** Blocks the file (synchronously: see the invariant above). */
  block(name: string, ino: number): void {
    let settle!: () => void;
    const settled = new Promise<void>((resolve) => { settle = resolve; });
    const b: Block = { name, ino, settled, settle };
    this.byIno.set(ino, b);
    this.byName.set(name, b);
  }

  /** The switch is decided: moved to `to`, or abandoned (null). Wakes the waiting calls. */
  unblock(name: string, ino: number, to: MovedTo | null): void {
    const b = this.byIno.get(ino);
    if (to !== null) {
      this.movedNames.set(name, to);
      this.movedInos.set(ino, { name, to });
    }
    if (b === undefined) return;
    this.byIno.delete(ino);
    if (this.byName.get(name) === b) this.byName.delete(name);
    b.settle();
  }

  /**
   * The drain ended: names are routed by the cache from now on. Moved inode numbers stay
   * until the number names a new file (ino()): an NBD connection or a mapping may hold the
   * removed source open long after the drain, and its changes must keep failing NOT_OWNER,
   * never be acknowledged into a copy nobody reads. Bounded by the inode table (one entry
   * per number).
   */
  clearMoved(): void {
    this.movedNames.clear();
  }

  /**
   * For a mutating call on `ino`: undefined when it may go on now (synchronously), else a
   * promise of the decision. Throws NotOwnerError for an inode moved away (`gone` tells
   * whether the number still names the moved file: unlinked or freed here).
   */
  ino(ino: number, gone: () => boolean): Promise<void> | undefined {
    const b = this.byIno.get(ino);
    if (b !== undefined) return b.settled;
    const moved = this.movedInos.get(ino);
    if (moved === undefined) return undefined;
    if (!gone()) {
      this.movedInos.delete(ino); // the number names a new file now
      return undefined;
    }
    throw new NotOwnerError(moved.name, moved.to.node, moved.to.grpc);
  }

  /** For a call by name: as ino(). */
  name(name: string): Promise<void> | undefined {
    const b = this.byName.get(name);
    if (b !== undefined) return b.settled;
    const moved = this.movedNames.get(name);
    if (moved !== undefined) throw new NotOwnerError(name, moved.node, moved.grpc);
    return undefined;
  }

  /** Waits (by name) until the call may go on; throws NotOwnerError when the name moved. */
  async passName(name: string): Promise<void> {
    for (let wait = this.name(name); wait !== undefined; wait = this.name(name)) await wait;
  }
}

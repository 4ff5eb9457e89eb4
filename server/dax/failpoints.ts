/**
 * Failpoints: named places in the fault, write, writeback and invalidation paths where a
 * test can pause a request and release it later, to open a race window deterministically
 * (no sleeps). Disabled unless the server was started for tests: then `hit` is one
 * boolean test and a resolved promise is never even created.
 *
 * Usage (tests):
 *   const fp = failpoints.arm('fault:after-entry-lock', { pgoff: 3 });
 *   const pending = client.fault(...);   // runs until the point, then waits
 *   await fp.reached;                     // it is there, holding what it holds
 *   ... race something ...
 *   fp.release();                         // it goes on
 */
import assert from 'node:assert';

/** Every failpoint of the server; a test arming an unknown name is a bug in the test. */
export const FAILPOINT_NAMES = [
  'fault:after-entry-lock',   // a fault holds the mmap lock (shared) and the entry lock; before the block lookup
  'fault:before-cow-copy',    // a COW fault holds the entry lock, block looked up, before copying
  'fault:before-install',     // a fault has its block, before installing the entry and the PTE
  'write:after-allocate',     // write(2) allocated (inode lock held), before invalidating zero pages (S3)
  'invalidate:entry-locked',  // S3 invalidation holds one entry lock, before deciding to drop it
  'writeback:after-downgrade',// writeback holds the entry lock, PTEs downgraded, before the flush
  'writeback:before-clean',   // writeback flushed the block, before clearing DIRTY
  'layout:after-revoke',      // a layout change holds the inode + mmap locks, PTEs revoked, before the pin scan
  'pin:after-fault',          // a pin faulted its pages in and took its references (mmap lock shared), before replying
  'dma:in-flight',            // a DMA read/write counts as in flight, before it copies
  'layout:pin-wait',          // a layout change found a pinned block and released the mmap lock, before waiting
  'pmd:after-entry-lock',     // a PMD fault holds its PMD entry lock (placeholder or entry), before deciding
  'pmd:before-install',       // a PMD fault decided (zero page, extent or allocation), before the entry changes
  'cluster:after-claim',      // a cluster Create claimed its placement key ({self, 0}), before the local create
] as const;
export type FailpointName = (typeof FAILPOINT_NAMES)[number];

export interface FailpointContext {
  ino?: number;
  pgoff?: number;
}

export interface ArmedFailpoint {
  /** Resolves with the context of the first request that reached the point. */
  readonly reached: Promise<FailpointContext>;
  /** Lets the paused request (and any later one) go on; disarms the point. */
  release(): void;
  /** How many requests hit the point while armed. */
  readonly hits: number;
}

interface Armed {
  filter: FailpointContext;
  paused: Array<() => void>;
  reachedResolve: (ctx: FailpointContext) => void;
  hits: number;
  /** After the first pause, further requests pass unless `pauseAll`. */
  pauseAll: boolean;
}

export class Failpoints {
  private readonly armed = new Map<FailpointName, Armed>();

  constructor(readonly enabled: boolean) {}

  /** True while some point is armed: fault.ts's synchronous fast path steps aside then. */
  get anyArmed(): boolean {
    return this.enabled && this.armed.size > 0;
  }

  /** Called by the server at each point. Cost when disabled: one property read. */
  hit(name: FailpointName, ctx: FailpointContext): Promise<void> | undefined {
    if (!this.enabled) return undefined;
    const a = this.armed.get(name);
    if (!a) return undefined;
    if (a.filter.ino !== undefined && a.filter.ino !== ctx.ino) return undefined;
    if (a.filter.pgoff !== undefined && a.filter.pgoff !== ctx.pgoff) return undefined;
    a.hits++;
    if (a.hits > 1 && !a.pauseAll) return undefined;
    a.reachedResolve(ctx);
    return new Promise<void>((resume) => a.paused.push(resume));
  }

  arm(name: FailpointName, filter: FailpointContext = {}, opts: { pauseAll?: boolean } = {}): ArmedFailpoint {
    assert(this.enabled, 'failpoints are disabled: start the server with failpoints enabled (tests only)');
    assert(FAILPOINT_NAMES.includes(name), `unknown failpoint ${name}`);
    assert(!this.armed.has(name), `failpoint ${name} is already armed`);
    let reachedResolve!: (ctx: FailpointContext) => void;
    const reached = new Promise<FailpointContext>((r) => (reachedResolve = r));
    const a: Armed = { filter, paused: [], reachedResolve, hits: 0, pauseAll: opts.pauseAll ?? false };
    this.armed.set(name, a);
    return {
      reached,
      get hits() { return a.hits; },
      release: () => {
        if (this.armed.get(name) === a) this.armed.delete(name);
        for (const resume of a.paused.splice(0)) resume();
      },
    };
  }

  /** Releases everything (server shutdown, test teardown). */
  releaseAll(): void {
    for (const [name, a] of [...this.armed]) {
      this.armed.delete(name);
      for (const resume of a.paused.splice(0)) resume();
    }
  }
}

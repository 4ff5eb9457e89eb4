/**
 * What the dax layer reports while it works, for metrics and slow-operation logs. The
 * dax layer knows nothing of prom-client or pino: the server plugs an observer in
 * (server/slow-ops.ts); tests and tools get NO_OBSERVER. Calls are synchronous and must
 * be cheap: they run on the fault path, some with an entry lock held.
 */
import type { LayoutBreakOptions, LayoutChange } from '../fs/types';
import type { PmdFallbackReason } from './pmd-reasons';

/** How a layout change that met a pinned page (S4) ended. */
export type LayoutBreakOutcome = 'done' | 'failed' | 'timedout' | 'cancelled';

export interface DaxObserver {
  /** A request queued behind a locked entry (S1). */
  entryLockWaitStarted(): void;
  /** A queued request was handed the lock, or woken because the entry was removed. */
  entryLockWaited(ino: number, pgoff: number, waitedMs: number): void;
  /**
   * A layout change met a pinned page: FAIL refused at once (waitedMs 0); WAIT and RECALL
   * waited for unpins until done, the deadline, or cancellation.
   */
  layoutBreakWaited(ino: number, change: LayoutChange, opts: LayoutBreakOptions, outcome: LayoutBreakOutcome, waitedMs: number): void;
  /** A PMD fault fell back to 4 KiB pages (pmd.ts), before the page fault runs. */
  pmdFallback(ino: number, pgoff: number, reason: PmdFallbackReason): void;
}

export const NO_OBSERVER: DaxObserver = {
  entryLockWaitStarted: () => undefined,
  entryLockWaited: () => undefined,
  layoutBreakWaited: () => undefined,
  pmdFallback: () => undefined,
};

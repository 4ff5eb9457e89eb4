/**
 * The server's observer of the dax layer and the journal: each report goes to the
 * metrics registry, and the slow ones to the log at warn with their duration, so an
 * operator sees why a call stalled without turning on debug logging:
 *   - every layout change that met a pinned page (S4): a wait for pins is never routine;
 *   - an entry-lock wait of SLOW_ENTRY_LOCK_WAIT_MS or more (S1: another request held
 *     the page across a commit or a flush).
 * A PMD fault that fell back to 4 KiB is routine (a file's tail, a fragmented range): it
 * goes to the log at debug, with its reason (counted in daxd_pmd_fallbacks_total).
 */
import type { Logger } from 'pino';
import type { DaxObserver } from './dax/observer';
import type { Journal } from './journal/journal';
import type { Metrics } from './metrics';

/** An entry-lock wait this long (or longer) is logged at warn. */
export const SLOW_ENTRY_LOCK_WAIT_MS = 100;

export function daxObserver(metrics: Metrics, log: Logger): DaxObserver {
  return {
    entryLockWaitStarted: () => metrics.entryLockWaitStarted(),
    entryLockWaited: (ino, pgoff, waitedMs) => {
      metrics.entryLockWaited(waitedMs / 1000);
      if (waitedMs >= SLOW_ENTRY_LOCK_WAIT_MS) {
        log.warn({ slowOp: 'entry-lock-wait', ino, pgoff, waitedMs: round(waitedMs) }, 'slow entry-lock wait');
      }
    },
    layoutBreakWaited: (ino, change, opts, outcome, waitedMs) => {
      metrics.layoutBreakWaited(opts.policy, outcome, waitedMs / 1000);
      log.warn({
        slowOp: 'layout-break-wait', reqId: opts.requestId, ino, change, policy: opts.policy, outcome, waitedMs: round(waitedMs),
      }, 'layout change met pinned pages');
    },
    // Routine (a file's tail, a sparse range): debug, not warn; the metric counts by reason.
    pmdFallback: (ino, pgoff, reason) => log.debug({ ino, pgoff, reason }, 'PMD fault fell back to 4 KiB pages'),
  };
}

/** Journal commit latency into the registry. */
export function observeJournal(journal: Journal, metrics: Metrics): void {
  journal.onCommitTimed = (commitMs) => metrics.journalCommitted(commitMs / 1000);
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

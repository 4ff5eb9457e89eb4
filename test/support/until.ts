/**
 * Waiting for an observable state without a timed sleep: `until` polls a condition (an
 * entry's waiter count, a lock queue, a counter, a scraped metric) and `settle` lets
 * everything runnable run before a negative check.
 */
import assert from 'node:assert/strict';

/** How long `until` waits before it calls the wait a hang. Only a hang reaches it. */
export const UNTIL_MS_MAX = 20_000;
/** Turns `until` polls back to back before it polls every UNTIL_BACKOFF_MS instead. */
const UNTIL_EAGER_TURNS = 100;
const UNTIL_BACKOFF_MS = 5;

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/**
 * Polls cond() once per event-loop turn (in-process state needs nothing else to move),
 * then, after UNTIL_EAGER_TURNS turns, every UNTIL_BACKOFF_MS (state behind network I/O or
 * a timer, without spinning a core). Fails with `what` after maxMs.
 */
export async function until(cond: () => boolean | Promise<boolean>, what: string | (() => string), maxMs = UNTIL_MS_MAX): Promise<void> {
  const t0 = Date.now();
  for (let i = 0; ; i++) {
    if (await cond()) return;
    if (Date.now() - t0 > maxMs) assert.fail(`never observed (${maxMs} ms): ${typeof what === 'string' ? what : what()}`);
    await (i < UNTIL_EAGER_TURNS ? turn() : new Promise((r) => setTimeout(r, UNTIL_BACKOFF_MS)));
  }
}

/** Lets everything runnable run (microtasks, storage flushes, local I/O) before a negative check. */
export async function settle(turns = 50): Promise<void> {
  for (let i = 0; i < turns; i++) await turn();
}

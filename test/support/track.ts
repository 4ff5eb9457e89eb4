/**
 * Watching a request in flight: whether a promise settled (without awaiting it), and
 * whether a request reached a failpoint before it settled.
 */
import type { ArmedFailpoint } from '../../server/dax/failpoints';

/** Tracks whether a promise settled, without awaiting it. */
export function track<T>(p: Promise<T>): { promise: Promise<T>; readonly done: boolean; readonly failed: unknown } {
  const state = { done: false, failed: undefined as unknown };
  const promise = p.then(
    (v) => { state.done = true; return v; },
    (err: unknown) => { state.done = true; state.failed = err; throw err; },
  );
  // The test awaits `promise` later; a rejection before that must not be "unhandled".
  promise.catch(() => undefined);
  return { promise, get done() { return state.done; }, get failed() { return state.failed; } };
}

/**
 * Resolves with the failpoint's context once it is reached; rejects if `racing` settles
 * first (the request finished, or failed, without passing the point: the test is wrong or
 * the point moved).
 */
export function reached(fp: ArmedFailpoint, racing: Promise<unknown>, name: string): Promise<unknown> {
  return Promise.race([
    fp.reached,
    racing.then(
      () => { throw new Error(`the request completed without reaching failpoint ${name}`); },
      (err: unknown) => { throw new Error(`the request failed before failpoint ${name}: ${String(err)}`); },
    ),
  ]);
}

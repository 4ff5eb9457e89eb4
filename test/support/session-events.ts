/** Waiting on an SDK session's events (instead of polling or sleeping). */
import type { DaxSession, InvalidateEvent } from '../../client';

/** The next Invalidate event of the session for `ino`. */
export function nextInvalidate(session: DaxSession, ino: number): Promise<InvalidateEvent> {
  return new Promise((resolve) => {
    const on = (ev: InvalidateEvent) => {
      if (ev.ino !== ino) return;
      session.off('invalidate', on);
      resolve(ev);
    };
    session.on('invalidate', on);
  });
}

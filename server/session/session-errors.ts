/**
 * Coded errors of the session layer. The codes and their statuses live in the one error
 * table (server/errors.ts REASONS); these classes only give them constructors.
 */
import { DaxError } from '../errors';
import { excerpt } from '../excerpt';

export class SessionExpiredError extends DaxError {
  constructor(sessionId: string, how: string) { super('SESSION_EXPIRED', `session ${excerpt(sessionId)} ${how}`); }
}

export class SessionUnknownError extends DaxError {
  constructor(sessionId: string) { super('SESSION_UNKNOWN', `no session ${excerpt(sessionId)}`); }
}

export class LeaseTooLongError extends DaxError {
  constructor(leaseMs: number, maxMs: number) { super('LEASE_TOO_LONG', `lease of ${leaseMs} ms is too long (${leaseMs} vs. max ${maxMs})`); }
}

/**
 * Errors the SDK throws: every failure of a call, unary or inside a stream, becomes a
 * DaxClientError with the gRPC status `code` and the server's `reason` (ENOENT, EEXIST,
 * ELIMIT, SESSION_EXPIRED, ...; null when the failure did not come from daxd, e.g.
 * UNAVAILABLE because the server is down). The reason names are the wire's
 * (wire/reasons.ts, from the proto's `enum Reason`).
 */
import * as grpc from '@grpc/grpc-js';
import type { OpError__Output } from '../wire/generated/daxd/v1/OpError';
import { REASON_METADATA_KEY } from '../wire/metadata';
import type { Reason } from '../wire/reasons';

/**
 * A reason as received: one of the names this SDK knows, or (from a newer server) one it
 * does not, passed on unchanged (isReason tells them apart).
 */
export type ReceivedReason = Reason | (string & Record<never, never>);

export class DaxClientError extends Error {
  /** The gRPC status code (grpc.status). */
  readonly code: grpc.status;
  /** daxd's reason, e.g. 'ENOENT'; null if none was sent. */
  readonly reason: ReceivedReason | null;
  readonly details: string;

  constructor(code: grpc.status, reason: ReceivedReason | null, details: string) {
    // daxd's details already start with the reason ("ENOENT: no file ..."); say it once.
    const said = reason === null || details.startsWith(`${reason}:`) ? details : `${reason}: ${details}`;
    super(`${grpc.status[code] ?? code}: ${said}`);
    this.name = 'DaxClientError';
    this.code = code;
    this.reason = reason;
    this.details = details;
  }

  /** The status name, e.g. 'NOT_FOUND'. */
  get codeName(): string {
    return grpc.status[this.code] ?? String(this.code);
  }

  static fromServiceError(err: Partial<grpc.ServiceError>): DaxClientError {
    const reasons = err.metadata?.get(REASON_METADATA_KEY) ?? [];
    const reason = reasons.length > 0 ? String(reasons[0]) : null;
    return DaxClientError.of(err.code ?? grpc.status.UNKNOWN, reason, withoutEmptyNote(err.details ?? err.message ?? 'unknown failure'));
  }

  static fromOpError(err: OpError__Output): DaxClientError {
    return DaxClientError.of(err.code as grpc.status, err.reason === '' ? null : err.reason, err.message);
  }

  /** The error of a failed call: the typed subclass its reason calls for, else DaxClientError. */
  static of(code: grpc.status, reason: ReceivedReason | null, details: string): DaxClientError {
    if (reason !== null && (AUTH_REASONS as readonly string[]).includes(reason)) return new DaxAuthError(code, reason as AuthReason, details);
    if (reason === 'EDQUOT') return new DaxQuotaError(code, details);
    return new DaxClientError(code, reason, details);
  }
}

/**
 * grpc-js ends its UNAVAILABLE details with ". Resolution note: " and the resolver's note,
 * which is empty for a plain host:port: drop the label when nothing follows it.
 */
function withoutEmptyNote(details: string): string {
  return details.replace(/\.? Resolution note:\s*$/, '');
}

/** The reasons of a refusal by authentication or authorization (DaxAuthError.reason). */
export const AUTH_REASONS = ['EAUTH', 'AUTH_RATE_LIMITED', 'EACCES'] as const;
export type AuthReason = (typeof AUTH_REASONS)[number];

/**
 * The server refused who is calling: UNAUTHENTICATED / EAUTH (no or bad credentials: a
 * missing or wrong token, an unknown client certificate), AUTH_RATE_LIMITED (too many
 * failures from this address lately: even good credentials are refused until the window
 * passes), or PERMISSION_DENIED / EACCES (the principal's role or name prefix does not
 * allow the call). `.reason` says which. Never carries the token: the server's details
 * do not echo it and the SDK adds nothing.
 */
export class DaxAuthError extends DaxClientError {
  declare readonly reason: AuthReason;

  constructor(code: grpc.status, reason: AuthReason, details: string) {
    super(code, reason, details);
    this.name = 'DaxAuthError';
  }
}

/**
 * Over one of the principal's quotas (RESOURCE_EXHAUSTED / EDQUOT: sessions, pins, pinned
 * blocks, allocated bytes; the details say which). Nothing of the refused call was done.
 */
export class DaxQuotaError extends DaxClientError {
  constructor(code: grpc.status, details: string) {
    super(code, 'EDQUOT', details);
    this.name = 'DaxQuotaError';
  }
}

/**
 * A fault at or beyond end of file (OUT_OF_RANGE / SIGBUS): what a process mapping the
 * file would get as SIGBUS. MappedFile read/write past the end throw it.
 */
export class SigbusError extends DaxClientError {
  constructor(details: string) {
    super(grpc.status.OUT_OF_RANGE, 'SIGBUS', details);
    this.name = 'SigbusError';
  }
}

/** Is this the error of a call that can be retried as is (the server was unreachable)? */
export function isUnavailable(err: unknown): boolean {
  return err instanceof DaxClientError && err.code === grpc.status.UNAVAILABLE;
}

/**
 * The one error table of daxd.
 *
 * Every expected failure is a DaxError carrying a stable `code` (the reason sent to
 * clients in the `daxd-reason` trailer) and the gRPC status it maps to. Broken
 * invariants are NOT DaxErrors: they are `node:assert` failures (bugs), which the rpc
 * layer reports as INTERNAL and logs with a stack.
 *
 * Status numbers are the gRPC ones (grpc/status.h); they are repeated here so the core
 * does not import grpc.
 *
 * Every DaxError subclass lives in this file, and no other file calls `new DaxError(`
 * directly (test/tools/check-error-classes.ts, run by `npm run lint`).
 */
import type { Reason } from '../wire/reasons';
import { excerpt } from './excerpt';

export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type GrpcStatusCode = (typeof GrpcStatus)[keyof typeof GrpcStatus];

interface ReasonSpec {
  readonly status: GrpcStatusCode;
  /** One sentence for users; the README's error table is checked against these. */
  readonly doc: string;
}

/** The reasons daxd returns, each with its status. Adding one means documenting it in README.md. */
export const REASONS = {
  ENOENT: { status: GrpcStatus.NOT_FOUND, doc: 'No file with that name or inode.' },
  EEXIST: { status: GrpcStatus.ALREADY_EXISTS, doc: 'Exclusive create of a name that exists.' },
  EINVAL: { status: GrpcStatus.INVALID_ARGUMENT, doc: 'An argument is malformed, out of its range, or misaligned where alignment is required.' },
  EBADMSG: { status: GrpcStatus.INVALID_ARGUMENT, doc: 'The request message is not well-formed protobuf for its type (wrong wire type, truncated field, overrun length); nothing was done.' },
  ENAMETOOLONG: { status: GrpcStatus.INVALID_ARGUMENT, doc: 'A file name longer than 255 bytes of UTF-8.' },
  EFBIG: { status: GrpcStatus.INVALID_ARGUMENT, doc: 'The operation would make a file larger than the maximum file size.' },
  ENOSPC: { status: GrpcStatus.RESOURCE_EXHAUSTED, doc: 'The volume has no free blocks left for the operation.' },
  EMAXFILES: { status: GrpcStatus.RESOURCE_EXHAUSTED, doc: 'The inode table is full (maximum number of files reached).' },
  ELIMIT: { status: GrpcStatus.RESOURCE_EXHAUSTED, doc: 'A named limit was hit (message size, I/O per call, sessions, pins); the message says which, as (actual vs. max).' },
  EBUSY: { status: GrpcStatus.FAILED_PRECONDITION, doc: 'A layout change with layout_break FAIL met a pinned page, or the volume is locked by another server.' },
  EFAULT: { status: GrpcStatus.PERMISSION_DENIED, doc: 'DMA write through a read-only pin, or store through a mapping that is not writable.' },
  SIGBUS: { status: GrpcStatus.OUT_OF_RANGE, doc: 'Page fault at or beyond end of file (the SIGBUS case).' },
  PTE_STALE: { status: GrpcStatus.ABORTED, doc: 'The PTE token was invalidated, downgraded by writeback, or its session is gone: fault again.' },
  PIN_REVOKED: { status: GrpcStatus.ABORTED, doc: 'The pin was revoked by a RECALL layout break (or its session ended).' },
  SESSION_EXPIRED: { status: GrpcStatus.UNAUTHENTICATED, doc: 'The session missed its lease or was closed.' },
  SESSION_UNKNOWN: { status: GrpcStatus.UNAUTHENTICATED, doc: 'No such session, or a session another principal opened (answered alike).' },
  LEASE_TOO_LONG: { status: GrpcStatus.INVALID_ARGUMENT, doc: 'A requested lease is longer than the maximum lease.' },
  ETIMEDOUT: { status: GrpcStatus.DEADLINE_EXCEEDED, doc: 'The call deadline passed while waiting (e.g. for pins to drop); nothing was changed.' },
  ECANCELED: { status: GrpcStatus.CANCELLED, doc: 'The call was cancelled while waiting; nothing was changed.' },
  ESHUTDOWN: { status: GrpcStatus.UNAVAILABLE, doc: 'The server is shutting down.' },
  ENOTSUP: { status: GrpcStatus.UNIMPLEMENTED, doc: 'The capability is not implemented yet, or not the fast way asked for (an NBD FAST_ZERO that would wait for a pin).' },
  ECORRUPT: { status: GrpcStatus.DATA_LOSS, doc: 'On-media corruption detected (bad checksum or impossible value); the volume refuses to use it.' },
  EVERSION: { status: GrpcStatus.FAILED_PRECONDITION, doc: 'The volume has an unknown on-media format version.' },
  EIO: { status: GrpcStatus.UNAVAILABLE, doc: 'A system call on the volume failed (msync, mmap).' },
  EAUTH: { status: GrpcStatus.UNAUTHENTICATED, doc: 'Authentication is on and the call carried no credentials, or credentials no principal has (bad token, unknown or untrusted client certificate).' },
  EACCES: { status: GrpcStatus.PERMISSION_DENIED, doc: 'The principal\'s role does not allow the call (e.g. ro writing), or the file is outside its name prefix.' },
  EDQUOT: { status: GrpcStatus.RESOURCE_EXHAUSTED, doc: 'The principal\'s quota (sessions, pins, pinned blocks, allocated bytes) would be exceeded; the message says which, as (actual vs. max).' },
  AUTH_RATE_LIMITED: { status: GrpcStatus.RESOURCE_EXHAUSTED, doc: 'Too many failed authentications from this peer address recently; every attempt is refused until the window passes.' },
  FENCED: { status: GrpcStatus.UNAVAILABLE, doc: 'A cluster node that could not renew its etcd lease (or is not registered yet) refuses mutating calls until it has registered again; reads go on.' },
  NOT_OWNER: { status: GrpcStatus.FAILED_PRECONDITION, doc: 'The file is placed on another cluster node: the trailer daxd-owner names its gRPC address (daxd-owner-node its name).' },
  NODE_DOWN: { status: GrpcStatus.UNAVAILABLE, doc: 'The file is placed on a cluster node that is down (no live registration); it is never re-created elsewhere.' },
  ETCD_UNAVAILABLE: { status: GrpcStatus.UNAVAILABLE, doc: 'A cluster node needed etcd for the call (a placement read or change) and etcd did not answer in time or failed; the message names the operation. Retry later.' },
} as const satisfies Record<Reason, ReasonSpec>;

export type ReasonCode = keyof typeof REASONS;

export class DaxError extends Error {
  readonly code: ReasonCode;
  readonly status: GrpcStatusCode;
  constructor(code: ReasonCode, message: string) {
    super(`${code}: ${message}`);
    this.name = new.target.name;
    this.code = code;
    this.status = REASONS[code].status;
  }
}

export class NotFoundError extends DaxError {
  constructor(message: string) { super('ENOENT', message); }
}
export class ExistsError extends DaxError {
  constructor(message: string) { super('EEXIST', message); }
}
export class InvalidArgumentError extends DaxError {
  constructor(message: string) { super('EINVAL', message); }
}
/** A request whose bytes are not a well-formed message of its type (server/rpc/strict-decode.ts). */
export class BadMessageError extends DaxError {
  constructor(problem: string) { super('EBADMSG', `malformed request message: ${problem}`); }
}
export class NameTooLongError extends DaxError {
  constructor(actualBytes: number, maxBytes: number) { super('ENAMETOOLONG', `name is ${actualBytes} bytes (${actualBytes} vs. max ${maxBytes})`); }
}
export class FileTooBigError extends DaxError {
  constructor(actualBytes: number, maxBytes: number) { super('EFBIG', `file size would be ${actualBytes} bytes (${actualBytes} vs. max ${maxBytes})`); }
}
export class NoSpaceError extends DaxError {
  constructor(neededBlocks: number, freeBlocks: number) { super('ENOSPC', `volume full: need ${neededBlocks} blocks, ${freeBlocks} free`); }
}
export class TooManyFilesError extends DaxError {
  constructor(maxFiles: number) { super('EMAXFILES', `inode table full (${maxFiles} vs. max ${maxFiles})`); }
}
/** A named limit: message says "(actual vs. max)". */
export class LimitError extends DaxError {
  constructor(limitName: string, actual: number | bigint, max: number | bigint) { super('ELIMIT', `${limitName} exceeded (${actual} vs. max ${max})`); }
}
export class BusyError extends DaxError {
  constructor(message: string) { super('EBUSY', message); }
}
export class CorruptError extends DaxError {
  constructor(message: string) { super('ECORRUPT', message); }
}
export class VersionError extends DaxError {
  /** `what`: the versioned on-media structure ('volume' = the superblock, 'journal'). */
  constructor(found: number, supported: number, what = 'volume') {
    super('EVERSION', `${what} format version ${found} is not supported (this daxd supports version ${supported}); nothing was changed: use a daxd that supports it`);
  }
}
/**
 * ENOTSUP: the documented UNIMPLEMENTED reason for a capability that is declared but not
 * built yet (e.g. an NBD command or flag the export does not serve yet). Kept on purpose
 * for capabilities that land in steps; a reason nothing can return is to be removed.
 */
export class NotSupportedError extends DaxError {
  constructor(what: string) { super('ENOTSUP', `${what} is not implemented yet`); }
}
/** A write past the end of a fixed-size target (an NBD export: the spec's ENOSPC). */
export class PastEndError extends DaxError {
  constructor(message: string) { super('ENOSPC', message); }
}
/** Not possible the fast way asked for (an NBD FAST_ZERO that would have to wait): ENOTSUP, nothing changed. */
export class NotFastError extends DaxError {
  constructor(message: string) { super('ENOTSUP', message); }
}
export class IoError extends DaxError {
  constructor(message: string) { super('EIO', message); }
}
/** A fault or pin at or past end of file (a CPU access there gets SIGBUS). */
export class SigbusError extends DaxError {
  constructor(ino: number, pgoff: number, sizeBytes: number) {
    super('SIGBUS', `fault at pgoff ${pgoff} of inode ${ino} is at or beyond EOF (size ${sizeBytes} bytes)`);
  }
}

// ---- sessions (server/session) ------------------------------------------------------

export class SessionExpiredError extends DaxError {
  constructor(sessionId: string, how: string) { super('SESSION_EXPIRED', `session ${excerpt(sessionId)} ${how}`); }
}
export class SessionUnknownError extends DaxError {
  constructor(sessionId: string) { super('SESSION_UNKNOWN', `no session ${excerpt(sessionId)}`); }
}
export class LeaseTooLongError extends DaxError {
  constructor(leaseMs: number, maxMs: number) { super('LEASE_TOO_LONG', `lease of ${leaseMs} ms is too long (${leaseMs} vs. max ${maxMs})`); }
}

// ---- mappings and pins (server/dax) -------------------------------------------------

/** S7: a revoked, downgraded or unknown PTE token changes nothing: fault again. */
export class PteStaleError extends DaxError {
  constructor(why: string) { super('PTE_STALE', `${why}: fault the page again`); }
}
export class PinRevokedError extends DaxError {
  constructor(pinId: string) { super('PIN_REVOKED', `pin ${pinId} was revoked (RECALL layout break, lease, or session end)`); }
}
/** DMA write through a read-only pin, or a writable pin of pages mapped read-only. */
export class ReadOnlyPinError extends DaxError {
  constructor(why: string) { super('EFAULT', why); }
}

// ---- waits given up, shutdown -------------------------------------------------------

/** The call's deadline passed while it waited (the message says for what); nothing was changed. */
export class TimedOutError extends DaxError {
  constructor(message: string) { super('ETIMEDOUT', message); }
}
/** The client cancelled the call while it waited. Nothing was changed. */
export class CancelledError extends DaxError {
  constructor(message: string) { super('ECANCELED', message); }
}
/** The server is stopping: the call or op was not started, or was cut off. */
export class ShutdownError extends DaxError {
  constructor(detail = '') { super('ESHUTDOWN', `the server is shutting down${detail}`); }
}

// ---- authentication and authorization (server/auth) --------------------------------

/** No credentials, or credentials that name no principal (server/auth/authenticator.ts). */
export class UnauthenticatedError extends DaxError {
  constructor(message: string) { super('EAUTH', message); }
}
/** A role or name-prefix violation (server/auth/call-principal.ts, principal-fs.ts). */
export class PermissionDeniedError extends DaxError {
  constructor(message: string) { super('EACCES', message); }
}
/** A principal's quota (server/auth/quota.ts): which one, as (actual vs. max). */
export class QuotaError extends DaxError {
  constructor(quota: string, actual: number, max: number) { super('EDQUOT', `${quota} quota exceeded (${actual} vs. ${max})`); }
}
/** A peer that failed authentication too often lately (server/auth/failure-limiter.ts). */
export class AuthRateLimitedError extends DaxError {
  /** retryAfterMs: until the peer may try again (HTTP sends it as Retry-After). */
  constructor(readonly retryAfterMs: number) { super('AUTH_RATE_LIMITED', `too many failed authentications from this address; retry in ${Math.ceil(retryAfterMs / 1000)} s`); }
}

// ---- cluster (server/cluster) -------------------------------------------------------

/** A node that cannot renew its etcd lease (or has not registered yet) refuses mutations. */
export class FencedError extends DaxError {
  constructor(why: string) { super('FENCED', `this node is fenced (${why}): mutating calls are refused until it registers again; reads go on`); }
}
/** The name is placed on another node; status.ts sends `ownerAddress` in the daxd-owner trailer. */
export class NotOwnerError extends DaxError {
  constructor(name: string, readonly ownerNode: string, readonly ownerAddress: string) {
    super('NOT_OWNER', `${excerpt(name)} is placed on node ${ownerNode} (${ownerAddress})`);
  }
}
/** The name is placed on a node with no live registration. */
export class NodeDownError extends DaxError {
  constructor(name: string, node: string) { super('NODE_DOWN', `${excerpt(name)} is placed on node ${node}, which is down`); }
}
/** etcd did not answer a placement read or change in time, or failed it (server/cluster/etcd.ts etcdCall). */
export class EtcdUnavailableError extends DaxError {
  constructor(operation: string, cause: unknown) {
    super('ETCD_UNAVAILABLE', `etcd failed the ${operation} (${cause instanceof Error ? cause.message : String(cause)})`);
  }
}

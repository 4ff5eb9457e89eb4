/**
 * The one place where errors become wire statuses.
 *
 * A DaxError carries its gRPC status and a stable reason (server/errors.ts); the reason
 * travels in the trailing metadata key `daxd-reason`. Anything else reaching the rpc
 * layer is a bug (a broken assertion, a TypeError): INTERNAL with a generic message and
 * an incident id, and the stack goes to the log under that id. Never UNKNOWN.
 *
 * Every status fits the peer's HTTP/2 header limit: details are cut to
 * STATUS_DETAILS_BYTES_MAX here (messages quote user input only through excerpt(), this is
 * the second line of defence), and wire-guard.ts bounds whatever else leaves the server.
 */
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { DaxError, GrpcStatus, NotOwnerError } from '../errors';
import { STATUS_DETAILS_BYTES_MAX } from './limits';
import { OWNER_METADATA_KEY, OWNER_NODE_METADATA_KEY, REASON_METADATA_KEY } from '../../wire/metadata';

export interface WireStatus {
  code: grpc.status;
  details: string;
  /** Only DaxErrors have a reason. */
  reason: string | null;
}

export function toWireStatus(err: unknown, log: Logger, where: string): WireStatus {
  if (err instanceof DaxError) {
    return { code: err.status as number as grpc.status, details: boundedDetails(err.message), reason: err.code };
  }
  const incident = randomBytes(6).toString('hex');
  log.error({ err, incident, where }, 'bug: unexpected error in an rpc handler');
  return { code: GrpcStatus.INTERNAL as number as grpc.status, details: `internal error (incident ${incident}; see the server log)`, reason: null };
}

/** For unary callbacks and stream 'error' emits: a grpc-js status object with the reason trailer. */
export function toServiceError(err: unknown, log: Logger, where: string): grpc.ServerErrorResponse {
  const status = toWireStatus(err, log, where);
  const metadata = new grpc.Metadata();
  if (status.reason !== null) metadata.set(REASON_METADATA_KEY, status.reason);
  // Cluster redirects name the owner (node names and host:port are short: bounded at registration).
  if (err instanceof NotOwnerError) {
    metadata.set(OWNER_METADATA_KEY, err.ownerAddress);
    metadata.set(OWNER_NODE_METADATA_KEY, err.ownerNode);
  }
  return Object.assign(new Error(status.details), { code: status.code, details: status.details, metadata });
}

/**
 * `details` cut to at most STATUS_DETAILS_BYTES_MAX of UTF-8 (ending in "…" when cut). A
 * status larger than the peer's header limit never arrives: the call would hang (issue 10,
 * defect 4).
 */
export function boundedDetails(details: string): string {
  if (details.length <= STATUS_DETAILS_BYTES_MAX / 3 || Buffer.byteLength(details, 'utf8') <= STATUS_DETAILS_BYTES_MAX) return details;
  const ELLIPSIS_BYTES = 3;
  let cut = Buffer.from(details, 'utf8').subarray(0, STATUS_DETAILS_BYTES_MAX - ELLIPSIS_BYTES).toString('utf8');
  // A multi-byte character cut in half decodes as U+FFFD: drop it.
  if (cut.endsWith('\uFFFD')) cut = cut.slice(0, -1);
  return `${cut}…`;
}

/**
 * A grpc-js server interceptor around every call of the server: the last word on what
 * goes in and out.
 *
 * In: a request the strict deserializer (strict-decode.ts) could not decode arrives as a
 * MalformedRequest. The call is answered INVALID_ARGUMENT / EBADMSG at once and the
 * message (and the half-close after it) never reach the handler: a unary handler never
 * runs; a streaming handler sees its call cancelled. grpc-js itself would answer a
 * throwing deserializer with INTERNAL, which means a server bug.
 *
 * Out: every status and every header block leaving the server is bounded, whoever built
 * it (our handlers through status.ts, grpc-js, a future service): details cut to
 * STATUS_DETAILS_BYTES_MAX, custom metadata values over METADATA_VALUE_BYTES_MAX dropped
 * and logged (a bug: daxd's own values are short). A trailer over the peer's HTTP/2 header
 * limit never arrives and leaves the call hanging (issue 10, defect 4). After the guard has
 * sent a status, later messages and statuses of the handler are dropped: one status per
 * call.
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { BadMessageError } from '../errors';
import type { Metrics } from '../metrics';
import { methodLabel, newRequestId } from './instrument';
import { METADATA_VALUE_BYTES_MAX } from './limits';
import { boundedDetails } from './status';
import { REASON_METADATA_KEY, REQUEST_ID_METADATA_KEY } from '../../wire/metadata';
import { MalformedRequest } from './strict-decode';

/** The metadata with every custom key whose values total over METADATA_VALUE_BYTES_MAX removed. */
export function boundedMetadata(metadata: grpc.Metadata, log: Logger, where: string): grpc.Metadata {
  for (const key of Object.keys(metadata.toJSON())) {
    const bytes = metadata.get(key).reduce((n: number, v) => n + (typeof v === 'string' ? Buffer.byteLength(v, 'utf8') : v.length), 0);
    if (bytes <= METADATA_VALUE_BYTES_MAX) continue;
    log.error({ key, bytes, max: METADATA_VALUE_BYTES_MAX, where }, 'bug: metadata value over METADATA_VALUE_BYTES_MAX dropped');
    metadata.remove(key);
  }
  return metadata;
}

type OutgoingStatus = Parameters<NonNullable<grpc.Responder['sendStatus']>>[0];

function boundedStatus(status: OutgoingStatus, log: Logger, where: string): OutgoingStatus {
  const bounded = { ...status };
  if (typeof status.details === 'string') bounded.details = boundedDetails(status.details);
  if (status.metadata) bounded.metadata = boundedMetadata(status.metadata.clone(), log, where);
  return bounded;
}

export function wireGuard(log: Logger, metrics?: Metrics): grpc.ServerInterceptor {
  return (method, nextCall) => {
    let statusSent = false;
    let rejected = false;
    const call: grpc.ServerInterceptingCall = new grpc.ServerInterceptingCall(nextCall, {
      start: (next) => next({
        onReceiveMessage: (message: unknown, nextMessage) => {
          if (rejected) return;
          if (!(message instanceof MalformedRequest)) {
            nextMessage(message);
            return;
          }
          rejected = true;
          const err = new BadMessageError(message.problem);
          const metadata = new grpc.Metadata();
          metadata.set(REASON_METADATA_KEY, err.code);
          metadata.set(REQUEST_ID_METADATA_KEY, newRequestId());
          metrics?.rpcFinished(methodLabel(method.path), 'INVALID_ARGUMENT', 0);
          call.sendStatus({ code: grpc.status.INVALID_ARGUMENT, details: err.message, metadata });
        },
        onReceiveHalfClose: (nextHalfClose) => {
          if (!rejected) nextHalfClose();
        },
      }),
      sendMetadata: (metadata, next) => next(boundedMetadata(metadata, log, method.path)),
      sendMessage: (message, next) => {
        if (!statusSent) next(message);
      },
      sendStatus: (status, next) => {
        if (statusSent) return;
        statusSent = true;
        next(boundedStatus(status, log, method.path));
      },
    });
    return call;
  };
}

/**
 * Adapts a promise-returning handler to grpc-js's unary callback, so every handler fails
 * the same way: through toServiceError (status + daxd-reason), never by throwing into
 * grpc-js (which would answer UNKNOWN).
 */
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { requestIdOf } from './instrument';
import { toServiceError } from './status';

export type UnaryHandler<Req, Res> = (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Res | Promise<Res>;

export function unary<Req, Res>(log: Logger, where: string, handler: UnaryHandler<Req, Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    // Bugs are logged with the call's request id (instrument.ts), found through the trailer.
    const fail = (err: unknown) => {
      const reqId = requestIdOf(call);
      callback(toServiceError(err, reqId === undefined ? log : log.child({ reqId }), where));
    };
    let result: Res | Promise<Res>;
    try {
      result = handler(call.request, call);
    } catch (err) {
      fail(err);
      return;
    }
    Promise.resolve(result).then((response) => callback(null, response), fail);
  };
}

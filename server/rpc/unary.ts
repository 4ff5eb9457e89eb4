/**
 * Adapts a promise-returning handler to grpc-js's unary callback, so every handler fails
 * the same way: through toServiceError (status + daxd-reason), never by throwing into
 * grpc-js (which would answer UNKNOWN).
 */
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { toServiceError } from './status';

export type UnaryHandler<Req, Res> = (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Res | Promise<Res>;

export function unary<Req, Res>(log: Logger, where: string, handler: UnaryHandler<Req, Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    let result: Res | Promise<Res>;
    try {
      result = handler(call.request, call);
    } catch (err) {
      callback(toServiceError(err, log, where));
      return;
    }
    Promise.resolve(result).then(
      (response) => callback(null, response),
      (err: unknown) => callback(toServiceError(err, log, where)),
    );
  };
}

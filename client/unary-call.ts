/**
 * One unary call as a promise: a deadline on every call, and retries with exponential
 * backoff only for calls the caller marks idempotent, only on UNAVAILABLE (the server
 * was unreachable or stopping: the call did not run, or running it again is harmless).
 */
import * as grpc from '@grpc/grpc-js';
import { setTimeout as delay } from 'node:timers/promises';
import { DaxClientError, isUnavailable } from './errors';

export type UnaryMethod<Req, Res> = (
  request: Req, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<Res>,
) => grpc.ClientUnaryCall;

export interface UnaryCallOptions {
  deadlineMs: number;
  /** Retry on UNAVAILABLE (only for calls that may run twice). */
  idempotent: boolean;
  retries: number;
  backoffMs: number;
}

function once<Req, Res>(method: UnaryMethod<Req, Res>, request: Req, deadline: Date): Promise<Res> {
  return new Promise((resolve, reject) => {
    method(request, new grpc.Metadata(), { deadline }, (err, response) => {
      if (err) reject(DaxClientError.fromServiceError(err));
      else resolve(response as Res);
    });
  });
}

export async function callUnary<Req, Res>(method: UnaryMethod<Req, Res>, request: Req, options: UnaryCallOptions): Promise<Res> {
  const deadlineMs = Date.now() + options.deadlineMs;
  for (let attempt = 0; ; attempt++) {
    try {
      return await once(method, request, new Date(deadlineMs));
    } catch (err) {
      const backoffMs = options.backoffMs * 2 ** attempt;
      const retry = options.idempotent && isUnavailable(err) && attempt < options.retries && Date.now() + backoffMs < deadlineMs;
      if (!retry) throw err;
      await delay(backoffMs);
    }
  }
}
